"""Decode audio files to mono float32 at the analysis rate (22050 Hz by default).

One entry point, :func:`load_audio`, checks every input the same way and raises
:class:`~moodscope.errors.AudioError` naming the file and the problem; :func:`stream_audio`
reads long files block by block so memory stays bounded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from moodscope.errors import AudioError, ConfigError, NotAudioError

SAMPLE_RATE = 22050
"""The analysis rate of the paper (librosa's default)."""

AUDIO_EXTENSIONS = (
    ".mp3", ".wav", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".m4a", ".mp4", ".aac",
)  # fmt: skip
"""Extensions treated as audio when a folder is scanned."""


def _check_path(path: Path) -> None:
    if not path.exists():
        raise AudioError(path, "no such file")
    if path.is_dir():
        raise AudioError(path, "is a folder, not an audio file")
    if not path.is_file():
        raise AudioError(path, "is not a regular file (a pipe or a device?)")
    if path.stat().st_size == 0:
        raise AudioError(path, "file is empty (0 bytes)")


HOLDS_TEXT = "is not an audio file (it holds text)"
"""The problem named when :func:`sniff` finds text (the decoder and the service both say it)."""


def sniff(path: Path) -> str | None:
    """What the first bytes of a file say it is: an audio container's name, ``"text"``,
    or None when they say nothing known."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as exc:
        raise AudioError(path, f"cannot be read ({exc.strerror or exc})") from exc
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "MP3"
    if head.startswith(b"fLaC"):
        return "FLAC"
    if head.startswith(b"OggS"):
        return "Ogg"
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "WAV"
    if head.startswith(b"FORM") and head[8:12] in (b"AIFF", b"AIFC"):
        return "AIFF"
    if head[4:8] == b"ftyp":
        return "MP4"
    if head.startswith(b"\x30\x26\xb2\x75"):
        return "ASF"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if all(c.isprintable() or c in "\t\r\n" for c in text):
        return "text"
    return None


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence what C decoders print on file descriptor 2 (mpg123's "Note: Illegal
    Audio-MPEG-Header ..."): moodscope reports a bad file in one line of its own."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


class _AvReader:
    """Containers libsndfile does not read (MP4/M4A, AAC, ASF/WMA), decoded by PyAV with
    the subset of soundfile's interface that moodscope uses."""

    def __init__(self, path: Path):
        import av

        self.path = path
        self._container = av.open(str(path))
        if not self._container.streams.audio:
            self._container.close()
            raise AudioError(path, "holds no audio stream")
        stream = self._container.streams.audio[0]
        self.samplerate = int(stream.codec_context.sample_rate or stream.rate)
        self.channels = int(stream.codec_context.channels or 1)
        duration = stream.duration * stream.time_base if stream.duration else None
        if duration is None and self._container.duration:
            duration = self._container.duration / 1_000_000
        self.frames = int(float(duration or 0) * self.samplerate)
        self._stream = stream
        self._skip = 0

    def __enter__(self) -> _AvReader:
        return self

    def __exit__(self, *exc) -> None:
        self._container.close()

    def seek(self, frame: int) -> None:
        self._skip = frame

    def _chunks(self) -> Iterator[np.ndarray]:
        import av

        resampler = av.AudioResampler(
            format="flt", layout=self._stream.layout, rate=self.samplerate
        )
        skip = self._skip
        try:
            for packet_frame in self._container.decode(self._stream):
                for frame in resampler.resample(packet_frame):
                    y = frame.to_ndarray().reshape(-1, self.channels)
                    if skip:
                        y, skip = y[skip:], max(0, skip - len(y))
                    if len(y):
                        yield y
        except av.error.FFmpegError as exc:
            raise AudioError(self.path, f"corrupt audio data ({exc})") from exc

    def blocks(self, blocksize: int, dtype: str = "float32", always_2d: bool = True):
        pending, have = [], 0
        for y in self._chunks():
            pending.append(y)
            have += len(y)
            while have >= blocksize:
                joined = np.concatenate(pending)
                yield joined[:blocksize]
                rest = joined[blocksize:]
                pending, have = ([rest] if len(rest) else []), len(rest)
        if have:
            yield np.concatenate(pending)

    def read(self, frames: int = -1, dtype: str = "float32", always_2d: bool = True):
        parts, have = [], 0
        for y in self._chunks():
            parts.append(y)
            have += len(y)
            if 0 <= frames <= have:
                break
        y = np.concatenate(parts) if parts else np.zeros((0, self.channels), np.float32)
        return y[:frames] if frames >= 0 else y


def _open(path: Path):
    """A soundfile.SoundFile, or a PyAV reader for what libsndfile cannot read."""
    _check_path(path)
    try:
        with quiet_stderr():
            return sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        detail = str(exc).split(":")[-1].strip() or type(exc).__name__
        libsndfile_error = exc
    kind = sniff(path)
    if kind == "text":
        raise NotAudioError(path, HOLDS_TEXT)
    if kind in (None, "MP4", "ASF"):
        try:
            import av  # noqa: F401
        except ImportError:
            if kind is None:
                raise NotAudioError(path, "is not an audio file (unrecognised content)") from None
            raise AudioError(path, f"{kind} audio needs PyAV: pip install av") from None
        try:
            with quiet_stderr():
                return _AvReader(path)
        except AudioError:
            raise
        except Exception as exc:  # noqa: BLE001 - PyAV raises its own tree of errors
            if kind is None:
                raise NotAudioError(path, "is not an audio file (unrecognised content)") from exc
            raise AudioError(path, f"corrupt {kind} audio ({exc})") from exc
    raise AudioError(path, f"corrupt {kind} audio ({detail})") from libsndfile_error


def audio_info(path: str | Path) -> tuple[float, int, int]:
    """Return ``(duration_seconds, sample_rate, channels)`` without decoding the samples."""
    path = Path(path)
    with _open(path) as f:
        return f.frames / f.samplerate, f.samplerate, f.channels


def _to_mono(y: np.ndarray) -> np.ndarray:
    """soundfile's (frames, channels) -> (frames,): the channel mean, librosa's downmix.
    Two channels are added column by column: the same numbers as ``mean(axis=1)``, which
    reduces along the short axis ~10x slower."""
    if y.ndim == 1:
        return y
    if y.shape[1] == 1:
        return y[:, 0]
    if y.shape[1] == 2:
        out = np.add(y[:, 0], y[:, 1])
        out *= np.float32(0.5) if out.dtype == np.float32 else 0.5
        return out
    return y.mean(axis=1)


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
            with quiet_stderr():
                y = f.read(frames=frames, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(path, f"corrupt audio data ({exc})") from exc
    y = _to_mono(y) if mono else y
    _check_samples(path, y.T if y.ndim == 2 else y, native_sr, 0.0)
    if native_sr != sr:
        y = soxr.resample(y, native_sr, sr, quality="HQ")
    y = np.ascontiguousarray(y.T if y.ndim == 2 else y, dtype=np.float32)
    return _check_samples(path, y, sr, min_duration)


CHUNK_FRAMES = 1 << 15
"""Frames :func:`stream_audio` decodes at a time: a chunk of stereo float32 (256 KiB), its
downmix and its resampling stay in the core's cache; a minute at once (21 MB) does not."""


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
        block = max(1, int(block_seconds * sr))  # samples per block yielded
        got_any = False
        # Decoded, downmixed and resampled a cache-sized chunk at a time, then joined.
        chunks = f.blocks(blocksize=min(CHUNK_FRAMES, block), dtype="float32", always_2d=True)
        pending, have = [], 0
        try:
            while True:
                with quiet_stderr():
                    raw = next(chunks, None)
                if raw is None:
                    break
                y = _to_mono(raw)
                if not np.all(np.isfinite(y)):
                    raise AudioError(path, "contains NaN or infinite samples")
                if resampler is not None:
                    y = resampler.resample_chunk(np.ascontiguousarray(y))
                if y.size:
                    got_any = True
                    pending.append(y.astype(np.float32, copy=False))
                    have += y.size
                if have >= block:
                    yield np.concatenate(pending)
                    pending, have = [], 0
            if resampler is not None:
                pending.append(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
            if sum(p.size for p in pending):
                yield np.concatenate(pending).astype(np.float32, copy=False)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(path, f"corrupt audio data ({exc})") from exc
        if not got_any:
            raise AudioError(path, "contains no audio samples")
