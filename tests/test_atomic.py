"""moodscope.atomic: one way to write a file (replace a regular file, write through a device
or FIFO, refuse a folder), its permissions, stale temporaries, and the one content digest."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import threading

import pytest

from moodscope.atomic import (
    REPLACE,
    WRITE_THROUGH,
    atomic_path,
    atomic_write,
    bytes_digest,
    check_output,
    file_digest,
    output_target,
    remove_stale_temporaries,
    temporary_path,
    write_atomic,
)
from moodscope.errors import MoodscopeError, OutputError


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_regular_file_is_replaced_whole_and_keeps_its_permissions(tmp_path):
    target = tmp_path / "moods.json"
    target.write_text("old")
    os.chmod(target, 0o640)
    inode = target.stat().st_ino
    write_atomic(target, "new")
    assert target.read_text() == "new"
    assert target.stat().st_ino != inode  # renamed over, not rewritten in place
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert _leftovers(tmp_path) == []


def test_a_new_file_gets_what_open_gives_under_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "a.txt", "x")
        with open(tmp_path / "b.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "a.txt").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o640


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "moods.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as f:
        f.write("half")
        raise RuntimeError("the run broke")
    with pytest.raises(ZeroDivisionError), atomic_path(target) as tmp:
        tmp.write_text("half")
        1 / 0  # noqa: B018
    assert target.read_text() == "old" and _leftovers(tmp_path) == []


def test_a_symlink_is_followed_and_its_target_replaced(tmp_path):
    real = tmp_path / "data" / "moods.json"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "latest.json"
    link.symlink_to(real)
    assert output_target(link) == (REPLACE, real)
    write_atomic(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == "new"
    dangling = tmp_path / "next.json"
    dangling.symlink_to(tmp_path / "data" / "next-real.json")
    write_atomic(dangling, "made")
    assert dangling.is_symlink() and (tmp_path / "data" / "next-real.json").read_text() == "made"


def test_a_folder_is_refused_before_anything_is_written(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    for given in (folder, f"{tmp_path}/missing/"):
        with pytest.raises(OutputError, match="folder"):
            check_output(given)
        with pytest.raises(OutputError, match="folder"), atomic_write(given) as f:
            f.write("never")
    assert list(folder.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert issubclass(OutputError, MoodscopeError)


def test_a_fifo_is_written_through(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    assert output_target(fifo)[0] == WRITE_THROUGH
    write_atomic(fifo, "through the pipe\n")
    reader.join(timeout=10)
    assert got == [b"through the pipe\n"]
    assert stat.S_ISFIFO(fifo.stat().st_mode) and _leftovers(tmp_path) == []


def test_dev_null_stays_a_device():
    write_atomic("/dev/null", "nothing")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert not [n for n in os.listdir("/dev") if n.startswith(".null.")]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_dev_full_gives_one_line_and_stays_a_device():
    before = os.stat("/dev/full")
    with pytest.raises(OutputError) as info:
        write_atomic("/dev/full", "x" * 100_000)
    message = str(info.value)
    assert message.startswith("/dev/full: ") and "no space left on device" in message
    assert "\n" not in message
    after = os.stat("/dev/full")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
    assert not [n for n in os.listdir("/dev") if n.startswith(".full.")]


def test_dev_stdout_is_written_through_and_appends_to_a_redirected_file(tmp_path):
    # The shell's `>>`: the file /dev/stdout leads to keeps what it had, nothing is renamed.
    log = tmp_path / "log.txt"
    log.write_text("earlier\n")
    inode = log.stat().st_ino
    code = "from moodscope.atomic import write_atomic; write_atomic('/dev/stdout', 'later\\n')"
    with open(log, "a") as out:
        subprocess.run([sys.executable, "-c", code], stdout=out, check=True, timeout=60)
    assert log.read_text() == "earlier\nlater\n" and log.stat().st_ino == inode
    assert _leftovers(tmp_path) == []


def test_stale_temporaries_of_a_killed_writer_go_and_live_ones_stay(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    stale = tmp_path / f".moods.json.moodscope-{dead}-abc123.tmp"
    mine = tmp_path / f".moods.json.moodscope-{os.getpid()}-def456.tmp"
    other = tmp_path / ".notes.tmp"
    for p in (stale, mine, other):
        p.write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path) == 1
    assert not stale.exists() and mine.exists() and other.exists()


def test_one_digest_for_files_and_bytes(tmp_path):
    data = os.urandom(3 << 20)  # more than one read block
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert file_digest(path) == bytes_digest(data) == hashlib.sha1(data).hexdigest()
    assert file_digest(path, algorithm="md5") == hashlib.md5(data).hexdigest()


# -- names and the moment before the rename -------------------------------------------------

CJK_NAME = "静" * 76 + ".mp3"  # 232 bytes of UTF-8: legal, 23 short of the limit


def test_temporary_names_stay_within_255_bytes_whatever_the_name(tmp_path):
    assert len(os.fsencode(CJK_NAME)) == 232
    for name in (CJK_NAME, "a" * 255, "é" * 127, "x"):
        tmp = temporary_path(tmp_path / name)
        assert len(os.fsencode(tmp.name)) <= 255
        assert tmp.parent == tmp_path and tmp.name.endswith(".tmp")
    target = tmp_path / CJK_NAME
    target.write_text("old")
    write_atomic(target, "new")
    assert target.read_text() == "new" and _leftovers(tmp_path) == []


def test_a_long_cjk_named_song_can_be_tagged(tmp_path, write_audio):
    from conftest import chord_signal
    from moodscope.library.tags import read_tags, write_tags
    from test_tags import prediction

    song = write_audio(CJK_NAME.replace(".mp3", ".flac"), chord_signal(2.0))
    write_tags(song, prediction())
    assert read_tags(song).tagged and _leftovers(tmp_path) == []


def test_before_rename_runs_after_the_fsync_and_can_stop_the_rename(tmp_path, monkeypatch):
    target = tmp_path / "moods.json"
    target.write_text("old")
    calls = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])

    def refuse():
        calls.append("check")
        raise OutputError("changed meanwhile")

    with pytest.raises(OutputError, match="changed meanwhile"):
        with atomic_path(target, before_rename=refuse) as tmp:
            tmp.write_text("new")
    assert calls == ["fsync", "check"]
    assert target.read_text() == "old" and _leftovers(tmp_path) == []


def test_bytes_written_while_a_tag_is_being_finished_are_kept(tmp_path, write_audio):
    """Another program appends to the song after moodscope's copy is written and fsynced,
    just before the rename (a download finishing, a second tagger): the rename would throw
    those bytes away, so the file is left alone and reported, and nothing is lost."""
    from conftest import chord_signal
    from moodscope.errors import TagError
    from moodscope.library.tags import write_tags
    from test_tags import prediction

    song = write_audio("song.flac", chord_signal(2.0))
    real_fsync = os.fsync

    def fsync_then_a_late_writer(fd):
        real_fsync(fd)
        with open(song, "ab") as f:  # the original, not the copy being fsynced
            f.write(b"late bytes")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "fsync", fsync_then_a_late_writer)
        with pytest.raises(TagError, match="changed while moodscope was tagging it"):
            write_tags(song, prediction())
    assert song.read_bytes().endswith(b"late bytes")
    assert _leftovers(tmp_path) == []
