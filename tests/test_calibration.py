"""The confidence map: a score of the distribution -> the chance that its top emotion is right."""

from __future__ import annotations

import numpy as np
import pytest

from moodscope.errors import ConfigError, ModelError
from moodscope.inference.calibration import (
    Calibration,
    Novelty,
    confidence_score,
    confidence_words,
    crossfit_confidence,
    fit_calibration,
    novelty_columns,
)


def _world(n: int, seed: int = 0):
    """Distributions over 9 labels whose top label is right with a chance that grows with
    the margin: ``P(right) = 0.2 + 0.7 * margin``, known by construction."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 9)) * rng.uniform(0.2, 3.0, size=(n, 1))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    margin = confidence_score(proba, "margin")
    chance = 0.2 + 0.7 * margin
    correct = rng.random(n) < chance
    return proba, correct, chance


def test_scores_follow_their_definition():
    p = np.array([0.1, 0.5, 0.3, 0.1])
    assert confidence_score(p, "top_share") == pytest.approx(0.5)
    assert confidence_score(p, "margin") == pytest.approx(0.2)
    both = confidence_score(np.stack([p, p[::-1]]), "margin")
    assert both.shape == (2,)
    with pytest.raises(ConfigError, match="unknown confidence score 'entropy'"):
        confidence_score(p, "entropy")


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_fitted_map_recovers_the_chance_of_being_right(method):
    proba, correct, _ = _world(4000, seed=1)
    cal = fit_calibration(proba, correct, method=method)
    test_proba, test_correct, chance = _world(4000, seed=2)
    confidence = cal(test_proba)
    assert np.all(np.diff(cal.y) >= -1e-12)  # monotone in the score
    assert np.all((confidence >= 0) & (confidence <= 1))
    assert np.mean(np.abs(confidence - chance)) < 0.05
    assert abs(confidence.mean() - test_correct.mean()) < 0.03


def test_crossfit_never_uses_a_tracks_own_outcome():
    """Flipping the outcomes of fold 0 must not move fold 0's confidences."""
    proba, correct, _ = _world(600, seed=3)
    folds = np.arange(600) % 5
    before = crossfit_confidence(proba, correct, folds, method="platt")
    flipped = correct.copy()
    flipped[folds == 0] = ~flipped[folds == 0]
    after = crossfit_confidence(proba, flipped, folds, method="platt")
    np.testing.assert_allclose(after[folds == 0], before[folds == 0])
    assert not np.allclose(after[folds != 0], before[folds != 0])


def test_map_is_stored_as_plain_arrays():
    proba, correct, _ = _world(500)
    cal = fit_calibration(proba, correct, method="isotonic")
    state = cal.state()  # what a checkpoint stores: plain values and float arrays, no torch
    for value in state.values():
        assert isinstance(value, (str, int)) or (
            isinstance(value, np.ndarray) and value.dtype.kind == "f"
        ), value
    back = Calibration.from_state(state)
    np.testing.assert_allclose(back(proba), cal(proba))
    assert (back.score, back.method, back.n_tracks) == ("margin", "isotonic", 500)


def test_a_score_that_does_not_rank_gives_a_flat_map():
    rng = np.random.default_rng(4)
    proba, _, _ = _world(2000, seed=4)
    correct = rng.random(2000) < 0.4  # unrelated to the distributions
    confidence = fit_calibration(proba, correct, method="platt")(proba)
    assert confidence.max() - confidence.min() < 0.15
    assert abs(confidence.mean() - 0.4) < 0.05


def test_malformed_maps_are_model_errors():
    with pytest.raises(ModelError, match="non-decreasing"):
        Calibration("margin", np.array([0.0, 1.0]), np.array([0.8, 0.2]))
    with pytest.raises(ModelError, match="malformed"):
        Calibration("entropy", np.array([0.0]), np.array([0.5]))


def test_words():
    assert confidence_words(None) == "not calibrated"
    assert confidence_words(0.8) == "sure"
    assert confidence_words(0.55) == "fairly sure"
    assert confidence_words(0.4) == "unsure"
    assert confidence_words(0.2) == "guessing"


def _shifted_world(n: int, seed: int = 0, *, far_hurts: bool = True):
    """:func:`_world` with a novelty per prediction: half the tracks near the training
    tracks (novelty ~1), half far (~3); far tracks are right half as often when
    ``far_hurts``, twice as often (capped) otherwise."""
    proba, _, chance = _world(n, seed)
    rng = np.random.default_rng(seed + 100)
    far = rng.random(n) < 0.5
    novelty = np.where(far, rng.uniform(2.5, 3.5, n), rng.uniform(0.8, 1.2, n))
    chance = np.where(far, chance / 2 if far_hurts else np.minimum(1.0, chance * 2), chance)
    return proba, rng.random(n) < chance, novelty, far


