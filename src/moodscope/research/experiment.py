"""Train a registered model on a feature table under a protocol and measure it on held-out rows.

The one place where a table, a protocol and a model meet; ``train``, ``reproduce`` and
``crossval`` all go through :func:`train_and_test`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from moodscope.errors import ConfigError
from moodscope.features import FeatureConfig
from moodscope.features.aggregate import aggregate_columns, aggregate_tracks, check_aggregate
from moodscope.inference.checkpoint import Scaler, TrainedModel
from moodscope.models import ModelEntry, model_entry
from moodscope.models.estimators import Classifier
from moodscope.models.training import TrainConfig
from moodscope.research.metrics import classification_metrics
from moodscope.research.splits import PreparedSplit, encode_labels, prepare, share_targets


@dataclass
class HoldoutResult:
    model: TrainedModel
    split: PreparedSplit
    history: dict[str, list[float]]
    metrics: dict
    train_seconds: float
    test_proba: np.ndarray  # [n_test_rows, n_labels] (sequence models: one row per track)
    test_tracks: np.ndarray  # track of each test_proba row


def track_predictions(proba: np.ndarray, tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A track's prediction is the mean of its segments' probabilities.

    Returns ``(track_ids [n_tracks], proba [n_tracks, n_labels])`` in order of first
    appearance.
    """
    frame = pd.DataFrame(proba)
    frame["track"] = np.asarray(tracks).astype(str)
    means = frame.groupby("track", sort=False).mean()
    return means.index.to_numpy(), means.to_numpy()


def model_table(
    table: pd.DataFrame, feature_config: FeatureConfig, aggregate: str = "segment"
) -> tuple[pd.DataFrame, list[str]]:
    """The rows a model reads and their columns: segments as they are, or one summary row
    per track (mean and std of each feature) for ``aggregate="track"``."""
    columns = list(feature_config.columns)
    if check_aggregate(aggregate) == "track":
        return aggregate_tracks(table, columns), aggregate_columns(columns)
    return table, columns


def to_sequences(X: np.ndarray, y: np.ndarray, tracks: np.ndarray):
    """Rows grouped into one time-ordered sequence per track: X [n_tracks, T, D], the
    track's target, and the track ids (first-appearance order). Tracks must share T."""
    ids, first = np.unique(tracks, return_index=True)
    ids = ids[np.argsort(first)]
    groups = [np.flatnonzero(tracks == t) for t in ids]
    lengths = {len(g) for g in groups}
    if len(lengths) > 1:
        raise ConfigError(f"sequence models need equal segment counts per track, got {lengths}")
    return np.stack([X[g] for g in groups]), np.stack([y[g[0]] for g in groups]), ids


def resolve_balance(
    train_config: TrainConfig,
    entry: ModelEntry,
    *,
    smote: bool | None = None,
    soft: bool = False,
    protocol: str = "track",
) -> TrainConfig:
    """``train_config`` with its class balance settled: the ``smote`` switch when given
    (False keeps a requested class weighting), else ``train_config.balance``, else the
    model's registry default. Soft labels have no classes for SMOTE to interpolate within,
    so SMOTE falls back to none; paper mode is SMOTE by definition."""
    if protocol == "paper":
        if smote is False or train_config.balance not in (None, "smote"):
            raise ConfigError(
                "paper mode always applies SMOTE (the paper's recipe); got balance "
                f"{'none' if smote is False else train_config.balance!r}"
            )
        return replace(train_config, balance="smote")
    balance = train_config.balance or ("smote" if entry.smote else "none")
    if smote is not None:
        balance = "smote" if smote else ("none" if balance == "smote" else balance)
    if soft and balance == "smote":
        balance = "none"
    return replace(train_config, balance=balance)


