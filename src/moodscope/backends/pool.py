"""A pool of local worker processes, each on one core, started from a clean forkserver."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from moodscope.backends.base import Backend, limit_threads
from moodscope.errors import ConfigError

_CONTEXT: Any = None


def _init_worker(context: Any) -> None:
    global _CONTEXT
    limit_threads(1)
    _CONTEXT = context


def _call(fn: Callable, item: Any):
    return fn(item, _CONTEXT)


class ProcessBackend(Backend):
    """A pool of ``workers`` local processes, each on one core.

    Workers start from a clean forkserver, never a fork of this (possibly threaded) process:
    a forked child can crash in librosa's numba kernels or torch's thread pools.
    """

    def __init__(self, workers: int):
        if workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

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
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=mp_context,
            initializer=_init_worker,
            initargs=(self.context,),
        )

    def submit(self, fn, item) -> Future:
        if self._pool is None:
            raise RuntimeError("ProcessBackend.start() was not called")
        return self._pool.submit(_call, fn, item)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def describe(self) -> str:
        return f"{self.workers} local worker processes"
