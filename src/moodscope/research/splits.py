"""How a feature table becomes train / validation / test rows.

``paper``: the paper's protocol, kept for reproduction: SMOTE over all segments, a scaler
fitted on everything, then a random 70/15/15 split of segments, so a track's segments (and
SMOTE points made from them) sit on both sides; :attr:`PreparedSplit.leak_fraction` says how
much. ``track``: the honest default: tracks, not segments, are split (stratified, grouped),
and the scaler and SMOTE are fitted on the training tracks only. ``all``: no test part,
for the final model once cross-validation has measured the recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from imblearn.over_sampling import SMOTE
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold, train_test_split
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import LabelEncoder, StandardScaler

from moodscope.errors import ConfigError
from moodscope.inference.checkpoint import freeze_rounding
from moodscope.models._registry import VAL_FRACTION
from moodscope.research.metrics import leak_fraction

PROTOCOLS = ("paper", "track", "all")


@dataclass
class PreparedSplit:
    """Scaled rows for training, validation and test, with where they came from."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    train_tracks: np.ndarray  # track of each training row (for SMOTE points: its source track)
    val_tracks: np.ndarray
    test_tracks: np.ndarray
    labels: list[str]
    scaler: StandardScaler
    counts_before: dict[str, int] = field(default_factory=dict)  # rows per class, pre-SMOTE
    counts_after: dict[str, int] = field(default_factory=dict)  # after SMOTE
    protocol: str = "track"
    test_rows: np.ndarray | None = None  # indices of test rows in the table (track protocol)

    @property
    def leak_fraction(self) -> float:
        """Share of test rows whose track also has (original or SMOTE) rows in training."""
        return leak_fraction(self.test_tracks, self.train_tracks)


def _counts(y: np.ndarray, labels: list[str]) -> dict[str, int]:
    return {label: int((y == i).sum()) for i, label in enumerate(labels)}


