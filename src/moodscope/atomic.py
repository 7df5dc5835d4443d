"""Files written the way databases write them, and the one content digest.

A file moodscope writes is a temporary file beside its target, flushed (and fsynced) and
renamed over it, so a crash leaves the old file or the new one, never half of one. What the
target is decides how: a regular file (or a symlink to one: its target) is replaced; a
device, FIFO or ``/dev/stdout`` is written through, never renamed over; a directory is
refused. Every temporary file is named ``.NAME.moodscope-PID-XXXX.tmp``, so one left by a
killed process is known for stale and removed by the next writer in that folder.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from moodscope.errors import OutputError

DIGEST = "sha1"
"""The digest of a file's content (the library index, the model id, the feature cache)."""


def file_digest(path: str | Path, *, algorithm: str = DIGEST) -> str:
    """The hex digest of the file at ``path``, read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bytes_digest(data: bytes, *, algorithm: str = DIGEST) -> str:
    """The hex digest of ``data`` (the same as :func:`file_digest` of a file holding it)."""
    return hashlib.new(algorithm, data).hexdigest()


# -- where an output goes ------------------------------------------------------------------

REPLACE = "replace"
"""A regular file (or none yet): written beside and renamed over."""
WRITE_THROUGH = "write-through"
"""A device, FIFO, socket-less special file or an inherited descriptor: opened and written."""

_INHERITED = re.compile(r"^/dev/(stdout|stderr|fd/\d+)$|^/proc/(self|\d+)/fd/\d+$")


def output_target(path: str | Path) -> tuple[str, Path]:
    """How ``path`` is written (:data:`REPLACE` or :data:`WRITE_THROUGH`) and the file that
    is: a symlink's target for a replaced file, the path as given for a written-through one.

    Raises
    ------
    OutputError
        ``path`` is a directory (or ends with a slash), a socket, or lies in a folder that
        cannot hold it.
    """
    given = str(path)
    if given.endswith(os.sep) or given.endswith("/."):
        raise OutputError(f"{given}: names a folder; give a file to write")
    if _INHERITED.match(os.path.abspath(given)):
        # /dev/stdout is this process's descriptor whatever it points at (a pipe, a
        # terminal, the file a shell redirected it to): renaming over it would miss it.
        return WRITE_THROUGH, Path(given)
    try:
        st = os.stat(given)  # follows symlinks
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise OutputError(f"{given}: a part of the path is not a folder") from None
    except OSError as exc:
        raise OutputError(f"{given}: cannot be written: {describe_os_error(exc)}") from exc
    if st is None:
        real = Path(os.path.realpath(given))
        if real.parent.exists() and not real.parent.is_dir():
            raise OutputError(f"{given}: {real.parent} is not a folder")
        return REPLACE, real
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{given}: is a folder; give a file to write (e.g. {given}/moods.json)")
    if stat.S_ISSOCK(st.st_mode):
        raise OutputError(f"{given}: is a socket, not a file moodscope can write")
    if stat.S_ISREG(st.st_mode):
        return REPLACE, Path(os.path.realpath(given))
    return WRITE_THROUGH, Path(given)  # character or block device, FIFO


def check_output(path: str | Path) -> Path:
    """Raise :class:`~moodscope.errors.OutputError` now, before any work, if ``path`` cannot
    be an output (see :func:`output_target`); return the file that will be written."""
    return output_target(path)[1]


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether ``a`` and ``b`` are one file (device and inode, symlinks followed): the
    same song reached through a symlink, a hard link or ``./``; False if either is missing."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def output_is_input(output: str | Path, inputs: Iterable[str | Path]) -> str | Path | None:
    """The input that writing ``output`` would replace (``output`` is that very file, by
    device and inode, or by the path it resolves to when it does not exist yet), else None."""
    try:
        st = os.stat(output)
    except OSError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        return None  # written through (/dev/stdout, a FIFO): nothing is renamed over
    real = os.path.realpath(output)
    for given in inputs:
        if (st is not None and same_file(output, given)) or os.path.realpath(given) == real:
            return given
    return None


# -- writing -------------------------------------------------------------------------------

_STALE = re.compile(r"^\..*\.moodscope-(\d+)-[^/]*\.tmp$")
_SWEPT: set[str] = set()


NAME_MAX = 255
"""The longest file name (in bytes) that common file systems hold (ext4, XFS, btrfs, APFS)."""


def temporary_path(target: str | Path) -> Path:
    """A fresh temporary name beside ``target``, in the form stale copies are known by, and
    within :data:`NAME_MAX` bytes however long the target's own name is (a 76-character CJK
    name is 232 bytes of UTF-8: it is shortened counted in bytes, not characters)."""
    target = Path(target)
    suffix = f".moodscope-{os.getpid()}-{secrets.token_hex(4)}.tmp"
    room = NAME_MAX - 1 - len(suffix)  # the leading dot
    # Cut in bytes; a character cut in half stays as its bytes (surrogate escapes), which
    # the file system takes as they are.
    stem = os.fsdecode(os.fsencode(target.name)[:room])
    return target.with_name(f".{stem}{suffix}")


@contextmanager
def atomic_path(
    path: str | Path,
    *,
    fsync: bool = True,
    before_rename: Callable[[], None] | None = None,
) -> Iterator[Path]:
    """A path to write the new content of ``path`` to (by name: soundfile, pyarrow, mutagen).

    For a regular file (see :func:`output_target`) it is a new, empty temporary file beside
    the target; on a clean exit it is fsynced and renamed over the target, on an exception
    removed. It gets the replaced file's permissions (and owner, where allowed), a new file
    those an ordinary ``open()`` gives (0666 less the umask). For a device or FIFO it is the
    path itself, written in place. An ``OSError`` of its own (creating, fsyncing, renaming)
    becomes :class:`~moodscope.errors.OutputError`; the block's own errors pass unchanged.

    ``before_rename`` is called after the copy is fsynced, the last moment before the
    rename: an error it raises leaves the target as it is and removes the copy. A rewrite
    of a file (tagging) checks there that the file is still the one it copied, so bytes
    another program wrote into it meanwhile (a download finishing, another tagger, a slow
    disk's late write) are never renamed away.
    """
    how, target = output_target(path)
    if how == WRITE_THROUGH:
        yield target
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target.parent)
        tmp = temporary_path(target)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
        _keep_attributes_of(target, tmp)
    except OSError as exc:
        raise OutputError(f"{path}: cannot be written: {describe_os_error(exc)}") from exc
    try:
        yield tmp  # the caller's own errors pass through as they are
        try:
            if fsync:
                fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            raise OutputError(f"{path}: cannot be written: {describe_os_error(exc)}") from exc
        if before_rename is not None:
            before_rename()
        try:
            os.replace(tmp, target)
        except OSError as exc:
            raise OutputError(f"{path}: cannot be written: {describe_os_error(exc)}") from exc
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", *, fsync: bool = True) -> Iterator[IO]:
    """Open ``path`` for writing the way :func:`atomic_path` says (text: UTF-8)."""
    kwargs = {} if "b" in mode else {"encoding": "utf-8"}
    if output_target(path)[0] == WRITE_THROUGH:
        # Appending: never truncates the file a shell redirected /dev/stdout to (``>>``).
        mode = mode.replace("w", "a")
    with atomic_path(path, fsync=fsync) as tmp:
        try:
            with open(tmp, mode, **kwargs) as f:
                yield f
        except OSError as exc:  # a full disk (or /dev/full) shows at a write or the close
            raise OutputError(f"{path}: cannot be written: {describe_os_error(exc)}") from exc


def write_atomic(path: str | Path, data: str | bytes, *, fsync: bool = True) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; return ``path``."""
    with atomic_write(path, "wb" if isinstance(data, bytes) else "w", fsync=fsync) as f:
        f.write(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return write_atomic(path, text)


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete temporary files left in ``folder`` by a moodscope process that was killed
    while writing (their writer is no longer running); once per folder and process."""
    folder = str(folder)
    if folder in _SWEPT:
        return 0
    _SWEPT.add(folder)
    removed = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    for name in names:
        match = _STALE.match(name)
        if match is None or pid_alive(int(match.group(1))):
            continue
        try:
            os.unlink(os.path.join(folder, name))
            removed += 1
        except OSError:
            pass
    return removed


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one of another user counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _keep_attributes_of(target: Path, tmp: Path) -> None:
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return
    os.chmod(tmp, stat.S_IMODE(st.st_mode))
    mine = os.stat(tmp)
    if (st.st_uid, st.st_gid) != (mine.st_uid, mine.st_gid):
        try:
            os.chown(tmp, st.st_uid, st.st_gid)
        except PermissionError:
            pass  # root's files stay root's only when root writes them


def describe_os_error(exc: OSError) -> str:
    """What an ``OSError`` means for a file being written, in words (no errno names)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full (no space left on device)"
    if exc.errno == errno.EROFS:
        return "the file system is read-only"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.EISDIR:
        return "is a folder"
    return exc.strerror or " ".join(str(exc).split())[:200] or type(exc).__name__


__all__ = [
    "DIGEST",
    "REPLACE",
    "WRITE_THROUGH",
    "atomic_path",
    "atomic_write",
    "bytes_digest",
    "check_output",
    "describe_os_error",
    "file_digest",
    "output_is_input",
    "output_target",
    "pid_alive",
    "remove_stale_temporaries",
    "same_file",
    "temporary_path",
    "write_atomic",
    "write_text_atomic",
]
