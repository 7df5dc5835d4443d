"""One file per trained model: weights, model config, scaler, labels, feature and training
config. Saved with ``torch.save`` of tensors and plain values only and loaded with
``torch.load(weights_only=True)``, so opening a checkpoint never runs arbitrary code.

A linear model's head is also stored as plain arrays (:class:`LinearHead`), so predicting
with it needs numpy and torch only: no scikit-learn import on the inference path.
"""

from __future__ import annotations

import datetime
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from moodscope.atomic import write_atomic
from moodscope.errors import ModelError, MoodscopeError
from moodscope.features.sets import FeatureConfig
from moodscope.inference.calibration import Calibration
from moodscope.inference.identity import checkpoint_version
from moodscope.models.training import TrainConfig

if TYPE_CHECKING:
    from moodscope.models.estimators import Classifier

FORMAT = "moodscope-checkpoint"
VERSION = 1
EXTENSION = ".ckpt"


@dataclass
class Scaler:
    """StandardScaler's fitted state: ``(x - mean) / scale``."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def from_sklearn(cls, scaler) -> Scaler:
        return cls(np.asarray(scaler.mean_, np.float64), np.asarray(scaler.scale_, np.float64))

    def transform(self, X: np.ndarray) -> np.ndarray:
        return ((np.asarray(X, np.float64) - self.mean) / self.scale).astype(np.float32)


class LinearHead:
    """A fitted multinomial logistic regression as arrays: ``softmax(X W^T + b)``, what
    scikit-learn's ``LogisticRegression.predict_proba`` computes for several classes.

    Stands in for the :class:`~moodscope.models.estimators.Classifier` a checkpoint was saved
    from when only predictions are wanted; :meth:`state` gives back that classifier's
    state unchanged, so a loaded model saves as it was.
    """

    kind = "sklearn"
    input = "segment"

    def __init__(self, state: dict):
        head = state["linear"]
        self.name = state["name"]
        self.n_classes = int(state["n_classes"])
        self.n_features = int(state["n_features"])
        self.model_kwargs = dict(state.get("model_kwargs") or {})
        self.coef = head["coef"].numpy().astype(np.float64)  # [n_seen, n_features]
        self.intercept = head["intercept"].numpy().astype(np.float64)  # [n_seen]
        self.classes = head["classes"].numpy().astype(np.int64)  # column of each row
        self._state = state
        if self.coef.shape != (len(self.classes), self.n_features):
            raise ModelError(f"linear head of shape {self.coef.shape} does not fit the model")

    @staticmethod
    def arrays(estimator: Any) -> dict | None:
        """The head of a multinomial ``LogisticRegression`` as tensors, or None for any
        other estimator."""
        coef, classes = getattr(estimator, "coef_", None), getattr(estimator, "classes_", None)
        if type(estimator).__name__ != "LogisticRegression" or coef is None:
            return None
        if coef.shape[0] != len(classes) or len(classes) < 3:  # binary: a sigmoid, not softmax
            return None
        return {
            "coef": torch.as_tensor(np.asarray(coef, np.float64)),
            "intercept": torch.as_tensor(np.asarray(estimator.intercept_, np.float64)),
            "classes": torch.as_tensor(np.asarray(classes, np.int64)),
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
    """Everything prediction needs: features -> scaler -> classifier -> label names."""

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


def _payload(model: TrainedModel) -> dict:
    from moodscope import __version__

    classifier = model.classifier.state()
    if "skops" in classifier and "linear" not in classifier:
        head = LinearHead.arrays(model.classifier.model)
        if head is not None:
            classifier = {**classifier, "linear": head}
    return {
        "format": FORMAT,
        "version": VERSION,
        "moodscope_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "classifier": classifier,
        "scaler": {
            "mean": torch.as_tensor(model.scaler.mean),
            "scale": torch.as_tensor(model.scaler.scale),
        },
        "labels": list(model.labels),
        "feature_config": model.feature_config.to_dict(),
        "train_config": model.train_config.to_dict(),
        "info": model.info,
        # Older checkpoints lack it: their predictions say "no calibration".
        **({"calibration": model.calibration.state()} if model.calibration is not None else {}),
    }


def checkpoint_bytes(model: TrainedModel) -> bytes:
    """``model`` as the bytes :func:`save_checkpoint` writes."""
    buffer = io.BytesIO()
    torch.save(_payload(model), buffer)
    return buffer.getvalue()


def save_checkpoint(model: TrainedModel, path: str | Path) -> Path:
    """Write ``model`` to ``path`` atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    write_atomic(path, checkpoint_bytes(model))
    # ``model`` is left as it is: it may be the one load_model() shares in this process,
    # whose id must stay that of the file it came from. Load the file for the new id.
    return path


def load_checkpoint(path: str | Path) -> TrainedModel:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    ModelError
        Missing, corrupt or foreign file, or a model this version cannot rebuild.
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
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged or foreign file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{source}: not a readable moodscope checkpoint ({first[:200]})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{source}: not a moodscope checkpoint (no '{FORMAT}' header)")
    if payload.get("version", 0) > VERSION:
        raise ModelError(
            f"{source}: checkpoint format {payload.get('version')} is newer than this "
            f"moodscope reads ({VERSION}); upgrade moodscope"
        )
    try:
        train_config = TrainConfig.from_dict(payload.get("train_config", {}))
        state = payload["classifier"]
        if "linear" in state:
            classifier = LinearHead(state)
        else:
            from moodscope.models.estimators import Classifier

            classifier = Classifier.from_state(state, train_config)
        scaler = Scaler(
            payload["scaler"]["mean"].numpy().astype(np.float64),
            payload["scaler"]["scale"].numpy().astype(np.float64),
        )
        model = TrainedModel(
            classifier,
            scaler,
            list(payload["labels"]),
            FeatureConfig.from_dict(payload["feature_config"]),
            train_config,
            dict(payload.get("info", {})),
            name=name,
            version=checkpoint_version(data),
            checkpoint=data,
            calibration=(
                Calibration.from_state(payload["calibration"])
                if payload.get("calibration") is not None
                else None
            ),
        )
    except MoodscopeError as exc:
        raise ModelError(f"{source}: {exc}") from exc
    except (KeyError, RuntimeError, TypeError, ValueError, AttributeError) as exc:
        raise ModelError(f"{source}: damaged checkpoint ({type(exc).__name__}: {exc})") from exc
    if len(model.labels) != classifier.n_classes or len(scaler.mean) != classifier.n_features:
        raise ModelError(f"{source}: labels/scaler do not match the model's shape")
    return model
