"""How sure a prediction is: the chance that its top emotion is the listeners' dominant one.

A score of the predicted distribution (the margin between the two largest shares, or the top
share) goes through a monotone map fitted, when the model is built, on out-of-fold
predictions of tracks the fold's model had not seen. The map is a table of knots read by
linear interpolation, so a checkpoint stores it as two plain arrays and applying it needs
numpy alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from moodscope.errors import ConfigError, ModelError

SCORES = ("margin", "top_share")
"""``margin``: largest share minus the second; ``top_share``: the largest share."""
METHODS = ("isotonic", "platt")
"""``isotonic``: the monotone step fit (pool adjacent violators); ``platt``: a logistic
curve in the score, sampled at :data:`PLATT_KNOTS` points."""
PLATT_KNOTS = 101


def confidence_score(proba: np.ndarray, score: str = "margin") -> np.ndarray:
    """The raw score of each distribution.

    Parameters
    ----------
    proba : np.ndarray [shape=(n, n_labels) or (n_labels,)]
        Distributions (rows summing to 1).
    score : {"margin", "top_share"}

    Returns
    -------
    np.ndarray [shape=(n,)] (a 0-d array for one distribution)
    """
    if score not in SCORES:
        raise ConfigError(f"unknown confidence score {score!r}; choose one of {', '.join(SCORES)}")
    p = np.asarray(proba, dtype=np.float64)
    top2 = -np.sort(-np.atleast_2d(p), axis=1)[:, :2]
    if score == "top_share":
        out = top2[:, 0]
    else:
        out = top2[:, 0] - (top2[:, 1] if top2.shape[1] > 1 else 0.0)
    return out[0] if p.ndim == 1 else out


@dataclass
class Calibration:
    """A fitted map from a score to the probability of being right.

    ``x`` [shape=(k,)] increasing scores, ``y`` [shape=(k,)] non-decreasing probabilities;
    scores outside ``x`` take the nearest end's value.
    """

    score: str
    x: np.ndarray
    y: np.ndarray
    method: str = "isotonic"
    n_tracks: int = 0  # the out-of-fold predictions it was fitted on

    def __post_init__(self) -> None:
        self.x = np.asarray(self.x, dtype=np.float64)
        self.y = np.asarray(self.y, dtype=np.float64)
        if self.score not in SCORES or self.x.ndim != 1 or self.x.shape != self.y.shape:
            raise ModelError(f"calibration map ({self.score}, {self.x.shape}) is malformed")
        if len(self.x) == 0 or np.any(np.diff(self.x) < 0) or np.any(np.diff(self.y) < -1e-12):
            raise ModelError("calibration map must be non-empty and non-decreasing")

    def __call__(self, proba: np.ndarray) -> np.ndarray:
        """The confidence of each distribution in ``proba`` (see :func:`confidence_score`)."""
        return np.clip(np.interp(confidence_score(proba, self.score), self.x, self.y), 0, 1)

    def state(self) -> dict:
        """Plain values and arrays, for a checkpoint (no torch)."""
        return {
            "score": self.score,
            "method": self.method,
            "n_tracks": int(self.n_tracks),
            "x": np.asarray(self.x, np.float64),
            "y": np.asarray(self.y, np.float64),
        }

    @classmethod
    def from_state(cls, state: dict) -> Calibration:
        return cls(
            str(state["score"]),
            np.asarray(state["x"].numpy() if hasattr(state["x"], "numpy") else state["x"]),
            np.asarray(state["y"].numpy() if hasattr(state["y"], "numpy") else state["y"]),
            str(state.get("method", "isotonic")),
            int(state.get("n_tracks", 0)),
        )


def fit_calibration(
    proba: np.ndarray,
    correct: np.ndarray,
    *,
    score: str = "margin",
    method: str = "isotonic",
) -> Calibration:
    """Fit the map on out-of-fold distributions ``proba [n, n_labels]`` and whether each
    one's top emotion was right (``correct [n]``, bool)."""
    if method not in METHODS:
        raise ConfigError(f"unknown calibration {method!r}; choose one of {', '.join(METHODS)}")
    s = confidence_score(proba, score)
    hit = np.asarray(correct, dtype=np.float64)
    if len(s) != len(hit) or len(s) < 2:
        raise ConfigError(f"calibration needs >= 2 predictions with outcomes, got {len(s)}")
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(s, hit)
        x, y = iso.X_thresholds_, iso.y_thresholds_
    else:
        from sklearn.linear_model import LogisticRegression

        fit = LogisticRegression(C=1e4).fit(s[:, None], hit.astype(int))
        x = np.linspace(min(0.0, s.min()), max(1.0, s.max()), PLATT_KNOTS)
        y = fit.predict_proba(x[:, None])[:, 1]
        if fit.coef_[0, 0] < 0:  # a score that does not rank: say so with a flat map
            y = np.full_like(x, hit.mean())
    return Calibration(score, x, y, method, len(s))


def crossfit_confidence(
    proba: np.ndarray,
    correct: np.ndarray,
    folds: Sequence[int] | np.ndarray,
    *,
    score: str = "margin",
    method: str = "isotonic",
) -> np.ndarray:
    """Held-out confidences: each fold's tracks through a map fitted on the other folds'
    out-of-fold predictions, so neither the model nor its calibration saw them."""
    folds = np.asarray(folds)
    out = np.empty(len(folds))
    for k in np.unique(folds):
        rest = folds != k
        cal = fit_calibration(proba[rest], np.asarray(correct)[rest], score=score, method=method)
        out[~rest] = cal(proba[~rest])
    return out


CONFIDENCE_WORDS: tuple[tuple[float, str], ...] = (
    (0.7, "sure"),
    (0.5, "fairly sure"),
    (0.35, "unsure"),
    (0.0, "guessing"),
)
"""How a confidence is said, from the lowest confidence each phrase covers (the page reads
these from ``GET /v1/model``)."""


def confidence_words(confidence: float | None) -> str:
    """How a person would say it: ``"fairly sure"`` and so on (see :data:`CONFIDENCE_WORDS`)."""
    if confidence is None:
        return "not calibrated"
    return next(words for low, words in CONFIDENCE_WORDS if confidence >= low)


__all__ = [
    "CONFIDENCE_WORDS",
    "METHODS",
    "SCORES",
    "Calibration",
    "confidence_score",
    "confidence_words",
    "crossfit_confidence",
    "fit_calibration",
]
