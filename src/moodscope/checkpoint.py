"""One file per trained model: weights, model config, scaler, labels, feature and training
config. Saved with ``torch.save`` of tensors and plain values only and loaded with
``torch.load(weights_only=True)``, so opening a checkpoint never runs arbitrary code.
"""

from __future__ import annotations

import datetime
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import ModelError, MoodscopeError
from .estimators import Classifier
from .features import FeatureConfig
from .training import TrainConfig

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


@dataclass
class TrainedModel:
    """Everything prediction needs: features -> scaler -> classifier -> label names."""

    classifier: Classifier
    scaler: Scaler
    labels: list[str]
    feature_config: FeatureConfig
    train_config: TrainConfig = field(default_factory=TrainConfig)
    info: dict = field(default_factory=dict)  # protocol, metrics, data description

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
        from .features.aggregate import aggregate_rows, local_aggregates

        features = np.asarray(features, dtype=np.float64)
        if self.classifier.entry.input == "sequence":
            x = self.scaler.transform(features)[None]
            track = self.classifier.predict_proba(x)[0]
            return track, self.classifier.step_proba(x)[0]
        if self.aggregate == "track":
            track = self.predict_proba(aggregate_rows(features)[None])[0]
            return track, self.predict_proba(local_aggregates(features))
        timeline = self.predict_proba(features)
        return timeline.mean(axis=0), timeline


def save_checkpoint(model: TrainedModel, path: str | Path) -> Path:
    """Write ``model`` to ``path`` atomically (temp file in the same folder, then rename)."""
    from . import __version__

    path = Path(path)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "moodscope_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "classifier": model.classifier.state(),
        "scaler": {
            "mean": torch.as_tensor(model.scaler.mean),
            "scale": torch.as_tensor(model.scaler.scale),
        },
        "labels": list(model.labels),
        "feature_config": model.feature_config.to_dict(),
        "train_config": model.train_config.to_dict(),
        "info": model.info,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a checkpoint is meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
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
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged or foreign file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: not a readable moodscope checkpoint ({first[:200]})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{path}: not a moodscope checkpoint (no '{FORMAT}' header)")
    if payload.get("version", 0) > VERSION:
        raise ModelError(
            f"{path}: checkpoint format {payload.get('version')} is newer than this "
            f"moodscope reads ({VERSION}); upgrade moodscope"
        )
    try:
        train_config = TrainConfig.from_dict(payload.get("train_config", {}))
        classifier = Classifier.from_state(payload["classifier"], train_config)
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
        )
    except MoodscopeError as exc:
        raise ModelError(f"{path}: {exc}") from exc
    except (KeyError, RuntimeError, TypeError, ValueError, AttributeError) as exc:
        raise ModelError(f"{path}: damaged checkpoint ({type(exc).__name__}: {exc})") from exc
    if len(model.labels) != classifier.n_classes or len(scaler.mean) != classifier.n_features:
        raise ModelError(f"{path}: labels/scaler do not match the model's shape")
    return model
