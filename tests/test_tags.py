"""Mood tags in files: the fields per container, the audio and the other tags untouched,
the atomic rewrite (permissions, read-only, changed, full disk, a crash before the rename),
and untag restoring exactly what the user had."""

from __future__ import annotations

import errno
import os
import stat
import struct
import subprocess
import sys

import numpy as np
import pytest

import tag_formats
from conftest import SR, chord_signal
from library_audio import COVER, FORMATS, decode_exact, encode, read_metadata, set_metadata
from moodscope import EMOTIONS
from moodscope.errors import TagError
from moodscope.inference.predictor import Prediction
from moodscope.library.tags import (
    FileState,
    read_tags,
    remove_stale_copies,
    remove_tags,
    share_field,
    tag_values,
    write_tags,
)


def prediction(seed: int = 0, model: str = "default@0123456789ab") -> Prediction:
    shares = np.random.default_rng(seed).dirichlet(np.ones(len(EMOTIONS)))
    emotions = dict(zip(EMOTIONS, map(float, shares)))
    return Prediction(
        "x", emotions=emotions, top_emotion=max(emotions, key=emotions.get), model=model
    )


@pytest.fixture
def song(tmp_path):
    """song(ext, mood=None, id3_version=4) -> a tagged file with title, artist and cover."""

    def make(ext: str, mood: str | None = None, id3_version: int = 4, name: str = "song"):
        path = encode(tmp_path / f"{name}.{ext}", chord_signal(4.0), SR)
        set_metadata(path, title="Title é", artist="Artist", mood=mood, id3_version=id3_version)
        return path

    return make


def _raw_fields(path) -> dict[str, list[str]]:
    """Every text field as mutagen sees it, by the name the container uses."""
    import mutagen

    tags = mutagen.File(path).tags
    out = {}
    for key in tags.keys():
        value = tags[key]
        if hasattr(value, "text"):
            out[key] = [str(t) for t in value.text]
        elif key != "covr" and isinstance(value, list) and value:
            out[key] = [v if isinstance(v, str) else bytes(v).decode() for v in value]
    return out


@pytest.mark.parametrize("ext", FORMATS)
def test_write_read_remove_every_container(song, ext):
    path = song(ext, mood="Melancholic")
    audio_before = decode_exact(path)
    p = prediction()
    state = write_tags(path, p)

    tags = read_tags(path)
    assert tags.mood == p.top_emotion and tags.model == p.model
    assert tags.emotions == {k: round(v, 3) for k, v in p.emotions.items()}
    assert tags.previous_mood == ["Melancholic"]
    assert read_metadata(path) == ("Title é", "Artist", read_metadata(path)[2])
    assert read_metadata(path)[2].startswith(b"\x89PNG") and len(read_metadata(path)[2]) == 1032
    assert np.array_equal(decode_exact(path), audio_before)
    assert state.size == path.stat().st_size and state.mtime_ns == path.stat().st_mtime_ns
    from moodscope.features.extract import file_digest

    assert state.sha1 == file_digest(path)

    assert remove_tags(path) is not None
    tags = read_tags(path)
    assert tags.mood == "Melancholic" and not tags.emotions and tags.model is None
    assert not tags.previous_mood
    assert read_metadata(path)[:2] == ("Title é", "Artist")
    assert np.array_equal(decode_exact(path), audio_before)
    assert remove_tags(path) is None  # nothing of ours left: not rewritten


def test_field_names_per_container(song):
    p = prediction(1)
    mp3, flac, m4a = song("mp3"), song("flac"), song("m4a")
    for path in (mp3, flac, m4a):
        write_tags(path, p)
    id3 = _raw_fields(mp3)
    assert id3["TMOO"] == [p.top_emotion]
    assert id3["TXXX:MOODSCOPE_CALMNESS"] == [f"{p.emotions['calmness']:.3f}"]
    assert id3["TXXX:MOODSCOPE_MODEL"] == ["default@0123456789ab"]
    assert "TXXX:MOOD" not in id3 and "TXXX:MOODSCOPE_PREVIOUS_MOOD" not in id3
    vorbis = {k.upper(): v for k, v in _raw_fields(flac).items()}
    assert vorbis["MOOD"] == [p.top_emotion]
    assert vorbis["MOODSCOPE_JOYFUL_ACTIVATION"] == [f"{p.emotions['joyful_activation']:.3f}"]
    mp4 = _raw_fields(m4a)
    assert mp4["----:com.apple.iTunes:MOOD"] == [p.top_emotion]
    assert mp4["----:com.apple.iTunes:MOODSCOPE_SADNESS"] == [f"{p.emotions['sadness']:.3f}"]
    assert set(tag_values(p)) == {"MOOD", "MOODSCOPE_MODEL"} | {share_field(e) for e in EMOTIONS}


