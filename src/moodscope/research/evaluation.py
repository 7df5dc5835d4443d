"""Honest evaluation: track-disjoint cross-validation and a trained model on unseen data.

Every number here is track level first: a track's prediction is the mean of its segments'
probabilities. Beside accuracy, balanced accuracy and macro-F1 come per-class and per-genre
results and, where the data holds listener shares (Emotify), how well the predicted
probabilities follow them (Pearson r per emotion).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from moodscope.errors import ConfigError, DatasetError
from moodscope.features import FeatureConfig, extract_features
from moodscope.features.aggregate import aggregate_columns
from moodscope.inference.calibration import Novelty, novelty_columns
from moodscope.inference.checkpoint import TrainedModel
from moodscope.models import model_entry
from moodscope.models.training import TrainConfig
from moodscope.research.experiment import (
    HoldoutResult,
    model_table,
    resolve_balance,
    track_predictions,
    train_and_test,
)
from moodscope.research.metrics import classification_metrics
from moodscope.research.splits import (
    PreparedSplit,
    encode_labels,
    share_targets,
    track_folds,
    track_split,
)

SCALARS = (
    "track_accuracy",
    "track_balanced_accuracy",
    "track_macro_f1",
    "segment_accuracy",
    "emotion_correlation_mean",
)


def emotion_correlation(
    proba: np.ndarray, labels: list[str], shares: pd.DataFrame | None
) -> dict[str, float | None] | None:
    """Pearson r between predicted probability and annotated share, per emotion, + ``mean``.

    ``shares`` has one row per track (same order as ``proba``) and one column per emotion;
    an emotion whose predictions or shares are constant gets ``None``.
    """
    if shares is None or not set(labels) <= set(shares.columns):
        return None
    out: dict[str, float | None] = {}
    for i, label in enumerate(labels):
        p, s = proba[:, i], shares[label].to_numpy(dtype=float)
        ok = np.std(p) > 1e-12 and np.std(s) > 1e-12
        out[label] = float(np.corrcoef(p, s)[0, 1]) if ok else None
    values = [v for v in out.values() if v is not None]
    out["mean"] = float(np.mean(values)) if values else None
    return out


def track_level_metrics(
    track_ids: np.ndarray,
    proba: np.ndarray,
    tracks: pd.DataFrame,
    labels: list[str],
    shares: pd.DataFrame | None = None,
) -> dict:
    """Metrics of track probabilities ``proba [n_tracks, n_labels]`` against ``tracks``
    (indexed by track id, columns ``label`` and ``genre``)."""
    info = tracks.loc[track_ids]
    index = {label: i for i, label in enumerate(labels)}
    truth = info["label"].map(index).to_numpy()
    pred = proba.argmax(axis=1)
    metrics = classification_metrics(truth, pred, labels)
    per_genre = {}
    for genre, rows in info.reset_index().groupby("genre").groups.items():
        rows = np.asarray(rows)
        if not genre:
            continue
        g = classification_metrics(truth[rows], pred[rows], labels)
        per_genre[str(genre)] = {
            "track_accuracy": g["accuracy"],
            "track_macro_f1": g["macro_f1"],
            "n_tracks": int(len(rows)),
        }
    correlation = emotion_correlation(
        proba, labels, None if shares is None else shares.loc[track_ids]
    )
    return {
        "track_accuracy": metrics["accuracy"],
        "track_balanced_accuracy": metrics["balanced_accuracy"],
        "track_macro_f1": metrics["macro_f1"],
        "per_class": metrics["per_class"],
        "confusion_matrix": metrics["confusion_matrix"],
        "labels": labels,
        "per_genre": per_genre,
        "emotion_correlation": correlation,
        "emotion_correlation_mean": None if correlation is None else correlation["mean"],
        "n_tracks": int(len(track_ids)),
    }


def _mean_std(values: list) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def summarize_folds(folds: list[dict], labels: list[str]) -> dict:
    """Mean ± std over folds of every scalar, per-class and per-genre value; summed confusion."""
    summary = {key: _mean_std([f.get(key) for f in folds]) for key in SCALARS}
    summary["per_class"] = {
        label: {
            k: _mean_std([f["per_class"][label][k] for f in folds])
            for k in ("precision", "recall", "f1")
        }
        | {"support": int(sum(f["per_class"][label]["support"] for f in folds))}
        for label in labels
    }
    genres = sorted({g for f in folds for g in f["per_genre"]})
    summary["per_genre"] = {
        g: {
            k: _mean_std([f["per_genre"][g][k] for f in folds if g in f["per_genre"]])
            for k in ("track_accuracy", "track_macro_f1")
        }
        for g in genres
    }
    correlations = [f["emotion_correlation"] for f in folds if f.get("emotion_correlation")]
    if correlations:
        summary["emotion_correlation"] = {
            k: _mean_std([c.get(k) for c in correlations])
            for k in [*labels, "mean"]
            if k in correlations[0]
        }
    summary["confusion_matrix"] = np.sum([f["confusion_matrix"] for f in folds], axis=0).tolist()
    return summary


def crossval(
    table: pd.DataFrame,
    tracks: pd.DataFrame,
    *,
    model: str,
    feature_config: FeatureConfig,
    labels: list[str],
    folds: int = 5,
    train_config: TrainConfig | None = None,
    model_kwargs: dict | None = None,
    shares: pd.DataFrame | None = None,
    smote: bool | None = None,
    aggregate: str = "segment",
    soft: bool = False,
    on_fold: Callable[[int, int], Callable | None] | None = None,
    train_fraction: float = 1.0,
    subsample_seed: int = 0,
    held_out_by: str | None = None,
) -> dict:
    """Stratified, grouped K-fold by track: train on K-1 folds (validation tracks carved from
    them), test on the held-out tracks, aggregate per track.

    ``tracks`` is the dataset's track table indexed by track id (``label``, ``genre``);
    ``shares`` (optional) the per-track listener shares indexed the same way, used for the
    emotion correlation and, with ``soft=True``, as the training targets. ``aggregate``
    "track" trains on one mean/std row per track. ``train_fraction`` < 1 trains each fold on
    that share of its training tracks, drawn at random (``subsample_seed``); the test tracks
    stay the same (a learning curve: ``tools/learning_curve.py``). The class balance is
    ``smote`` when given, else ``train_config.balance``, else the model's default.
    ``held_out_by`` a table column (``"genre"``): one fold per value, each held out in turn
    (leave one genre out) instead of the K folds.
    """
    started = time.perf_counter()
    folds_out = []
    runs = trained_folds(
        table,
        model=model,
        feature_config=feature_config,
        labels=labels,
        folds=folds,
        train_config=train_config,
        model_kwargs=model_kwargs,
        shares=shares,
        smote=smote,
        aggregate=aggregate,
        soft=soft,
        on_fold=on_fold,
        train_fraction=train_fraction,
        subsample_seed=subsample_seed,
        held_out_by=held_out_by,
    )
    for run in runs:
        folds_out.append(
            fold_metrics(run, run.result.test_proba, run.result.test_tracks, tracks, shares)
        )
    return crossval_result(folds_out, run, tracks, wall_seconds=time.perf_counter() - started)


@dataclass
class TrainedFold:
    """One fold of a cross-validation, trained: its split, the model, how it was set up."""

    k: int
    n_folds: int
    n_train_tracks: int
    split: PreparedSplit
    result: HoldoutResult
    checkpoints: dict[str, dict]  # best weights by each selection rule (neural models)
    model: str
    model_kwargs: dict
    train_config: TrainConfig
    feature_config: FeatureConfig
    aggregate: str
    soft: bool
    per_segment: bool  # the model reads segment rows (a segment accuracy exists)


def trained_folds(
    table: pd.DataFrame,
    *,
    model: str,
    feature_config: FeatureConfig,
    labels: list[str],
    folds: int = 5,
    train_config: TrainConfig | None = None,
    model_kwargs: dict | None = None,
    shares: pd.DataFrame | None = None,
    smote: bool | None = None,
    aggregate: str = "segment",
    soft: bool = False,
    on_fold: Callable[[int, int], Callable | None] | None = None,
    train_fraction: float = 1.0,
    subsample_seed: int = 0,
    held_out_by: str | None = None,
) -> Iterator[TrainedFold]:
    """The folds of :func:`crossval`, each trained, as they finish (same arguments)."""
    if not 0 < train_fraction <= 1:
        raise ConfigError(f"train_fraction must lie in (0, 1], got {train_fraction}")
    entry = model_entry(model)
    train_config = resolve_balance(train_config or TrainConfig(), entry, smote=smote, soft=soft)
    smote = train_config.balance == "smote"
    table, columns = model_table(table, feature_config, aggregate)
    targets = None
    if soft:
        if shares is None:
            raise ConfigError("soft labels need per-track shares (Emotify has them)")
        _, classes = encode_labels(table, labels)
        targets = share_targets(table, shares, classes)
    track_of_row = table["track_id"].astype(str).to_numpy()
    if held_out_by is None:
        splits = track_folds(table, n_splits=folds, seed=train_config.seed, labels=labels)
    else:
        groups = table[held_out_by].astype(str).to_numpy()
        splits = [
            (np.flatnonzero(groups != g), np.flatnonzero(groups == g)) for g in sorted(set(groups))
        ]
        if len(splits) < 2:
            raise ConfigError(
                f"holding out by {held_out_by!r} needs >= 2 values, got {len(splits)}"
            )
        folds = len(splits)
    for k, (train_rows, test_rows) in enumerate(splits):
        if train_fraction < 1:
            ids = np.unique(track_of_row[train_rows])
            rng = np.random.default_rng([subsample_seed, k])
            keep = rng.choice(ids, max(1, round(train_fraction * len(ids))), replace=False)
            train_rows = train_rows[np.isin(track_of_row[train_rows], keep)]
        split = track_split(
            table,
            columns,
            train_rows,
            test_rows,
            seed=train_config.seed + k,
            labels=labels,
            smote=smote,
            targets=targets,
            val_fraction=entry.val_fraction,
        )
        checkpoints: dict[str, dict] = {}
        result = train_and_test(
            table,
            model=model,
            protocol="track",
            feature_config=feature_config,
            train_config=train_config,
            model_kwargs=model_kwargs,
            labels=labels,
            split=split,
            aggregate=aggregate,
            columns=columns,
            progress=on_fold(k, folds) if on_fold else None,
            checkpoints=checkpoints,
        )
        yield TrainedFold(
            k,
            folds,
            int(len(np.unique(track_of_row[train_rows]))),
            split,
            result,
            checkpoints,
            model,
            model_kwargs or {},
            train_config,
            feature_config,
            aggregate,
            soft,
            aggregate == "segment" and entry.input == "segment",
        )


def fold_metrics(
    run: TrainedFold,
    proba: np.ndarray,
    row_tracks: np.ndarray,
    tracks: pd.DataFrame,
    shares: pd.DataFrame | None,
) -> dict:
    """Track-level metrics of one fold's test predictions ``proba`` (one row per test row,
    whose track ``row_tracks`` names), with the fold's bookkeeping."""
    # Probability columns follow the label encoder's (sorted) order, not ``labels``'.
    track_ids, track_proba = track_predictions(proba, row_tracks)
    metrics = track_level_metrics(track_ids, track_proba, tracks, run.split.labels, shares)
    segment_accuracy = None
    if run.per_segment:
        segment_accuracy = float(np.mean(proba.argmax(axis=1) == run.split.y_test))
    metrics.update(
        fold=run.k,
        n_train_tracks=run.n_train_tracks,
        segment_accuracy=segment_accuracy,
        epochs=run.result.metrics["epochs"],
        train_seconds=run.result.train_seconds,
        train_cpu_seconds=run.result.metrics["train_cpu_seconds"],
        leak_fraction=run.result.metrics["leak_fraction"],
        out_of_fold=pd.DataFrame(track_proba, index=track_ids, columns=run.split.labels),
        novelty=fold_novelty(run).reindex(track_ids),
    )
    return metrics


