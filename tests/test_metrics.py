"""Risk-coverage and calibration error: the metrics of a confidence."""

from __future__ import annotations

import numpy as np
import pytest

from moodscope.research.metrics import calibration_error, ranked_by_confidence, risk_coverage


def test_risk_coverage_keeps_the_most_confident_first():
    rng = np.random.default_rng(0)
    confidence = rng.random(400)
    correct = confidence > 0.5  # right exactly where confident
    top2 = correct | (rng.random(400) < 0.5)
    rc = risk_coverage(confidence, correct, topk_correct={2: top2})
    rows = {r["coverage"]: r for r in rc["table"]}
    assert [r["n_tracks"] for r in rc["table"]] == [100, 200, 300, 400]
    assert rows[0.25]["accuracy"] == 1.0
    assert rows[1.0]["accuracy"] == pytest.approx(correct.mean())
    assert rows[0.25]["min_confidence"] == pytest.approx(np.sort(confidence)[::-1][99])
    assert all(r["top2_accuracy"] >= r["accuracy"] for r in rc["table"])
    assert rc["curve"][-1] == pytest.approx(correct.mean())


def test_ties_are_broken_by_the_raw_score_then_the_order():
    confidence = np.array([0.5, 0.5, 0.5, 0.9])
    raw = np.array([0.1, 0.3, 0.2, 0.0])
    assert ranked_by_confidence(confidence, raw).tolist() == [3, 1, 2, 0]
    assert ranked_by_confidence(confidence).tolist() == [3, 0, 1, 2]


def test_calibration_error_of_a_calibrated_and_an_overconfident_model():
    rng = np.random.default_rng(1)
    confidence = rng.uniform(0.1, 0.9, 20000)
    correct = rng.random(20000) < confidence
    calibrated = calibration_error(confidence, correct)
    assert calibrated["ece"] < 0.02
    assert sum(b["n_tracks"] for b in calibrated["bins"]) == 20000
    over = calibration_error(np.clip(confidence + 0.2, 0, 1), correct)
    assert over["ece"] == pytest.approx(0.2, abs=0.03)
    assert over["mean_confidence"] > over["accuracy"]


def test_a_confidence_of_exactly_one_falls_in_the_last_bin():
    result = calibration_error(np.array([1.0, 0.0]), np.array([True, False]))
    assert [(b["low"], b["high"]) for b in result["bins"]] == [(0.0, 0.1), (0.9, 1.0)]
    assert result["ece"] == 0.0


def test_threshold_table_counts_what_reaches_each_threshold():
    from moodscope.research.metrics import threshold_table

    confidence = np.array([0.2, 0.35, 0.5, 0.5, 0.9])
    correct = np.array([False, False, True, False, True])
    rows = threshold_table(confidence, correct, thresholds=(0.5, 0.95))
    assert rows[0] == {"min_confidence": 0.5, "coverage": 0.6, "n_tracks": 3, "accuracy": 2 / 3}
    assert rows[1]["n_tracks"] == 0 and rows[1]["accuracy"] is None
