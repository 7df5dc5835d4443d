"""Batch runs on a Dask cluster: the :class:`~moodscope.backends.base.Backend` for dask.distributed.

Workers read audio from the paths they are given, so every worker must see the files under
the same paths as the client (a shared filesystem, or the same mount in every container); a
worker that cannot gives that file an error entry. The run's context (the model) is
scattered to every worker once and loaded there once, whatever the number of files.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from typing import Any

from moodscope.backends.base import Backend, BackendLost, limit_threads, reuse_freed_memory

CONNECT_TIMEOUT = "10s"
"""How long to try reaching a scheduler before giving up."""

LOG_LEVEL: int | None = None
"""If set, the least level dask.distributed's own stderr handler shows. The CLI sets
CRITICAL: it reports a lost scheduler in one line, not in distributed's tracebacks."""

_LIMITED = threading.Lock()
_limited = False


def _run(fn, item, context):
    # Each task runs on one of the worker's threads: give it one core's worth of threads.
    global _limited
    if not _limited:
        with _LIMITED:
            if not _limited:
                limit_threads(1)
                reuse_freed_memory()  # also undoes the nanny's MALLOC_TRIM_THRESHOLD_
                _limited = True
    return fn(item, context)


class DaskBackend(Backend):
    """Items as tasks on a dask.distributed cluster, results as they finish.

    Parameters
    ----------
    scheduler : str or distributed.Client
        ``tcp://HOST:PORT`` of a running scheduler, or a connected client.
    cluster : distributed.LocalCluster, optional
        A cluster this backend started and closes with it (see :meth:`local`).
    """

    def __init__(self, scheduler, *, cluster=None):
        try:
            from distributed import Client
        except ImportError as exc:
            raise BackendLost(
                "running on a Dask cluster needs dask.distributed: pip install '.[cluster]'"
            ) from exc
        if LOG_LEVEL is not None:
            for handler in logging.getLogger("distributed").handlers:
                handler.setLevel(LOG_LEVEL)
        self.cluster = cluster
        self.address = getattr(scheduler, "scheduler", None) and scheduler.scheduler.address
        if isinstance(scheduler, str):
            self.address = scheduler
            try:
                self.client = Client(scheduler, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                raise BackendLost(
                    f"cannot reach the Dask scheduler at {scheduler} ({exc}); start one with "
                    "`dask scheduler` or use --scheduler local:N"
                ) from exc
            self._own_client = True
        else:
            self.client = scheduler
            self._own_client = False
        self._context = None

    @classmethod
    def local(cls, n_workers: int) -> DaskBackend:
        """Start a LocalCluster of ``n_workers`` single-threaded processes on 127.0.0.1."""
        try:
            from distributed import LocalCluster
        except ImportError as exc:
            raise BackendLost(
                "--scheduler local:N needs dask.distributed: pip install '.[cluster]'"
            ) from exc
        from moodscope.backends.pool import quiet_resource_tracker

        quiet_resource_tracker()  # a killed run's semaphores go without a warning, as for the pool
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        return cls(cluster.scheduler_address, cluster=cluster)

    @property
    def workers(self) -> int:
        try:
            return max(1, sum(self.client.nthreads().values()))
        except Exception:  # noqa: BLE001 - a lost scheduler shows up at the next submit
            return 1

    def start(self, context: Any) -> None:
        if self._context is not None and getattr(self, "context", None) == context:
            return  # reused for another run with the same model: it is on the workers
        super().start(context)
        try:
            self._context = self.client.scatter(context, broadcast=True, hash=False)
        except Exception as exc:  # noqa: BLE001 - comm errors have many types
            raise self._lost(exc) from exc

    def submit(self, fn, item) -> Future:
        result: Future = Future()
        try:
            task = self.client.submit(_run, fn, item, self._context, pure=False)
        except Exception as exc:  # noqa: BLE001
            result.set_exception(self._lost(exc))
            return result

        def done(task) -> None:
            try:
                if task.status == "finished":
                    result.set_result(task.result())
                elif task.status == "error":
                    result.set_exception(task.exception())
                else:  # cancelled or lost: the scheduler is gone
                    result.set_exception(self._lost(f"task {task.status}"))
            except Exception as exc:  # noqa: BLE001 - result() can fail if the comm dropped
                result.set_exception(self._lost(exc))

        task.add_done_callback(done)
        return result

    def check(self) -> None:
        if self.client.status not in ("running", "connecting"):
            raise self._lost(f"client {self.client.status}")

    def _lost(self, why) -> BackendLost:
        # A comm error's text is a page of connection details: its type says enough.
        reason = type(why).__name__ if isinstance(why, BaseException) else str(why)
        return BackendLost(f"lost the Dask scheduler at {self.address} ({reason})")

    def close(self) -> None:
        try:
            if self._own_client:
                self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()
                self.cluster = None

    def describe(self) -> str:
        return f"Dask cluster at {self.address} ({self.workers} worker threads)"


__all__ = ["DaskBackend"]
