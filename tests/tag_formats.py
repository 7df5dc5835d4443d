"""Files in the formats beyond libsndfile's, for the tagging tests: made with ffmpeg (WMA,
WavPack, TTA, MP2, MP1, Speex, M4B, ALAC, AIFC, AC-3, E-AC-3, raw AAC, Matroska, WebM,
CAF, AU, W64), mpcenc (Musepack), or built here byte by byte (DSF and DSDIFF, which nothing here
encodes); each with a title, an artist, cover art and optionally a mood of the user's own,
stored the way its tag system stores them; and an exact decoder (PyAV) to check that
tagging leaves the audio as it was."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import _required
from library_audio import COVER, set_metadata

FFMPEG_ARGS = {  # extension -> ffmpeg's output options
    "wma": ["-c:a", "wmav2"],
    "wv": ["-c:a", "wavpack"],
    "tta": ["-c:a", "tta"],
    "mp2": ["-c:a", "mp2"],
    "mp1": ["-c:a", "mp2", "-f", "mp2"],  # layer I is not encoded here: a layer II stream
    "spx": ["-c:a", "libspeex", "-ar", "16000"],
    "m4b": ["-c:a", "aac", "-f", "ipod"],
    "alac.m4a": ["-c:a", "alac"],
    "aifc": ["-c:a", "pcm_f32be", "-f", "aiff"],  # a compressed-type AIFF: AIFC
    "ac3": ["-c:a", "ac3"],
    "eac3": ["-c:a", "eac3"],
    "aac": ["-c:a", "aac", "-f", "adts"],
    "mka": ["-c:a", "flac"],
    "webm": ["-c:a", "libopus"],
    "caf": ["-c:a", "pcm_s16le"],
    "au": ["-c:a", "pcm_s16be"],
    "w64": ["-c:a", "pcm_s16le"],
}
TAGGED = ("wma", "wv", "mpc", "tta", "mp2", "mp1", "spx", "m4b", "alac.m4a", "aifc", "dsf")
"""The extensions moodscope tags beyond tests/library_audio.py's formats."""
UNTAGGED = {  # extension -> what the one-line refusal says
    "ac3": "AC-3",
    "eac3": "AC-3",
    "aac": "raw AAC",
    "dff": "DSDIFF",
    "mka": "writes no tags into",
    "webm": "writes no tags into",
    "caf": "writes no tags into",
    "au": "writes no tags into",
    "w64": "writes no tags into",
}
UNTAGGED_WHY = {"ac3": "AC-3 and E-AC-3 streams carry no tags that players read"}
"""The whole reason, for a test that checks the line word for word."""
SR = 44100


def need(program: str, package: str) -> None:
    if shutil.which(program) is None:
        _required(f"needs {program}: apt-get install {package} (make tag-readers)")


def make(folder: Path, ext: str, *, name: str = "song", seconds: float = 1.0) -> Path:
    """``seconds`` of synthesized music in the format of ``ext``, untagged."""
    from moodscope.demo import synth

    path = folder / f"{name}.{ext}"
    y = synth.synthesize_piece("bright_arpeggio", duration=seconds, sr=SR, seed=0)
    if ext in ("dsf", "dff"):
        bits = (y > np.random.default_rng(0).uniform(-0.5, 0.5, y.size)).astype(np.uint8)
        packed = np.packbits(bits, bitorder="little").tobytes()
        return (_dsf if ext == "dsf" else _dff)(path, packed)
    wav = folder / f".{name}-{ext}.wav"
    import soundfile as sf

    sf.write(wav, y.astype(np.float32), SR, subtype="PCM_16")
    if ext == "mpc":
        need("mpcenc", "musepack-tools")
        subprocess.run(["mpcenc", "--silent", str(wav), str(path)], check=True, timeout=60,
                       capture_output=True)  # fmt: skip
    else:
        need("ffmpeg", "ffmpeg")
        args = FFMPEG_ARGS[ext]
        if ext == "spx":
            args = [*args, "-ac", "1"]
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wav), *args, str(path)],
                       check=True, timeout=60, capture_output=True)  # fmt: skip
    wav.unlink()
    return path


def _dsf(path: Path, data: bytes) -> Path:
    """A mono DSF file (Sony's DSD Stream File) holding ``data``, one 4096-byte block per
    channel and block, no tag."""
    block = 4096
    padded = data + bytes(-len(data) % block)
    fmt = struct.pack("<4sQIIIIIIQII", b"fmt ", 52, 1, 0, 1, 1, 2822400, 1, len(data) * 8,
                      block, 0)  # fmt: skip
    body = fmt + struct.pack("<4sQ", b"data", 12 + len(padded)) + padded
    path.write_bytes(struct.pack("<4sQQQ", b"DSD ", 28, 28 + len(body), 0) + body)
    return path


