"""Synthesize short pieces of contrasting character so demos and tests need no downloaded audio.

Small building blocks (tones, chords, clicks, envelopes) plus four seeded demo pieces.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType

import numpy as np
import soundfile as sf

from moodscope.atomic import atomic_path
from moodscope.audio.decode import SAMPLE_RATE
from moodscope.errors import ConfigError

__all__ = [
    "DEMO_PIECES",
    "WRITE_FORMATS",
    "adsr",
    "chord",
    "clicks",
    "midi_to_hz",
    "noise",
    "silence",
    "synthesize_piece",
    "tone",
    "write_demo_pieces",
]

DEMO_PIECES = MappingProxyType(
    {
        "bright_arpeggio": "fast (150 bpm) staccato major arpeggios, bright timbre, light clicks",
        "slow_minor_line": "slow (60 bpm) quiet legato minor melody with a soft sine-like timbre",
        "distorted_riff": "loud distorted low power-chord riff (112 bpm) over a kick-like pulse",
        "calm_pads": "soft sustained major chords with slow attack and release, slow changes",
    }
)
"""Ordered mapping ``name -> description`` of the pieces :func:`synthesize_piece` makes."""

WRITE_FORMATS = MappingProxyType(
    {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS")}
)
"""File extension -> ``(soundfile format, subtype)`` that :func:`write_demo_pieces` supports."""

# Relative harmonic amplitudes: a sawtooth-like 1/k series reads as "bright", a nearly pure
# sine as "soft"; the pads sit in between.
_BRIGHT = tuple(1.0 / k for k in range(1, 11))
_SOFT = (1.0, 0.12, 0.03)
_PAD = (1.0, 0.3, 0.12, 0.05)
_BUZZ = tuple(1.0 / k for k in range(1, 7))

# Scale steps in semitones above the tonic.
_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_NATURAL_MINOR = (0, 2, 3, 5, 7, 8, 10)


# --------------------------------------------------------------------------- validation


def _check_sr(sr: int) -> int:
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ConfigError(f"sr must be a positive integer sample rate in Hz, got {sr!r}")
    return int(sr)


def _n_samples(duration: float, sr: int, *, allow_zero: bool = True) -> int:
    sr = _check_sr(sr)
    if not math.isfinite(duration) or duration < 0 or (not allow_zero and duration == 0):
        rule = "non-negative" if allow_zero else "positive"
        raise ConfigError(f"duration must be a finite {rule} number of seconds, got {duration!r}")
    return int(round(duration * sr))


def _check_amplitude(amplitude: float) -> float:
    if not math.isfinite(amplitude) or not 0.0 <= amplitude <= 1.0:
        raise ConfigError(f"amplitude must lie in [0, 1], got {amplitude!r}")
    return float(amplitude)


def _normalize(y: np.ndarray, peak: float) -> np.ndarray:
    top = float(np.max(np.abs(y))) if y.size else 0.0
    out = y * (peak / top) if top > 0 else y
    return out.astype(np.float32)


# --------------------------------------------------------------------------- building blocks


def midi_to_hz(note: float) -> float:
    """Return the frequency in Hz of a MIDI note number (69 = A4 = 440 Hz, equal temperament)."""
    return 440.0 * 2.0 ** ((note - 69) / 12.0)


def silence(duration: float, *, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Return ``duration`` seconds of digital silence.

    Returns
    -------
    y : np.ndarray [shape=(round(duration * sr),), dtype=float32]
    """
    return np.zeros(_n_samples(duration, sr), dtype=np.float32)


