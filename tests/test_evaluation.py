"""Cross-validation and evaluation: track-level metrics, per genre, emotion correlation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moodscope.features import FeatureConfig
from moodscope.research.evaluation import crossval, emotion_correlation, track_level_metrics
from moodscope.research.experiment import track_predictions
from test_training import tiny_table


def _tracks(table: pd.DataFrame) -> pd.DataFrame:
    return table.groupby("track_id")[["label", "genre"]].first()


def test_track_prediction_is_mean_of_segments():
    proba = np.array([[0.8, 0.2], [0.4, 0.6], [0.1, 0.9]])
    ids, mean = track_predictions(proba, np.array(["a", "a", "b"]))
    assert list(ids) == ["a", "b"]
    np.testing.assert_allclose(mean, [[0.6, 0.4], [0.1, 0.9]])


def test_emotion_correlation():
    labels = ["calm", "tense"]
    proba = np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]])
    shares = pd.DataFrame({"calm": [0.8, 0.4, 0.1], "tense": [0.3, 0.2, 0.1]})
    r = emotion_correlation(proba, labels, shares)
    assert r["calm"] == pytest.approx(np.corrcoef(proba[:, 0], shares.calm)[0, 1])
    assert r["mean"] == pytest.approx((r["calm"] + r["tense"]) / 2)
    constant = emotion_correlation(np.full((3, 2), 0.5), labels, shares)
    assert constant["calm"] is None and constant["mean"] is None


def test_per_genre_breakdown():
    tracks = pd.DataFrame(
        {"label": ["a", "b", "a", "b"], "genre": ["rock", "rock", "pop", "pop"]},
        index=["1", "2", "3", "4"],
    )
    proba = np.array([[1, 0], [1, 0], [1, 0], [0, 1.0]])
    m = track_level_metrics(np.array(["1", "2", "3", "4"]), proba, tracks, ["a", "b"])
    assert m["track_accuracy"] == 0.75
    assert m["per_genre"]["rock"]["track_accuracy"] == 0.5
    assert m["per_genre"]["pop"]["track_accuracy"] == 1.0


@pytest.mark.parametrize("model", ["majority", "logistic_regression"])
def test_crossval_is_track_disjoint_and_summarised(model):
    # Labels deliberately not in sorted order: metrics must follow the classifier's columns.
    names = {"calm": "zen", "power": "anger", "tension": "mild"}
    table = tiny_table(n_tracks=45)
    table["label"] = table["label"].map(names)
    tracks = _tracks(table)
    rng = np.random.default_rng(0)
    shares = pd.DataFrame(
        rng.random((len(tracks), 3)), index=tracks.index, columns=["zen", "anger", "mild"]
    )
    result = crossval(
        table,
        tracks,
        model=model,
        feature_config=FeatureConfig(segments=5),
        labels=["zen", "anger", "mild"],
        folds=3,
        shares=shares,
    )
    assert len(result["folds"]) == 3
    assert sorted(result["out_of_fold"].index) == sorted(tracks.index)
    for key in ("track_accuracy", "track_macro_f1", "track_balanced_accuracy"):
        stat = result["summary"][key]
        assert 0 <= stat["mean"] <= 1 and stat["std"] >= 0
    assert all(f["leak_fraction"] == 0.0 for f in result["folds"])
    assert set(result["per_genre"]) == {"pop", "rock"}
    if model == "majority":
        # Always the training majority: with three equal classes, about one in three.
        assert 0.2 <= result["summary"]["track_accuracy"]["mean"] <= 0.45
        assert result["smote"] is False
    else:
        # Classes differ in their feature means: a linear model finds that.
        assert result["summary"]["track_accuracy"]["mean"] > 0.8
        assert result["summary"]["emotion_correlation_mean"] is not None


def test_crossval_train_fraction_subsamples_training_tracks_only():
    from moodscope import ConfigError

    table = tiny_table(n_tracks=45)
    tracks = _tracks(table)
    labels = ["calm", "power", "tension"]
    run = lambda fraction, seed=0: crossval(  # noqa: E731
        table,
        tracks,
        model="logistic_regression",
        feature_config=FeatureConfig(segments=5),
        labels=labels,
        folds=3,
        train_fraction=fraction,
        subsample_seed=seed,
    )
    full, half, other = run(1.0), run(0.5), run(0.5, seed=1)
    assert [f["n_train_tracks"] for f in full["folds"]] == [30, 30, 30]
    assert [f["n_train_tracks"] for f in half["folds"]] == [15, 15, 15]
    # The same test tracks in every fold, whatever the training share and draw.
    for result in (half, other):
        assert sorted(result["out_of_fold"].index) == sorted(full["out_of_fold"].index)
        assert [f["n_tracks"] for f in result["folds"]] == [f["n_tracks"] for f in full["folds"]]
    with pytest.raises(ConfigError, match="train_fraction"):
        run(0.0)