def _dff(path: Path, data: bytes) -> Path:
    """A mono DSDIFF file holding ``data``: FVER, PROP (FS, CHNL, CMPR) and DSD chunks."""

    def chunk(cid: bytes, body: bytes) -> bytes:
        return cid + struct.pack(">Q", len(body)) + body + bytes(len(body) % 2)

    prop = b"SND " + chunk(b"FS  ", struct.pack(">I", 2822400))
    prop += chunk(b"CHNL", struct.pack(">H", 1) + b"C   ")
    prop += chunk(b"CMPR", b"DSD " + bytes([14]) + b"not compressed" + b"\0")
    body = b"DSD " + chunk(b"FVER", struct.pack(">I", 0x01050000)) + chunk(b"PROP", prop)
    body += chunk(b"DSD ", data)
    path.write_bytes(chunk(b"FRM8", body))
    return path


def set_user_metadata(path: Path, *, mood: str | None = None) -> None:
    """Title, artist, front cover and (optionally) a mood of the user's own, in the file's
    own tag system (ASF, APEv2, or what tests/library_audio.py writes: ID3, Vorbis, MP4)."""
    import mutagen
    from mutagen.apev2 import BINARY, APEv2, APEValue
    from mutagen.asf import ASF, ASFByteArrayAttribute

    audio = mutagen.File(path)
    if audio is None:  # MPEG layer I/II named .mp1: mutagen knows it by its content
        from mutagen.mp3 import MP3

        audio = MP3(path)
    if isinstance(audio, ASF):
        tags = audio.tags
        tags["Title"], tags["Author"] = ["Title é"], ["Artist"]
        picture = struct.pack("<bi", 3, len(COVER)) + "image/png\0cover\0".encode("utf-16-le")
        tags["WM/Picture"] = [ASFByteArrayAttribute(picture + COVER)]
        if mood is not None:
            tags["WM/Mood"] = [mood]
        audio.save()
        return
    if audio.tags is None and not hasattr(audio, "add_tags"):
        pytest.fail(f"{path}: mutagen cannot tag it")
    if audio.tags is None:
        audio.add_tags()
    if isinstance(audio.tags, APEv2):
        audio.tags["Title"], audio.tags["Artist"] = ["Title é"], ["Artist"]
        audio.tags["Cover Art (Front)"] = APEValue(b"cover.png\0" + COVER, BINARY)
        if mood is not None:
            audio.tags["MOOD"] = [mood]  # as foobar2000 and Mp3tag write it
        audio.save()
        return
    audio.save()
    set_metadata(path, title="Title é", artist="Artist", mood=mood)


def all_fields(path: Path) -> dict:
    """Every item of the file's tags as mutagen reads it, untranslated: for ID3 each frame by
    hash key as (frame type, encoding, text or the whole frame), else each key's values (binary
    as bytes; Vorbis keys in lower case, as mutagen gives them)."""
    import mutagen
    from mutagen._vorbis import VComment
    from mutagen.id3 import ID3

    audio = mutagen.File(path)
    if audio is None:
        from mutagen.mp3 import MP3

        audio = MP3(path)
    if isinstance(audio.tags, ID3):
        tags = type(audio)(path, translate=False).tags
        return {key: (type(f).__name__, getattr(f, "encoding", None),
                      [str(t) for t in f.text] if hasattr(f, "text") else repr(f))
                for key, f in tags.items()}  # fmt: skip
    if audio.tags is None:
        return {}
    out = {}
    for key in sorted(set(audio.tags.keys())):
        values = audio.tags[key]
        values = values if isinstance(values, list) else [values]
        out[key.lower() if isinstance(audio.tags, VComment) else key] = [
            getattr(v, "value", v) if not isinstance(v, bytes) else bytes(v) for v in values
        ]
    return {k: [bytes(v) if isinstance(v, (bytes, bytearray)) else str(v) for v in vs]
            for k, vs in out.items()}  # fmt: skip


def decode_exact(path: Path) -> np.ndarray:
    """Every decoded sample, as PyAV (ffmpeg) gives them, for bit-for-bit comparisons."""
    import av

    with av.open(str(path)) as container:
        frames = [f.to_ndarray() for f in container.decode(audio=0)]
    frames = [f.reshape(-1, f.shape[-1]) if f.ndim > 1 else f[None, :] for f in frames]
    return np.concatenate([f.reshape(-1) for f in frames])


def id3v22(frames: list[tuple[bytes, bytes]]) -> bytes:
    """An ID3v2.2 tag (which mutagen reads but cannot write) holding ``(id, data)`` frames."""
    body = b"".join(fid + struct.pack(">I", len(data))[1:] + data for fid, data in frames)
    size = len(body)
    syncsafe = bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    return b"ID3\x02\x00\x00" + syncsafe + body
