"""A pool of local worker processes, each on one core, started from a clean forkserver."""

from __future__ import annotations

import multiprocessing
import os
import select
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from moodscope.atomic import pid_alive
from moodscope.backends.base import Backend, limit_threads, reuse_freed_memory
from moodscope.errors import ConfigError

_CONTEXT: Any = None

_PRELOAD: list[str] = []


def preload_in_workers(*modules: str) -> None:
    """Modules the pool's forkserver imports once, before it forks a worker, so that every
    worker starts with them loaded instead of importing them itself (torch: ~1 s of each
    worker's start, and a service worker replaced mid-run is warm at once). Takes effect
    for pools started after the call, until this process's forkserver is running."""
    _PRELOAD.extend(m for m in modules if m not in _PRELOAD)


def _init_worker(context: Any, parent: int | None = None) -> None:
    global _CONTEXT
    # Ctrl-C in a terminal reaches the whole process group: the parent decides what stops,
    # a worker neither prints a KeyboardInterrupt traceback nor leaves its item half done.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent is not None:
        die_with(parent)
    limit_threads(1)
    reuse_freed_memory()
    _CONTEXT = context


PR_SET_PDEATHSIG = 1
"""prctl(2): the signal this process gets when the thread that started it ends."""


def die_with(parent: int) -> None:
    """End this (worker) process within moments of process ``parent`` ending, however it
    ended (SIGKILL included), without a word: a forkserver's worker holds the forkserver
    (and, through it, multiprocessing's resource tracker) alive, so a worker left waiting
    for work would keep all three running for ever.

    A thread waits on a pidfd of ``parent`` (Linux >= 5.3; elsewhere it polls once a
    second); the kernel's parent-death signal covers the forkserver itself ending.
    """
    _set_parent_death_signal()
    try:
        pidfd = os.pidfd_open(parent)
    except ProcessLookupError:
        os._exit(0)  # gone before this worker started
    except (AttributeError, OSError):
        pidfd = None

    def watch() -> None:
        if pidfd is not None:
            select.select([pidfd], [], [])  # readable once the process has ended
        else:
            while pid_alive(parent):
                time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="moodscope-parent-watch", daemon=True).start()


def _set_parent_death_signal() -> None:
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass

    return True