def _smote(X: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    counts = np.bincount(y)
    k = int(min(5, counts[counts > 0].min() - 1))
    if k < 1:  # a class with one row: nothing to interpolate between
        return X, y
    return SMOTE(random_state=seed, k_neighbors=k).fit_resample(X, y)


def _source_tracks(X_res, y_res, X, y, tracks) -> np.ndarray:
    """Track of each resampled row. imbalanced-learn appends synthetic rows after the
    originals; each lies between two same-class rows, and the nearest original is taken
    as its source (exact for the originals, an attribution for the synthetic ones)."""
    out = np.empty(len(X_res), dtype=object)
    out[: len(X)] = tracks
    for label in np.unique(y_res[len(X) :]):
        synthetic = np.flatnonzero(y_res[len(X) :] == label) + len(X)
        originals = np.flatnonzero(y == label)
        nn = NearestNeighbors(n_neighbors=1).fit(X[originals])
        nearest = nn.kneighbors(X_res[synthetic], return_distance=False)[:, 0]
        out[synthetic] = tracks[originals[nearest]]
    return out


def encode_labels(
    table: pd.DataFrame, labels: list[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """Integer classes of the table's ``label`` column; ``labels`` fixes the order (default:
    the labels present, sorted)."""
    encoder = LabelEncoder().fit(labels if labels is not None else table["label"])
    unknown = set(table["label"]) - set(encoder.classes_)
    if unknown:
        raise ConfigError(f"labels {sorted(unknown)} are not among {list(encoder.classes_)}")
    return encoder.transform(table["label"]), [str(c) for c in encoder.classes_]


def paper_split(
    table: pd.DataFrame, columns: list[str], *, seed: int = 0, labels: list[str] | None = None
) -> PreparedSplit:
    """The paper: SMOTE on all segments -> StandardScaler on all -> random 70/15/15 split."""
    X = table[columns].to_numpy(np.float64)
    y, labels = encode_labels(table, labels)
    tracks = table["track_id"].astype(str).to_numpy()
    X_res, y_res = _smote(X, y, seed)
    sources = _source_tracks(X_res, y_res, X, y, tracks)
    scaler = StandardScaler().fit(X_res)
    Xs = scaler.transform(X_res).astype(np.float32)
    idx = np.arange(len(Xs))
    train, rest = train_test_split(idx, test_size=0.30, random_state=seed)
    val, test = train_test_split(rest, test_size=0.50, random_state=seed)
    return PreparedSplit(
        Xs[train],
        y_res[train],
        Xs[val],
        y_res[val],
        Xs[test],
        y_res[test],
        sources[train],
        sources[val],
        sources[test],
        labels,
        scaler,
        _counts(y, labels),
        _counts(y_res, labels),
        "paper",
    )


def track_folds(
    table: pd.DataFrame, *, n_splits: int, seed: int = 0, labels: list[str] | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Row indices ``(train_rows, test_rows)`` of a stratified, grouped K-fold by track."""
    y, _ = encode_labels(table, labels)
    groups = table["track_id"].astype(str).to_numpy()
    n_tracks = len(np.unique(groups))
    if not 2 <= n_splits <= n_tracks:
        raise ConfigError(f"{n_splits} folds need between 2 and {n_tracks} (the tracks) folds")
    return _group_folds(n_splits, seed, y, groups)


def _group_folds(n_splits: int, seed: int, y: np.ndarray, groups: np.ndarray) -> list:
    """Stratified grouped folds; when no class has enough groups to stratify (tiny data),
    plain grouped folds, still track-disjoint."""
    try:
        folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        return list(folds.split(np.zeros(len(y)), y, groups))
    except ValueError:
        folds = GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        return list(folds.split(np.zeros(len(y)), y, groups))


def track_split(
    table: pd.DataFrame,
    columns: list[str],
    train_rows: np.ndarray,
    test_rows: np.ndarray,
    *,
    seed: int = 0,
    labels: list[str] | None = None,
    val_fraction: float = VAL_FRACTION,
    smote: bool = True,
    targets: np.ndarray | None = None,
) -> PreparedSplit:
    """Train/validation/test rows from a track-disjoint (train, test) partition.

    The validation tracks (early stopping) are carved out of the training tracks, grouped
    and stratified; the scaler is fitted on the remaining training rows, and SMOTE
    resamples them in scaled space. Validation and test rows are never resampled.
    ``val_fraction=0`` carves out nothing (a model without early stopping trains on every
    training track; the validation part is then empty).
    ``targets`` [n_rows, n_labels] (soft labels, e.g. listener shares) replace the class
    indices for training and validation; SMOTE, which needs classes, is then off.
    """
    X = table[columns].to_numpy(np.float64)
    y, labels = encode_labels(table, labels)
    tracks = table["track_id"].astype(str).to_numpy()
    n_train_tracks = len(np.unique(tracks[train_rows]))
    if val_fraction <= 0:
        if n_train_tracks < 1:
            raise ConfigError("training needs at least 1 track")
        fit_rows, val_rows = train_rows, train_rows[:0]
    else:
        if n_train_tracks < 2:
            raise ConfigError("training needs at least 2 tracks (one is carved out for validation)")
        n_val_splits = min(max(2, int(round(1 / val_fraction))), n_train_tracks)
        inner = _group_folds(n_val_splits, seed + 1, y[train_rows], tracks[train_rows])
        fit_idx, val_idx = inner[0]
        fit_rows, val_rows = train_rows[fit_idx], train_rows[val_idx]
    scaler = freeze_rounding(StandardScaler().fit(X[fit_rows]), columns)
    X_fit = scaler.transform(X[fit_rows])

    def scale(rows: np.ndarray) -> np.ndarray:
        if len(rows) == 0:
            return np.zeros((0, X.shape[1]), np.float32)
        return scaler.transform(X[rows]).astype(np.float32)

    if targets is not None:
        return PreparedSplit(
            X_fit.astype(np.float32),
            targets[fit_rows].astype(np.float32),
            scale(val_rows),
            targets[val_rows].astype(np.float32),
            scale(test_rows),
            y[test_rows],
            tracks[fit_rows],
            tracks[val_rows],
            tracks[test_rows],
            labels,
            scaler,
            _counts(y[fit_rows], labels),
            _counts(y[fit_rows], labels),
            "track",
            test_rows,
        )
    if smote:
        X_res, y_res = _smote(X_fit, y[fit_rows], seed)
        sources = _source_tracks(X_res, y_res, X_fit, y[fit_rows], tracks[fit_rows])
    else:
        X_res, y_res, sources = X_fit, y[fit_rows], tracks[fit_rows]

    return PreparedSplit(
        X_res.astype(np.float32),
        y_res,
        scale(val_rows),
        y[val_rows],
        scale(test_rows),
        y[test_rows],
        sources,
        tracks[val_rows],
        tracks[test_rows],
        labels,
        scaler,
        _counts(y[fit_rows], labels),
        _counts(y_res, labels),
        "track",
        test_rows,
    )


def track_holdout(
    table: pd.DataFrame,
    columns: list[str],
    *,
    seed: int = 0,
    labels: list[str] | None = None,
    smote: bool = True,
    targets: np.ndarray | None = None,
    val_fraction: float = VAL_FRACTION,
) -> PreparedSplit:
    """A 70/15/15 split by track: one of ~7 stratified grouped folds is the test part
    (85/15 without a validation part)."""
    train_rows, test_rows = track_folds(table, n_splits=7, seed=seed, labels=labels)[0]
    return track_split(
        table,
        columns,
        train_rows,
        test_rows,
        seed=seed,
        labels=labels,
        smote=smote,
        targets=targets,
        val_fraction=val_fraction,
    )


def prepare(
    table: pd.DataFrame,
    columns: list[str],
    protocol: str,
    *,
    seed: int = 0,
    labels: list[str] | None = None,
    smote: bool = True,
    targets: np.ndarray | None = None,
    val_fraction: float = VAL_FRACTION,
) -> PreparedSplit:
    """Rows for one train/test run under ``protocol`` (paper mode always applies SMOTE and
    always keeps its 15 % validation part)."""
    if protocol == "paper":
        return paper_split(table, columns, seed=seed, labels=labels)
    if protocol == "track":
        return track_holdout(
            table,
            columns,
            seed=seed,
            labels=labels,
            smote=smote,
            targets=targets,
            val_fraction=val_fraction,
        )
    if protocol == "all":  # a final model: every track trains (less validation, if carved)
        rows = np.arange(len(table))
        return track_split(
            table,
            columns,
            rows,
            rows[:0],
            seed=seed,
            labels=labels,
            smote=smote,
            targets=targets,
            val_fraction=val_fraction,
        )
    raise ConfigError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")


def share_targets(table: pd.DataFrame, shares: pd.DataFrame, labels: list[str]) -> np.ndarray:
    """Soft labels per row [n_rows, n_labels]: the listener shares of the row's track,
    normalised to sum to 1, in ``labels`` order (a track with no shares gets its label)."""
    values = shares.loc[table["track_id"].astype(str), labels].to_numpy(dtype=float)
    totals = values.sum(axis=1, keepdims=True)
    hard = (table["label"].to_numpy()[:, None] == np.asarray(labels)[None]).astype(float)
    return np.where(totals > 0, values / np.where(totals > 0, totals, 1), hard)
