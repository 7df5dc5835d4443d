"""Held-out yardsticks: confidence on unseen tracks, the GEMS factors, listener panels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moodscope.emotions import EMOTIONS, FACTORS, factor_shares, top_factor
from moodscope.research.yardstick import factor_metrics, listener_panels, panel_worth


def _listeners(n_tracks=60, per_track=14, hit=0.6, other=0.12, seed=0):
    """Listeners who tick their track's emotion with chance ``hit`` and any other with
    ``other``; returns the annotations and each track's emotion."""
    rng = np.random.default_rng(seed)
    truth = {str(t): EMOTIONS[rng.integers(9)] for t in range(n_tracks)}
    rows = []
    for t, emotion in truth.items():
        for _ in range(per_track):
            ticks = rng.random(9) < other
            ticks[EMOTIONS.index(emotion)] = rng.random() < hit
            rows.append({"track_id": t, **dict(zip(EMOTIONS, ticks.astype(int)))})
    return pd.DataFrame(rows), pd.Series(truth)


def test_bigger_panels_agree_more_and_the_model_is_placed_among_them():
    annotations, truth = _listeners()
    result = listener_panels(annotations, truth, repeats=5)
    agreement = [p["agreement"] for p in result["panels"]]
    assert [p["listeners"] for p in result["panels"]] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert agreement == sorted(agreement) and agreement[-1] > agreement[0] + 0.2
    assert result["model"] > agreement[-1] and result["beyond"]  # knows each track's emotion
    wrong = truth.map(lambda e: EMOTIONS[(EMOTIONS.index(e) + 1) % 9])
    worse = listener_panels(annotations, wrong, repeats=5)
    assert worse["model"] < agreement[0]
    assert 0 <= worse["worth"] < 1 and not worse["beyond"]


def test_unanimous_listeners_agree_with_each_other_always():
    annotations, truth = _listeners(n_tracks=10, hit=1.0, other=0.0)
    result = listener_panels(annotations, truth, repeats=3, max_panel=3)
    assert [p["agreement"] for p in result["panels"]] == [1.0, 1.0, 1.0]
    assert result["model"] == 1.0


def test_tracks_without_enough_listeners_are_left_out():
    annotations, truth = _listeners(n_tracks=4, per_track=6)
    assert listener_panels(annotations, truth, target_listeners=6) is None


def test_panel_worth_interpolates():
    panels = [{"listeners": 1, "agreement": 0.2}, {"listeners": 2, "agreement": 0.3}]
    assert panel_worth(panels, 0.25) == {"worth": pytest.approx(1.5), "beyond": False}
    assert panel_worth(panels, 0.1) == {"worth": pytest.approx(0.5), "beyond": False}
    assert panel_worth(panels, 0.4) == {"worth": 2.0, "beyond": True}


def test_factor_shares_sum_to_one_and_follow_gems():
    shares = factor_shares(dict(zip(EMOTIONS, [0.05, 0.05, 0.05, 0.05, 0.1, 0.3, 0.2, 0.1, 0.1])))
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares == pytest.approx({"sublimity": 0.3, "vitality": 0.5, "unease": 0.2})
    assert top_factor(shares) == "vitality"
    assert set(FACTORS["unease"]) == {"tension", "sadness"}
    assert factor_shares({"speech": 1.0}) == {}


def test_factor_metrics_against_listener_shares():
    labels = list(EMOTIONS)
    eye = np.eye(9)
    proba = eye[[4, 5, 7, 4]] * 0.8 + 0.2 / 9  # calmness, power, tension, calmness
    shares = pd.DataFrame(eye[[4, 6, 4, 4]], columns=labels)  # sublimity, vitality, sub., sub.
    m = factor_metrics(proba, labels, shares)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["majority"] == "sublimity" and m["majority_accuracy"] == pytest.approx(0.75)
    assert m["per_factor"]["unease"]["support"] == 0


@pytest.mark.data
@pytest.mark.slow
def test_on_held_out_dev_tracks_the_confidence_ranks_and_means_what_it_says(emotify_dir):
    """The shipped recipe under 5-fold CV on the dev copy, the confidence cross-fitted:
    the most confident half is right more often than the rest, and on average the
    confidence is the accuracy (within 0.1)."""
    from moodscope.datasets import EmotifyDataset
    from moodscope.features import extract_features
    from moodscope.inference.predictor import load_model
    from moodscope.models.training import TrainConfig
    from moodscope.research.evaluation import crossval
    from moodscope.research.yardstick import crossval_yardstick

    shipped = load_model()
    assert shipped.calibration is not None
    dataset = EmotifyDataset(emotify_dir)
    table, failures = extract_features(dataset, shipped.feature_config, workers=2)
    assert not failures
    tracks, labels = dataset.by_track(), list(dataset.labels)
    cv = crossval(
        table,
        tracks,
        model=shipped.info["model"],
        feature_config=shipped.feature_config,
        labels=labels,
        train_config=TrainConfig(seed=0),
        model_kwargs=shipped.classifier.model_kwargs,
        shares=tracks[labels],
        aggregate=shipped.aggregate,
        soft=shipped.info["soft_labels"],
    )
    held, fitted = crossval_yardstick(
        cv, dataset, score=shipped.calibration.score, method=shipped.calibration.method
    )
    assert held["confident_half_accuracy"] > held["other_half_accuracy"]
    cal = held["calibration"]
    assert abs(cal["mean_confidence"] - cal["accuracy"]) <= 0.1
    table_rows = held["risk_coverage"]["table"]
    assert [r["n_tracks"] for r in table_rows] == [80, 160, 240, 320]
    panels = held["listeners"]["panels"]
    assert panels[-1]["agreement"] > panels[0]["agreement"]  # more listeners, more agreement
    assert fitted.n_tracks == 320


def test_a_wide_panel_uses_only_tracks_with_enough_listeners():
    few, truth_few = _listeners(n_tracks=20, per_track=11, seed=1)
    many, truth_many = _listeners(n_tracks=20, per_track=18, seed=2)
    many["track_id"] = "m" + many["track_id"]
    truth = pd.concat([truth_few, truth_many.rename(lambda t: "m" + t)])
    result = listener_panels(pd.concat([few, many]), truth, max_panel=10, repeats=2)
    assert result["n_tracks"] == 20 and len(result["panels"]) == 10
    assert listener_panels(pd.concat([few, many]), truth, repeats=2)["n_tracks"] == 40