def tone(
    freq: float,
    duration: float,
    *,
    sr: int = SAMPLE_RATE,
    amplitude: float = 0.5,
    harmonics: Sequence[float] = (1.0,),
    phase: float = 0.0,
) -> np.ndarray:
    """Return a steady periodic tone: a fundamental plus optional harmonics.

    Parameters
    ----------
    freq : float
        Fundamental frequency in Hz, in ``(0, sr / 2)``.
    duration : float
        Seconds.
    sr : int
        Sample rate in Hz.
    amplitude : float
        Peak absolute value of the result, in [0, 1].
    harmonics : sequence of float
        Relative amplitude of partial ``k + 1`` at index ``k``; ``(1.0,)`` is a pure sine.
        Partials at or above the Nyquist frequency are dropped (they would alias).
    phase : float
        Starting phase of every partial in radians.

    Returns
    -------
    y : np.ndarray [shape=(round(duration * sr),), dtype=float32]
        Peak-normalised to ``amplitude``.
    """
    n = _n_samples(duration, sr)
    amplitude = _check_amplitude(amplitude)
    if not math.isfinite(freq) or not 0 < freq < sr / 2:
        raise ConfigError(f"freq must lie in (0, {sr / 2:g}) Hz at sr={sr}, got {freq!r}")
    if len(harmonics) == 0:
        raise ConfigError("harmonics needs at least one relative amplitude")
    t = np.arange(n, dtype=np.float64) / sr
    y = np.zeros(n, dtype=np.float64)
    for k, weight in enumerate(harmonics, start=1):
        if k * freq >= sr / 2:
            break
        y += weight * np.sin(2 * np.pi * k * freq * t + phase)
    return _normalize(y, amplitude)


def chord(
    freqs: Sequence[float],
    duration: float,
    *,
    sr: int = SAMPLE_RATE,
    amplitude: float = 0.5,
    harmonics: Sequence[float] = (1.0,),
) -> np.ndarray:
    """Return several :func:`tone` s sounding together, peak-normalised to ``amplitude``.

    Parameters
    ----------
    freqs : sequence of float
        Fundamental frequencies in Hz (at least one).
    duration, sr, amplitude, harmonics
        As for :func:`tone`.

    Returns
    -------
    y : np.ndarray [shape=(round(duration * sr),), dtype=float32]
    """
    if len(freqs) == 0:
        raise ConfigError("chord needs at least one frequency")
    # Fixed, distinct phases per voice keep the peak factor lower than all-in-phase sines.
    voices = [
        tone(f, duration, sr=sr, amplitude=1.0, harmonics=harmonics, phase=0.7 * i)
        for i, f in enumerate(freqs)
    ]
    return _normalize(np.sum(voices, axis=0), _check_amplitude(amplitude))


def noise(
    duration: float, *, sr: int = SAMPLE_RATE, amplitude: float = 0.1, seed: int = 0
) -> np.ndarray:
    """Return uniform white noise in ``[-amplitude, amplitude]``, reproducible from ``seed``.

    Returns
    -------
    y : np.ndarray [shape=(round(duration * sr),), dtype=float32]
    """
    n = _n_samples(duration, sr)
    amplitude = _check_amplitude(amplitude)
    rng = np.random.default_rng(seed)
    return (amplitude * rng.uniform(-1.0, 1.0, n)).astype(np.float32)


def adsr(
    duration: float,
    *,
    sr: int = SAMPLE_RATE,
    attack: float = 0.01,
    decay: float = 0.1,
    sustain: float = 0.7,
    release: float = 0.1,
) -> np.ndarray:
    """Return an attack-decay-sustain-release amplitude envelope.

    The note is held for ``duration`` seconds and then released, so the envelope lasts
    ``duration + release`` seconds. A note shorter than ``attack + decay`` is released
    from wherever the envelope has got to (no jump).

    Parameters
    ----------
    duration : float
        Seconds from note-on to note-off.
    attack, decay, release : float
        Segment lengths in seconds (non-negative).
    sustain : float
        Level held after the decay, in [0, 1].

    Returns
    -------
    env : np.ndarray [shape=(round((duration + release) * sr),), dtype=float32]
        Values in [0, 1].
    """
    sr = _check_sr(sr)
    for name, value in (("attack", attack), ("decay", decay), ("release", release)):
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{name} must be a non-negative number of seconds, got {value!r}")
    if not 0.0 <= sustain <= 1.0:
        raise ConfigError(f"sustain must lie in [0, 1], got {sustain!r}")
    n_hold = _n_samples(duration, sr)
    n_release = _n_samples(release, sr)
    t = np.arange(n_hold, dtype=np.float64) / sr
    held = np.full(n_hold, sustain, dtype=np.float64)
    if attack > 0:
        rising = t < attack
        held[rising] = t[rising] / attack
    else:
        rising = np.zeros(n_hold, dtype=bool)
    if decay > 0:
        falling = (~rising) & (t < attack + decay)
        held[falling] = 1.0 - (1.0 - sustain) * (t[falling] - attack) / decay
    level = held[-1] if n_hold else 0.0
    tail = level * (1.0 - np.arange(n_release, dtype=np.float64) / max(n_release, 1))
    return np.concatenate([held, tail]).astype(np.float32)