def quiet_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (if it is not running) so that, when this
    process is killed, it cleans up the pool's semaphores without the warning it prints for
    them: the user who killed the run has nothing to act on."""
    from multiprocessing import resource_tracker

    quiet = "ignore:resource_tracker:UserWarning"
    sys.warnoptions.append(quiet)  # read only by the child processes started meanwhile
    try:
        resource_tracker.ensure_running()
    finally:
        sys.warnoptions.remove(quiet)


# A Unix socket's path holds at most 107 bytes. The forkserver binds one at
# $TMPDIR/pymp-XXXXXXXX/listener-XXXXXXXX (34 bytes after $TMPDIR), so a long TMPDIR (pytest's
# folders, a deep home directory) leaves the pool unable to start at all.
_SOCKET_PATH_MAX = 107
_SOCKET_SUFFIX = len("/pymp-12345678/listener-12345678")


def _short_socket_dir() -> None:
    """Where this process's TMPDIR is too long for the forkserver's socket, give
    multiprocessing a short temporary folder of its own (removed at exit, as its own is)."""
    from multiprocessing import process, util

    config = process.current_process()._config
    if config.get("tempdir") is not None:  # chosen already (a forkserver may be running)
        return
    if len(tempfile.gettempdir()) + _SOCKET_SUFFIX <= _SOCKET_PATH_MAX:
        return
    for base in ("/tmp", "/var/tmp", "/dev/shm"):
        try:
            short = tempfile.mkdtemp(prefix="moodscope-mp-", dir=base)
        except OSError:
            continue
        util.Finalize(None, shutil.rmtree, args=(short, True), exitpriority=-100)
        config["tempdir"] = short
        return


_NO_MAIN_LOCK = threading.Lock()
_no_main_users = 0
_get_preparation_data: Callable | None = None


def _preparation_data(name: str) -> dict:
    data = _get_preparation_data(name)
    if _no_main_users:
        # What a child runs before its target: without these it never executes the
        # caller's main module (a script's top level, guarded by __main__ or not).
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
    return data


class callers_main_left_alone:  # noqa: N801 - used as a ``with`` block, like a function
    """While open, worker processes that multiprocessing starts (this pool's, through the
    forkserver; Dask's nannies, spawned) do not run the caller's main module.

    multiprocessing runs it again in every child so that functions defined there can be
    found, which turns a plain script that calls ``moodscope.predict(..., workers=2)`` at
    its top level, without ``if __name__ == "__main__":``, into one that runs once per
    worker (and a ``tag_files`` that waits in each worker for the library lock its own
    parent holds). Every function moodscope runs in a worker lives in moodscope, so the
    children need none of it. The cost: a function of the caller's main module cannot be
    run on a pool (:func:`~moodscope.backends.stream` with such a ``fn``); put it in a module.
    """

    def __enter__(self):
        global _no_main_users, _get_preparation_data
        from multiprocessing import spawn

        with _NO_MAIN_LOCK:
            if _get_preparation_data is None:  # installed once, idle while nobody uses it
                _get_preparation_data = spawn.get_preparation_data
                spawn.get_preparation_data = _preparation_data
            _no_main_users += 1
        return self

    def __exit__(self, *exc) -> None:
        global _no_main_users
        with _NO_MAIN_LOCK:
            _no_main_users -= 1


def _call(fn: Callable, item: Any):
    return fn(item, _CONTEXT)


class ProcessBackend(Backend):
    """A pool of ``workers`` local processes, each on one core.

    Workers start from a clean forkserver, never a fork of this (possibly threaded) process:
    a forked child can crash in librosa's numba kernels or torch's thread pools. They end
    with this process, however it ends (:func:`die_with`), and with them the forkserver and
    the resource tracker.
    """

    def __init__(self, workers: int):
        if workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._main_left_alone: callers_main_left_alone | None = None

    def start(self, context: Any) -> None:
        # A backend kept open across calls (predict(..., backend=...)) keeps its workers
        # while the context is the same; another one needs fresh workers.
        if self._pool is not None and getattr(self, "context", None) == context:
            return
        super().start(context)
        self.restart()

    def restart(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        methods = multiprocessing.get_all_start_methods()
        mp_context = multiprocessing.get_context(
            "forkserver" if "forkserver" in methods else "spawn"
        )
        if "forkserver" in methods:  # no effect once the forkserver runs
            # Never "__main__" (multiprocessing's default): the caller's script stays its own.
            mp_context.set_forkserver_preload(list(_PRELOAD))
        _short_socket_dir()
        quiet_resource_tracker()
        if self._main_left_alone is None:
            self._main_left_alone = callers_main_left_alone().__enter__()
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=mp_context,
            initializer=_init_worker,
            initargs=(self.context, os.getpid()),
        )

    def submit(self, fn, item) -> Future:
        if self._pool is None:
            raise RuntimeError("ProcessBackend.start() was not called")
        return self._pool.submit(_call, fn, item)

    def pids(self) -> list[int]:
        """The worker processes started so far."""
        return list(self._pool._processes or ()) if self._pool is not None else []

    def kill(self) -> None:
        """Stop what the workers are running now: a pool cannot cancel an item once it
        runs, so its processes are killed and a fresh pool takes their place (the items get
        ``BrokenProcessPool``)."""
        if self._pool is not None:
            for process in list(self._pool._processes.values()):
                process.kill()
        self.restart()

    def close(self, *, stop_running: bool = False) -> None:
        """Shut the pool down: wait for the items that run now, or, ``stop_running``, kill
        the workers running them (an interrupted or failed run: nobody wants them)."""
        try:
            if self._pool is not None:
                if stop_running:
                    for process in list((self._pool._processes or {}).values()):
                        process.kill()
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
        finally:
            if self._main_left_alone is not None:
                self._main_left_alone.__exit__(None, None, None)
                self._main_left_alone = None

    def __exit__(self, exc_type, *exc) -> None:
        # Ctrl-C, or an error that ends the run: a worker ignores SIGINT and would finish
        # its file (minutes for a long one) before the run could stop.
        self.close(stop_running=exc_type is not None)

    def describe(self) -> str:
        return f"{self.workers} local worker processes"