@dataclass
class ModelInputs:
    """A split's rows as the model reads them: rows, or one sequence per track."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    val_tracks: np.ndarray  # track of each X_val row
    X_test: np.ndarray
    y_test: np.ndarray
    test_tracks: np.ndarray  # track of each X_test row


def model_inputs(split: PreparedSplit, entry: ModelEntry) -> ModelInputs:
    """The split's arrays in the model's input form (sequence models: one per track)."""
    inputs = ModelInputs(
        split.X_train,
        split.y_train,
        split.X_val,
        split.y_val,
        split.val_tracks,
        split.X_test,
        split.y_test,
        split.test_tracks,
    )
    if entry.input == "sequence":
        inputs.X_train, inputs.y_train, _ = to_sequences(
            split.X_train, split.y_train, split.train_tracks
        )
        inputs.X_val, inputs.y_val, inputs.val_tracks = to_sequences(
            split.X_val, split.y_val, split.val_tracks
        )
        if len(split.X_test):
            inputs.X_test, inputs.y_test, inputs.test_tracks = to_sequences(
                split.X_test, split.y_test, split.test_tracks
            )
    return inputs


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
    aggregate: str = "segment",
    shares: pd.DataFrame | None = None,
    columns: list[str] | None = None,
    progress: Callable[[int, int, dict], None] | None = None,
    checkpoints: dict[str, dict] | None = None,
) -> HoldoutResult:
    """Prepare the rows (unless ``split`` is given), train, and test on the held-out part.

    ``checkpoints`` (neural models) receives the best weights by each selection rule.
    The class balance is ``smote`` when given, else ``train_config.balance``, else what the
    model's registry entry asks for (:func:`resolve_balance`); a given ``split`` must have
    been prepared for it. ``aggregate="track"`` trains on one mean/std row per track;
    ``shares`` (per track, one column per label) switches training to soft labels.
    ``columns`` says the table is already the model's (as :func:`model_table` returns it).
    """
    entry = model_entry(model)
    train_config = resolve_balance(
        train_config or TrainConfig(),
        entry,
        smote=smote,
        soft=shares is not None,
        protocol=protocol,
    )
    smote = train_config.balance == "smote"
    if columns is None:
        table, columns = model_table(table, feature_config, aggregate)
    if split is None:
        targets = None
        if shares is not None:
            _, classes = encode_labels(table, labels)
            targets = share_targets(table, shares, classes)
        split = prepare(
            table,
            columns,
            protocol,
            seed=train_config.seed,
            labels=labels,
            smote=smote,
            targets=targets,
            val_fraction=entry.val_fraction,
        )
    inputs = model_inputs(split, entry)
    clf = Classifier(model, len(columns), len(split.labels), model_kwargs or {}, train_config)
    start, cpu_start = time.perf_counter(), time.process_time()
    history = clf.fit(
        inputs.X_train,
        inputs.y_train,
        inputs.X_val,
        inputs.y_val,
        progress=progress,
        checkpoints=checkpoints,
    )
    train_seconds = time.perf_counter() - start
    # CPU time: on shared cores it is what the training cost, whatever else ran beside it.
    train_cpu_seconds = time.process_time() - cpu_start
    test_tracks = inputs.test_tracks
    proba = clf.predict_proba(inputs.X_test) if len(inputs.X_test) else np.zeros((0, 0))
    result: dict = {
        "train_seconds": train_seconds,
        "train_cpu_seconds": train_cpu_seconds,
        "n_train_rows": len(inputs.X_train),
        "epochs": len(history.get("val_loss", [])),
        "balance": train_config.balance,
    }
    if len(inputs.X_test):
        result.update(_test_metrics(split, inputs.y_test, test_tracks, proba, history, protocol))
    trained = TrainedModel(
        clf,
        Scaler.from_sklearn(split.scaler),
        split.labels,
        feature_config,
        train_config,
        {
            "protocol": protocol,
            "model": model,
            "aggregate": aggregate,
            "soft_labels": shares is not None or split.y_train.ndim == 2,
            # Prediction cuts any track into windows as long as the training segments.
            "segment_seconds": _segment_seconds(table, aggregate),
        },
    )
    return HoldoutResult(trained, split, history, result, train_seconds, proba, test_tracks)


def _segment_seconds(table: pd.DataFrame, aggregate: str) -> float | None:
    if aggregate == "track":
        return None  # the caller's feature config knows the segment count
    return float((table["end"] - table["start"]).mean())


def _test_metrics(split: PreparedSplit, y_test, test_tracks, proba, history, protocol) -> dict:
    metrics = classification_metrics(y_test, proba.argmax(axis=1), split.labels)
    result = {
        "segment_accuracy": metrics.pop("accuracy"),
        "segment_balanced_accuracy": metrics.pop("balanced_accuracy"),
        "segment_macro_f1": metrics.pop("macro_f1"),
        **metrics,
        "leak_fraction": split.leak_fraction,
        "epochs": len(history.get("val_loss", [])),
        "best_epoch": (history.get("best_epoch") or [None])[0],
        "n_test_rows": len(y_test),
    }
    if protocol != "paper":
        track_ids, track_proba = track_predictions(proba, test_tracks)
        truth = pd.Series(y_test).groupby(pd.Series(test_tracks).astype(str)).first()
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
