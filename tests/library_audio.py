"""Audio files as a music library holds them, for the tagging tests: MP3, FLAC, Ogg
Vorbis, Opus, WAV, AIFF and M4A encoded in the test (libsndfile, PyAV's AAC), with a title,
an artist and cover art set the way each container stores them, and an exact decoder to
check that tagging never touches the audio."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import soundfile as sf

COVER = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
"""Stand-in cover art: mutagen stores the bytes as they are."""

FORMATS = ("mp3", "flac", "ogg", "opus", "wav", "aiff", "m4a")


def encode(path: Path, y: np.ndarray, sr: int) -> Path:
    """Write mono float ``y`` at ``sr`` Hz in the container of ``path``'s extension."""
    ext = path.suffix.lower().lstrip(".")
    if ext == "m4a":
        import av

        with av.open(str(path), "w", format="mp4") as container:
            stream = container.add_stream("aac", rate=sr, layout="mono")
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(y, np.float32)[None, :], format="flt", layout="mono"
            )
            frame.sample_rate = sr
            for packet in stream.encode(frame):
                container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
        return path
    kwargs = {
        "mp3": {"format": "MP3", "subtype": "MPEG_LAYER_III"},
        "ogg": {"format": "OGG", "subtype": "VORBIS"},
        "opus": {"format": "OGG", "subtype": "OPUS"},
    }.get(ext, {})
    if ext == "opus" and sr not in (8000, 12000, 16000, 24000, 48000):
        import soxr

        y, sr = soxr.resample(y, sr, 48000), 48000
    sf.write(path, y, sr, **kwargs)
    return path


def decode_exact(path: Path) -> np.ndarray:
    """Every decoded sample, as the decoder gives them (for bit-for-bit comparisons)."""
    if path.suffix.lower() in (".m4a", ".mp4"):
        import av

        with av.open(str(path)) as container:
            frames = [f.to_ndarray() for f in container.decode(audio=0)]
        return np.concatenate(frames, axis=-1)
    data, _ = sf.read(path, dtype="float32", always_2d=True)
    return data


def _picture():
    from mutagen.flac import Picture

    picture = Picture()
    picture.type, picture.mime, picture.desc, picture.data = 3, "image/png", "cover", COVER
    return picture


def set_metadata(path: Path, *, title: str, artist: str, mood: str | None = None,
                 id3_version: int = 4) -> None:  # fmt: skip
    """Title, artist, front cover and (optionally) a mood of the user's own."""
    import mutagen
    from mutagen.id3 import APIC, ID3, TIT2, TMOO, TPE1, TXXX
    from mutagen.mp4 import MP4Cover, MP4FreeForm

    audio = mutagen.File(path)
    if audio.tags is None:
        audio.add_tags()
    tags = audio.tags
    if isinstance(tags, ID3):
        tags.add(TIT2(encoding=3, text=title))
        tags.add(TPE1(encoding=3, text=artist))
        tags.add(APIC(encoding=3, mime="image/png", type=3, desc="cover", data=COVER))
        if mood is not None:
            tags.add(TMOO(encoding=3, text=mood) if id3_version == 4 else
                     TXXX(encoding=3, desc="MOOD", text=mood))  # fmt: skip
        if id3_version == 3:
            tags.update_to_v23()
        audio.save(v2_version=id3_version)
        return
    if type(audio).__name__ == "MP4":
        tags["\xa9nam"], tags["\xa9ART"] = [title], [artist]
        tags["covr"] = [MP4Cover(COVER, imageformat=MP4Cover.FORMAT_PNG)]
        if mood is not None:
            tags["----:com.apple.iTunes:MOOD"] = [MP4FreeForm(mood.encode())]
        audio.save()
        return
    tags["TITLE"], tags["ARTIST"] = [title], [artist]
    if mood is not None:
        tags["MOOD"] = [mood]
    if type(audio).__name__ == "FLAC":
        audio.add_picture(_picture())
    else:
        tags["METADATA_BLOCK_PICTURE"] = [base64.b64encode(_picture().write()).decode()]
    audio.save()


def read_metadata(path: Path) -> tuple[str, str, bytes]:
    """``(title, artist, cover bytes)`` as :func:`set_metadata` stores them."""
    import mutagen
    from mutagen.flac import Picture
    from mutagen.id3 import ID3

    audio = mutagen.File(path)
    tags = audio.tags
    if isinstance(tags, ID3):
        return str(tags["TIT2"]), str(tags["TPE1"]), tags.getall("APIC")[0].data
    if type(audio).__name__ == "MP4":
        return tags["\xa9nam"][0], tags["\xa9ART"][0], bytes(tags["covr"][0])
    if type(audio).__name__ == "FLAC":
        cover = audio.pictures[0].data
    else:
        cover = Picture(base64.b64decode(tags["METADATA_BLOCK_PICTURE"][0])).data
    return tags["TITLE"][0], tags["ARTIST"][0], cover
