"""The service's worker processes: one single-process pool per worker, handed to one request
at a time, so a request that runs too long or whose client went away has its own worker
killed and replaced without touching the others' (a shared pool breaks as a whole).

Waiting for a free worker is the service's queue: a request waits here, in the event loop,
and leaves it by being cancelled; nothing waits inside a pool where it could not be taken
back.
"""

from __future__ import annotations

import asyncio
import statistics
from collections import deque
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from moodscope.backends import ProcessBackend


class WorkerDied(Exception):
    """The worker running the item died (killed from outside, out of memory, a crash)."""


class WorkTimedOut(Exception):
    """The item ran longer than its time limit; its worker was killed and replaced."""

    def __init__(self, seconds: float | None):
        super().__init__(f"ran longer than {seconds:g} s")
        self.seconds = seconds


class WorkerSlots:
    """``n`` workers, each a :class:`ProcessBackend` of one process."""

    def __init__(self, n: int, *, recent: int = 20):
        self.n = n
        self.slots = [ProcessBackend(1) for _ in range(n)]
        self.busy = 0  # workers running a request now (never more than n)
        self.waiting = 0  # requests waiting for a free worker
        self.restarts: dict[str, int] = {"died": 0, "timeout": 0, "cancelled": 0}
        self.seconds: deque[float] = deque(maxlen=recent)  # recent run times, for Retry-After
        self._free: asyncio.Queue[ProcessBackend] | None = None
        self._opened: set[int] = set()

    def start(self, context: Any) -> None:
        """Start the pools (their processes start on first use; see :meth:`warm`)."""
        for slot in self.slots:
            slot.start(context)
        self._free = asyncio.Queue()

    async def warm(self, fn: Callable, item: Any) -> None:
        """Run ``fn(item)`` once in every worker (imports, model), then open them to
        requests; raises what a worker's warm-up raised, once all are open."""
        assert self._free is not None, "start() first"
        loop = asyncio.get_running_loop()

        async def one(slot: ProcessBackend) -> None:
            try:
                await asyncio.wrap_future(slot.submit(fn, item), loop=loop)
            finally:  # a worker that failed its warm-up still serves (and fails) requests
                self._open(slot)

        await asyncio.gather(*(one(s) for s in self.slots))

    def open(self) -> None:
        """Open every worker to requests, warm or not."""
        for slot in self.slots:
            self._open(slot)

    def _open(self, slot: ProcessBackend) -> None:
        if id(slot) not in self._opened:
            self._opened.add(id(slot))
            self._free.put_nowait(slot)

    def pids(self) -> list[int]:
        """The worker processes' ids (those started so far)."""
        return [pid for slot in self.slots for pid in slot.pids()]

    def service_seconds(self) -> float | None:
        """The median run time of recent requests (``None`` before the first)."""
        return statistics.median(self.seconds) if self.seconds else None

    async def run(self, fn: Callable, item: Any, *, timeout: float | None = None) -> Any:
        """``fn(item, context)`` on the next free worker. Cancelling the caller while it
        waits leaves the queue; while it runs, kills that worker and starts a fresh one, as
        does a run longer than ``timeout`` seconds (:class:`WorkTimedOut`). Raises
        :class:`WorkerDied` when the worker died under it."""
        assert self._free is not None, "start() first"
        self.waiting += 1
        try:
            slot = await self._free.get()
        finally:
            self.waiting -= 1
        self.busy += 1
        loop = asyncio.get_running_loop()
        started = loop.time()
        running = asyncio.wrap_future(slot.submit(fn, item), loop=loop)
        try:
            try:
                done, _ = await asyncio.wait({running}, timeout=timeout)
            except asyncio.CancelledError:
                self._kill(slot, running, "cancelled")
                raise
            if not done:
                self._kill(slot, running, "timeout")
                raise WorkTimedOut(timeout)
            try:
                result = running.result()
            except BrokenProcessPool:
                slot.restart()
                self.restarts["died"] += 1
                raise WorkerDied() from None
            self.seconds.append(loop.time() - started)
            return result
        finally:
            self.busy -= 1
            self._free.put_nowait(slot)

    def _kill(self, slot: ProcessBackend, running: asyncio.Future, reason: str) -> None:
        # A process pool cannot stop an item once it runs: end its process instead.
        if running.done():
            return
        running.cancel()  # nobody reads the BrokenProcessPool the kill will cause
        slot.kill()
        self.restarts[reason] += 1

    def close(self) -> None:
        for slot in self.slots:
            slot.close()


__all__ = ["WorkTimedOut", "WorkerDied", "WorkerSlots"]
