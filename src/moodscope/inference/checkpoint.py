"""One file per trained model: the head's arrays, the scaler, labels, feature and training
config, calibration, and whatever named arrays and plain values the model carries.

The file is data, never code: a zip holding ``checkpoint.json`` (plain JSON) and numbers as
``.npy`` arrays read with ``allow_pickle=False``. A linear head is rebuilt from its arrays
(:class:`LinearHead`), so predicting needs numpy alone. Any other head is research: a neural
head's weights are arrays that only PyTorch runs, and a scikit-learn tree ensemble is loaded
through skops only when every type in it is on an explicit list of estimator types (no
function, no other class). Anything else is refused in one line.

Checkpoints written by moodscope 0.1 (``torch.save`` files) are read with
``torch.load(weights_only=True)`` when PyTorch is installed;
``python tools/convert_checkpoint.py OLD NEW`` rewrites one in this format.
"""

from __future__ import annotations

import datetime
import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from moodscope.atomic import write_atomic
from moodscope.errors import ModelError, MoodscopeError
from moodscope.extras import RESEARCH_INSTALL, has_research
from moodscope.features.sets import FeatureConfig
from moodscope.inference.calibration import Calibration
from moodscope.inference.identity import checkpoint_version
from moodscope.models.config import TrainConfig

if TYPE_CHECKING:
    from moodscope.models.estimators import Classifier

FORMAT = "moodscope-checkpoint"
VERSION = 2  # 1: a torch.save file (moodscope 0.1); 2: zip of JSON and .npy arrays
EXTENSION = ".ckpt"
HEADER = "checkpoint.json"
ARRAYS = "arrays/"  # folder of the .npy members inside the zip
MAX_BYTES = 1 << 30
"""Largest checkpoint content read (all members, uncompressed): a shipped model is < 1 MB."""
_NUMBERS = "fiub"  # numpy dtype kinds a checkpoint may hold: float, int, unsigned, bool


ROUNDING_SPREAD = 1e-3
"""A feature whose spread over the training rows is below this fraction of its mean only
varies by float32 rounding (a dead musicnn filter's constant, averaged over a varying number
of patches: spreads of 1e-9 to 1e-4 of the mean, where the next feature's is 9e-2). Scaled by
that spread, rounding noise would become a value of several units and any other summation
order (another runtime, another CPU) would move the prediction; such a feature is taken as
the constant it is (scaled value 0). The same holds for a track summary's ``@std`` of such a
feature: a spread within a track below this fraction of the feature's ``@mean`` is rounding
(dead filters: 3e-10 to 1e-4; every other feature >= 6e-2). Found on one dev track whose
``@std`` of a dead filter was 2e-13 on one runtime and 0 on the other: 18 scaled units and
0.16 of confidence apart."""


