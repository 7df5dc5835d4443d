"""Training variants: one training serves several rows, and the choice reads validation only."""

from __future__ import annotations

import numpy as np
import pytest

from moodscope.errors import ConfigError
from moodscope.features import FeatureConfig
from moodscope.models.training import TrainConfig
from moodscope.research.evaluation import crossval
from moodscope.research.variants import (
    PAPER_VARIANT,
    Variant,
    choose_variant,
    crossval_variants,
    training_seconds,
    variants_of,
)
from test_training import tiny_table

TINY = {"filters": (8, 8, 8), "lstm_units": 8, "dense_units": 8}
BASE = TrainConfig(epochs=5, batch_size=16, patience=2, seed=3)
LABELS = ["calm", "power", "tension"]


def _tracks(table):
    return table.groupby("track_id")[["label", "genre"]].first()


@pytest.fixture(scope="module")
def grid():
    table = tiny_table(n_tracks=30)
    results = crossval_variants(
        table,
        _tracks(table),
        model="paper_cnn_lstm",
        feature_config=FeatureConfig(segments=5),
        labels=LABELS,
        balances=["class_weight", "smote"],
        folds=3,
        train_config=BASE,
        model_kwargs=TINY,
    )
    return table, results


def test_every_balance_gives_four_variants(grid):
    _, results = grid
    assert list(results) == [v.key for v in variants_of(["class_weight", "smote"])]
    assert len(results) == 8 and PAPER_VARIANT.key in results
    for r in results.values():
        assert len(r["folds"]) == 3 and r["train"]["stop_on"] == "both"
        assert r["validation"]["track_accuracy"]["mean"] >= 0
        assert r["train"]["balance"] == r["variant"]["balance"]
    # The four variants of one balance share one training per fold.
    for balance in ("class_weight", "smote"):
        seconds = {
            tuple(f["train_seconds"] for f in r["folds"])
            for r in results.values()
            if r["variant"]["balance"] == balance
        }
        assert len(seconds) == 1
    times = training_seconds(results)
    assert set(times) == {"class_weight", "smote"} and times["smote"]["bn_seconds_per_fold"] > 0


@pytest.mark.parametrize(
    "variant",
    [Variant("class_weight", "val_macro_f1", True), Variant("smote", "val_loss", False)],
    ids=lambda v: v.key,
)
def test_a_variant_row_is_crossval_with_its_settings(grid, variant):
    table, results = grid
    alone = crossval(
        table,
        _tracks(table),
        model="paper_cnn_lstm",
        feature_config=FeatureConfig(segments=5),
        labels=LABELS,
        folds=3,
        train_config=variant.train_config(BASE),
        model_kwargs=TINY,
    )
    row = results[variant.key]
    np.testing.assert_allclose(
        alone["out_of_fold"].to_numpy(), row["out_of_fold"].to_numpy(), rtol=1e-5, atol=1e-6
    )
    assert alone["track_accuracy"] == row["track_accuracy"]


def _fake(validation: float, test: float) -> dict:
    return {
        "validation": {"track_accuracy": {"mean": validation, "std": 0.0}},
        "summary": {"track_accuracy": {"mean": test, "std": 0.0}},
    }


def test_choice_reads_the_validation_tracks_never_the_test_folds():
    results = {"a": _fake(0.30, 0.50), "b": _fake(0.40, 0.20), "c": _fake(0.40, 0.90)}
    assert choose_variant(results, "track_accuracy") == "b"  # best validation; ties: first
    with pytest.raises(ConfigError, match="choose_by"):
        choose_variant(results, "test_accuracy")


def test_unknown_balance_and_non_neural_models_are_refused():
    with pytest.raises(ConfigError, match="oversample"):
        variants_of(["smote", "oversample"])
    table = tiny_table(n_tracks=12)
    with pytest.raises(ConfigError, match="neural"):
        crossval_variants(
            table,
            _tracks(table),
            model="random_forest",
            feature_config=FeatureConfig(segments=5),
            labels=LABELS,
        )
