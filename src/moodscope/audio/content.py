"""Is it music at all? Measures of a decoded signal, and the judgement read from them.

A mood model answers for anything it is given; silence, a test tone, noise, speech or a click
track would get a confident mood. :class:`ContentMeter` reads the signal block by block
(memory: a few numbers per 100 ms) beside the loudness meter; :func:`not_music` turns its
measures into a one-line reason, or None for music. The thresholds are set with wide margins
against the 320 Emotify dev tracks and moodscope's demo pieces (all music) and a generated
set of non-music (:mod:`moodscope.research.nonmusic`): a false "not music" on real music
costs more than a mood on speech, so each rule asks for a signal far from music.

Speech is read window by window (:data:`SPEECH_WINDOW_S`): a window is speech-like when its
level dips deeply and often (:data:`SPEECH_DIPS`, :data:`SPEECH_DEPTH`), its loudness moves
at the rate of syllables (3-7 Hz, :data:`SPEECH_SYLLABLES`), no beat repeats in it (the
spectral flux's autocorrelation stays below :data:`SPEECH_BEAT` at every lag of 0.25-1.5 s)
and its sounds swell and fade alike (:data:`SPEECH_ATTACK`: not struck or plucked notes); a
track is speech when most of its sounding windows are (:data:`SPEECH_SHARE`). Music with a
beat (rap included), with held notes under the voice, or of sparse plucked notes fails one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from moodscope.audio.loudness import LoudnessMeter

__all__ = ["CONTENT_VERSION", "ContentMeasures", "ContentMeter", "not_music"]

CONTENT_VERSION = 2
"""Bumped whenever a measure changes, so cached measures are not reused."""

FRAME = 1024  # samples per analysis frame (64 ms at 16 kHz)
FRAME_HOP_S = 0.25  # seconds between analysis frames: a sample of the signal, not all of it
BAND_EDGES = (100, 170, 290, 490, 840, 1420, 2420, 4110, 7000)  # Hz: 8 bands, ~3/4 octave
ACTIVE_DB = 40.0  # a frame or 100-ms step counts as sounding within this of the loud level
GAP_DB = 30.0  # a 100-ms step this far below the loud level is a pause
DIP_DB = 20.0  # ... and this far below, a dip

# -- the judgement's thresholds (see the module docstring and research.nonmusic) ------------
SILENT_LUFS = -60.0
"""Integrated loudness below which a file is (near) silence."""
SILENCE_PEAK = 1e-4
"""A DC-free peak below this (-80 dBFS) is silence (a constant offset is silent)."""
MAX_PAUSES = 0.6
"""Share of 100-ms steps that are pauses above which the sound is isolated events."""
TONE_PEAK_SHARE = 0.9
"""Median share of a frame's energy around its strongest partial: a single sinusoid."""
SWEEP_DB = 15.0
"""Steadiness (dB) above which a single sinusoid at a constant level is sliding."""
CONSTANT_LEVEL_DB = 0.5
"""Frame levels this constant (interquartile range, dB) and changing spectra: a sweep."""
FLAT_LEVEL_DB = 1.0
"""Interquartile range of frame levels (dB) below which a sound has no notes or beats."""
STEADY_DB = 1.0
"""Median over bands of the band levels' spread over time (dB, per second): a steady sound."""
NOISE_FLATNESS = 0.4
"""Energy-weighted spectral flatness within bands: noise reads ~0.6, music's median 0.33."""
NOISE_LEVEL_DB = 3.0
"""Interquartile range of frame levels (dB) below which a flat, steady sound is noise."""

