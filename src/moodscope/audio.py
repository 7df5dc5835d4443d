"""Decode audio files to mono float32 at the analysis rate (22050 Hz by default).

One entry point, :func:`load_audio`, checks every input the same way and raises
:class:`~moodscope.errors.AudioError` naming the file and the problem; :func:`stream_audio`
reads long files block by block so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioError, ConfigError

SAMPLE_RATE = 22050
"""The analysis rate of the paper (librosa's default)."""

AUDIO_EXTENSIONS = (".mp3", ".wav", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff")
"""Extensions treated as audio when a folder is scanned."""


def _check_path(path: Path) -> None:
    if not path.exists():
        raise AudioError(path, "no such file")
    if path.is_dir():
        raise AudioError(path, "is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(path, "file is empty (0 bytes)")


def _open(path: Path) -> sf.SoundFile:
    _check_path(path)
    try:
        return sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        detail = str(exc).split(":")[-1].strip() or type(exc).__name__
        raise AudioError(path, f"not a readable audio file ({detail})") from exc


def audio_info(path: str | Path) -> tuple[float, int, int]:
    """Return ``(duration_seconds, sample_rate, channels)`` without decoding the samples."""
    path = Path(path)
    with _open(path) as f:
        return f.frames / f.samplerate, f.samplerate, f.channels


def _to_mono(y: np.ndarray) -> np.ndarray:
    # soundfile gives (frames, channels); averaging channels is librosa's downmix.
    return y.mean(axis=1) if y.ndim == 2 else y


def _check_samples(path: Path, y: np.ndarray, sr: int, min_duration: float) -> np.ndarray:
    if y.shape[-1] == 0:
        raise AudioError(path, "contains no audio samples")
    if not np.all(np.isfinite(y)):
        raise AudioError(path, "contains NaN or infinite samples")
    duration = y.shape[-1] / sr
    if duration < min_duration:
        raise AudioError(path, f"is {duration:.2f} s long; at least {min_duration:.2f} s is needed")
    return y


def load_audio(
    path: str | Path,
    *,
    sr: int = SAMPLE_RATE,
    mono: bool = True,
    min_duration: float = 0.0,
    offset: float = 0.0,
    duration: float | None = None,
) -> np.ndarray:
    """Decode an audio file, resample it with soxr and (by default) downmix it to mono.

    Parameters
    ----------
    path : str or Path
        MP3, WAV, FLAC or OGG (anything libsndfile reads), any rate, any channel count.
    sr : int
        Target sample rate in Hz.
    mono : bool
        Average the channels. If False the result has shape ``(channels, n)``.
    min_duration : float
        Seconds the decoded audio must at least last (e.g. what the segmenting needs).
    offset, duration : float
        Read only ``duration`` seconds starting at ``offset`` seconds.

    Returns
    -------
    y : np.ndarray [shape=(n,) or (channels, n), dtype=float32]
        Samples in [-1, 1] at ``sr`` Hz.

    Raises
    ------
    AudioError
        Missing file, not audio or corrupt, no samples, NaN/inf samples, or shorter than
        ``min_duration``. The message names the file.
    """
    if sr <= 0:
        raise ConfigError(f"sr must be a positive sample rate in Hz, got {sr}")
    path = Path(path)
    with _open(path) as f:
        native_sr = f.samplerate
        try:
            if offset:
                f.seek(min(int(offset * native_sr), f.frames))
            frames = -1 if duration is None else int(round(duration * native_sr))
            y = f.read(frames=frames, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(path, f"corrupt audio data ({exc})") from exc
    y = _to_mono(y) if mono else y
    _check_samples(path, y.T if y.ndim == 2 else y, native_sr, 0.0)
    if native_sr != sr:
        y = soxr.resample(y, native_sr, sr, quality="HQ")
    y = np.ascontiguousarray(y.T if y.ndim == 2 else y, dtype=np.float32)
    return _check_samples(path, y, sr, min_duration)


def stream_audio(
    path: str | Path, *, sr: int = SAMPLE_RATE, block_seconds: float = 60.0
) -> Iterator[np.ndarray]:
    """Yield consecutive mono float32 blocks of about ``block_seconds`` at ``sr`` Hz.

    Memory stays bounded by one block whatever the file's length; the blocks joined
    equal :func:`load_audio` up to the resampler's streaming edge effects.
    """
    path = Path(path)
    if block_seconds <= 0:
        raise ConfigError(f"block_seconds must be > 0, got {block_seconds}")
    with _open(path) as f:
        native_sr = f.samplerate
        resampler = None if native_sr == sr else soxr.ResampleStream(native_sr, sr, 1, "float32")
        block = max(1, int(block_seconds * native_sr))
        got_any = False
        try:
            for raw in f.blocks(blocksize=block, dtype="float32", always_2d=True):
                y = _to_mono(raw)
                if not np.all(np.isfinite(y)):
                    raise AudioError(path, "contains NaN or infinite samples")
                if resampler is not None:
                    y = resampler.resample_chunk(np.ascontiguousarray(y))
                if y.size:
                    got_any = True
                    yield y.astype(np.float32, copy=False)
            if resampler is not None:
                tail = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
                if tail.size:
                    yield tail.astype(np.float32, copy=False)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(path, f"corrupt audio data ({exc})") from exc
        if not got_any:
            raise AudioError(path, "contains no audio samples")