def _track_rows(X: np.ndarray, row_tracks: np.ndarray) -> pd.DataFrame:
    """Scaled rows averaged per track (one row already is one track for track summaries)."""
    return pd.DataFrame(X).groupby(pd.Series(row_tracks).astype(str).to_numpy(), sort=False).mean()


def training_reference(split: PreparedSplit, columns: Sequence[str]) -> Novelty:
    """The reference a novelty is measured against: the split's training (and validation)
    tracks, one scaled row each, cut to :func:`novelty_columns` of the model's ``columns``."""
    train = _track_rows(
        np.concatenate([split.X_train, split.X_val]) if len(split.X_val) else split.X_train,
        np.concatenate([split.train_tracks, split.val_tracks]),
    )
    return Novelty.fit(train.to_numpy(), novelty_columns(columns))


def fold_novelty(run: TrainedFold) -> pd.Series:
    """How unlike the fold's training tracks each of its test tracks is (track id ->
    :class:`~moodscope.inference.calibration.Novelty`), in the fold's scaled input space."""
    columns = list(run.feature_config.columns)
    if run.aggregate == "track":
        columns = aggregate_columns(columns)
    test = _track_rows(run.split.X_test, run.split.test_tracks)
    novelty = training_reference(run.split, columns)
    return pd.Series(novelty(test.to_numpy()), index=test.index)