SPEECH_WINDOW_S = 10.0
"""Seconds per speech window (a last part of at least half a window is read too)."""
SPEECH_HOP_S = 0.016
"""Seconds per envelope frame of a speech window."""
SPEECH_EVERY = (36, 6)
"""Every window is read up to the first 36 (6 min); after that every 6th (a sample)."""
SPEECH_DIP_DB = 15.0
"""An envelope frame this far below the window's loud level (95th percentile) is a dip."""
SPEECH_DIPS = 0.15
"""Share of dips above which a window's level falls often (speech: >= 0.15, median 0.37)."""
SPEECH_DEPTH = 0.55
"""Amplitude envelope's std / mean above which the level moves deeply (speech >= 0.55)."""
SPEECH_SYLLABLES = 0.25
"""Share of the envelope's 0.5-15 Hz modulation in 3-7 Hz above which it moves at the rate
of syllables (speech >= 0.29)."""
SPEECH_BEAT = 0.25
"""Largest autocorrelation of the spectral flux at 0.25-1.5 s below which no beat repeats
(speech <= 0.20; music with a beat >= 0.4)."""
SPEECH_ATTACK = 2.5
"""Ratio of the envelope's sharpest rises to its sharpest falls (99th percentiles of the
frame-to-frame change, dB) below which sounds swell and fade alike, as syllables do (speech
0.7-1.8); struck and plucked notes start at once and die away (sparse dry plucks 3.2-5.8)."""
SPEECH_SHARE = 0.6
"""Share of a track's sounding windows that must be speech-like (speech >= 0.67; the most
of any dev track or game soundtrack 0.33)."""


@dataclass
class ContentMeasures:
    """What :class:`ContentMeter` measured on a track."""

    loudness: float  # integrated loudness, LUFS (-inf: nothing passes the gate)
    loud: float  # the 95th percentile of the 100-ms steps' loudness, LUFS
    peak: float  # largest absolute sample as decoded
    dc: float  # the mean sample (a constant offset)
    pauses: float  # share of 100-ms steps more than GAP_DB below the loud level
    dips: float  # share of 100-ms steps more than DIP_DB below the loud level
    peak_share: float  # median share of a frame's energy within 2 bins of its strongest
    flatness: float  # median of frames' energy-weighted in-band spectral flatness
    steadiness: float  # median over bands of the spread of 1-s band levels, dB
    level_spread: float  # interquartile range of the sounding frames' levels, dB
    speech: float = math.nan  # share of the sounding speech windows that are speech-like

    @property
    def silent(self) -> bool:
        """Digital silence, a constant offset, or nothing above :data:`SILENT_LUFS`."""
        return self.peak == 0 or not self.loud > SILENT_LUFS

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ContentMeasures:
        return cls(**{k: float(d[k]) for k in cls.__dataclass_fields__ if k in d})


