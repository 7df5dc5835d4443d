"""The confidence map: a score of the distribution -> the chance that its top emotion is right."""

from __future__ import annotations

import numpy as np
import pytest

from moodscope.errors import ConfigError, ModelError
from moodscope.inference.calibration import (
    Calibration,
    confidence_score,
    confidence_words,
    crossfit_confidence,
    fit_calibration,
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