def _v23_moods(path) -> list[tuple[str, list[str]]]:
    from mutagen.id3 import ID3

    frames = ID3(path).getall("TXXX")
    return sorted((f.desc, [str(t) for t in f.text]) for f in frames if "mood" in f.desc.lower()
                  and not f.desc.startswith("MOODSCOPE_"))  # fmt: skip


def test_id3v23_file_stays_v23_with_picards_and_quod_libets_mood_frames(song):
    """ID3v2.3 has no TMOO: the mood goes in TXXX:mood (Picard matches that description
    exactly) and TXXX:QuodLibet::mood (Quod Libet reads no other TXXX for it)."""
    from mutagen.id3 import ID3

    path = song("mp3", mood="Dreamy", id3_version=3)  # the user's TXXX:MOOD, as Mp3tag writes
    p = prediction(2)
    write_tags(path, p)
    tags = ID3(path)
    assert tags.version[:2] == (2, 3)
    assert not tags.getall("TMOO")
    assert _v23_moods(path) == [("QuodLibet::mood", [p.top_emotion]), ("mood", [p.top_emotion])]
    assert read_tags(path).mood == p.top_emotion
    assert read_tags(path).previous_mood == ["Dreamy"]
    before = FileState.of(path)
    write_tags(path, p)  # the same values: not rewritten
    assert FileState.of(path) == before
    remove_tags(path)  # the user's own frame comes back, and nothing it never had
    assert _v23_moods(path) == [("MOOD", ["Dreamy"])]
    assert read_tags(path).mood == "Dreamy" and not read_tags(path).tagged
    assert ID3(path).version[:2] == (2, 3)


def test_id3v23_mood_in_the_old_frame_is_rewritten_in_the_new_ones(song):
    """A file moodscope tagged before, with TXXX:MOOD only, is not taken as done."""
    from mutagen.id3 import ID3, TXXX

    path = song("mp3", id3_version=3)
    p = prediction(3)
    write_tags(path, p)
    tags = ID3(path)
    for desc in ("mood", "QuodLibet::mood"):
        tags.delall(f"TXXX:{desc}")
    tags.add(TXXX(encoding=1, desc="MOOD", text=[p.top_emotion]))
    tags.save(v2_version=3)
    assert read_tags(path).mood == p.top_emotion  # still read
    write_tags(path, p)
    assert _v23_moods(path) == [("QuodLibet::mood", [p.top_emotion]), ("mood", [p.top_emotion])]
    before = FileState.of(path)
    write_tags(path, p)  # now as wanted: not rewritten
    assert FileState.of(path) == before


def test_retagging_is_idempotent_and_keeps_the_users_mood(song):
    path = song("flac", mood="Happy")
    write_tags(path, prediction(3))
    before = FileState.of(path)
    write_tags(path, prediction(3))  # the same values: the file is not rewritten
    assert FileState.of(path) == before
    second = prediction(4, model="other@ffffffffffff")
    write_tags(path, second)  # a new model: our own MOOD is not taken for the user's
    tags = read_tags(path)
    assert tags.mood == second.top_emotion and tags.previous_mood == ["Happy"]
    assert tags.model == "other@ffffffffffff"
    remove_tags(path)
    assert read_tags(path).mood == "Happy"