def test_novelty_is_about_one_inside_and_large_far_away():
    rng = np.random.default_rng(1)
    reference = rng.standard_normal((300, 8))
    novelty = Novelty.fit(reference, range(8))
    assert novelty.typical > 0
    inside = novelty(rng.standard_normal((200, 8)))
    assert 0.8 < np.median(inside) < 1.3
    far = novelty(rng.standard_normal((5, 8)) + 20.0)
    assert far.min() > 5 * np.median(inside)
    # Only the named columns count: a huge value elsewhere changes nothing.
    two = Novelty.fit(rng.standard_normal((50, 10)), [0, 1])
    wide = np.zeros((1, 10))
    assert two(wide)[0] == pytest.approx(two(wide + [[0, 0] + [99] * 8])[0])
    assert two(wide + [[99] + [0] * 9])[0] > 10 * two(wide)[0]


def test_novelty_reads_the_embedding_means_only():
    columns = ["a_emb0@mean", "a_emb1@mean", "a_emb0@std", "a_tag_rock@mean", "spread"]
    assert novelty_columns(columns) == [0, 1]
    assert novelty_columns(["centroid", "flux"]) == [0, 1]


def test_logistic_map_is_less_sure_far_from_the_training_tracks():
    proba, correct, novelty, far = _shifted_world(4000)
    reference = Novelty.fit(np.random.default_rng(0).standard_normal((20, 3)), range(3))
    cal = fit_calibration(proba, correct, method="logistic", novelty=novelty, reference=reference)
    assert cal.coef[1] > 0 and cal.coef[2] < 0
    near_conf, far_conf = (
        cal.at(proba, np.ones(len(proba))),
        cal.at(proba, np.full(len(proba), 3.0)),
    )
    assert np.all(far_conf < near_conf)
    # It means what it says on both sides (the world's own chances, by construction).
    confidence = cal.at(proba, novelty)
    for side in (far, ~far):
        assert abs(confidence[side].mean() - correct[side].mean()) < 0.04


def test_novelty_never_makes_it_surer():
    proba, correct, novelty, far = _shifted_world(4000, far_hurts=False)
    reference = Novelty.fit(np.random.default_rng(0).standard_normal((20, 3)), range(3))
    cal = fit_calibration(proba, correct, method="logistic", novelty=novelty, reference=reference)
    assert cal.coef[2] == 0.0  # left out rather than fitted with the wrong sign
    np.testing.assert_allclose(cal.at(proba[:5], np.full(5, 9.0)), cal.at(proba[:5], np.ones(5)))
    with pytest.raises(ModelError, match="must not grow with novelty"):
        Calibration("margin", cal.x, cal.y, "logistic", 1, reference, np.array([0.0, 1.0, 0.5]))


def test_logistic_map_is_stored_as_plain_arrays_and_needs_the_track():
    proba, correct, novelty, _ = _shifted_world(1000)
    rng = np.random.default_rng(2)
    rows = rng.standard_normal((40, 6))
    cal = fit_calibration(
        proba, correct, method="logistic", novelty=novelty, reference=Novelty.fit(rows, [0, 2, 4])
    )
    state = cal.state()  # plain values and arrays, no torch (the novelty's nested one too)
    assert isinstance(state["novelty"]["reference"], np.ndarray)
    assert state["novelty"]["columns"].dtype.kind == "i" and state["coef"].dtype.kind == "f"
    back = Calibration.from_state(state)
    queries = rng.standard_normal((7, 6)) * 3
    np.testing.assert_allclose(back(proba[:7], queries), cal(proba[:7], queries))
    np.testing.assert_array_equal(back.novelty.columns, [0, 2, 4])
    with pytest.raises(ModelError, match="needs the track's features"):
        back(proba[:7])
    bare = fit_calibration(proba, correct, method="logistic", novelty=novelty)
    np.testing.assert_allclose(bare.at(proba[:7], novelty[:7]), cal.at(proba[:7], novelty[:7]))
    with pytest.raises(ModelError, match="stored with its reference tracks"):
        bare.state()
    folds = np.arange(1000) % 5
    held = crossfit_confidence(proba, correct, folds, method="logistic", novelty=novelty)
    assert held.shape == (1000,) and 0 < held.min() <= held.max() < 1


def test_the_shipped_model_is_less_sure_far_from_its_training_tracks():
    from moodscope.inference.predictor import load_model

    model = load_model()
    if model.calibration.method != "logistic":
        pytest.skip("the shipped model predates the novelty map: `make model` rebuilds it")
    n_inputs = len(model.scaler.mean)
    shares = model.predict_proba(model.scaler.mean[None])[0]  # a track at the training mean
    near = model.confidence(shares, np.zeros(n_inputs))
    far_row = np.full(n_inputs, 8.0)  # 8 standard deviations out in every input
    assert model.calibration.novelty(far_row[None])[0] > 3
    assert model.confidence(shares, far_row) < near - 0.1
    assert model.confidence(shares, far_row) < 0.35  # "guessing", whatever the margin
