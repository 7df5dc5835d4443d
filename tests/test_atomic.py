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
