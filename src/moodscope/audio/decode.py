"""Decode audio files to mono float32 at the analysis rate (22050 Hz by default).

One entry point, :func:`load_audio`, checks every input the same way and raises
:class:`~moodscope.errors.AudioError` naming the file and the problem; :func:`stream_audio`
reads long files block by block so memory stays bounded. What a header declares is checked
before anything is decoded (:data:`MIN_SAMPLE_RATE`, :data:`MAX_SAMPLE_RATE`,
``max_duration``), and a file whose container claims more than its bytes hold
(:mod:`moodscope.audio.integrity`) is decoded only as far as it goes.
"""

from __future__ import annotations

import errno
import functools
import inspect
import io
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from moodscope.audio.integrity import Integrity, check_integrity, mpeg_frame
from moodscope.errors import AudioError, ConfigError, MoodscopeError, NotAudioError

SAMPLE_RATE = 22050
"""The analysis rate of the paper (librosa's default)."""

AUDIO_EXTENSIONS = (
    ".mp3", ".mp2", ".mp1", ".mpa", ".mpga",  # MPEG audio
    ".aac", ".adts", ".m4a", ".m4b", ".m4r", ".mp4", ".3gp", ".3g2",  # AAC, ALAC, MP4/3GP
    ".flac", ".fla", ".ogg", ".oga", ".opus", ".spx",  # FLAC; Ogg Vorbis/Opus/FLAC/Speex
    ".wav", ".wave", ".bwf", ".rf64", ".w64", ".aif", ".aiff", ".aifc", ".caf", ".au", ".snd",
    ".wma", ".asf", ".ape", ".wv", ".mpc", ".mp+", ".mpp", ".tak", ".tta", ".ofr", ".ofs",
    ".dsf", ".dff", ".ac3", ".eac3", ".ec3", ".dts", ".mka", ".webm", ".weba", ".amr",
    ".voc", ".ra", ".gsm", ".adx", ".sbc",  # the last three: raw streams, known by name only
)  # fmt: skip
"""Extensions treated as audio when a folder is scanned: every format libsndfile or ffmpeg
(PyAV) decodes that music libraries hold. A file among them that cannot be used (OptimFROG,
which no decoder here reads; a video with no sound) is reported, never skipped."""

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


STDIN = "/dev/stdin"
"""The one path read when it is not a regular file (a pipe from another program), as named."""


def reads_stdin(path: str | Path) -> bool:
    """Whether ``path`` names standard input (read as a stream, once)."""
    return str(path) == STDIN


def _check_path(path: Path) -> None:
    """Refuse, before a byte is read, what is not a regular file: a FIFO would block for
    ever and a device (``/dev/zero``, or a link to it) never ends. Standard input is read
    when the user names it."""
    try:
        info = path.stat()
    except OSError as exc:
        raise AudioError(path, stat_problem(path, exc)) from None
    if stat.S_ISDIR(info.st_mode):
        try:
            os.scandir(path).close()
        except OSError as exc:
            raise AudioError(path, f"is a folder that cannot be read ({exc.strerror})") from None
        raise AudioError(path, "is a folder, not an audio file")
    if reads_stdin(path) and not stat.S_ISREG(info.st_mode):
        if os.isatty(0):
            raise AudioError(path, "is a terminal; pipe an audio file into it")
        return
    if not stat.S_ISREG(info.st_mode):
        raise AudioError(path, f"is {_special_kind(info.st_mode)}, not a regular file; only "
                         f"regular files are read (and {STDIN} when named)")  # fmt: skip
    if info.st_size == 0:
        raise AudioError(path, "file is empty (0 bytes)")


def stat_problem(path: str | Path, exc: OSError) -> str:
    """Why ``path`` could not be looked at, in words (``exc``: what ``stat`` raised); the
    same words in every front end that reads files."""
    if isinstance(exc, FileNotFoundError):
        try:
            return f"is a broken link (to {os.readlink(path)}, which does not exist)"
        except OSError:  # not a link (or gone since)
            return "no such file"
    if exc.errno == errno.ELOOP:
        return "is a link that loops (it leads back to itself)"
    return f"cannot be read ({exc.strerror or exc})"  # a folder on the way that cannot be entered


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


HOLDS_TEXT = "is not an audio file (it holds text)"
"""The problem named when :func:`sniff` finds text (the decoder and the service both say it)."""


UNRECOGNISED = "is not an audio file (unrecognised content)"
"""The problem named for bytes no decoder recognises as audio."""