def crossval_result(
    folds: list[dict], run: TrainedFold, tracks: pd.DataFrame, *, wall_seconds: float
) -> dict:
    """The result of a cross-validation from its folds' metrics (:func:`fold_metrics`);
    ``run`` is any of its trained folds (they share the set-up)."""
    oof = pd.concat([f.pop("out_of_fold") for f in folds])
    novelty = pd.concat([f.pop("novelty") for f in folds])
    classes = run.split.labels
    summary = summarize_folds(folds, classes)
    return {
        "protocol": f"track-disjoint stratified group {run.n_folds}-fold",
        "model": run.model,
        "model_kwargs": run.model_kwargs,
        "smote": run.train_config.balance == "smote",
        "balance": run.train_config.balance,
        "train": run.train_config.to_dict(),
        "aggregate": run.aggregate,
        "soft_labels": run.soft,
        "features": run.feature_config.to_dict(),
        "labels": classes,
        "folds": folds,
        "summary": summary,
        **{key: (summary[key] or {}).get("mean") for key in SCALARS},
        "per_class": summary["per_class"],
        "per_genre": summary["per_genre"],
        "confusion_matrix": summary["confusion_matrix"],
        "emotion_correlation": summary.get("emotion_correlation"),
        "wall_seconds": wall_seconds,
        "out_of_fold": oof,
        "novelty": novelty,
    }


