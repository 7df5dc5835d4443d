"""What moodscope writes is seen where people look: every format moodscope tags, written by
``moodscope.library.tags`` (what ``moodscope tag`` writes) and by the beets plugin's media fields
(what ``beet write`` writes), read back by the real programs -- mutagen, ffprobe, exiftool,
kid3-cli, Quod Libet's operon and MusicBrainz Picard's own tag-reading code. The Debian
packages come from ``make tag-readers``, which .ci/run calls; under CI=true a missing one
fails the test instead of skipping it.

Each file gets a different top emotion, so a reader that reports the mood of another file,
or a stale one, fails. Where a reader cannot read a format at all, GAPS says why, and the
test checks that it still cannot."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import tag_formats
from conftest import _required
from library_audio import encode
from moodscope import EMOTIONS
from moodscope.demo import synth
from moodscope.inference.predictor import Prediction
from moodscope.library.tags import write_tags

SR = 22050
FORMATS = {  # name -> (extension, ID3 version or None)
    "mp3-id3v2.4": ("mp3", 4),
    "mp3-id3v2.3": ("mp3", 3),
    "mp3-id3v2.2": ("mp3", 2),  # written back as ID3v2.3
    "mp2": ("mp2", 4),
    "flac": ("flac", None),
    "ogg-vorbis": ("ogg", None),
    "opus": ("opus", None),
    "speex": ("spx", None),
    "m4a": ("m4a", None),
    "m4b": ("m4b", None),
    "alac": ("alac.m4a", None),
    "wav": ("wav", 4),  # an ID3 chunk
    "aiff": ("aiff", 4),
    "aifc": ("aifc", 4),
    "dsf": ("dsf", 4),  # the ID3 tag DSF points to
    "tta": ("tta", 4),  # ID3v2, as Picard and mutagen tag TTA
    "wma": ("wma", None),  # ASF: WM/Mood
    "wavpack": ("wv", None),  # APEv2: Mood
    "musepack": ("mpc", None),  # APEv2: Mood
}
GAPS = {  # (reader, format) -> why that reader sees no tag at all in such a file
    ("operon", "wav"): "Quod Libet 4.5 reads no ID3 chunk in a WAV file",
    ("exiftool", "wavpack"): "ExifTool 12.57 does not open WavPack files (File format error)",
    ("exiftool", "musepack"): "ExifTool 12.57 does not open Musepack SV8 files, which mpcenc "
    "writes (File format error)",
    ("exiftool", "dsf"): "ExifTool 12.57 does not know DSF files (Unknown file type)",
    ("exiftool", "speex"): "ExifTool 12.57 reads no comment header in an Ogg Speex file",
    ("kid3-cli", "aifc"): "kid3-cli (TagLib) does not open AIFC files",
    ("ffprobe", "tta"): "ffmpeg's TTA demuxer reads no ID3v2 tag",
}
"""What a reader does not read at all, checked to be still so (a newer reader that reads
it fails the test, so that the gap is struck from here and from the README's table)."""
BEETS_CANNOT = {
    "speex": "beets (mediafile) does not open Ogg Speex files",
    "tta": "beets (mediafile) does not open TTA files",
}
"""Formats beets does not import, so ``beet write`` writes nothing into them."""
PROGRAMS = {  # reader -> the Debian package that brings it
    "ffprobe": "ffmpeg",
    "exiftool": "libimage-exiftool-perl",
    "kid3-cli": "kid3-cli",
    "operon": "exfalso",
}
PICARD = Path("/usr/lib/picard/picard/formats/__init__.py")
SYSTEM_PYTHON = "/usr/bin/python3"


def _prediction(top: str) -> Prediction:
    rest = (1.0 - 0.3) / (len(EMOTIONS) - 1)
    emotions = {e: 0.3 if e == top else rest for e in EMOTIONS}
    return Prediction("x", emotions=emotions, top_emotion=top, model="default@0123456789ab")


def _blank_file(path: Path, id3_version: int | None, seed: int) -> Path:
    """A short synthesized file with a title (an ID3 tag of ``id3_version``) and no mood."""
    import mutagen
    from mutagen.id3 import TIT2

    ext = path.name.split(".", 1)[1]
    if ext in tag_formats.TAGGED:  # made by ffmpeg, mpcenc or tests/tag_formats.py
        made = tag_formats.make(path.parent, ext, name=path.name.split(".", 1)[0])
        tag_formats.set_user_metadata(made)
        return made
    y = synth.synthesize_piece("calm_pads", duration=1.0, sr=SR, seed=seed)
    encode(path, y, SR)
    if id3_version == 2:
        path.write_bytes(tag_formats.id3v22([(b"TT2", b"\x00Pads")]) + path.read_bytes())
        return path
    audio = mutagen.File(path)
    if audio.tags is None:
        audio.add_tags()
    if id3_version is not None:
        audio.tags.add(TIT2(encoding=3, text=["Pads"]))
        if id3_version == 3:
            audio.tags.update_to_v23()
        audio.save(v2_version=id3_version)
    else:
        audio.save()
    return path


def _beets_write(path: Path, mood: str, *, id3v23: bool) -> None:
    """Write ``mood`` the way ``beet write`` does: the plugin's media field on a MediaFile."""
    pytest.importorskip("beets")
    from mediafile import MediaFile

    from beetsplug.moodscope import _text_field
    from moodscope.library.tags import MOOD_FIELD

    media = MediaFile(str(path), id3v23=id3v23)
    _text_field(MOOD_FIELD, id3v23=id3v23).__set__(media, mood)
    media.save()


@pytest.fixture(scope="module")
def tagged(tmp_path_factory) -> dict[tuple[str, str], tuple[Path, str]]:
    """(writer, format) -> (file, the top emotion written into it)."""
    folder = tmp_path_factory.mktemp("readers")
    files = {}
    for i, (name, (ext, id3)) in enumerate(FORMATS.items()):
        for j, writer in enumerate(("moodscope", "beets")):
            mood = EMOTIONS[(2 * i + j) % len(EMOTIONS)]
            path = _blank_file(folder / f"{writer}-{name}.{ext}", id3, seed=i)
            if writer == "moodscope":
                write_tags(path, _prediction(mood))
            elif name in BEETS_CANNOT:
                _beets_cannot(path)
                continue
            else:
                _beets_write(path, mood, id3v23=id3 == 3)
            files[writer, name] = (path, mood)
    return files


def _beets_cannot(path: Path) -> None:
    """beets still refuses the file (else strike it from BEETS_CANNOT)."""
    pytest.importorskip("beets")
    from mediafile import FileTypeError, MediaFile

    with pytest.raises(FileTypeError):
        MediaFile(str(path))


def _run(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=True).stdout


def _mutagen(path: Path) -> list[str]:
    """The mood fields as a program built on mutagen looks them up (ID3v2.4 TMOO, ID3v2.3
    TXXX:mood, Vorbis MOOD, the iTunes freeform atom)."""
    import mutagen
    from mutagen.id3 import ID3

    audio = mutagen.File(path)
    if isinstance(audio.tags, ID3):
        if audio.tags.version[:2] == (2, 4):
            return [str(t) for f in audio.tags.getall("TMOO") for t in f.text]
        return [str(t) for f in audio.tags.getall("TXXX:mood") for t in f.text]
    if type(audio).__name__ == "MP4":
        return [bytes(v).decode() for v in audio.tags.get("----:com.apple.iTunes:MOOD", [])]
    if type(audio).__name__ == "ASF":
        return [str(v) for v in audio.tags.get("WM/Mood", [])]
    return list(audio.tags.get("MOOD", []))  # Vorbis comments, APEv2: any case


def _ffprobe(path: Path) -> list[str]:
    out = json.loads(_run("ffprobe", "-v", "error", "-show_entries",
                          "format_tags:stream_tags", "-of", "json", str(path)))  # fmt: skip
    tags = [out.get("format", {}).get("tags", {})]
    tags += [s.get("tags", {}) for s in out.get("streams", [])]
    return [v for t in tags for k, v in t.items() if k.lower() in ("mood", "tmoo", "wm/mood")]


def _exiftool(path: Path) -> list[str]:
    moods = []
    for line in _run("exiftool", "-a", "-s", "-G1", str(path)).splitlines():
        match = re.match(r"\[[^\]]+\]\s+(\w+)\s+: (.*)$", line)
        if match and match.group(1) == "Mood":
            moods.append(match.group(2))
        elif match and match.group(1) == "UserDefinedText":
            desc, _, value = match.group(2).partition(") ")
            if desc.lower() == "(mood":
                moods.append(value)
    return moods


def _kid3(path: Path) -> list[str]:
    moods = []
    for line in _run("kid3-cli", "-c", "get", str(path)).splitlines():
        name, _, value = line.strip().partition(" ")
        if name.lower() == "mood":
            moods.append(value.strip())
    return moods


def _operon(path: Path) -> list[str]:
    return [v for v in _run("operon", "print", "-p", "<mood>", str(path)).splitlines() if v]


READERS = {
    "mutagen": _mutagen,
    "ffprobe": _ffprobe,
    "exiftool": _exiftool,
    "kid3-cli": _kid3,
    "operon": _operon,
}


def _need(program: str) -> None:
    if shutil.which(program) is None:
        _required(f"needs {program}: apt-get install {PROGRAMS[program]} (make tag-readers)")


@pytest.mark.slow  # the matrix's files are made once per process
@pytest.mark.parametrize("writer", ["moodscope", "beets"])
@pytest.mark.parametrize("reader", list(READERS))
def test_every_reader_sees_the_mood_in_every_format(tagged, reader, writer):
    if reader in PROGRAMS:
        _need(reader)
    seen, gaps = {}, {}
    for name in FORMATS:
        if (writer, name) not in tagged:
            continue  # BEETS_CANNOT: checked when the files were made
        path, mood = tagged[writer, name]
        if (reader, name) in GAPS:
            gaps[name] = _still_unread(READERS[reader], path)
            continue
        seen[name] = (READERS[reader](path), mood)
    wrong = {name: got for name, (got, mood) in seen.items() if not got or set(got) != {mood}}
    assert not wrong, f"{reader} does not see the mood {writer} wrote: {wrong}"
    read_now = {name: GAPS[reader, name] for name, unread in gaps.items() if not unread}
    assert not read_now, f"{reader} now reads these; strike them from GAPS: {read_now}"


def _still_unread(read, path: Path) -> bool:
    try:
        return not read(path)
    except subprocess.CalledProcessError:  # the reader refuses the file
        return True


@pytest.mark.slow
@pytest.mark.parametrize("writer", ["moodscope", "beets"])
def test_picard_sees_the_mood_in_every_format(tagged, writer):
    """Picard's own reader, imported by the system Python in a subprocess (Debian installs
    Picard for that Python, outside the virtualenv)."""
    if not PICARD.is_file() or shutil.which(SYSTEM_PYTHON) is None:
        _required("needs MusicBrainz Picard: apt-get install picard (make tag-readers)")
    names = [name for name in FORMATS if (writer, name) in tagged]
    paths = [tagged[writer, name][0] for name in names]
    script = Path(__file__).with_name("picard_moods.py")
    out = subprocess.run([SYSTEM_PYTHON, str(script), *map(str, paths)], capture_output=True,
                         text=True, timeout=120, env={"QT_QPA_PLATFORM": "offscreen",
                                                     "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert out.returncode == 0, out.stderr
    moods = json.loads(out.stdout)
    wrong = {
        name: moods[str(tagged[writer, name][0])]
        for name in names
        if moods[str(tagged[writer, name][0])] != [tagged[writer, name][1]]
    }
    assert not wrong, f"Picard does not see the mood {writer} wrote: {wrong}"


@pytest.mark.parametrize("file_version,beets_id3v23", [(3, False), (4, True)])
def test_beets_reads_the_other_id3_versions_mood_and_leaves_one(tmp_path, file_version,
                                                                beets_id3v23):  # fmt: skip
    """beets rewrites a file in its own ID3 version (`id3v23`): the mood of a file tagged in
    the other version is read, and rewritten without leaving the old frames beside it."""
    pytest.importorskip("beets")
    from mediafile import MediaFile
    from mutagen.id3 import ID3

    from beetsplug.moodscope import _text_field
    from moodscope.library.tags import MOOD_FIELD, read_tags

    path = _blank_file(tmp_path / "song.mp3", file_version, seed=0)
    write_tags(path, _prediction("sadness"))
    field = _text_field(MOOD_FIELD, id3v23=beets_id3v23)
    media = MediaFile(str(path), id3v23=beets_id3v23)
    assert field.__get__(media) == "sadness"
    field.__set__(media, "power")
    media.save()
    tags = ID3(path)
    moods = sorted(f.HashKey for f in tags.values() if f.HashKey in (
        "TMOO", "TXXX:mood", "TXXX:MOOD", "TXXX:QuodLibet::mood"))  # fmt: skip
    assert moods == (["TXXX:QuodLibet::mood", "TXXX:mood"] if beets_id3v23 else ["TMOO"])
    assert tags.version[:2] == ((2, 3) if beets_id3v23 else (2, 4))
    assert read_tags(path).mood == "power"


READER_NAMES = {"operon": "Quod Libet"}
"""How the README's Formats table names a reader, where that is not the program's name."""


def _formats_table() -> list[dict[str, str]]:
    text = (Path(__file__).parents[1] / "README.md").read_text()
    section = text.split("\n## Formats\n", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(head, (c.strip() for c in ln.strip("|").split("|")))) for ln in lines[2:]]


def test_the_readmes_format_table_matches_the_reader_matrix():
    """Every format the README's table says is tagged is in the reader matrix (or says it is
    not tested), every untagged one is refused in tests/test_tags.py, and every reader gap
    of GAPS is named in its row (a row saying "all" has none)."""
    matrix = {ext: name for name, (ext, _) in FORMATS.items()}
    rows = _formats_table()
    assert len(rows) > 10
    for row in rows:
        exts = [e.lstrip(".") for e in re.findall(r"`(\.[\w.]+)`", row["extensions"])]
        assert exts, row
        if row["mood written in"].startswith("not tagged"):
            assert set(exts) <= set(tag_formats.UNTAGGED) | {"wav"}, row  # RF64: .wav
            continue
        for ext in exts:
            if row["readers that see the mood"] == "not tested":
                assert ext not in matrix, f"{ext} is in the matrix: say so in the README"
                continue
            if ext not in matrix:
                continue  # another extension of a format that is (.oga, .aif, .asf)
            gaps = [reader for reader, name in GAPS if name == matrix[ext]]
            cell = row["readers that see the mood"]
            for reader in gaps:
                assert READER_NAMES.get(reader, reader) in cell, (ext, reader, cell)
            assert gaps or cell.startswith("all"), row
        assert any(ext in matrix for ext in exts) or row["readers that see the mood"] == (
            "not tested"
        ), row
