"""Audio shared by ``tools/convert_musicnn.py`` (which makes the TensorFlow references) and
``tests/test_musicnn.py`` (which checks the PyTorch port against them).

Everything here must stay deterministic: changing a clip invalidates
``tests/resources/musicnn_reference.npz`` (re-run the converter).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

REAL_CLIP_SECONDS = 9.0
"""Length of the excerpt taken from the start of each real clip."""

REAL_CLIPS = {
    "rock_2": "emotifymusic/rock/2.mp3",
    "classical_2": "emotifymusic/classical/2.mp3",
    "electronic_1": "emotifymusic/electronic/1.mp3",
}
"""Real clips, relative to the Emotify folder."""


def synthetic_clips() -> dict[str, tuple[np.ndarray, int]]:
    """Three deterministic test signals, ``name -> (mono float32 audio, sample rate)``.

    * ``chord``: 6 s at 22050 Hz (exercises resampling), an A-major triad with harmonics whose
      loudness and brightness change over time, so successive patches differ;
    * ``loud_bursts``: 7 s at 16 kHz of full-scale noise bursts, amplified and hard-clipped --
      mel powers far above 6.5, where musicnn's float16 log-mel overflows to inf;
    * ``quiet_sweep``: 9 s at 44100 Hz, an exponential sine sweep 60 Hz -> 6 kHz at -60 dBFS.
    """
    rng = np.random.default_rng(20190601)
    clips: dict[str, tuple[np.ndarray, int]] = {}

    sr = 22050
    t = np.arange(int(6.0 * sr)) / sr
    chord = np.zeros_like(t)
    for f0 in (220.0, 277.18, 329.63):
        for h in range(1, 6):
            # brightness grows with time: upper harmonics fade in over the 6 s
            chord += np.sin(2 * np.pi * f0 * h * t) * (t / 6.0) ** (h - 1) / h
    chord *= 0.2 * (0.3 + 0.7 * np.abs(np.sin(2 * np.pi * 0.25 * t)))
    clips["chord"] = (chord.astype(np.float32), sr)

    sr = 16000
    n = int(7.0 * sr)
    noise = rng.standard_normal(n)
    gate = (np.sin(2 * np.pi * 1.5 * np.arange(n) / sr) > 0).astype(np.float64)
    bursts = np.clip(4.0 * noise * gate, -1.0, 1.0)
    clips["loud_bursts"] = (bursts.astype(np.float32), sr)

    sr = 44100
    t = np.arange(int(9.0 * sr)) / sr
    f_start, f_end, dur = 60.0, 6000.0, 9.0
    k = np.log(f_end / f_start)
    phase = 2 * np.pi * f_start * dur / k * (np.exp(k * t / dur) - 1.0)
    clips["quiet_sweep"] = ((1e-3 * np.sin(phase)).astype(np.float32), sr)
    return clips


def emotify_dir() -> Path:
    """The Emotify folder: env ``MOODSCOPE_EMOTIFY_DIR``, default ``/work/shared/emotify-dev``."""
    return Path(os.environ.get("MOODSCOPE_EMOTIFY_DIR", "/work/shared/emotify-dev"))


def load_real_clip(path: str | Path, seconds: float = REAL_CLIP_SECONDS) -> tuple[np.ndarray, int]:
    """First ``seconds`` of an audio file as mono float32 at its own rate (soundfile decode)."""
    import soundfile as sf

    with sf.SoundFile(str(path)) as f:
        y = f.read(int(round(seconds * f.samplerate)), dtype="float32", always_2d=True)
        sr = f.samplerate
    return y.mean(axis=1).astype(np.float32), sr


def real_clips(root: Path | None = None) -> dict[str, tuple[np.ndarray, int]]:
    """The real clips that exist under ``root`` (default :func:`emotify_dir`)."""
    root = emotify_dir() if root is None else Path(root)
    out = {}
    for name, rel in REAL_CLIPS.items():
        p = root / rel
        if p.is_file():
            out[name] = load_real_clip(p)
    return out