def evaluate_model(
    model: TrainedModel,
    dataset,
    *,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict, list[tuple[str, str]]]:
    """A trained model on every track of a labelled dataset it has not seen.

    Returns the metrics and the tracks that failed to decode.
    """
    unknown = sorted(set(dataset.tracks["label"]) - set(model.labels))
    if unknown:
        raise DatasetError(
            f"labels {unknown} of {dataset.root} are not among the model's: {model.labels}"
        )
    table, failures = extract_features(
        dataset, model.feature_config, workers=workers, progress=progress
    )
    if table.empty:
        raise DatasetError(f"{dataset.root}: no track could be analysed")
    from moodscope.inference.predictor import track_reading

    columns = list(model.feature_config.columns)
    track_ids, track_proba, hits, confidence, novelty = [], [], [], [], []
    position = []
    for track_id, rows in table.groupby("track_id", sort=False):
        # Read as every front end reads a track: the aggression rule, the confidence.
        reading = track_reading(model, rows[columns].to_numpy())
        labels = reading.names
        track_ids.append(str(track_id))
        track_proba.append(reading.track)
        hits += list(reading.timeline.argmax(axis=1) == labels.index(rows["label"].iloc[0]))
        confidence.append(reading.confidence)
        position.append((reading.arousal, reading.valence))
        cal = model.calibration
        if cal is not None and cal.novelty is not None:
            novelty.append(float(cal.novelty(model.track_row(rows[columns].to_numpy()))[0]))
    track_ids, track_proba = np.asarray(track_ids), np.asarray(track_proba)
    segment_accuracy = float(np.mean(hits))
    shares = dataset.share_table(labels)
    tracks = dataset.by_track()
    metrics = track_level_metrics(track_ids, track_proba, tracks, labels, shares)
    metrics["segment_accuracy"] = segment_accuracy
    metrics["n_failed"] = len(failures)
    from moodscope.research.yardstick import by_genre, circumplex_summary, held_out_report

    cal = model.calibration
    conf = None if cal is None else np.asarray(confidence, dtype=np.float64)
    metrics["held_out"] = held_out_report(
        track_proba,
        track_ids,
        labels,
        tracks,
        confidence=conf,
        score="margin" if cal is None else cal.score,
        shares=shares,
        annotations=getattr(dataset, "annotations", None),
    )
    metrics["by_genre"] = by_genre(
        track_proba,
        track_ids,
        labels,
        tracks,
        confidence=conf,
        novelty=np.asarray(novelty) if novelty else None,
    )
    metrics["circumplex"] = circumplex_summary(
        np.asarray(position, dtype=np.float64), track_ids, tracks, shares
    )
    metrics["domain_shift"] = model.info.get("domain_shift")
    return metrics, failures
