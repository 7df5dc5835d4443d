"""Train a registered model on a feature table under a protocol and measure it on held-out rows.

The one place where a table, a protocol and a model meet; ``train``, ``reproduce`` and
``crossval`` all go through :func:`train_and_test`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .checkpoint import Scaler, TrainedModel
from .estimators import Classifier
from .features import FeatureConfig
from .metrics import classification_metrics
from .models import model_entry
from .protocols import PreparedSplit, prepare
from .training import TrainConfig


@dataclass
class HoldoutResult:
    model: TrainedModel
    split: PreparedSplit
    history: dict[str, list[float]]
    metrics: dict
    train_seconds: float
    test_proba: np.ndarray  # [n_test_rows, n_labels]


def track_predictions(proba: np.ndarray, tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A track's prediction is the mean of its segments' probabilities.

    Returns ``(track_ids [n_tracks], proba [n_tracks, n_labels])`` in order of first
    appearance.
    """
    frame = pd.DataFrame(proba)
    frame["track"] = np.asarray(tracks).astype(str)
    means = frame.groupby("track", sort=False).mean()
    return means.index.to_numpy(), means.to_numpy()


def train_and_test(
    table: pd.DataFrame,
    *,
    model: str,
    protocol: str,
    feature_config: FeatureConfig,
    train_config: TrainConfig | None = None,
    model_kwargs: dict | None = None,
    labels: list[str] | None = None,
    split: PreparedSplit | None = None,
    smote: bool | None = None,
    progress: Callable[[int, int, dict], None] | None = None,
) -> HoldoutResult:
    """Prepare the rows (unless ``split`` is given), train, and test on the held-out part.

    ``smote`` (track protocol) defaults to what the model's registry entry asks for.
    """
    train_config = train_config or TrainConfig()
    columns = list(feature_config.columns)
    if smote is None:
        smote = model_entry(model).smote
    split = split or prepare(
        table, columns, protocol, seed=train_config.seed, labels=labels, smote=smote
    )
    clf = Classifier(model, len(columns), len(split.labels), model_kwargs or {}, train_config)
    start = time.perf_counter()
    history = clf.fit(split.X_train, split.y_train, split.X_val, split.y_val, progress=progress)
    train_seconds = time.perf_counter() - start
    proba = clf.predict_proba(split.X_test) if len(split.X_test) else np.zeros((0, 0))
    result: dict = {
        "train_seconds": train_seconds,
        "n_train_rows": len(split.X_train),
        "epochs": len(history.get("val_loss", [])),
    }
    if len(split.X_test):
        result.update(_test_metrics(split, proba, history, train_seconds, protocol))
    trained = TrainedModel(
        clf,
        Scaler.from_sklearn(split.scaler),
        split.labels,
        feature_config,
        train_config,
        {
            "protocol": protocol,
            "model": model,
            # Prediction cuts any track into windows as long as the training segments.
            "segment_seconds": float((table["end"] - table["start"]).mean()),
        },
    )
    return HoldoutResult(trained, split, history, result, train_seconds, proba)


def _test_metrics(split: PreparedSplit, proba, history, train_seconds, protocol) -> dict:
    metrics = classification_metrics(split.y_test, proba.argmax(axis=1), split.labels)
    result = {
        "segment_accuracy": metrics.pop("accuracy"),
        "segment_balanced_accuracy": metrics.pop("balanced_accuracy"),
        "segment_macro_f1": metrics.pop("macro_f1"),
        **metrics,
        "leak_fraction": split.leak_fraction,
        "epochs": len(history.get("val_loss", [])),
        "best_epoch": (history.get("best_epoch") or [None])[0],
        "train_seconds": train_seconds,
        "n_train_rows": len(split.X_train),
        "n_test_rows": len(split.X_test),
    }
    if protocol != "paper":
        track_ids, track_proba = track_predictions(proba, split.test_tracks)
        truth = pd.Series(split.y_test).groupby(pd.Series(split.test_tracks).astype(str)).first()
        track_metrics = classification_metrics(
            truth.loc[track_ids].to_numpy(), track_proba.argmax(axis=1), split.labels
        )
        result.update(
            track_accuracy=track_metrics["accuracy"],
            track_balanced_accuracy=track_metrics["balanced_accuracy"],
            track_macro_f1=track_metrics["macro_f1"],
            track_per_class=track_metrics["per_class"],
            track_confusion_matrix=track_metrics["confusion_matrix"],
        )
    return result
