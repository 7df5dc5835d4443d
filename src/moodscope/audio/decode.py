"""Decode audio files to mono float32 at the analysis rate (22050 Hz by default).

One entry point, :func:`load_audio`, checks every input the same way and raises
:class:`~moodscope.errors.AudioError` naming the file and the problem; :func:`stream_audio`
reads long files block by block so memory stays bounded. What a header declares is checked
before anything is decoded (:data:`MIN_SAMPLE_RATE`, :data:`MAX_SAMPLE_RATE`,
``max_duration``), and a file whose container claims more than its bytes hold
(:mod:`moodscope.audio.integrity`) is decoded only as far as it goes.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from moodscope.audio.integrity import Integrity, check_integrity, mpeg_frame
from moodscope.errors import AudioError, ConfigError, NotAudioError

SAMPLE_RATE = 22050
"""The analysis rate of the paper (librosa's default)."""

AUDIO_EXTENSIONS = (
    ".mp3", ".wav", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".m4a", ".mp4", ".aac",
)  # fmt: skip
"""Extensions treated as audio when a folder is scanned."""

MIN_SAMPLE_RATE = 4000
"""Lowest native rate accepted (Hz). Below it a header is lying or the file is not music; a
400 kB WAV declaring 8 Hz would otherwise decode to 25,000 s of audio at the analysis rate."""
MAX_SAMPLE_RATE = 768_000
"""Highest native rate accepted (Hz): the top of what recorders and DACs use."""
MAX_DURATION = 86_400.0
"""Default ``max_duration`` (s): a day; the service passes its own, lower one."""
MAX_BLOCK_SAMPLES = 1 << 22
"""Most native samples (all channels) one block holds when streaming, so one file's memory
is bounded by the block whatever its header declares (16 MB of float32)."""


def _check_path(path: Path) -> None:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise AudioError(path, "no such file") from None
    except OSError as exc:  # a folder on the way that cannot be entered, a bad link ...
        raise AudioError(path, f"cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        try:
            os.scandir(path).close()
        except OSError as exc:
            raise AudioError(path, f"is a folder that cannot be read ({exc.strerror})") from None
        raise AudioError(path, "is a folder, not an audio file")
    if not stat.S_ISREG(info.st_mode):
        raise AudioError(path, "is not a regular file (a pipe or a device?)")
    if info.st_size == 0:
        raise AudioError(path, "file is empty (0 bytes)")


HOLDS_TEXT = "is not an audio file (it holds text)"
"""The problem named when :func:`sniff` finds text (the decoder and the service both say it)."""


UNRECOGNISED = "is not an audio file (unrecognised content)"
"""The problem named for bytes no decoder recognises as audio."""


def sniff(path: Path) -> str | None:
    """What the first bytes of a file say it is: an audio container's name, ``"text"``,
    or None when they say nothing known."""
    try:
        with open(path, "rb") as f:
            first = f.read(4096)  # room for two MPEG frames
            head = first[:512]
    except OSError as exc:
        raise AudioError(path, f"cannot be read ({exc.strerror or exc})") from exc
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return "AAC"  # raw ADTS: the MPEG sync word with layer bits 00
    if head.startswith(b"ID3") or _mpeg_frames_chain(first):
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


def _mpeg_frames_chain(data: bytes) -> bool:
    """Two MPEG audio frame headers at the start of ``data``, the second where the first's
    length puts it: a sync word alone is one chance in 2,000 in random bytes."""
    frame = mpeg_frame(data[:4])
    if frame is None:
        return False
    following = data[frame.length : frame.length + 4]
    return len(following) < 4 or mpeg_frame(following) is not None


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
    the subset of soundfile's interface that moodscope uses.

    ``to_the_end``: the file is known to be cut short (see :mod:`moodscope.audio.integrity`);
    a decode error after some audio is where its data ends, not a failure."""

    def __init__(self, path: Path, *, to_the_end: bool = False, unrecognised: bool = False):
        import av

        _quiet_ffmpeg()
        self.path = path
        self.to_the_end = to_the_end
        self.unrecognised = unrecognised  # no known signature: undecodable = not audio
        self._file = None
        source = str(path)
        try:
            source.encode("utf-8")
        except UnicodeEncodeError:  # a name in another encoding: PyAV takes UTF-8 names only
            source = self._file = open(path, "rb")
        try:
            self._container = av.open(source)
        except BaseException:
            self._close_file()
            raise
        if not self._container.streams.audio:
            self.close()
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
        self.close()

    def close(self) -> None:
        self._container.close()
        self._close_file()

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def seek(self, frame: int) -> None:
        self._skip = frame

    def _chunks(self) -> Iterator[np.ndarray]:
        import av

        resampler = av.AudioResampler(
            format="flt", layout=self._stream.layout, rate=self.samplerate
        )
        skip, got = self._skip, False
        try:
            for packet_frame in self._container.decode(self._stream):
                for frame in resampler.resample(packet_frame):
                    y = frame.to_ndarray().reshape(-1, self.channels)
                    if skip:
                        y, skip = y[skip:], max(0, skip - len(y))
                    if len(y):
                        got = True
                        yield y
        except av.error.FFmpegError as exc:
            if self.to_the_end and got:
                return  # the cut: the last, partial packet
            if self.unrecognised:  # no signature, and a decoder that chokes on it
                raise NotAudioError(self.path, UNRECOGNISED) from exc
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


def _quiet_ffmpeg() -> None:
    """ffmpeg's own log lines ("Header missing", "invalid frame size") off: moodscope reports
    a bad file in one line of its own."""
    import av.logging

    try:
        av.logging.set_level(None)
    except (TypeError, ValueError):  # older PyAV: no None
        av.logging.set_level(av.logging.PANIC)


def _open(
    path: Path, integrity: Integrity | None = None, *, max_duration: float | None = MAX_DURATION
):
    """A reader for ``path`` whose header has been checked against the limits: a
    soundfile.SoundFile, or a PyAV reader for what libsndfile cannot read and for files cut
    short (libsndfile's MP3 decoder pads those with zeros up to the length they declare)."""
    _check_path(path)
    if integrity is None:
        integrity = check_integrity(path)
    reader = _open_reader(path, integrity)
    try:
        _check_header(path, reader, max_duration)
    except BaseException:
        reader.close()
        raise
    return reader


def _check_header(path: Path, f, max_duration: float | None) -> None:
    """What the header declares, before a sample is decoded."""
    rate, channels = int(f.samplerate), int(f.channels)
    if rate <= 0:  # what a decoder "opens" in random bytes: no stream parameters at all
        raise NotAudioError(path, UNRECOGNISED)
    if rate < MIN_SAMPLE_RATE:
        raise AudioError(
            path, f"declares a sample rate of {rate} Hz; at least {MIN_SAMPLE_RATE} Hz is needed"
        )
    if rate > MAX_SAMPLE_RATE:
        raise AudioError(
            path, f"declares a sample rate of {rate} Hz; at most {MAX_SAMPLE_RATE} Hz is read"
        )
    if channels < 1:
        raise AudioError(path, f"declares {channels} audio channels")
    declared = f.frames / rate
    if max_duration is not None and declared > max_duration:
        raise AudioError(
            path, f"declares {declared:.0f} s of audio; the limit is {max_duration:.0f} s "
            "(max_duration)",
        )  # fmt: skip


def _open_reader(path: Path, integrity: Integrity):
    if integrity.truncated:
        if not integrity.decodable:
            raise AudioError(path, f"is truncated: it {integrity.missing}")
        try:
            with quiet_stderr():
                return _AvReader(path, to_the_end=True)
        except AudioError:
            raise
        except Exception as exc:  # noqa: BLE001 - PyAV raises its own tree of errors
            raise AudioError(path, f"is truncated and does not decode: it {integrity.missing}"
                             f" ({exc})") from exc  # fmt: skip
    if not integrity.audio_found:
        raise NotAudioError(path, "is not an audio file (an ID3 tag with no MPEG audio after it)")
    if integrity.container == "MP3" and integrity.declared_seconds is None:
        # No Xing/VBRI frame count: libsndfile takes the first frame's bit rate times the
        # size as the length and stops there, so a VBR file loses most of its audio.
        try:
            with quiet_stderr():
                return _AvReader(path)
        except AudioError:
            raise
        except Exception as exc:  # noqa: BLE001 - PyAV raises its own tree of errors
            raise AudioError(path, f"corrupt MP3 audio ({exc})") from exc
    try:
        with quiet_stderr():  # bytes: any file name, whatever its encoding
            return sf.SoundFile(os.fsencode(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        detail = str(exc).split(":")[-1].strip() or type(exc).__name__
        libsndfile_error = exc
    kind = sniff(path)
    if kind == "text":
        raise NotAudioError(path, HOLDS_TEXT)
    if kind in (None, "MP4", "ASF", "AAC"):
        try:
            import av  # noqa: F401
        except ImportError:
            if kind is None:
                raise NotAudioError(path, UNRECOGNISED) from None
            raise AudioError(path, f"{kind} audio needs PyAV: pip install av") from None
        try:
            with quiet_stderr():
                return _AvReader(path, unrecognised=kind is None)
        except AudioError:
            raise
        except Exception as exc:  # noqa: BLE001 - PyAV raises its own tree of errors
            if kind is None:
                raise NotAudioError(path, UNRECOGNISED) from exc
            raise AudioError(path, f"corrupt {kind} audio ({exc})") from exc
    raise AudioError(path, f"corrupt {kind} audio ({detail})") from libsndfile_error


def audio_info(path: str | Path) -> tuple[float, int, int]:
    """Return ``(duration_seconds, sample_rate, channels)`` without decoding the samples
    (the duration its header declares)."""
    path = Path(path)
    with _open(path, max_duration=None) as f:
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


def _no_samples(path: Path, integrity: Integrity | None) -> AudioError:
    if integrity is not None and integrity.truncated:
        return AudioError(path, f"is truncated: it {integrity.missing}; no audio decodes")
    return AudioError(path, "contains no audio samples")


def _check_samples(
    path: Path, y: np.ndarray, sr: int, min_duration: float, integrity: Integrity | None = None
) -> np.ndarray:
    if y.shape[-1] == 0:
        raise _no_samples(path, integrity)
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
    max_duration: float | None = MAX_DURATION,
    integrity: Integrity | None = None,
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
    max_duration : float or None
        Seconds a file may declare (its header, checked before decoding) or decode to;
        None: no limit.
    integrity : Integrity, optional
        :func:`~moodscope.audio.integrity.check_integrity` of the file, when the caller
        already has it; a file cut short is decoded as far as its bytes go.

    Returns
    -------
    y : np.ndarray [shape=(n,) or (channels, n), dtype=float32]
        Samples in [-1, 1] at ``sr`` Hz.

    Raises
    ------
    AudioError
        Missing file, not audio or corrupt, no samples, NaN/inf samples, shorter than
        ``min_duration``, a sample rate outside [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE], longer
        than ``max_duration``. The message names the file.
    """
    if sr <= 0:
        raise ConfigError(f"sr must be a positive sample rate in Hz, got {sr}")
    _check_max_duration(max_duration)
    path = Path(path)
    if integrity is None:
        _check_path(path)
        integrity = check_integrity(path)
    with _open(path, integrity, max_duration=max_duration) as f:
        native_sr = f.samplerate
        try:
            if offset:
                f.seek(min(int(offset * native_sr), f.frames))
            frames = -1 if duration is None else int(round(duration * native_sr))
            if max_duration is not None:  # a header that declares less than it holds
                limit = int(max_duration * native_sr) + 1
                frames = limit if frames < 0 else min(frames, limit)
            with quiet_stderr():
                y = f.read(frames=frames, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(path, f"corrupt audio data ({exc})") from exc
    if max_duration is not None and duration is None and len(y) > max_duration * native_sr:
        raise _too_long(path, max_duration)
    y = _to_mono(y) if mono else y
    _check_samples(path, y.T if y.ndim == 2 else y, native_sr, 0.0, integrity)
    if native_sr != sr:
        y = soxr.resample(y, native_sr, sr, quality="HQ")
    y = np.ascontiguousarray(y.T if y.ndim == 2 else y, dtype=np.float32)
    return _check_samples(path, y, sr, min_duration)


def _check_max_duration(max_duration: float | None) -> None:
    if max_duration is not None and not max_duration > 0:
        raise ConfigError(f"max_duration must be > 0 seconds (or None), got {max_duration}")


def _too_long(path: Path, max_duration: float) -> AudioError:
    return AudioError(path, f"decodes to more than {max_duration:.0f} s of audio (max_duration)")


CHUNK_FRAMES = 1 << 15
"""Frames :func:`stream_audio` decodes at a time: a chunk of stereo float32 (256 KiB), its
downmix and its resampling stay in the core's cache; a minute at once (21 MB) does not."""


def stream_audio(
    path: str | Path,
    *,
    sr: int = SAMPLE_RATE,
    block_seconds: float = 60.0,
    max_duration: float | None = MAX_DURATION,
    integrity: Integrity | None = None,
) -> Iterator[np.ndarray]:
    """Yield consecutive mono float32 blocks of about ``block_seconds`` at ``sr`` Hz.

    Memory stays bounded by one block whatever the file's length or its header's claims
    (at most :data:`MAX_BLOCK_SAMPLES` native samples are read at once); the blocks joined
    equal :func:`load_audio` up to the resampler's streaming edge effects. ``max_duration``
    and ``integrity`` as in :func:`load_audio`; the limit holds for what the header declares
    (before decoding) and for what decodes.
    """
    path = Path(path)
    if block_seconds <= 0:
        raise ConfigError(f"block_seconds must be > 0, got {block_seconds}")
    _check_max_duration(max_duration)
    if integrity is None:
        _check_path(path)
        integrity = check_integrity(path)
    with _open(path, integrity, max_duration=max_duration) as f:
        native_sr = f.samplerate
        resampler = None if native_sr == sr else soxr.ResampleStream(native_sr, sr, 1, "float32")
        block = max(1, int(block_seconds * sr))  # samples per block yielded
        limit = None if max_duration is None else max_duration * native_sr
        got_any, decoded = False, 0
        # Decoded, downmixed and resampled a cache-sized chunk at a time, then joined; a
        # chunk never holds more than MAX_BLOCK_SAMPLES native samples, whatever the channels.
        chunk = max(1, min(CHUNK_FRAMES, block, MAX_BLOCK_SAMPLES // f.channels))
        chunks = f.blocks(blocksize=chunk, dtype="float32", always_2d=True)
        pending, have = [], 0
        try:
            while True:
                with quiet_stderr():
                    raw = next(chunks, None)
                if raw is None:
                    break
                decoded += len(raw)
                if limit is not None and decoded > limit:
                    raise _too_long(path, max_duration)
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
            raise _no_samples(path, integrity)