@pytest.mark.parametrize("ext", ["mp3", "mp3-id3v2.3", "flac", "m4a"])
def test_a_withheld_mood_gives_way_to_the_users_own_or_none(song, ext):
    sure, unsure = prediction(6), prediction(6)
    sure.confidence, unsure.confidence = 0.8, 0.3
    ext, version = ("mp3", 3) if ext == "mp3-id3v2.3" else (ext, 4)
    users = song(ext, mood="Happy", id3_version=version)  # v2.3: an Mp3tag-style TXXX:MOOD
    fields = tag_formats.all_fields(users)
    write_tags(users, unsure, min_confidence=0.5)  # below: the user's mood stays
    tags = read_tags(users)
    assert tags.mood == "Happy" and tags.confidence == 0.3 and tags.emotions
    write_tags(users, sure, min_confidence=0.5)  # reached: ours, the user's kept aside
    assert read_tags(users).mood == sure.top_emotion
    assert read_tags(users).previous_mood == ["Happy"]
    write_tags(users, unsure, min_confidence=0.5)  # below again: the user's comes back
    assert read_tags(users).mood == "Happy"
    remove_tags(users)
    assert read_tags(users).mood == "Happy" and not read_tags(users).tagged
    assert tag_formats.all_fields(users) == fields  # in its own frame, as it was

    bare = song(ext, name="bare")
    write_tags(bare, sure, min_confidence=0.5)
    assert read_tags(bare).mood == sure.top_emotion
    write_tags(bare, unsure, min_confidence=0.5)  # our earlier mood goes, nothing replaces it
    assert read_tags(bare).mood is None and read_tags(bare).model == sure.model
    assert "MOOD" not in tag_values(unsure, min_confidence=0.5)
    assert "MOOD" in tag_values(unsure)  # no threshold: every file gets its mood
    uncalibrated = prediction(6)
    assert "MOODSCOPE_CONFIDENCE" not in tag_values(uncalibrated)
    assert "MOOD" not in tag_values(uncalibrated, min_confidence=0.0)  # no number, no mood


def test_untag_leaves_a_mood_the_user_set_after_tagging(song):
    path = song("ogg")
    write_tags(path, prediction(5))
    import mutagen

    audio = mutagen.File(path)
    audio.tags["MOOD"] = ["Chill"]
    audio.save()
    remove_tags(path)
    tags = read_tags(path)
    assert tags.mood == "Chill" and tags.model is None and not tags.emotions


def test_untaggable_container_is_a_clear_error(tmp_path):
    import soundfile as sf

    path = tmp_path / "big.wav"  # RF64: libsndfile reads it, mutagen cannot tag it
    sf.write(path, chord_signal(4.0), SR, format="RF64")
    data = path.read_bytes()
    with pytest.raises(TagError) as info:
        write_tags(path, prediction())
    message = str(info.value)
    assert message == f"{path}: cannot be tagged: moodscope writes no tags into RF64 files"
    assert path.read_bytes() == data


def test_read_only_file_is_left_alone(song):
    path = song("mp3")
    os.chmod(path, 0o444)
    data = path.read_bytes()
    with pytest.raises(TagError, match="read-only"):
        write_tags(path, prediction())  # even as root, whom the mode does not stop
    assert path.read_bytes() == data and stat.S_IMODE(path.stat().st_mode) == 0o444


def test_mode_kept_and_symlink_target_rewritten(song, tmp_path):
    path = song("flac")
    os.chmod(path, 0o640)
    link = tmp_path / "link.flac"
    link.symlink_to(path)
    write_tags(link, prediction())
    assert link.is_symlink() and read_tags(path).tagged
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_changed_file_is_not_written(song):
    path = song("ogg")
    state = FileState.of(path)
    os.utime(path, ns=(state.mtime_ns + 10**9, state.mtime_ns + 10**9))  # touched meanwhile
    with pytest.raises(TagError, match="changed since moodscope read it"):
        write_tags(path, prediction(), expect=state)
    assert not read_tags(path).tagged


def test_vanished_file(tmp_path):
    with pytest.raises(TagError, match="vanished"):
        write_tags(tmp_path / "gone.mp3", prediction(), expect=FileState(1, 1, 1))


def test_full_disk_leaves_the_file_and_no_copy(song, monkeypatch):
    import shutil

    path = song("mp3")
    data = path.read_bytes()

    def copy_until_full(src, dst, length=0):
        dst.write(src.read(1000))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfileobj", copy_until_full)
    with pytest.raises(TagError) as info:
        write_tags(path, prediction())
    assert "disk is full" in str(info.value) and str(path) in str(info.value)
    assert path.read_bytes() == data
    assert sorted(p.name for p in path.parent.iterdir()) == ["song.mp3"]


def test_a_crash_before_the_rename_leaves_the_original(song, monkeypatch):
    path = song("m4a")
    data = path.read_bytes()

    def crash(src, dst):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(TagError, match="Input/output error"):
        write_tags(path, prediction())
    assert path.read_bytes() == data
    assert sorted(p.name for p in path.parent.iterdir()) == ["song.m4a"]


def test_stale_copies_of_a_killed_writer_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    stale = tmp_path / f".song.mp3.moodscope-{dead}-abc123.tmp"
    mine = tmp_path / f".song.mp3.moodscope-{os.getpid()}-def456.tmp"
    other = tmp_path / ".notes.tmp"
    for p in (stale, mine, other):
        p.write_bytes(b"x")
    assert remove_stale_copies(tmp_path) == 1
    assert not stale.exists() and mine.exists() and other.exists()


