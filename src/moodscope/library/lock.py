"""One writer per library index: a ``tag`` or ``untag`` run holds an exclusive lock on the
index for its whole length, so two runs take turns instead of undoing each other's rows."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from moodscope.errors import LibraryError

LOCK_POLL_SECONDS = 0.2
"""How often a run waiting for an index's lock tries again."""

log = logging.getLogger("moodscope")


class IndexLock:
    """The one writer of an index: an exclusive ``flock`` on ``DB.lock`` beside it, held for
    a whole ``tag`` or ``untag`` run, so two runs on one database take turns instead of
    undoing each other's rows. The kernel drops it when its process ends, however it ends.

    Parameters
    ----------
    db : path
        The index database.
    timeout : float, optional
        Seconds to wait for another run to finish; None waits as long as it takes.
    on_wait : callable, optional
        Told once, in words, that the run waits (default: a warning on the ``moodscope``
        logger, which reaches stderr when nothing configured logging).
    """

    def __init__(self, db: str | Path, *, timeout: float | None = None, on_wait=None):
        self.db = Path(db)
        self.path = self.db.with_name(self.db.name + ".lock")
        self.timeout = timeout
        self.on_wait = on_wait or log.warning
        self._fd: int | None = None

    def acquire(self) -> None:
        import fcntl
        import time

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise LibraryError(f"{self.path}: the index's lock cannot be made ({exc})") from exc
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pass
            if not told:
                holder = self._holder()
                self.on_wait(
                    f"another moodscope tag{holder} is using {self.db}, waiting for it to "
                    "finish" + ("" if self.timeout is None else f" (at most {self.timeout:g} s)")
                )
                told = True
            if deadline is not None and time.monotonic() >= deadline:
                os.close(fd)
                raise LibraryError(
                    f"{self.db}: another moodscope tag{self._holder()} is still using it "
                    f"after {self.timeout:g} s; try again when it has finished"
                )
            time.sleep(LOCK_POLL_SECONDS)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def _holder(self) -> str:
        try:
            pid = int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return ""
        return f" (process {pid})"

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> IndexLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


__all__ = ["LOCK_POLL_SECONDS", "IndexLock"]
