"""Where per-file work runs -- this process, a pool of local processes, or a Dask cluster --
and the one loop that streams results back as they finish (:func:`stream`).

A backend runs ``fn(item, context)``: the ``context`` (the model, the feature config) reaches
each worker once when the backend starts, the items travel one by one. ``predict``, ``tag``,
``features`` and the service all go through here; none has a loop of its own.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from moodscope.errors import MoodscopeError

T = TypeVar("T")


class WorkerLost(MoodscopeError):
    """The process running an item died (killed, out of memory, a crash in a decoder)."""


class BackendLost(MoodscopeError):
    """The backend itself is gone (a Dask scheduler that cannot be reached): the run stops."""


class Backend:
    """Runs ``fn(item, context)`` on some workers; subclasses say where.

    Use as a context manager: ``with open_backend(workers=2) as backend: ...``.
    """

    workers: int = 1
    """Items that run at once."""

    def start(self, context: Any) -> None:
        """Make ``context`` available to every worker (before any submit; again when the
        backend is reused for another run)."""
        self.context = context

    def submit(self, fn: Callable[[Any, Any], T], item: Any) -> Future:
        raise NotImplementedError

    def restart(self) -> None:
        """Replace workers that died (a local pool breaks as a whole when one does)."""

    def check(self) -> None:
        """Raise :class:`BackendLost` if the backend can no longer run anything."""

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return type(self).__name__

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class InlineBackend(Backend):
    """Everything in this process, one item at a time (no start-up cost).

    While it is open, torch runs on one thread, as in every worker: a second OpenMP thread
    saves little on one file and, when the other core is busy, spins -- a cold
    `moodscope predict one.mp3` took 10 s instead of 2 on a loaded 2-core machine.
    """

    _threads: int | None = None

    def start(self, context: Any) -> None:
        super().start(context)
        torch = sys.modules.get("torch")  # never imported just for this
        if torch is not None and self._threads is None:
            self._threads = torch.get_num_threads()
            torch.set_num_threads(1)

    def close(self) -> None:
        if self._threads is not None:
            sys.modules["torch"].set_num_threads(self._threads)
            self._threads = None

    def submit(self, fn, item) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(item, self.context))
        except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(exc)  # (Ctrl-C is not the item's error: it stops the run)
        return future

    def describe(self) -> str:
        return "this process"


# -- local process pool --------------------------------------------------------------------


def limit_threads(n: int = 1) -> None:
    """One worker process per core: stop BLAS, OpenMP, numba and torch from starting more."""
    os.environ.setdefault("NUMBA_NUM_THREADS", str(n))
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:  # threadpoolctl comes with scikit-learn; without it BLAS is untouched
        pass
    # onnxruntime reads OMP_NUM_THREADS when its session starts (musicnn.network); PyTorch
    # (research extra) is told only where something has loaded it: never imported for this.
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt(3) parameters (glibc)


def reuse_freed_memory() -> None:
    """Let this process keep the memory each file frees for the next one (glibc only).

    glibc's adaptive threshold still maps many large buffers afresh and hands them back when
    freed, so a file's spectrograms and network maps arrive on new pages the kernel must
    fault in and zero: ~4 ms of a 60-s track's ~120 ms on one core, most of it in the
    log-mel. Dask's nanny makes it worse: its ``MALLOC_TRIM_THRESHOLD_=65536`` turns the
    adaptive threshold off, and every buffer over 128 kB (each feature map of the network)
    was mapped and unmapped on every use, the convolutions 2-3x slower than in a local pool
    (``make bench``). Here buffers under 32 MiB come from the heap and up to 128 MiB of
    freed heap stays mapped for reuse (the peak footprint is still what one file needs).
    For moodscope's own processes (the CLI, pool and Dask workers), not a host program's.
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc: its allocator has its own rules
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    mallopt(_M_TRIM_THRESHOLD, 128 << 20)


HEALTH_CHECK_SECONDS = 5.0
"""While no item finishes, how often :func:`stream` asks the backend whether it is alive."""


def stream(
    backend: Backend,
    fn: Callable[[Any, Any], T],
    items: Iterable[Any],
    *,
    in_flight: int | None = None,
) -> Iterator[tuple[Any, T | BaseException]]:
    """Run ``fn(item, context)`` for every item on ``backend``; yield ``(item, result)`` as
    each finishes, in completion order.

    At most ``in_flight`` items (default: twice the backend's workers) are submitted at a
    time, so memory holds a window of the batch, never all of it. ``fn`` is expected to
    return its own error values; an exception it raises anyway, or the death of the worker
    that ran it, is yielded in place of the result. When a local worker dies, the items its
    pool was running are rerun one at a time; the one that kills a worker on its own is
    given up with :class:`WorkerLost` (no crash loop). :class:`BackendLost` is raised.
    """
    limit = max(2, in_flight or 2 * backend.workers)
    items = iter(items)
    pending: dict[Future, Any] = {}
    suspects: list[Any] = []
    alone: list[Future] = []  # the suspect now running with nothing beside it

    def fill() -> None:
        # After a local pool broke, the items it was running are suspects; so is a file Dask
        # gave up as KilledWorker, since Dask counts a dying worker against every task it
        # held, the innocent ones beside the culprit too. Suspects run one at a time, so the
        # one that kills a worker alone is known and the others are cleared.
        if suspects or alone and alone[0] in pending:
            if not pending:
                item = suspects.pop()
                future = backend.submit(fn, item)
                pending[future] = item
                alone[:] = [future]
            return
        while len(pending) < limit:
            item = next(items, _END)
            if item is _END:
                return
            pending[backend.submit(fn, item)] = item

    fill()
    while pending:
        done, _ = wait(pending, timeout=HEALTH_CHECK_SECONDS, return_when=FIRST_COMPLETED)
        if not done:
            backend.check()
        broken = []
        # In submission order: several can finish together (this process runs each as it
        # is submitted), and a set's order would shuffle them from run to run.
        for future in [f for f in pending if f in done]:
            item = pending.pop(future)
            exc = future.exception()
            if isinstance(exc, BackendLost):
                raise exc
            if isinstance(exc, BrokenProcessPool):
                broken.append(item)
                continue
            if type(exc).__name__ == "KilledWorker" and future not in alone:
                suspects.insert(0, item)
                continue
            yield item, (exc if exc is not None else future.result())
        if broken:
            broken += pending.values()
            pending.clear()
            backend.restart()
            if len(broken) == 1:  # it ran alone: it is the one that kills its worker
                yield broken[0], WorkerLost("the worker process died while reading it")
            else:
                suspects.extend(reversed(broken))
        fill()


_END = object()


def failure_message(path: str, exc: BaseException) -> str:
    """One line naming ``path`` and what went wrong, for an item's error entry."""
    text = " ".join(str(exc).split())
    if isinstance(exc, MoodscopeError):
        return text if str(path) in text else f"{path}: {text}"
    if type(exc).__name__ == "KilledWorker":  # dask gave up after its workers died on it
        return (
            f"{path}: every Dask worker that read it died (killed, out of memory or a crash "
            "in a decoder); given up after Dask's allowed retries and a run of its own"
        )
    return f"{path}: {type(exc).__name__}: {text[:300]}"