def test_failed_prediction_is_not_written(song):
    path = song("mp3")
    with pytest.raises(TagError, match="no prediction"):
        write_tags(path, Prediction(str(path), error="bad"))


def test_labels_that_cannot_name_a_field():
    with pytest.raises(TagError):
        share_field("model")
    with pytest.raises(TagError):
        share_field("a b")


# -- every format a library holds (tests/tag_formats.py) -------------------------------------

MOOD_KEYS = {  # extension -> the raw key (as tag_formats.all_fields names it) of the mood
    "wma": "WM/Mood",
    "wv": "Mood",
    "mpc": "Mood",
    "tta": "TMOO",
    "mp2": "TMOO",
    "mp1": "TMOO",  # a layer II stream named .mp1: mutagen goes by the name, moodscope not
    "spx": "mood",
    "m4b": "----:com.apple.iTunes:MOOD",
    "alac.m4a": "----:com.apple.iTunes:MOOD",
    "aifc": "TMOO",
    "dsf": "TMOO",
}


@pytest.mark.parametrize("ext", tag_formats.TAGGED)
def test_every_other_format_is_tagged_in_its_own_tag_system_and_untagged_exactly(tmp_path, ext):
    """The mood where Picard reads it (ASF WM/Mood, APEv2 Mood, ID3 TMOO, Vorbis MOOD, MP4's
    freeform MOOD); untag leaves every field, the cover and the decoded audio as they were."""
    path = tag_formats.make(tmp_path, ext)
    tag_formats.set_user_metadata(path, mood="Dreamy")
    fields, audio = tag_formats.all_fields(path), tag_formats.decode_exact(path)
    p = prediction(7)
    write_tags(path, p)
    tags = read_tags(path)
    assert tags.mood == p.top_emotion and tags.previous_mood == ["Dreamy"]
    assert tags.emotions == {k: round(v, 3) for k, v in p.emotions.items()}
    tagged = tag_formats.all_fields(path)
    mood = tagged[MOOD_KEYS[ext]]
    mood = mood[2] if isinstance(mood, tuple) else mood  # an ID3 frame: its text
    assert [m.decode() if isinstance(m, bytes) else m for m in mood] == [p.top_emotion]
    others = {k: v for k, v in fields.items() if k.lower() != MOOD_KEYS[ext].lower()}
    assert {k: tagged[k] for k in others} == others  # title, artist, cover: as they were
    assert np.array_equal(tag_formats.decode_exact(path), audio)
    assert remove_tags(path) is not None
    assert tag_formats.all_fields(path) == fields
    assert np.array_equal(tag_formats.decode_exact(path), audio)


@pytest.mark.parametrize("ext", sorted(tag_formats.UNTAGGED))
def test_formats_that_carry_no_tags_are_refused_in_one_line(tmp_path, ext):
    path = tag_formats.make(tmp_path, ext)
    data = path.read_bytes()
    with pytest.raises(TagError) as info:
        write_tags(path, prediction())
    message = str(info.value)
    assert message.startswith(f"{path}: cannot be tagged: ") and "\n" not in message
    assert tag_formats.UNTAGGED[ext] in message
    assert remove_tags(path) is None  # untag: nothing of moodscope's can be there
    assert path.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_a_not_music_prediction_writes_no_mood():
    p = Prediction("x", emotions={}, model="m@1", music=False, not_music="digital silence")
    with pytest.raises(TagError, match=r"is not music \(digital silence\)"):
        tag_values(p)


def test_arousal_and_valence_are_written_when_the_prediction_has_them(song):
    p = prediction(8)
    p.arousal, p.valence = 0.25, -0.5
    values = tag_values(p)
    assert values["MOODSCOPE_AROUSAL"] == ("0.250",) and values["MOODSCOPE_VALENCE"] == ("-0.500",)
    path = song("flac")
    write_tags(path, p)
    assert read_tags(path).emotions == {k: round(v, 3) for k, v in p.emotions.items()}
    remove_tags(path)
    assert not any(k.upper().startswith("MOODSCOPE_") for k in _raw_fields(path))


# -- ID3: every frame of every version kept ----------------------------------------------------

SORT_FRAMES = ("TSOP", "TSOA", "TSOT", "TSST", "TSO2", "TMOO", "TDRL", "TPRO")