_SIGNATURES = (
    (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "ASF"),
    (b"riff\x2e\x91\xcf\x11", "W64"),
    (b"caff", "CAF"),
    (b".snd", "AU"),
    (b"MAC ", "APE"),
    (b"wvpk", "WavPack"),
    (b"MPCK", "Musepack"),
    (b"MP+", "Musepack"),
    (b"tBaK", "TAK"),
    (b"TTA1", "TTA"),
    (b"OFR ", "OptimFROG"),
    (b"DSD ", "DSF"),
    (b"FRM8", "DFF"),
    (b"\x0b\x77", "AC3"),
    (b"\x7f\xfe\x80\x01", "DTS"),
    (b"\x1a\x45\xdf\xa3", "Matroska"),
    (b"#!AMR", "AMR"),
    (b".ra\xfd", "RealAudio"),
    (b".RMF", "RealAudio"),
    (b"Creative Voice File", "VOC"),
    (b"MThd", "MIDI"),
    (b"\x00\x05\x16\x07", "AppleDouble"),
    (b"\x7fELF", "ELF"),
    (b"MZ", "EXE"),
    (b"%PDF", "PDF"),
    (b"\x89PNG", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF8", "GIF"),
    (b"PK\x03\x04", "ZIP"),
    (b"\x00\x00\x01\xba", "MPEG-PS"),
)
"""First bytes of containers (and of files that are certainly not audio) by kind."""

NOT_AUDIO = {
    "MIDI": "is a MIDI file (notes for a synthesiser, not recorded audio)",
    "AppleDouble": "is a macOS metadata file (AppleDouble), not audio",
    "ELF": "is not an audio file (it is a program)",
    "EXE": "is not an audio file (it is a program)",
    "PDF": "is not an audio file (it is a PDF document)",
    "PNG": "is not an audio file (it is an image)",
    "JPEG": "is not an audio file (it is an image)",
    "GIF": "is not an audio file (it is an image)",
    "ZIP": "is not an audio file (it is a ZIP archive)",
}
"""What a file is, by kind, for the kinds :func:`sniff` knows are not audio."""

LIBSNDFILE_KINDS = frozenset({"WAV", "W64", "FLAC", "AIFF", "Ogg", "CAF", "AU", "MP3", "VOC"})
"""Containers libsndfile reads, fastest; PyAV (ffmpeg) reads the rest and what libsndfile
cannot (a codec it lacks, a chained Ogg, a stream of unknown length)."""


def sniff(path: Path) -> str | None:
    """What the first bytes of a file say it is: an audio container's name (as an ID3 tag
    in front of it says nothing, the bytes after the tag), a kind in :data:`NOT_AUDIO`,
    ``"text"``, or None when they say nothing known."""
    try:
        with open(path, "rb") as f:
            first = f.read(4096)  # room for two MPEG frames
            if first.startswith(b"ID3") and len(first) >= 10:
                f.seek(10 + _syncsafe(first[6:10]) + (10 if first[5] & 0x10 else 0))
                after = f.read(4096)
                kind = _kind_of(after, after[:512])
                return kind if kind not in (None, "text") else "MP3"
    except OSError as exc:
        raise AudioError(path, f"cannot be read ({exc.strerror or exc})") from exc
    return _kind_of(first, first[:512])


def _syncsafe(b: bytes) -> int:
    return (b[0] << 21) | (b[1] << 14) | (b[2] << 7) | b[3]


def _kind_of(first: bytes, head: bytes) -> str | None:
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return "AAC"  # raw ADTS: the MPEG sync word with layer bits 00
    if _mpeg_frames_chain(first):
        return "MP3"
    if head.startswith(b"fLaC"):
        return "FLAC"
    if head.startswith(b"OggS"):
        return "Ogg"
    if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "WAV"
    if head.startswith(b"FORM") and head[8:12] in (b"AIFF", b"AIFC"):
        return "AIFF"
    if head[4:8] == b"ftyp":
        return "MP4"
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "MP4"  # a QuickTime file without an ftyp box
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
    """What libsndfile does not read (MP4/M4A, AAC, ASF/WMA, APE, WavPack, DSD, ...; codecs
    it lacks, chained Ogg, streams of unknown length), decoded by PyAV with the subset of
    soundfile's interface that moodscope uses.

    ``to_the_end``: the file is known to be cut short (see :mod:`moodscope.audio.integrity`);
    a decode error after some audio is where its data ends, not a failure. ``kind``: what
    :func:`sniff` found, for messages (None: no known signature, so bytes ffmpeg cannot
    decode are not audio)."""

    def __init__(
        self,
        path: Path,
        *,
        to_the_end: bool = False,
        unrecognised: bool = False,
        kind: str | None = None,
        source=None,
        shape: tuple[int, int] | None = None,
    ):
        """``source``: a file object to read instead of ``path`` (one link of a chained
        Ogg), closed with the reader; ``shape``: ``(rate, channels)`` to give out instead
        of the stream's own."""
        import av

        _quiet_ffmpeg()
        self.path = path
        self.to_the_end = to_the_end
        self.unrecognised = unrecognised  # no known signature: undecodable = not audio
        self.kind = kind
        self._file = source
        if source is None:
            source = str(path)
            try:
                source.encode("utf-8")
            except UnicodeEncodeError:  # a name in another encoding: PyAV takes UTF-8 only
                source = self._file = open(path, "rb")
            if reads_stdin(path):  # a pipe: read once, as a stream
                source = self._file = open(path, "rb", buffering=0)
        try:
            self._container = av.open(source)
        except BaseException:
            self._close_file()
            raise
        if not self._container.streams.audio:
            video = bool(self._container.streams.video)
            self.close()
            raise NotAudioError(
                path, "holds no audio stream" + (" (a video without sound)" if video else "")
            )
        mp3 = self._container.format.name.split(",")[0] == "mp3"
        if unrecognised and mp3 and not reads_stdin(path):  # a pipe is read once
            self._require_mpeg_stream()
        stream = self._container.streams.audio[0]
        self.samplerate = int(stream.codec_context.sample_rate or stream.rate or 0)
        self.channels = int(stream.codec_context.channels or 0)
        if shape is not None:
            self.samplerate, self.channels = shape
        duration = stream.duration * stream.time_base if stream.duration else None
        if duration is None and self._container.duration:
            duration = self._container.duration / 1_000_000
        self.frames = int(float(duration or 0) * self.samplerate)
        self._stream = stream
        self._skip = 0

    def _require_mpeg_stream(self) -> None:
        """ffmpeg takes any bytes named ``.mp3`` for an MP3 stream and decodes what it finds
        (raw PCM, a program): without a chain of MPEG frames in the first 64 kB, not audio."""
        with open(self.path, "rb") as f:
            window = f.read(1 << 16)
        if not _mpeg_stream_in(window):
            self.close()
            raise NotAudioError(self.path, UNRECOGNISED)

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

    def seekable(self) -> bool:
        return False

    def seek(self, frame: int) -> None:
        self._skip = frame

    def _layout(self):
        import av

        names = {1: "mono", 2: "stereo"}
        return av.AudioLayout(names.get(self.channels, f"{self.channels}c"))

    def _chunks(self) -> Iterator[np.ndarray]:
        import av

        # One resampler per input shape: a chained Ogg or a broadcast stream may change
        # rate or channels midway; the output keeps the first's.
        resampler, shape = None, None
        skip, got = self._skip, False
        try:
            for packet_frame in self._container.decode(self._stream):
                now = (packet_frame.format.name, packet_frame.layout.name, packet_frame.sample_rate)
                if now != shape:
                    if resampler is not None:
                        yield from self._packed(resampler.resample(None))
                    resampler, shape = None, now
                    resampler = av.AudioResampler(
                        format="flt", layout=self._layout(), rate=self.samplerate
                    )
                for y in self._packed(resampler.resample(packet_frame)):
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
            what = f"{self.kind} audio" if self.kind else "audio"
            raise AudioError(self.path, f"holds damaged {what} (the decoder stops: "
                             f"{_ffmpeg_words(exc)})") from exc  # fmt: skip

    def _packed(self, frames) -> Iterator[np.ndarray]:
        for frame in frames:
            yield frame.to_ndarray().reshape(-1, self.channels)

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


class _ByteRange(io.RawIOBase):
    """Bytes ``[start, end)`` of a file, as a file of their own (one link of a chain)."""

    def __init__(self, path: Path, start: int, end: int):
        self._f = open(path, "rb")  # noqa: SIM115 - closed with this object
        self._start, self._end, self._at = start, end, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = max(0, min(len(buffer), self._end - self._start - self._at))
        self._f.seek(self._start + self._at)
        got = self._f.readinto(memoryview(buffer)[:n])
        self._at += got
        return got

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._at, 2: self._end - self._start}[whence]
        self._at = max(0, base + offset)
        return self._at

    def tell(self) -> int:
        return self._at

    def close(self) -> None:
        self._f.close()
        super().close()


