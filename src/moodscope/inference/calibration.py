"""How sure a prediction is: the chance that its top emotion is the listeners' dominant one.

A score of the predicted distribution (the margin between the two largest shares, or the top
share) goes through a monotone map fitted, when the model is built, on out-of-fold
predictions of tracks the fold's model had not seen. The map is a table of knots read by
linear interpolation, so a checkpoint stores it as two plain arrays and applying it needs
numpy alone.

The margin cannot know that a track is unlike anything the model learnt from. A map may
therefore also read the track's :class:`Novelty` -- how far its embedding lies from the
nearest training tracks, relative to how far those lie from each other -- as a second input
of a logistic curve (``method="logistic"``), fitted so that farther is never more confident.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from moodscope.errors import ConfigError, ModelError

SCORES = ("margin", "top_share")
"""``margin``: largest share minus the second; ``top_share``: the largest share."""
METHODS = ("isotonic", "platt", "logistic")
"""``isotonic``: the monotone step fit (pool adjacent violators); ``platt``: a logistic
curve in the score, sampled at :data:`PLATT_KNOTS` points; ``logistic``: a logistic curve
in the score and the track's :class:`Novelty`."""
PLATT_KNOTS = 101
NEIGHBOURS = 5
"""Training tracks a track's novelty is measured against (the mean distance to them)."""


def _distances(reference: np.ndarray, rows: np.ndarray, k: int, *, self_excluded: bool):
    """Mean Euclidean distance of each row [n, d] to its ``k`` nearest reference rows."""
    ref = np.asarray(reference, dtype=np.float64)
    rows = np.asarray(rows, dtype=np.float64)
    d2 = (rows**2).sum(1)[:, None] - 2 * rows @ ref.T + (ref**2).sum(1)[None]
    d = np.sqrt(np.maximum(d2, 0.0))
    if self_excluded:  # rows are the reference itself: a track is not its own neighbour
        np.fill_diagonal(d, np.inf)
    k = min(k, d.shape[1] - int(self_excluded))
    return np.sort(d, axis=1)[:, :k].mean(axis=1)


@dataclass
class Novelty:
    """How far a track lies from the tracks a model was trained on.

    A track's input row (scaled as the model scales it) is cut to ``columns``; its mean
    distance to the ``k`` nearest ``reference`` rows, divided by ``typical`` (the median of
    the same distance for each reference row to the others), is its novelty: about 1 for a
    track like the training tracks, larger the farther it lies.

    ``columns`` [shape=(d,)] int indices into the model's input row; ``reference``
    [shape=(n_tracks, d)] the training tracks' rows there.
    """

    columns: np.ndarray
    reference: np.ndarray
    typical: float
    k: int = NEIGHBOURS

    def __post_init__(self) -> None:
        self.columns = np.asarray(self.columns, dtype=np.int64)
        self.reference = np.asarray(self.reference, dtype=np.float32)
        if self.reference.ndim != 2 or self.reference.shape[1] != len(self.columns):
            raise ModelError(f"novelty reference of shape {self.reference.shape} is malformed")
        if not self.typical > 0 or len(self.reference) < 2:
            raise ModelError("novelty reference needs >= 2 distinct tracks")

    @classmethod
    def fit(cls, rows: np.ndarray, columns: Sequence[int], k: int = NEIGHBOURS) -> Novelty:
        """The reference of the training tracks' input rows ``rows [n_tracks, n_inputs]``."""
        reference = np.asarray(rows, dtype=np.float64)[:, np.asarray(columns, dtype=np.int64)]
        typical = float(np.median(_distances(reference, reference, k, self_excluded=True)))
        return cls(np.asarray(columns), reference, typical, k)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """The novelty of each input row ``rows [n, n_inputs]`` [shape=(n,)]."""
        rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))[:, self.columns]
        return _distances(self.reference, rows, self.k, self_excluded=False) / self.typical

    def state(self) -> dict:
        """Plain values and arrays, for a checkpoint (no torch)."""
        return {
            "columns": np.asarray(self.columns, np.int64),
            "reference": np.asarray(self.reference, np.float32),
            "typical": float(self.typical),
            "k": int(self.k),
        }

    @classmethod
    def from_state(cls, state: dict) -> Novelty:
        return cls(
            _array(state["columns"]), _array(state["reference"]), float(state["typical"]),
            int(state.get("k", NEIGHBOURS)),
        )  # fmt: skip


