"""Cut a track into segments: ``n`` equal parts (the paper) or fixed windows with a hop.

A :class:`Segment` is a pair of sample indices plus the rate, so it knows its own start
and end time and can slice any array that shares the track's time axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moodscope.errors import AudioError, ConfigError

MIN_SEGMENT_SECONDS = 0.5
"""The shortest segment moodscope computes features on: shorter ones carry no usable frames."""


@dataclass(frozen=True)
class Segment:
    """One segment of a track: samples ``[start_sample, end_sample)`` at ``sr`` Hz."""

    index: int
    start_sample: int
    end_sample: int
    sr: int

    @property
    def start(self) -> float:
        """Start time in seconds."""
        return self.start_sample / self.sr

    @property
    def end(self) -> float:
        """End time in seconds."""
        return self.end_sample / self.sr

    @property
    def duration(self) -> float:
        return (self.end_sample - self.start_sample) / self.sr

    def slice(self, y: np.ndarray) -> np.ndarray:
        """The segment's samples of ``y [shape=(..., n)]``."""
        return y[..., self.start_sample : self.end_sample]


def equal_segments(n_samples: int, sr: int, n: int) -> list[Segment]:
    """Split ``n_samples`` into ``n`` contiguous, near-equal segments covering all samples.

    Boundaries are ``floor(i * n_samples / n)``, so lengths differ by at most one sample
    (the paper: 10 or 20 segments of a 60-s excerpt, ~6 s or ~3 s each).
    """
    if n < 1:
        raise ConfigError(f"the number of segments must be >= 1, got {n}")
    needed = n * MIN_SEGMENT_SECONDS
    if n_samples < needed * sr:
        raise AudioError(
            None,
            f"audio is {n_samples / sr:.2f} s long; {n} segments need at least {needed:.2f} s",
        )
    bounds = [i * n_samples // n for i in range(n + 1)]
    return [Segment(i, bounds[i], bounds[i + 1], sr) for i in range(n)]


def fixed_windows(
    n_samples: int, sr: int, *, length: float = 3.0, hop: float | None = None
) -> list[Segment]:
    """Windows of ``length`` seconds every ``hop`` seconds (default: ``hop = length``).

    Only whole windows are returned; a remainder shorter than ``length`` at the end is
    dropped (it would carry fewer frames than the model was trained on). A track shorter
    than one window is an error.
    """
    hop = length if hop is None else hop
    if length < MIN_SEGMENT_SECONDS:
        raise ConfigError(f"window length must be >= {MIN_SEGMENT_SECONDS} s, got {length}")
    if hop <= 0:
        raise ConfigError(f"hop must be > 0 s, got {hop}")
    win, step = int(round(length * sr)), max(1, int(round(hop * sr)))
    if n_samples < win:
        raise AudioError(
            None, f"audio is {n_samples / sr:.2f} s long; one {length:g}-s window needs more"
        )
    starts = range(0, n_samples - win + 1, step)
    return [Segment(i, s, s + win, sr) for i, s in enumerate(starts)]


def segment_track(
    y: np.ndarray,
    sr: int,
    *,
    n: int | None = None,
    length: float | None = None,
    hop: float | None = None,
) -> list[Segment]:
    """Segments of ``y [shape=(..., n_samples)]``: ``n`` equal ones, or windows of ``length``.

    Exactly one of ``n`` and ``length`` must be given.
    """
    if (n is None) == (length is None):
        raise ConfigError("give exactly one of n (equal segments) or length (fixed windows)")
    if n is not None:
        return equal_segments(y.shape[-1], sr, n)
    return fixed_windows(y.shape[-1], sr, length=length, hop=hop)