def ogg_links(path: Path, *, most: int = 100_000) -> list[tuple[int, int]]:
    """Where each link of a chained Ogg starts and ends (files joined end to end, a stream
    recording): a link starts with beginning-of-stream pages. Page headers only are read."""
    starts, at = [], 0
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        in_bos = False
        while at + 27 <= size and len(starts) < most:
            f.seek(at)
            header = f.read(27)
            if header[:4] != b"OggS":
                break  # junk or a cut page: what came before is what there is
            lacing = f.read(header[26])
            bos = bool(header[5] & 0x02)
            if bos and not in_bos:
                starts.append(at)
            in_bos = bos
            at += 27 + len(lacing) + sum(lacing)
    return list(zip(starts, [*starts[1:], size]))


class _ChainedOgg:
    """A chained Ogg read link after link by PyAV, at the first link's rate and channels
    (libsndfile reads the first link only; ffmpeg stops where the parameters change)."""

    def __init__(self, path: Path, links: list[tuple[int, int]]):
        self.path, self._links = path, links
        with self._link(0) as first:
            self.samplerate, self.channels = first.samplerate, first.channels
        self.frames = 0  # not known without opening every link: limited while decoding
        self._skip = 0

    def _link(self, i: int, shape: tuple[int, int] | None = None) -> _AvReader:
        return _AvReader(self.path, kind="Ogg", source=_ByteRange(self.path, *self._links[i]),
                         shape=shape)  # fmt: skip

    def __enter__(self) -> _ChainedOgg:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        pass

    def seekable(self) -> bool:
        return False

    def seek(self, frame: int) -> None:
        self._skip = frame

    def _chunks(self) -> Iterator[np.ndarray]:
        skip = self._skip
        for i in range(len(self._links)):
            with self._link(i, (self.samplerate, self.channels)) as link:
                for y in link._chunks():
                    if skip:
                        y, skip = y[skip:], max(0, skip - len(y))
                    if len(y):
                        yield y

    blocks = _AvReader.blocks
    read = _AvReader.read