class ContentMeter:
    """Feed mono blocks (float, at ``sr``) with :meth:`add`; :meth:`measures` at the end."""

    def __init__(self, sr: int) -> None:
        self.sr = sr
        self.loudness = LoudnessMeter(sr)
        self.peak = 0.0
        self._sum = 0.0
        self._hop = int(round(FRAME_HOP_S * sr))
        self._offset = 0  # samples seen before the current block
        self._next = 0  # where the next analysis frame starts
        self._window = np.hanning(FRAME)
        freqs = np.fft.rfftfreq(FRAME, 1 / sr)
        self._bands = [
            np.flatnonzero((freqs >= lo) & (freqs < hi))
            for lo, hi in zip(BAND_EDGES[:-1], BAND_EDGES[1:])
            if lo < sr / 2
        ]
        self._span = np.flatnonzero((freqs >= BAND_EDGES[0]) & (freqs < BAND_EDGES[-1]))
        self._frames: list[tuple[float, float, float]] = []  # level dB, peak share, flatness
        self._band_power: list[np.ndarray] = []
        self._speech = _SpeechWindows(sr)

    def add(self, y: np.ndarray) -> None:
        y = np.asarray(y, dtype=np.float64)
        if not len(y):
            return
        self.peak = max(self.peak, float(np.abs(y).max()))
        self._sum += float(y.sum())
        self.loudness.add(y)
        self._speech.add(y)
        if self._next < self._offset:  # the frame would straddle two blocks: skip it
            self._next += -(-(self._offset - self._next) // self._hop) * self._hop
        starts = np.arange(self._next, self._offset + len(y) - FRAME + 1, self._hop)
        if len(starts):
            local = starts - self._offset
            frames = y[local[:, None] + np.arange(FRAME)]
            frames = frames - frames.mean(axis=1, keepdims=True)
            self._analyse(np.abs(np.fft.rfft(frames * self._window, axis=1)) ** 2)
            self._next = int(starts[-1]) + self._hop
        self._offset += len(y)

    def _analyse(self, power: np.ndarray) -> None:
        span = power[:, self._span]
        total = span.sum(axis=1) + 1e-20
        top = span.argmax(axis=1)
        padded = np.pad(span, ((0, 0), (2, 2)))
        near = sum(padded[np.arange(len(span)), top + 2 + d] for d in (-2, -1, 0, 1, 2))
        band_power = np.stack([power[:, b].mean(axis=1) for b in self._bands], axis=1)
        flat = np.stack(
            [
                np.exp(np.log(power[:, b] + 1e-20).mean(axis=1)) / (power[:, b].mean(axis=1)
                                                                      + 1e-20)
                for b in self._bands
            ],
            axis=1,
        )  # fmt: skip
        weights = band_power / (band_power.sum(axis=1, keepdims=True) + 1e-20)
        level = 10 * np.log10(total / FRAME)
        for i in range(len(power)):
            self._frames.append(
                (float(level[i]), float(near[i] / total[i]), float((flat[i] * weights[i]).sum()))
            )
        self._band_power.extend(band_power)

    def measures(self) -> ContentMeasures:
        steps = np.maximum(self.loudness.step_levels, -200.0)  # silence: far below, finite
        audible = steps[steps > -200.0]
        loud = float(np.percentile(steps, 95)) if len(steps) else -math.inf
        with np.errstate(invalid="ignore"):
            pauses = float(np.mean(~(steps > loud - GAP_DB))) if len(audible) else 1.0
            dips = float(np.mean(~(steps > loud - DIP_DB))) if len(audible) else 1.0
        peak_share = flatness = steadiness = level_spread = math.nan
        if self._frames:
            frames = np.asarray(self._frames)
            active = frames[:, 0] > np.percentile(frames[:, 0], 95) - ACTIVE_DB
            peak_share = float(np.median(frames[active, 1]))
            flatness = float(np.median(frames[active, 2]))
            level_spread = float(np.subtract(*np.percentile(frames[active, 0], [75, 25])))
            per_second = max(1, int(round(1 / FRAME_HOP_S)))
            bands = np.asarray(self._band_power)[active]
            n = len(bands) // per_second * per_second
            if n >= 2 * per_second:
                seconds = bands[:n].reshape(-1, per_second, bands.shape[1]).mean(axis=1)
                levels = 10 * np.log10(seconds + 1e-20)
                steadiness = float(np.median(levels.std(axis=0)))
        return ContentMeasures(
            loudness=self.loudness.integrated,
            loud=loud,
            peak=self.peak,
            dc=self._sum / max(1, self.loudness.samples),
            pauses=pauses,
            dips=dips,
            peak_share=peak_share,
            flatness=flatness,
            steadiness=steadiness,
            level_spread=level_spread,
            speech=self._speech.share(),
        )


def not_music(m: ContentMeasures) -> str | None:
    """The one-line reason ``m`` is not music, or None when nothing says so."""
    if m.peak == 0:
        return "digital silence"
    if not m.loud > SILENT_LUFS:
        if abs(m.dc) >= SILENCE_PEAK:
            return "silence (a constant offset)"
        return (
            "silence" if m.peak < SILENCE_PEAK else f"near silence (below {SILENT_LUFS:.0f} LUFS)"
        )
    if m.speech >= SPEECH_SHARE:
        return "speech (syllables and pauses, no beat)"
    if m.pauses > MAX_PAUSES:
        return f"isolated sounds between pauses ({m.pauses:.0%} of the time silent)"
    if m.steadiness < STEADY_DB and m.flatness > NOISE_FLATNESS and m.level_spread < NOISE_LEVEL_DB:
        return "noise"
    if m.steadiness < STEADY_DB and m.level_spread < FLAT_LEVEL_DB:
        return "a steady tone"
    if m.peak_share > TONE_PEAK_SHARE and m.level_spread < FLAT_LEVEL_DB:
        if m.steadiness > SWEEP_DB:
            return "a sliding tone (a sweep)"
    if m.level_spread < CONSTANT_LEVEL_DB and m.steadiness > SWEEP_DB / 3:
        return "a sliding tone (a sweep)"
    return None


class _SpeechWindows:
    """Speech-likeness of consecutive :data:`SPEECH_WINDOW_S` windows of a mono stream."""

    def __init__(self, sr: int) -> None:
        self.hop = max(1, int(round(SPEECH_HOP_S * sr)))
        self.fft = 1 << (2 * self.hop - 1).bit_length()  # >= two hops
        self.window = int(round(SPEECH_WINDOW_S * sr)) // self.hop * self.hop
        self.sr = sr
        self._pending: list[np.ndarray] = []
        self._held = 0
        self._seen = 0  # windows passed (read or not)
        self.judged: list[bool] = []  # per sounding window read: speech-like
        self._taper = np.hanning(self.fft)
        freqs = np.fft.rfftfreq(self.fft, 1 / sr)
        self._span = (freqs >= 80) & (freqs <= 4000)

    def add(self, y: np.ndarray) -> None:
        self._pending.append(y)
        self._held += len(y)
        if self._held < self.window:
            return
        data = np.concatenate(self._pending)
        n = len(data) // self.window * self.window
        for start in range(0, n, self.window):
            self._window(data[start : start + self.window])
        self._pending, self._held = [data[n:]], len(data) - n

    def share(self) -> float:
        if self._held >= self.window // 2:
            self._window(np.concatenate(self._pending))
        self._pending, self._held = [], 0
        return float(np.mean(self.judged)) if self.judged else math.nan

    def _window(self, w: np.ndarray) -> None:
        first, every = SPEECH_EVERY
        self._seen += 1
        if self._seen > first and (self._seen - first) % every:
            return
        n = len(w) // self.hop
        w = w[: n * self.hop] - w.mean()
        energy = 10 * np.log10((w.reshape(n, self.hop) ** 2).mean(axis=1) + 1e-12)
        loud = np.percentile(energy, 95)
        if loud < SILENT_LUFS or n < 4:  # a silent stretch: neither speech nor music
            return
        dips = np.mean(energy < loud - SPEECH_DIP_DB)
        change = np.diff(energy)
        attack = np.percentile(change, 99) / max(-np.percentile(change, 1), 1e-9)
        amp = 10 ** (energy / 20)
        depth = amp.std() / (amp.mean() + 1e-12)
        mod = np.abs(np.fft.rfft(amp - amp.mean())) ** 2
        f = np.fft.rfftfreq(n, self.hop / self.sr)
        syllables = mod[(f >= 3) & (f <= 7)].sum() / (mod[(f >= 0.5) & (f <= 15)].sum() + 1e-20)
        frames = (n * self.hop - self.fft) // self.hop + 1
        idx = np.arange(frames)[:, None] * self.hop + np.arange(self.fft)
        spec = np.abs(np.fft.rfft(w[idx] * self._taper, axis=1))[:, self._span] ** 2
        flux = np.maximum(np.diff(10 * np.log10(spec + 1e-12), axis=0), 0).mean(axis=1)
        flux -= flux.mean()
        lags = np.arange(len(flux)) * self.hop / self.sr
        spectrum = np.fft.rfft(flux, 2 * len(flux))
        ac = np.fft.irfft(np.abs(spectrum) ** 2)[: len(flux)]
        beat = ac[(lags >= 0.25) & (lags <= 1.5)].max() / (ac[0] + 1e-20)
        self.judged.append(
            bool(
                dips > SPEECH_DIPS
                and depth > SPEECH_DEPTH
                and syllables > SPEECH_SYLLABLES
                and beat < SPEECH_BEAT
                and attack < SPEECH_ATTACK
            )
        )