def _rounding_spread(mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Features whose spread over the training rows is rounding (:data:`ROUNDING_SPREAD`)."""
    return scale <= ROUNDING_SPREAD * np.abs(mean)


def rounding_columns(columns: Sequence[str], mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """[n_features] bool: the features of :data:`ROUNDING_SPREAD` (over training rows with
    column means ``mean`` and spreads ``scale``, in the order of ``columns``)."""
    mean = np.asarray(mean, np.float64)
    mask = _rounding_spread(mean, np.asarray(scale, np.float64))
    index = {c: i for i, c in enumerate(columns)}
    for column, i in index.items():
        j = index.get(column[: -len("@std")] + "@mean") if column.endswith("@std") else None
        if j is not None and mean[i] <= ROUNDING_SPREAD * abs(mean[j]):
            mask[i] = True
    return mask


def freeze_rounding(scaler, columns: Sequence[str]):
    """A fitted scikit-learn StandardScaler with the :func:`rounding_columns` of its
    training rows scaled to 0 (an infinite scale): training then reads them as prediction
    does. Returns the scaler."""
    mask = rounding_columns(columns, scaler.mean_, scaler.scale_)
    scaler.scale_ = np.where(mask, np.inf, scaler.scale_)
    return scaler


@dataclass
class Scaler:
    """StandardScaler's fitted state: ``(x - mean) / scale``, features that vary only by
    float32 rounding (:data:`ROUNDING_SPREAD`) held at 0 (a model trained with
    :func:`freeze_rounding` stores them with an infinite scale; for an older one the
    relative rule finds those it can)."""

    mean: np.ndarray
    scale: np.ndarray

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, np.float64)
        self.scale = np.asarray(self.scale, np.float64)
        self._constant = _rounding_spread(self.mean, self.scale) | np.isinf(self.scale)

    @classmethod
    def from_sklearn(cls, scaler) -> Scaler:
        return cls(np.asarray(scaler.mean_, np.float64), np.asarray(scaler.scale_, np.float64))

    @property
    def constant(self) -> np.ndarray:
        """[n_features] bool: the features that vary only by rounding."""
        return self._constant

    def transform(self, X: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            scaled = (np.asarray(X, np.float64) - self.mean) / self.scale
        scaled[..., self._constant] = 0.0
        return scaled.astype(np.float32)


class LinearHead:
    """A fitted multinomial logistic regression as arrays: ``softmax(X W^T + b)``, what
    scikit-learn's ``LogisticRegression.predict_proba`` computes for several classes.

    Stands in for the :class:`~moodscope.models.estimators.Classifier` a checkpoint was saved
    from when only predictions are wanted; :meth:`state` gives back the arrays it was built
    from, so a loaded model saves as it was.
    """

    kind = "sklearn"
    input = "segment"

    def __init__(self, state: dict):
        head = state["linear"]
        self.name = state["name"]
        self.n_classes = int(state["n_classes"])
        self.n_features = int(state["n_features"])
        self.model_kwargs = dict(state.get("model_kwargs") or {})
        self.coef = _array(head["coef"], np.float64)  # [n_seen, n_features]
        self.intercept = _array(head["intercept"], np.float64)  # [n_seen]
        self.classes = _array(head["classes"], np.int64)  # column of each row
        self._state = {k: v for k, v in state.items() if k != "skops"}
        if self.coef.shape != (len(self.classes), self.n_features):
            raise ModelError(f"linear head of shape {self.coef.shape} does not fit the model")
        if len(self.intercept) != len(self.classes) or not (
            np.all((self.classes >= 0) & (self.classes < self.n_classes))
        ):
            raise ModelError("linear head's intercept or classes do not fit the model")

    @staticmethod
    def arrays(estimator: Any) -> dict | None:
        """The head of a multinomial ``LogisticRegression`` as arrays, or None for any
        other estimator."""
        coef, classes = getattr(estimator, "coef_", None), getattr(estimator, "classes_", None)
        if type(estimator).__name__ != "LogisticRegression" or coef is None:
            return None
        if coef.shape[0] != len(classes) or len(classes) < 3:  # binary: a sigmoid, not softmax
            return None
        return {
            "coef": np.asarray(coef, np.float64),
            "intercept": np.asarray(estimator.intercept_, np.float64),
            "classes": np.asarray(classes, np.int64),
        }

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities [shape=(n, n_classes)], rows summing to 1."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ModelError(
                f"model {self.name!r} takes rows [n, {self.n_features}], got {X.shape}"
            )
        logits = X.astype(np.float64) @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        proba = np.exp(logits)
        proba /= proba.sum(axis=1, keepdims=True)
        out = np.zeros((len(X), self.n_classes))
        out[:, self.classes] = proba
        return out

    def state(self) -> dict:
        return self._state


@dataclass
class TrainedModel:
    """Everything prediction needs: features -> scaler -> classifier -> label names.

    ``info`` holds plain values (JSON) and numpy arrays of numbers at any depth (e.g. reference
    embeddings); both go into the checkpoint and come back as they were."""

    classifier: Classifier | LinearHead
    scaler: Scaler
    labels: list[str]
    feature_config: FeatureConfig
    train_config: TrainConfig = field(default_factory=TrainConfig)
    info: dict = field(default_factory=dict)  # protocol, metrics, data description
    name: str = ""  # the checkpoint's file stem ("default" for the shipped one)
    version: str = ""  # the first 12 hex digits of the checkpoint file's SHA-1
    checkpoint: bytes | None = field(default=None, repr=False, compare=False)  # as loaded
    calibration: Calibration | None = None  # score -> chance of being right; None: none

    def confidence(self, track: np.ndarray, row: np.ndarray | None = None) -> float | None:
        """The chance that the top emotion of the track distribution ``track [n_labels]``
        is the listeners' dominant one; None when the model carries no calibration map.
        A map that reads how unlike the training tracks the track is also needs its input
        ``row`` (:meth:`track_row`)."""
        if self.calibration is None:
            return None
        rows = None if row is None else np.asarray(row, dtype=np.float64)[None]
        return float(np.ravel(self.calibration(np.asarray(track, dtype=np.float64), rows))[0])

    def track_row(self, features: np.ndarray) -> np.ndarray:
        """A track's input row as the model scales it [n_inputs], from its raw segment
        features [n_segments, n_features]: its summary for a model on track summaries,
        else the mean of its scaled segment rows."""
        from moodscope.features.aggregate import aggregate_rows

        features = np.asarray(features, dtype=np.float64)
        if self.aggregate == "track" and self.classifier.input != "sequence":
            return self.scaler.transform(aggregate_rows(features)[None])[0].astype(np.float64)
        return self.scaler.transform(features).astype(np.float64).mean(axis=0)

    @property
    def model_id(self) -> str:
        """``name@version``: what predictions, tags and the library index record."""
        return f"{self.name or 'unsaved'}@{self.version or 'unsaved'}"

    @property
    def aggregate(self) -> str:
        """ "segment": the model reads one segment's row; "track": mean/std over segments."""
        return self.info.get("aggregate", "segment")

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Probabilities [n, n_labels] for raw (unscaled) model input rows [n, n_inputs]."""
        return self.classifier.predict_proba(self.scaler.transform(features))

    def predict_track(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One track's distribution [n_labels] and timeline [n_segments, n_labels] from its
        raw segment features [n_segments, n_features], whatever the model reads."""
        from moodscope.features.aggregate import aggregate_rows, local_aggregates

        features = np.asarray(features, dtype=np.float64)
        if self.classifier.input == "sequence":
            x = self.scaler.transform(features)[None]
            track = self.classifier.predict_proba(x)[0]
            return track, self.classifier.step_proba(x)[0]
        if self.aggregate == "track":
            track = self.predict_proba(aggregate_rows(features)[None])[0]
            return track, self.predict_proba(local_aggregates(features))
        timeline = self.predict_proba(features)
        return timeline.mean(axis=0), timeline


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def _payload(model: TrainedModel) -> dict:
    from moodscope import __version__

    classifier = model.classifier.state()
    if "skops" in classifier and "linear" not in classifier:
        head = LinearHead.arrays(model.classifier.model)
        if head is not None:
            classifier = {**classifier, "linear": head}
    if "linear" in classifier:  # the arrays are the head; a pickled copy beside them is not
        classifier = {k: v for k, v in classifier.items() if k != "skops"}
    return {
        "format": FORMAT,
        "version": VERSION,
        "moodscope_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "classifier": classifier,
        "scaler": {"mean": model.scaler.mean, "scale": model.scaler.scale},
        "labels": list(model.labels),
        "feature_config": model.feature_config.to_dict(),
        "train_config": model.train_config.to_dict(),
        "info": model.info,
        # Older checkpoints lack it: their predictions say "no calibration".
        **({"calibration": model.calibration.state()} if model.calibration is not None else {}),
    }


def _split(value: Any, where: str, arrays: dict[str, np.ndarray]) -> Any:
    """``value`` as JSON, its arrays (numpy, or PyTorch tensors) moved into ``arrays`` under
    their path and replaced by ``{"$array": path}``; bytes (a research head's skops archive)
    likewise as uint8 arrays, ``{"$bytes": path}``."""
    if isinstance(value, dict):
        return {str(k): _split(v, f"{where}/{k}", arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_split(v, f"{where}/{i}", arrays) for i, v in enumerate(value)]
    if isinstance(value, (bytes, bytearray)) and where not in arrays:
        arrays[where] = np.frombuffer(bytes(value), np.uint8)
        return {"$bytes": where}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if where in arrays:
        raise ModelError(f"{where}: two values of the checkpoint have this name")
    if hasattr(value, "__array__"):  # numpy arrays and CPU tensors
        if hasattr(value, "detach"):
            value = value.detach().cpu().float() if _is_bfloat16(value) else value.detach().cpu()
        array = np.asarray(value)
        if array.dtype.kind not in _NUMBERS:
            raise ModelError(f"{where}: a checkpoint holds numbers, not {array.dtype} arrays")
        arrays[where] = np.ascontiguousarray(array)
        return {"$array": where}
    raise ModelError(f"{where}: a checkpoint holds numbers and plain values, not {type(value)}")


def _is_bfloat16(tensor: Any) -> bool:
    return str(getattr(tensor, "dtype", "")) == "torch.bfloat16"


def checkpoint_bytes(model: TrainedModel) -> bytes:
    """``model`` as the bytes :func:`save_checkpoint` writes."""
    return _pack(_payload(model))


def _pack(payload: dict) -> bytes:
    arrays: dict[str, np.ndarray] = {}
    header = _split(payload, "", arrays)
    buffer = io.BytesIO()
    # Stored, not deflated: the sizes in the directory are the sizes read (no zip bomb to
    # guard against), and a shipped head is small anyway.
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(HEADER, json.dumps(header, indent=1, sort_keys=True))
        for where, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, array, allow_pickle=False)
            zf.writestr(f"{ARRAYS}{where.strip('/')}.npy", member.getvalue())
    return buffer.getvalue()


def save_checkpoint(model: TrainedModel, path: str | Path) -> Path:
    """Write ``model`` to ``path`` atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    write_atomic(path, checkpoint_bytes(model))
    # ``model`` is left as it is: it may be the one load_model() shares in this process,
    # whose id must stay that of the file it came from. Load the file for the new id.
    return path


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def load_checkpoint(path: str | Path) -> TrainedModel:
    """Load a checkpoint written by :func:`save_checkpoint` (or by moodscope 0.1, where
    PyTorch is installed).

    Raises
    ------
    ModelError
        Missing, corrupt or foreign file, one that holds anything but numbers and plain
        values, or a model this install cannot rebuild.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such checkpoint")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    return load_checkpoint_bytes(data, name=path.stem, source=str(path))


def load_checkpoint_bytes(data: bytes, *, name: str = "", source: str = "") -> TrainedModel:
    """A checkpoint from its bytes (what a worker receives); ``source`` names it in errors."""
    source = source or name or "checkpoint"
    payload = read_payload(data, source)
    try:
        model = _model(payload, source)
    except MoodscopeError as exc:
        raise ModelError(f"{source}: {exc}") from exc
    except (KeyError, RuntimeError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ModelError(f"{source}: damaged checkpoint ({type(exc).__name__}: {exc})") from exc
    model.name, model.version, model.checkpoint = name, checkpoint_version(data), data
    return model


def read_payload(data: bytes, source: str) -> dict:
    """The checkpoint's content: plain values with numpy arrays (and bytes) in place."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ModelError(f"{source}: not a readable moodscope checkpoint ({exc})") from exc
    with zf:
        if HEADER not in names:
            if any(n.endswith("/data.pkl") for n in names):
                return _read_torch(data, source)
            raise ModelError(f"{source}: not a moodscope checkpoint (no {HEADER} inside)")
        payload = _read_zip(zf, source)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{source}: not a moodscope checkpoint (no '{FORMAT}' header)")
    if not isinstance(payload.get("version"), int) or payload["version"] > VERSION:
        raise ModelError(
            f"{source}: checkpoint format {payload.get('version')} is newer than this "
            f"moodscope reads ({VERSION}); upgrade moodscope"
        )
    return payload


def _read_zip(zf: zipfile.ZipFile, source: str) -> Any:
    infos = zf.infolist()
    if sum(info.file_size for info in infos) > MAX_BYTES:
        raise ModelError(f"{source}: larger than a checkpoint can be ({MAX_BYTES >> 20} MB)")
    arrays = {}
    try:
        header = json.loads(zf.read(HEADER).decode("utf-8"))
        for info in infos:
            if info.filename == HEADER:
                continue
            if not (info.filename.startswith(ARRAYS) and info.filename.endswith(".npy")):
                raise ModelError(f"{source}: holds {info.filename!r}, which is not an array")
            where = "/" + info.filename[len(ARRAYS) : -len(".npy")]
            with zf.open(info) as f:
                try:
                    array = np.lib.format.read_array(f, allow_pickle=False)
                except ValueError as exc:
                    if "allow_pickle" in str(exc):
                        raise ModelError(
                            f"{source}: {info.filename} holds Python objects, not numbers "
                            "(refused: a checkpoint is data, never code)"
                        ) from exc
                    raise
            if array.dtype.kind not in _NUMBERS:
                raise ModelError(f"{source}: {info.filename} holds {array.dtype}, not numbers")
            arrays[where] = array
    except ModelError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, UnicodeDecodeError) as exc:
        raise ModelError(f"{source}: not a readable moodscope checkpoint ({exc})") from exc
    return _join(header, arrays, source)


def _join(value: Any, arrays: dict[str, np.ndarray], source: str) -> Any:
    """The inverse of :func:`_split`."""
    if isinstance(value, dict):
        if len(value) == 1 and ("$array" in value or "$bytes" in value):
            ((kind, where),) = value.items()
            if where not in arrays:
                raise ModelError(f"{source}: damaged checkpoint (array {where!r} is missing)")
            return arrays[where] if kind == "$array" else arrays[where].tobytes()
        return {k: _join(v, arrays, source) for k, v in value.items()}
    if isinstance(value, list):
        return [_join(v, arrays, source) for v in value]
    return value


def _read_torch(data: bytes, source: str) -> dict:
    """A moodscope 0.1 checkpoint (``torch.save``), through ``torch.load(weights_only=True)``,
    its tensors as numpy arrays."""
    if not has_research():
        raise ModelError(
            f"{source}: a PyTorch checkpoint of moodscope 0.1; reading it needs the research "
            f"extra ({RESEARCH_INSTALL}), then `python tools/convert_checkpoint.py OLD NEW`"
        )
    import torch

    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged or foreign file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{source}: not a readable moodscope checkpoint ({first[:200]})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{source}: not a moodscope checkpoint (no '{FORMAT}' header)")
    arrays: dict[str, np.ndarray] = {}
    return _join(_split(payload, "", arrays), arrays, source)


def _array(value: Any, dtype: type) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise ModelError(f"expected an array, found {type(value).__name__}")
    return value.astype(dtype)


def _model(payload: dict, source: str) -> TrainedModel:
    train_config = TrainConfig.from_dict(payload.get("train_config", {}))
    state = payload["classifier"]
    if "linear" in state:
        classifier = LinearHead(state)
    else:
        classifier = _research_head(state, train_config, source)
    scaler = Scaler(
        _array(payload["scaler"]["mean"], np.float64),
        _array(payload["scaler"]["scale"], np.float64),
    )
    calibration = payload.get("calibration")
    model = TrainedModel(
        classifier,
        scaler,
        [str(label) for label in payload["labels"]],
        FeatureConfig.from_dict(payload["feature_config"]),
        train_config,
        dict(payload.get("info", {})),
        calibration=Calibration.from_state(calibration) if calibration is not None else None,
    )
    if len(model.labels) != classifier.n_classes or len(scaler.mean) != classifier.n_features:
        raise ModelError("labels/scaler do not match the model's shape")
    return model


def _research_head(state: dict, train_config: TrainConfig, source: str) -> Classifier:
    """A neural head (PyTorch weights) or an allowed scikit-learn one (skops): research."""
    kind = "neural" if "state_dict" in state else "scikit-learn"
    if not has_research():
        raise ModelError(
            f"a {kind} head ({state.get('name')}) needs the research extra: {RESEARCH_INSTALL}"
        )
    from moodscope.models.estimators import Classifier

    if "state_dict" in state:
        import torch

        weights = state["state_dict"]
        tensors = {k: torch.from_numpy(_array(v, v.dtype)) for k, v in weights.items()}
        return Classifier.from_state({**state, "state_dict": tensors}, train_config)
    if not isinstance(state.get("skops"), bytes):
        raise ModelError("damaged checkpoint (the head holds neither arrays nor an estimator)")
    return Classifier.from_state(state, train_config)  # checks the estimator's types first


def convert_checkpoint(old: str | Path, new: str | Path) -> Path:
    """Rewrite any checkpoint this install reads (a moodscope 0.1 ``torch.save`` file among
    them) in the current format at ``new``; its predictions stay the same numbers."""
    model = load_checkpoint(old)
    return save_checkpoint(model, new)