def clicks(
    bpm: float,
    duration: float,
    *,
    sr: int = SAMPLE_RATE,
    amplitude: float = 0.5,
    click_freq: float = 1000.0,
    click_duration: float = 0.03,
    offset: float = 0.0,
) -> np.ndarray:
    """Return a metronome: short exponentially decaying sine blips, one per beat.

    Parameters
    ----------
    bpm : float
        Beats per minute (positive).
    duration : float
        Seconds of output.
    amplitude : float
        Peak of each click, in [0, 1].
    click_freq : float
        Pitch of the blip in Hz.
    click_duration : float
        Seconds each blip rings (it decays by about 60 dB over this time).
    offset : float
        Seconds before the first click.

    Returns
    -------
    y : np.ndarray [shape=(round(duration * sr),), dtype=float32]
    """
    n = _n_samples(duration, sr)
    amplitude = _check_amplitude(amplitude)
    if not math.isfinite(bpm) or bpm <= 0:
        raise ConfigError(f"bpm must be a positive number, got {bpm!r}")
    blip_n = max(1, _n_samples(click_duration, sr))
    t = np.arange(blip_n) / sr
    blip = np.sin(2 * np.pi * click_freq * t) * np.exp(-6.9 * t / max(click_duration, 1e-9))
    y = np.zeros(n, dtype=np.float64)
    for start in _beat_samples(bpm, offset, n, sr):
        _mix(y, blip, start)
    return _normalize(y, amplitude) if y.any() else y.astype(np.float32)


# --------------------------------------------------------------------------- arranging


def _beat_samples(bpm: float, offset: float, n: int, sr: int) -> list[int]:
    period = 60.0 / bpm
    count = max(0, math.ceil((n / sr - offset) / period))
    return [int(round((offset + i * period) * sr)) for i in range(count)]


def _mix(out: np.ndarray, sound: np.ndarray, start: int, gain: float = 1.0) -> None:
    # Events may run past the end of the piece; the overhang is simply cut.
    if start >= out.size or start < 0:
        return
    stop = min(out.size, start + sound.size)
    out[start:stop] += gain * sound[: stop - start]


def _note(
    freq: float | Sequence[float],
    length: float,
    sr: int,
    *,
    harmonics: Sequence[float],
    attack: float,
    decay: float,
    sustain: float,
    release: float,
) -> np.ndarray:
    env = adsr(length, sr=sr, attack=attack, decay=decay, sustain=sustain, release=release)
    freqs = [freq] if isinstance(freq, (int, float)) else list(freq)
    body = chord(freqs, env.size / sr, sr=sr, amplitude=1.0, harmonics=harmonics)
    return body[: env.size] * env[: body.size]