def _ffmpeg_words(exc: Exception) -> str:
    """ffmpeg's error in words, without its errno and the file name it repeats."""
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split(":")[0].split()).lower() or "an unknown error"


def _mpeg_stream_in(window: bytes, run: int = 4) -> bool:
    """``run`` MPEG audio frames in a row, each where the previous one's length puts it,
    all of one layer and rate, somewhere in ``window``: what a real MPEG stream has and a
    chance sync word in other bytes does not."""
    at = window.find(b"\xff")
    while 0 <= at <= len(window) - 4:
        first = mpeg_frame(window[at : at + 4])
        frame, nxt, n = first, at, 0
        while frame is not None and n < run:
            n, nxt = n + 1, nxt + frame.length
            if nxt + 4 > len(window):
                return n >= 2  # the window ends: what chained so far
            frame = mpeg_frame(window[nxt : nxt + 4])
            if frame is not None and (frame.layer, frame.rate) != (first.layer, first.rate):
                frame = None
        if n >= run:
            return True
        at = window.find(b"\xff", at + 1)
    return False


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
    if reads_stdin(path) and not os.path.isfile(path):
        return _open_stdin(path, max_duration)
    if integrity is None:
        integrity = check_integrity(path)
    reader = _open_reader(path, integrity)
    try:
        _check_header(path, reader, max_duration)
        declared = integrity.declared_seconds  # where the decoder does not say (DSD, ASF)
        if max_duration is not None and declared is not None and declared > max_duration:
            raise _declares_too_long(path, declared, max_duration)
    except BaseException:
        reader.close()
        raise
    return reader


_STDIN_COPY: list[Path] = []


def _open_stdin(path: Path, max_duration: float | None):
    """Standard input piped in, copied once to a temporary file (a pipe is read once; a
    feature pass may decode twice), read as a file; messages name ``path``."""
    import atexit
    import shutil
    import tempfile

    if not _STDIN_COPY:
        fd, name = tempfile.mkstemp(prefix="moodscope-stdin-")
        atexit.register(os.unlink, name)
        with open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        _STDIN_COPY.append(Path(name))
    copy = _STDIN_COPY[0]
    try:
        return _open(copy, max_duration=max_duration)
    except AudioError as exc:
        problem = exc.problem.replace("file is empty", "holds nothing (an empty pipe)")
        raise type(exc)(path, problem) from exc


