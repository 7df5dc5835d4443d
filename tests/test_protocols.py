"""Splits: paper mode leaks (and says so); every other protocol keeps tracks apart and fits
SMOTE and the scaler on training tracks only."""

from __future__ import annotations

import numpy as np
import pytest

from moodscope.features import FEATURE_NAMES
from moodscope.research.splits import paper_split, prepare, track_folds, track_holdout, track_split
from test_training import tiny_table

COLS = list(FEATURE_NAMES)


def _tracks(split, part):
    return set(getattr(split, f"{part}_tracks"))


def test_paper_mode_leaks_and_reports_it():
    split = paper_split(tiny_table(n_tracks=30), COLS, seed=0)
    assert split.leak_fraction > 0.9
    assert _tracks(split, "train") & _tracks(split, "test")
    assert len(set(split.counts_after.values())) == 1  # SMOTE balanced every class


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_holdout_is_track_disjoint(seed):
    split = track_holdout(tiny_table(n_tracks=42), COLS, seed=seed)
    train, val, test = (_tracks(split, p) for p in ("train", "val", "test"))
    assert not (train & val) and not (train & test) and not (val & test)
    assert split.leak_fraction == 0.0
    n = 42
    assert abs(len(test) - 0.15 * n) <= 3 and abs(len(val) - 0.15 * n) <= 4


@pytest.mark.parametrize("n_splits", [3, 5])
def test_kfold_is_track_disjoint_and_covers_every_track(n_splits):
    table = tiny_table(n_tracks=40)
    seen = []
    for train_rows, test_rows in track_folds(table, n_splits=n_splits, seed=0):
        train_ids = set(table.track_id.iloc[train_rows])
        test_ids = set(table.track_id.iloc[test_rows])
        assert not train_ids & test_ids
        split = track_split(table, COLS, train_rows, test_rows, seed=0)
        parts = [_tracks(split, p) for p in ("train", "val", "test")]
        assert all(not (a & b) for i, a in enumerate(parts) for b in parts[i + 1 :])
        seen += list(test_ids)
    assert sorted(seen) == sorted(table.track_id.unique())


def test_smote_never_sees_validation_or_test_rows():
    table = tiny_table(n_tracks=42)
    # Make 'tension' the minority (6 of 14 tracks kept) so SMOTE has work to do.
    drop = (table.label == "tension") & (table.track_id.astype(int) >= 20)
    table = table[~drop].reset_index(drop=True)
    train_rows, test_rows = track_folds(table, n_splits=5, seed=0)[0]
    split = track_split(table, COLS, train_rows, test_rows, seed=0)
    X = table[COLS].to_numpy()
    # Validation and test rows are the original rows of their tracks, scaled, untouched.
    test_ids = table.track_id.iloc[test_rows].to_numpy()
    np.testing.assert_array_equal(split.test_tracks, test_ids)
    np.testing.assert_allclose(split.X_test, split.scaler.transform(X[test_rows]), atol=1e-5)
    assert len(split.X_val) == len(split.val_tracks)
    val_rows = np.flatnonzero(table.track_id.isin(set(split.val_tracks)))
    np.testing.assert_allclose(split.X_val, split.scaler.transform(X[val_rows]), atol=1e-5)
    # Synthetic training rows were made from training tracks only ...
    assert _tracks(split, "train") <= set(table.track_id.iloc[train_rows])
    # ... and the scaler saw only the training tracks that remain after carving validation.
    fit_rows = np.flatnonzero(table.track_id.isin(_tracks(split, "train")))
    np.testing.assert_allclose(split.scaler.mean_, X[fit_rows].mean(axis=0))
    assert sum(split.counts_after.values()) > sum(split.counts_before.values())


def test_no_smote_keeps_class_counts():
    table = tiny_table(n_tracks=42)
    split = prepare(table, COLS, "track", seed=0, smote=False)
    assert split.counts_before == split.counts_after


def test_unknown_protocol():
    from moodscope import ConfigError

    with pytest.raises(ConfigError, match="paper, track"):
        prepare(tiny_table(), COLS, "random")


def test_models_without_early_stopping_train_on_every_training_track():
    from moodscope.models import model_entry

    table = tiny_table(n_tracks=40)
    train_rows, test_rows = track_folds(table, n_splits=5, seed=0)[0]
    split = track_split(table, COLS, train_rows, test_rows, seed=0, smote=False, val_fraction=0)
    assert _tracks(split, "train") == set(table.track_id.iloc[train_rows])
    assert len(split.X_val) == 0 and len(split.val_tracks) == 0
    np.testing.assert_allclose(split.scaler.mean_, table[COLS].to_numpy()[train_rows].mean(axis=0))
    # The registry says who needs validation tracks: the neural models only.
    assert model_entry("paper_cnn_lstm").val_fraction > 0
    assert model_entry("attention_gru").val_fraction > 0
    assert model_entry("logistic_regression").val_fraction == 0
    assert model_entry("ridge").val_fraction == 0
