"""Integrated loudness (ITU-R BS.1770-4 / EBU R128), measured block by block.

A file's level (its mastering, a gain, ReplayGain, an upmix) must not decide its mood, so the
musicnn features are computed on audio brought to one loudness first. The meter reads the
signal the features read (mono, at the feature set's rate), so a stereo file and its mono
downmix, or a 48 kHz and a 22.05 kHz copy, measure alike where the network cannot tell them
apart. K-weighting is the standard's two biquads (a 4 dB high shelf above ~1.5 kHz and a
38 Hz high-pass, designed for any rate as pyloudnorm does); the high-pass removes DC.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import lfilter, lfilter_zi

__all__ = ["ABSOLUTE_GATE", "LoudnessMeter", "gain_to", "integrated_loudness", "k_weighting"]

ABSOLUTE_GATE = -70.0
"""LUFS: 400-ms blocks quieter than this are left out of the measure (BS.1770-4)."""

RELATIVE_GATE = -10.0
"""LU below the absolutely gated loudness: the blocks left out in the second pass."""

STEP = 0.1
"""Seconds between gating blocks (400-ms blocks overlapping by 75 %)."""

MAX_GAIN_DB = 40.0
"""The most a track is turned up: a near-silent file is not raised to music's level."""


def _biquad(kind: str, fc: float, gain_db: float, q: float, sr: int) -> tuple[np.ndarray, ...]:
    """RBJ cookbook coefficients ``(b, a)`` (a[0] = 1) of a high shelf or high-pass."""
    a_lin = 10 ** (gain_db / 40)
    w0 = 2 * math.pi * fc / sr
    alpha = math.sin(w0) / (2 * q)
    cos = math.cos(w0)
    if kind == "high_shelf":
        root = 2 * math.sqrt(a_lin) * alpha
        b = [
            a_lin * ((a_lin + 1) + (a_lin - 1) * cos + root),
            -2 * a_lin * ((a_lin - 1) + (a_lin + 1) * cos),
            a_lin * ((a_lin + 1) + (a_lin - 1) * cos - root),
        ]
        a = [
            (a_lin + 1) - (a_lin - 1) * cos + root,
            2 * ((a_lin - 1) - (a_lin + 1) * cos),
            (a_lin + 1) - (a_lin - 1) * cos - root,
        ]
    else:  # high_pass
        b = [(1 + cos) / 2, -(1 + cos), (1 + cos) / 2]
        a = [1 + alpha, -2 * cos, 1 - alpha]
    b, a = np.asarray(b), np.asarray(a)
    return b / a[0], a / a[0]


def k_weighting(sr: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The two K-weighting stages at ``sr``: ``((b, a) shelf, (b, a) high-pass)``."""
    return (
        _biquad("high_shelf", 1500.0, 4.0, 1 / math.sqrt(2), sr),
        _biquad("high_pass", 38.0, 0.0, 0.5, sr),
    )


class LoudnessMeter:
    """Feed mono blocks with :meth:`add`; :attr:`integrated` is the gated loudness (LUFS) of
    all of them. Memory: one float per 100 ms of audio (36,000 for an hour)."""

    def __init__(self, sr: int) -> None:
        self.sr = sr
        self._stages = k_weighting(sr)
        self._state: list[np.ndarray] | None = None
        self._step = int(round(STEP * sr))
        self._carry = np.zeros(0)  # K-weighted samples not yet filling a 100-ms step
        self._steps: list[float] = []  # mean square of each 100-ms step
        self.peak = 0.0  # the K-weighted signal's largest magnitude: 0 for silence or DC

    def add(self, y: np.ndarray) -> None:
        """Measure the next block of samples (float, mono)."""
        y = np.asarray(y, dtype=np.float64)
        if not len(y):
            return
        if self._state is None:
            # Start both filters as if the first sample had always been there (the shelf
            # passes DC unchanged), so a constant offset reads as the silence it is, not as
            # a step.
            self._state = [lfilter_zi(b, a) * y[0] for b, a in self._stages]
        for i, (b, a) in enumerate(self._stages):
            y, self._state[i] = lfilter(b, a, y, zi=self._state[i])
        if len(y):
            self.peak = max(self.peak, float(np.abs(y).max()))
        y = np.concatenate([self._carry, y])
        n = len(y) // self._step * self._step
        if n:
            self._steps.extend((y[:n] ** 2).reshape(-1, self._step).mean(axis=1).tolist())
        self._carry = y[n:]

    @property
    def samples(self) -> int:
        """Samples measured so far."""
        return len(self._steps) * self._step + len(self._carry)

    @property
    def step_levels(self) -> np.ndarray:
        """Loudness of each 100-ms step (LUFS; -inf where it is silent)."""
        power = np.asarray(self._steps)
        with np.errstate(divide="ignore"):
            return -0.691 + 10 * np.log10(power)

    @property
    def integrated(self) -> float:
        """The gated integrated loudness in LUFS; -inf when no block passes the absolute
        gate (silence, a DC offset, a clip shorter than 400 ms)."""
        power = np.asarray(self._steps)
        if len(power) < 4:
            return -math.inf
        blocks = np.convolve(power, np.ones(4) / 4, mode="valid")  # 400 ms, 75 % overlap
        with np.errstate(divide="ignore"):
            levels = -0.691 + 10 * np.log10(blocks)
        kept = blocks[levels > ABSOLUTE_GATE]
        if not len(kept):
            return -math.inf
        relative = -0.691 + 10 * np.log10(kept.mean()) + RELATIVE_GATE
        kept = blocks[levels > max(relative, ABSOLUTE_GATE)]
        return float(-0.691 + 10 * np.log10(kept.mean()))


def integrated_loudness(y: np.ndarray, sr: int) -> float:
    """The integrated loudness (LUFS) of mono ``y`` at ``sr``: one :class:`LoudnessMeter`."""
    meter = LoudnessMeter(sr)
    meter.add(y)
    return meter.integrated


def gain_to(target: float, loudness: float) -> float:
    """The linear amplitude gain that brings ``loudness`` (LUFS) to ``target``; 1 for a
    signal with no loudness (silence), at most :data:`MAX_GAIN_DB` up."""
    if not math.isfinite(loudness):
        return 1.0
    return 10 ** (min(target - loudness, MAX_GAIN_DB) / 20)