def _hihat(sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(0.04 * sr)
    burst = rng.uniform(-1.0, 1.0, n)
    # First difference tilts the noise toward high frequencies, like a closed hi-hat.
    burst = np.diff(burst, prepend=0.0)
    return burst * np.exp(-np.arange(n) / (0.008 * sr))


def _kick(sr: int) -> np.ndarray:
    n = int(0.25 * sr)
    t = np.arange(n) / sr
    # Pitch falls from ~130 Hz to ~45 Hz: the thump of a bass drum.
    freq = 45.0 + 85.0 * np.exp(-t / 0.03)
    phase = 2 * np.pi * np.cumsum(freq) / sr
    return np.sin(phase) * np.exp(-t / 0.09)


def _bright_arpeggio(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    bpm = 150.0
    step = 60.0 / bpm / 2  # eighth notes
    # I - V - vi - IV in C major, one bar (8 eighths) each, arpeggiated up and down.
    progression = ((60, 64, 67), (55, 59, 62), (57, 60, 64), (53, 57, 60))
    y = np.zeros(n)
    for i, start in enumerate(_beat_samples(bpm * 2, 0.0, n, sr)):
        root, third, fifth = progression[(i // 8) % len(progression)]
        pattern = (root, third, fifth, root + 12, fifth + 12, root + 12, fifth, third)
        midi = pattern[i % 8] + 12
        note = _note(
            midi_to_hz(midi),
            step * 0.45,
            sr,
            harmonics=_BRIGHT,
            attack=0.004,
            decay=0.05,
            sustain=0.35,
            release=0.03,
        )
        accent = 1.0 if i % 2 == 0 else 0.65  # on-beat notes louder: the pulse is 150 bpm
        _mix(y, note, start, gain=accent * (0.85 + 0.15 * rng.random()))
    hat = np.zeros(n)
    for i, start in enumerate(_beat_samples(bpm * 2, 0.0, n, sr)):
        _mix(hat, _hihat(sr, rng), start, gain=1.0 if i % 2 == 0 else 0.4)
    y = y / max(np.max(np.abs(y)), 1e-9) + 0.25 * hat / max(np.max(np.abs(hat)), 1e-9)
    return _normalize(y, 0.7)


def _slow_minor_line(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    bpm = 60.0
    beat = 60.0 / bpm
    tonic = 57  # A3
    y = np.zeros(n)
    degree = 7  # start on the upper tonic (A4) and wander within two octaves
    t = 0.0
    while t * sr < n:
        length = beat * float(rng.choice((1, 1, 2)))
        octave, step = divmod(degree, 7)
        midi = tonic + 12 * octave + _NATURAL_MINOR[step]
        # Legato: each note rings past the next onset (release overlaps).
        note = _note(
            midi_to_hz(midi),
            length * 1.05,
            sr,
            harmonics=_SOFT,
            attack=0.12,
            decay=0.3,
            sustain=0.8,
            release=0.5,
        )
        _mix(y, note, int(round(t * sr)), gain=0.85 + 0.15 * rng.random())
        t += length
        degree = int(np.clip(degree + rng.choice((-2, -1, -1, 1, 1, 2)), 0, 11))
    drone = _note(
        midi_to_hz(tonic - 12),
        n / sr,
        sr,
        harmonics=(1.0,),
        attack=1.0,
        decay=0.0,
        sustain=1.0,
        release=0.0,
    )
    _mix(y, drone, 0, gain=0.2)
    return _normalize(y, 0.25)


def _distorted_riff(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    bpm = 112.0
    step = 60.0 / bpm / 2  # eighth-note chugs
    # Power chords (root, fifth, octave) on E2, then a G - A turnaround, one bar each.
    roots = (40, 40, 43, 45)
    y = np.zeros(n)
    for i, start in enumerate(_beat_samples(bpm * 2, 0.0, n, sr)):
        root = roots[(i // 8) % len(roots)]
        accent = 1.0 if i % 8 in (0, 3, 6) else 0.7
        note = _note(
            [midi_to_hz(root), midi_to_hz(root + 7), midi_to_hz(root + 12)],
            step * 0.85,
            sr,
            harmonics=_BUZZ,
            attack=0.003,
            decay=0.08,
            sustain=0.8,
            release=0.02,
        )
        _mix(y, note, start, gain=accent * (0.9 + 0.1 * rng.random()))
    y = np.tanh(6.0 * y / max(np.max(np.abs(y)), 1e-9))  # overdrive
    kick = np.zeros(n)
    for start in _beat_samples(bpm, 0.0, n, sr):
        _mix(kick, _kick(sr), start)
    y = y + 0.8 * kick
    # A final hard clip adds the squared-off edge of a cranked amplifier.
    y = np.clip(y / max(np.max(np.abs(y)), 1e-9) * 1.3, -1.0, 1.0)
    return _normalize(y, 0.95)


def _calm_pads(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    change = 4.0  # seconds per chord
    # I - vi - IV - I in F major, voiced low and close.
    progression = ((53, 57, 60, 65), (50, 57, 62, 65), (46, 53, 58, 62), (53, 57, 60, 64))
    y = np.zeros(n)
    t = 0.0
    i = 0
    while t * sr < n:
        notes = progression[i % len(progression)]
        # A slight random detune per chord gives the slow beating of an ensemble pad.
        detune = 1.0 + 0.002 * rng.standard_normal(len(notes))
        freqs = [midi_to_hz(m) * d for m, d in zip(notes, detune, strict=True)]
        pad = _note(
            freqs,
            change,
            sr,
            harmonics=_PAD,
            attack=1.5,
            decay=0.5,
            sustain=0.85,
            release=2.0,
        )
        _mix(y, pad, int(round(t * sr)))
        t += change
        i += 1
    # Fade in from silence so the piece opens as gently as the chords do.
    fade = min(n, int(1.0 * sr))
    y[:fade] *= np.linspace(0.0, 1.0, fade)
    return _normalize(y, 0.3)


_BUILDERS = {
    "bright_arpeggio": _bright_arpeggio,
    "slow_minor_line": _slow_minor_line,
    "distorted_riff": _distorted_riff,
    "calm_pads": _calm_pads,
}


def synthesize_piece(
    name: str, *, duration: float = 12.0, sr: int = SAMPLE_RATE, seed: int = 0
) -> np.ndarray:
    """Synthesize one of the :data:`DEMO_PIECES`.

    Parameters
    ----------
    name : str
        A key of :data:`DEMO_PIECES`.
    duration : float
        Seconds (positive). Notes still ringing at the end are cut after a short fade-out.
    sr : int
        Sample rate in Hz.
    seed : int
        Seeds the small random variations (velocities, the melody's path, detuning); the
        same arguments always give the same samples.

    Returns
    -------
    y : np.ndarray [shape=(round(duration * sr),), dtype=float32]
        Mono samples in [-1, 1].

    Raises
    ------
    ConfigError
        Unknown ``name`` (the message lists the valid ones), or a bad ``duration``/``sr``.
    """
    if name not in _BUILDERS:
        raise ConfigError(f"unknown demo piece {name!r}; valid names: {', '.join(DEMO_PIECES)}")
    n = _n_samples(duration, sr, allow_zero=False)
    y = _BUILDERS[name](n, int(sr), np.random.default_rng(seed))
    # A 20 ms fade-out avoids a click where the cut falls mid-note.
    fade = min(n, int(0.02 * sr))
    if fade:
        y[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def write_demo_pieces(
    out_dir: str | Path,
    *,
    duration: float = 12.0,
    sr: int = SAMPLE_RATE,
    fmt: str = "wav",
    seed: int = 0,
) -> list[Path]:
    """Write every demo piece to ``out_dir/<name>.<fmt>``, each atomically.

    Each file is written to a temporary name in ``out_dir`` and then renamed into place,
    so an interrupted run never leaves a truncated file under the final name.

    Parameters
    ----------
    out_dir : str or Path
        Created (with parents) if missing.
    duration, sr, seed
        As for :func:`synthesize_piece`.
    fmt : str
        One of :data:`WRITE_FORMATS` (``"wav"``, ``"flac"``, ``"ogg"``).

    Returns
    -------
    paths : list of Path
        The files written, in :data:`DEMO_PIECES` order.
    """
    key = fmt.lower().lstrip(".")
    if key not in WRITE_FORMATS:
        raise ConfigError(f"fmt must be one of {', '.join(WRITE_FORMATS)}, got {fmt!r}")
    file_format, subtype = WRITE_FORMATS[key]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in DEMO_PIECES:
        y = synthesize_piece(name, duration=duration, sr=sr, seed=seed)
        final = out_dir / f"{name}.{key}"
        with atomic_path(final) as tmp:
            sf.write(tmp, y, sr, format=file_format, subtype=subtype)
        paths.append(final)
    return paths