def _declares_too_long(path: Path, declared: float, max_duration: float) -> AudioError:
    return AudioError(
        path, f"declares {declared:.0f} s of audio; the limit is {max_duration:.0f} s "
        "(max_duration)",
    )  # fmt: skip


def _rate_problem(rate: int) -> str | None:
    if rate < MIN_SAMPLE_RATE:
        return f"declares a sample rate of {rate} Hz; at least {MIN_SAMPLE_RATE} Hz is needed"
    if rate > MAX_SAMPLE_RATE:
        return f"declares a sample rate of {rate} Hz; at most {MAX_SAMPLE_RATE} Hz is read"
    return None


def _check_header(path: Path, f, max_duration: float | None) -> None:
    """What the header declares, before a sample is decoded."""
    rate, channels = int(f.samplerate), int(f.channels)
    if rate <= 0:  # what a decoder "opens" in random bytes: no stream parameters at all
        raise NotAudioError(path, UNRECOGNISED)
    if _rate_problem(rate):
        raise AudioError(path, _rate_problem(rate))
    if channels < 1:
        raise AudioError(path, f"declares {channels} audio channels")
    declared = f.frames / rate
    if max_duration is not None and declared > max_duration:
        raise _declares_too_long(path, declared, max_duration)


UNKNOWN_LENGTH = 1 << 62
"""libsndfile's frame count for a stream whose length it does not know (SF_COUNT_MAX: a FLAC
piped out of ffmpeg, a chained Ogg): from here up, not a length."""


def _open_reader(path: Path, integrity: Integrity):
    if integrity.truncated:
        if not integrity.decodable:
            raise AudioError(path, f"is truncated: it {integrity.missing}")
        try:
            with quiet_stderr():
                return _AvReader(path, to_the_end=True, kind=integrity.container)
        except AudioError:
            raise
        except Exception as exc:  # noqa: BLE001 - PyAV raises its own tree of errors
            raise AudioError(path, f"is truncated and does not decode: it "
                             f"{integrity.missing}") from exc  # fmt: skip
    if reads_stdin(path) and not os.path.isfile(path):
        return _pyav(path, None, unrecognised=True)  # a pipe: no peeking at its first bytes
    kind = sniff(path)
    if kind == "text":
        raise NotAudioError(path, HOLDS_TEXT)
    if kind in NOT_AUDIO:
        raise NotAudioError(path, NOT_AUDIO[kind])
    if kind == "OptimFROG":
        raise AudioError(path, "is OptimFROG audio, which no decoder here reads (convert it "
                         "to FLAC or WavPack)")  # fmt: skip
    if not integrity.audio_found:
        raise NotAudioError(path, "is not an audio file (an ID3 tag with no MPEG audio after it)")
    # MP3 without a Xing/VBRI frame count: libsndfile takes the first frame's bit rate
    # times the size as the length and stops there, so a VBR file loses most of its audio.
    vbr_unknown = kind == "MP3" and integrity.declared_seconds is None
    if kind == "Ogg":
        links = ogg_links(path)
        if len(links) > 1:
            try:
                with quiet_stderr():
                    return _ChainedOgg(path, links)
            except AudioError:
                raise
            except Exception:  # noqa: BLE001 - PyAV's errors: read it the usual way below
                pass
    if (kind in LIBSNDFILE_KINDS and not vbr_unknown) or kind is None:  # None: NIST, IRCAM...
        f = _soundfile(path)
        if f is not None:
            return f
    return _pyav(path, kind, unrecognised=kind is None, integrity=integrity)


def _soundfile(path: Path):
    """libsndfile's reader for ``path``, or None where PyAV must read it: a codec libsndfile
    lacks (Speex), one it cannot seek in (GSM 6.10: its reads need a frame count), a length
    it does not know."""
    try:
        with quiet_stderr():  # bytes: any file name, whatever its encoding
            f = sf.SoundFile(os.fsencode(path))
    except Exception:  # noqa: BLE001 - libsndfile's errors and soundfile's own
        return None
    if f.seekable() and 0 <= f.frames < UNKNOWN_LENGTH:
        return f
    f.close()
    return None


