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
from collections.abc import Awaitable, Callable
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
    """``n`` workers, each a :class:`ProcessBackend` of one process.

    ``prepare(slot)`` (a coroutine function) runs what a fresh worker needs before its
    first request (imports, the model); every worker runs it at start-up, and a replaced
    one runs it again before it takes a request, so the queue goes to the warm workers
    meanwhile instead of waiting on a cold start.
    """

    def __init__(
        self,
        n: int,
        *,
        prepare: Callable[[ProcessBackend], Awaitable[None]] | None = None,
        recent: int = 20,
    ):
        self.n = n
        self.slots = [ProcessBackend(1) for _ in range(n)]
        self.prepare = prepare
        self.busy = 0  # workers running a request now (never more than n)
        self.waiting = 0  # requests waiting for a free worker
        self.restarts: dict[str, int] = {"died": 0, "timeout": 0, "cancelled": 0}
        self.seconds: deque[float] = deque(maxlen=recent)  # recent run times, for Retry-After
        self._free: asyncio.Queue[ProcessBackend] | None = None
        self._preparing: set[asyncio.Task] = set()

    def start(self, context: Any) -> None:
        """Start the pools (their processes start on first use; see :meth:`warm`)."""
        for slot in self.slots:
            slot.start(context)
        self._free = asyncio.Queue()

    async def warm(self) -> list[BaseException]:
        """Prepare every worker and open it to requests (a worker whose preparation failed
        opens too: it serves, and fails, requests); the preparations' errors."""
        assert self._free is not None, "start() first"
        results = await asyncio.gather(*(self._prepare_then_open(s) for s in self.slots))
        return [r for r in results if r is not None]

    async def _prepare_then_open(self, slot: ProcessBackend) -> BaseException | None:
        try:
            if self.prepare is not None:
                await self.prepare(slot)
            return None
        except BrokenProcessPool as exc:  # it died warming up: a fresh one, cold
            slot.restart()
            self.restarts["died"] += 1
            return exc
        except Exception as exc:  # noqa: BLE001 - reported by warm(), the slot still opens
            return exc
        finally:
            self._free.put_nowait(slot)

    def _give_back(self, slot: ProcessBackend, *, replaced: bool) -> None:
        if not replaced or self.prepare is None:
            self._free.put_nowait(slot)
            return
        task = asyncio.get_running_loop().create_task(self._prepare_then_open(slot))
        self._preparing.add(task)  # a reference, so the task is not collected midway
        task.add_done_callback(self._preparing.discard)

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
        replaced = False
        try:
            try:
                running = asyncio.wrap_future(slot.submit(fn, item), loop=loop)
            except BrokenProcessPool:  # it died while idle
                slot.restart()
                self.restarts["died"] += 1
                replaced = True
                raise WorkerDied() from None
            try:
                done, _ = await asyncio.wait({running}, timeout=timeout)
            except asyncio.CancelledError:
                replaced = self._kill(slot, running, "cancelled")
                raise
            if not done:
                replaced = self._kill(slot, running, "timeout")
                raise WorkTimedOut(timeout)
            try:
                result = running.result()
            except BrokenProcessPool:
                slot.restart()
                self.restarts["died"] += 1
                replaced = True
                raise WorkerDied() from None
            self.seconds.append(loop.time() - started)
            return result
        finally:
            self.busy -= 1
            self._give_back(slot, replaced=replaced)

    def _kill(self, slot: ProcessBackend, running: asyncio.Future, reason: str) -> bool:
        """End the item's process (a process pool cannot stop an item once it runs);
        whether it was still running."""
        if running.done():
            return False
        running.cancel()  # nobody reads the BrokenProcessPool the kill will cause
        slot.kill()
        self.restarts[reason] += 1
        return True

    def close(self) -> None:
        for task in list(self._preparing):
            task.cancel()
        for slot in self.slots:
            slot.close()


__all__ = ["WorkTimedOut", "WorkerDied", "WorkerSlots"]