def _v23_with_sort_frames(path, mood_desc: str | None = "MOOD"):
    """An ID3v2.3 tag as Picard's v2.3 mode and iTunes write it: sort frames and other
    v2.4 frames kept in v2.3, the v2.3 date frames, and a TXXX:MOOD as Mp3tag writes it."""
    from mutagen.id3 import ID3, IPLS, TXXX, TYER, Frames

    tags = ID3(path, translate=False)
    for frame_id in SORT_FRAMES:
        text = "2001-02-03" if frame_id == "TDRL" else f"{frame_id.lower()} value"
        tags.add(Frames[frame_id](encoding=1, text=[text]))
    tags.add(TYER(encoding=1, text=["1999"]))
    tags.add(IPLS(encoding=1, people=[["producer", "Someone"]]))
    if mood_desc is not None:
        tags.add(TXXX(encoding=1, desc=mood_desc, text=["Dreamy"]))
    tags.save(path, v2_version=3)


@pytest.mark.parametrize("mood_desc", ["MOOD", None])
def test_id3v23_tag_and_untag_keep_every_frame_they_did_not_add(song, mood_desc):
    path = song("mp3", id3_version=3)
    _v23_with_sort_frames(path, mood_desc)
    before = tag_formats.all_fields(path)
    assert set(SORT_FRAMES) <= set(before)
    p = prediction(9)
    write_tags(path, p)
    tagged = tag_formats.all_fields(path)
    from mutagen.id3 import ID3

    assert ID3(path).version[:2] == (2, 3)
    mood_frame = "TXXX:MOOD" if mood_desc else "TMOO"  # a TMOO alone is the mood
    kept = {k: v for k, v in before.items() if k != mood_frame}
    assert {k: tagged[k] for k in kept} == kept  # the sort frames, TYER, IPLS, APIC
    assert _v23_moods(path) == [("QuodLibet::mood", [p.top_emotion]), ("mood", [p.top_emotion])]
    assert mood_frame not in tagged
    assert read_tags(path).previous_mood == ["Dreamy" if mood_desc else "tmoo value"]
    remove_tags(path)
    assert tag_formats.all_fields(path) == before


def test_id3v22_becomes_v23_with_every_frame_and_untag_leaves_it_so(song):
    """mutagen cannot write ID3v2.2: the tag becomes v2.3 (which every reader of v2.2
    reads), frame for frame, iTunes' sort frames included; untag removes only ours."""
    from mutagen.id3 import ID3

    path = song("mp3")
    mp3 = path.read_bytes()[ID3(path).size :]
    path.write_bytes(tag_formats.id3v22([(b"TT2", b"\x00Title"), (b"TP1", b"\x00Artist"),
                              (b"TYE", b"\x001999"), (b"TSP", b"\x00Artist, The"),
                              (b"TXX", b"\x00MOOD\x00Dreamy"),
                              (b"PIC", b"\x00PNG\x03cover\x00" + COVER)]) + mp3)  # fmt: skip
    before = tag_formats.all_fields(path)
    assert ID3(path).version[:2] == (2, 2)
    write_tags(path, prediction(10))
    assert ID3(path).version[:2] == (2, 3)
    assert read_tags(path).previous_mood == ["Dreamy"]
    remove_tags(path)
    after = tag_formats.all_fields(path)
    assert set(after) == set(before) == {"TIT2", "TPE1", "TYER", "TSOP", "TXXX:MOOD", "APIC:cover"}
    assert {k: after[k] for k in after if k != "APIC:cover"} == {
        k: before[k] for k in before if k != "APIC:cover"
    }
    picture = ID3(path).getall("APIC")[0]
    assert picture.mime == "image/png" and picture.data == COVER and picture.type == 3


def _old_id3_chunk(p) -> bytes:
    """The ``id3 `` chunk an earlier moodscope appended: ID3v2.4 TMOO and its fields."""
    import io

    from mutagen.id3 import ID3, TMOO, TXXX

    tags = ID3()
    tags.add(TMOO(encoding=3, text=[p.top_emotion]))
    for name, values in tag_values(p).items():
        if name != "MOOD":
            tags.add(TXXX(encoding=3, desc=name, text=list(values)))
    out = io.BytesIO()
    tags.save(out, padding=lambda info: 1000)
    data = out.getvalue()
    return b"id3 " + struct.pack("<I", len(data)) + data + bytes(len(data) % 2)