def novelty_columns(columns: Sequence[str]) -> list[int]:
    """The input columns a novelty reads: the means of musicnn's penultimate-layer embedding
    where the model has it (no standard deviations), else every column."""
    names = list(columns)
    embedding = [i for i, c in enumerate(names) if "_emb" in c and "std" not in c]
    return embedding or list(range(len(names)))


def _array(value) -> np.ndarray:
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


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
    novelty: Novelty | None = None
    """``method="logistic"``: the reference a track's novelty is measured against (None: a
    map only applied at novelties measured already, :meth:`at`; it cannot be stored)."""
    coef: np.ndarray | None = None
    """``method="logistic"``: [intercept, score weight >= 0, novelty weight <= 0]; ``x``,
    ``y`` then hold the curve at novelty 1 (a track like the training tracks)."""

    def __post_init__(self) -> None:
        self.x = np.asarray(self.x, dtype=np.float64)
        self.y = np.asarray(self.y, dtype=np.float64)
        if self.score not in SCORES or self.x.ndim != 1 or self.x.shape != self.y.shape:
            raise ModelError(f"calibration map ({self.score}, {self.x.shape}) is malformed")
        if len(self.x) == 0 or np.any(np.diff(self.x) < 0) or np.any(np.diff(self.y) < -1e-12):
            raise ModelError("calibration map must be non-empty and non-decreasing")
        if self.method == "logistic":
            self.coef = None if self.coef is None else np.asarray(self.coef, dtype=np.float64)
            if self.coef is None or self.coef.shape != (3,):
                raise ModelError("a logistic calibration map needs 3 weights")
            if self.coef[1] < 0 or self.coef[2] > 0:
                raise ModelError("calibration map must not grow with novelty or fall with score")

    def __call__(self, proba: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """The confidence of each distribution in ``proba`` (see :func:`confidence_score`);
        a map that reads novelty also needs the tracks' input ``rows [n, n_inputs]``."""
        if self.method != "logistic":
            return self.at(proba)
        if rows is None:
            raise ModelError("this model's confidence needs the track's features as well")
        if self.novelty is None:
            raise ModelError("this calibration map carries no reference tracks")
        return self.at(proba, self.novelty(rows))

    def at(self, proba: np.ndarray, novelty: np.ndarray | None = None) -> np.ndarray:
        """The confidence of each distribution at a known ``novelty`` (one per
        distribution; a map that does not read novelty ignores it)."""
        s = confidence_score(proba, self.score)
        if self.method != "logistic":
            return np.clip(np.interp(s, self.x, self.y), 0, 1)
        if novelty is None:
            raise ModelError("this model's confidence needs the track's novelty as well")
        novelty = np.asarray(novelty, dtype=np.float64).reshape(s.shape)
        return _sigmoid(self.coef[0] + self.coef[1] * s + self.coef[2] * novelty)

    def state(self) -> dict:
        """Plain values and arrays, for a checkpoint (no torch)."""
        out = {
            "score": self.score,
            "method": self.method,
            "n_tracks": int(self.n_tracks),
            "x": np.asarray(self.x, np.float64),
            "y": np.asarray(self.y, np.float64),
        }
        if self.method == "logistic":
            if self.novelty is None:
                raise ModelError("a logistic calibration map is stored with its reference tracks")
            out.update(coef=np.asarray(self.coef, np.float64), novelty=self.novelty.state())
        return out

    @classmethod
    def from_state(cls, state: dict) -> Calibration:
        logistic = state.get("method") == "logistic"
        return cls(
            str(state["score"]),
            _array(state["x"]),
            _array(state["y"]),
            str(state.get("method", "isotonic")),
            int(state.get("n_tracks", 0)),
            Novelty.from_state(state["novelty"]) if logistic else None,
            _array(state["coef"]) if logistic else None,
        )


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


def fit_calibration(
    proba: np.ndarray,
    correct: np.ndarray,
    *,
    score: str = "margin",
    method: str = "isotonic",
    novelty: np.ndarray | None = None,
    reference: Novelty | None = None,
) -> Calibration:
    """Fit the map on out-of-fold distributions ``proba [n, n_labels]`` and whether each
    one's top emotion was right (``correct [n]``, bool).

    ``method="logistic"`` also reads each prediction's ``novelty [n]`` (measured against
    the training tracks of the model that made it) and keeps ``reference``, the shipped
    model's, to measure new tracks against (None: set it before the map is stored)."""
    if method not in METHODS:
        raise ConfigError(f"unknown calibration {method!r}; choose one of {', '.join(METHODS)}")
    s = confidence_score(proba, score)
    hit = np.asarray(correct, dtype=np.float64)
    if len(s) != len(hit) or len(s) < 2:
        raise ConfigError(f"calibration needs >= 2 predictions with outcomes, got {len(s)}")
    if method == "logistic":
        if novelty is None or len(novelty) != len(s):
            raise ConfigError("a logistic calibration needs each prediction's novelty")
        coef = _monotone_logistic(s, np.asarray(novelty, dtype=np.float64), hit)
        x = np.linspace(min(0.0, s.min()), max(1.0, s.max()), PLATT_KNOTS)
        y = _sigmoid(coef[0] + coef[1] * x + coef[2])
        return Calibration(score, x, y, method, len(s), reference, coef)
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


def _monotone_logistic(s: np.ndarray, novelty: np.ndarray, hit: np.ndarray) -> np.ndarray:
    """[intercept, score weight, novelty weight] of a logistic fit of ``hit`` on the score
    and the novelty, with the score's weight >= 0 and the novelty's <= 0: an input whose
    fitted weight has the wrong sign is left out (weight 0) and the rest refitted."""
    from sklearn.linear_model import LogisticRegression

    X = np.column_stack([s, novelty])
    use = [0, 1]
    while True:
        if not use or len(np.unique(hit)) < 2:
            return np.array([_logit(hit.mean()), 0.0, 0.0])
        fit = LogisticRegression(C=1e4).fit(X[:, use], hit.astype(int))
        w = dict(zip(use, fit.coef_[0]))
        wrong = [i for i in use if (w[i] < 0 if i == 0 else w[i] > 0)]
        if not wrong:
            return np.array([fit.intercept_[0], w.get(0, 0.0), w.get(1, 0.0)])
        use = [i for i in use if i not in wrong]


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return float(np.log(p / (1 - p)))


def crossfit_confidence(
    proba: np.ndarray,
    correct: np.ndarray,
    folds: Sequence[int] | np.ndarray,
    *,
    score: str = "margin",
    method: str = "isotonic",
    novelty: np.ndarray | None = None,
) -> np.ndarray:
    """Held-out confidences: each fold's tracks through a map fitted on the other folds'
    out-of-fold predictions, so neither the model nor its calibration saw them.
    ``method="logistic"`` reads each prediction's ``novelty [n]`` too."""
    folds = np.asarray(folds)
    out = np.empty(len(folds))
    nov = None if novelty is None else np.asarray(novelty, dtype=np.float64)
    for k in np.unique(folds):
        rest = folds != k
        cal = fit_calibration(
            proba[rest],
            np.asarray(correct)[rest],
            score=score,
            method=method,
            novelty=None if nov is None else nov[rest],
        )
        out[~rest] = cal.at(proba[~rest], None if nov is None else nov[~rest])
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
    "NEIGHBOURS",
    "SCORES",
    "Calibration",
    "Novelty",
    "confidence_score",
    "confidence_words",
    "crossfit_confidence",
    "fit_calibration",
    "novelty_columns",
]