def _pyav(path: Path, kind: str | None, *, unrecognised: bool, integrity: Integrity | None = None):
    try:
        import av  # noqa: F401
    except ImportError:
        if kind is None:
            raise NotAudioError(path, UNRECOGNISED) from None
        raise AudioError(path, f"{kind} audio needs PyAV: pip install av") from None
    try:
        with quiet_stderr():
            return _AvReader(path, unrecognised=unrecognised, kind=kind)
    except AudioError:
        raise
    except Exception as exc:  # noqa: BLE001 - PyAV raises its own tree of errors
        if kind is None:
            raise NotAudioError(path, UNRECOGNISED) from exc
        if integrity is not None and integrity.declared_seconds == 0:
            raise AudioError(path, "contains no audio samples (its data is empty)") from exc
        if integrity is not None and integrity.declared_rate is not None:
            problem = _rate_problem(integrity.declared_rate)  # what libsndfile would not open
            if problem:
                raise AudioError(path, problem) from exc
        raise AudioError(path, f"is {kind} audio that does not decode: damaged, or in a codec "
                         "no decoder here reads") from exc  # fmt: skip


def _damaged(path: Path) -> AudioError:
    return AudioError(path, "holds damaged audio data (the decoder stops partway)")


def _in_words(function):
    """``function`` (of a path first), with whatever a decoder raises that is not one of
    moodscope's errors turned into one naming the file in words: a decoder's own text
    (libsndfile's "possibly a pipe?" for a WAV it lacks a codec for, soundfile's
    "frames must be specified") misleads, and an exception's class name means nothing to
    a user. The original stays chained, for a debugger."""

    def reworded(path, exc: Exception) -> AudioError:
        if isinstance(exc, MemoryError):
            return AudioError(path, "does not fit in memory when decoded")
        return AudioError(path, "cannot be decoded (the decoder fails on it)")

    if inspect.isgeneratorfunction(function):

        @functools.wraps(function)
        def generator(path, *args, **kwargs):
            try:
                yield from function(path, *args, **kwargs)
            except (MoodscopeError, GeneratorExit):
                raise
            except Exception as exc:  # noqa: BLE001 - see above
                raise reworded(path, exc) from exc

        return generator

    @functools.wraps(function)
    def call(path, *args, **kwargs):
        try:
            return function(path, *args, **kwargs)
        except MoodscopeError:
            raise
        except Exception as exc:  # noqa: BLE001 - see above
            raise reworded(path, exc) from exc

    return call


@_in_words
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


def duration_text(duration: float) -> str:
    """A length in words a person can tell apart: "2.50 s", "10 ms", "0.05 ms" (a single
    sample read as "0.00 s" looked like no audio at all)."""
    if duration >= 0.1:
        return f"{duration:.2f} s"
    return f"{duration * 1000:.2g} ms" if duration > 0 else "0 s"


def _check_samples(
    path: Path, y: np.ndarray, sr: int, min_duration: float, integrity: Integrity | None = None
) -> np.ndarray:
    if y.shape[-1] == 0:
        raise _no_samples(path, integrity)
    if not np.all(np.isfinite(y)):
        raise AudioError(path, "contains NaN or infinite samples")
    duration = y.shape[-1] / sr
    if duration < min_duration:
        raise AudioError(
            path, f"is {duration_text(duration)} long; at least {min_duration:.2f} s is needed"
        )
    return y


@_in_words
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
                wanted = int(offset * native_sr)
                f.seek(min(wanted, f.frames) if f.seekable() else wanted)
            frames = -1 if duration is None else int(round(duration * native_sr))
            if max_duration is not None:  # a header that declares less than it holds
                limit = int(max_duration * native_sr) + 1
                frames = limit if frames < 0 else min(frames, limit)
            with quiet_stderr():
                y = f.read(frames=frames, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise _damaged(path) from exc
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


@_in_words
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
        decoded, quiet = 0, False
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
                silent = not y.any()  # digital silence (NaN counts as sound)
                if not silent and not np.all(np.isfinite(y)):
                    raise AudioError(path, "contains NaN or infinite samples")
                if resampler is not None and silent and quiet:
                    # The resampler holds only zeros: its output is zeros, as many as the
                    # rate ratio gives, made without running it (a day of silence at 4 kHz
                    # would otherwise cost a minute of resampling).
                    ratio = sr / native_sr
                    count = int((decoded * ratio) // 1 - ((decoded - len(y)) * ratio) // 1)
                    y = np.zeros(count, np.float32)
                elif resampler is not None:
                    y = resampler.resample_chunk(np.ascontiguousarray(y))
                quiet = silent
                if y.size:
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
            raise _damaged(path) from exc
        if not decoded:  # (a few ms decoded come out of the resampler only at its flush)
            raise _no_samples(path, integrity)