def test_wav_whose_odd_data_chunk_lacks_its_pad_byte_is_refused(tmp_path):
    """A tag chunk written right after an odd-sized data chunk without its pad byte sits one
    byte off, where readers do not find it: refused in one line, the file untouched, however
    often it is forced."""
    n = 1001
    samples = (128 + 50 * np.sin(np.arange(n) / 5)).astype(np.uint8).tobytes()
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 8000, 1, 8)
    body = b"WAVE" + fmt + b"data" + struct.pack("<I", n) + samples
    path = tmp_path / "odd.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    data = path.read_bytes()
    for _ in range(2):
        with pytest.raises(TagError) as info:
            write_tags(path, prediction())
        assert "odd size" in str(info.value) and "\n" not in str(info.value)
        assert path.read_bytes() == data
    # An earlier moodscope appended an ID3 chunk right after the data, where the pad byte
    # belongs, and one more on each --force: such a file is refused too, as it stands.
    junk = tmp_path / "tagged-before.wav"
    chunk = b"id3 " + struct.pack("<I", 10) + b"ID3\x04\x00\x00\x00\x00\x00\x00"
    junk.write_bytes(b"RIFF" + struct.pack("<I", len(body) + 18) + body + chunk)
    junk_data = junk.read_bytes()
    with pytest.raises(TagError, match="odd size"):
        write_tags(junk, prediction())
    assert junk.read_bytes() == junk_data
    old = tmp_path / "old.wav"  # ... and untag removes what it appended, back to the byte
    old.write_bytes(data)
    for _ in range(2):  # tag + tag --force, as an earlier moodscope wrote them
        tag = _old_id3_chunk(prediction(13))
        appended = old.read_bytes() + tag
        old.write_bytes(appended[:4] + struct.pack("<I", len(appended) - 8) + appended[8:])
    assert remove_tags(old) is not None
    assert old.read_bytes() == data
    assert remove_tags(junk) is None  # an ID3 chunk without moodscope's model: not ours
    padded = tmp_path / "padded.wav"  # the same audio with its pad byte: tagged and readable
    padded.write_bytes(data[:4] + struct.pack("<I", len(body) + 1) + data[8:] + b"\0")
    p = prediction(11)
    write_tags(padded, p)
    assert read_tags(padded).mood == p.top_emotion
    remove_tags(padded)
    assert padded.read_bytes()[: len(data) + 1][8:] == (data + b"\0")[8:]


def _header_only(path, ext: str) -> bytes:
    """A Monkey's Audio or OptimFROG file as far as its tag is concerned: a header mutagen
    accepts and 2 KiB standing in for the audio (nothing here encodes either format)."""
    body = bytes(range(256)) * 8
    if ext == "ape":
        header = b"MAC " + struct.pack("<H", 3990) + bytes(50)
        header += struct.pack("<IIIHHI", 73728, 100, 1, 16, 1, 44100)
    else:
        header = b"OFR " + struct.pack("<IIHBBI", 15, 44100, 0, 2, 0, 44100) + bytes(56)
    path.write_bytes(header + body)
    return header + body


@pytest.mark.parametrize("ext", ["ape", "ofr"])
def test_monkeys_audio_and_optimfrog_take_the_apev2_mood(tmp_path, ext):
    path = tmp_path / f"song.{ext}"
    audio = _header_only(path, ext)
    tag_formats.set_user_metadata(path, mood="Dreamy")
    fields = tag_formats.all_fields(path)
    p = prediction(12)
    write_tags(path, p)
    assert tag_formats.all_fields(path)["Mood"] == [p.top_emotion]
    assert path.read_bytes().startswith(audio)  # the tag follows the audio, untouched
    remove_tags(path)
    assert tag_formats.all_fields(path) == fields and path.read_bytes().startswith(audio)


@pytest.mark.slow
def test_tag_records_the_prediction_of_a_format_it_cannot_tag(tmp_path):
    """`tag` on an AC-3 file: one failed line saying why, the prediction in the index."""
    from moodscope.library import FAILED, LibraryIndex, tag_files

    path = tag_formats.make(tmp_path, "ac3", seconds=4.0)
    data = path.read_bytes()
    db = tmp_path / "library.sqlite"
    [outcome] = list(tag_files([path], db=db))
    assert outcome.status == FAILED
    assert outcome.error == f"{path}: cannot be tagged: {tag_formats.UNTAGGED_WHY['ac3']}"
    with LibraryIndex(db) as index:
        row = index.get(os.path.realpath(path))
    assert row.top_emotion in EMOTIONS and row.emotions and row.tagged_at is None
    assert path.read_bytes() == data
