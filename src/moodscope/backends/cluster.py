"""Batch runs on a Dask cluster: the :class:`~moodscope.backends.base.Backend` for dask.distributed.

Workers read audio from the paths they are given, so every worker must see the files under
the same paths as the client (a shared filesystem, or the same mount in every container); a
worker that cannot gives that file an error entry. The run's context (the model) reaches
every worker once, as a worker plugin (a worker restarted mid-run too), and is loaded
there once, whatever the number of files.
"""

from __future__ import annotations

import logging
import threading
import uuid
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

_CONTEXTS: dict[str, Any] = {}
"""In a worker: each run's context by its name, put there by :class:`_Context`."""


def _run(fn, item, name):
    # Each task runs on one of the worker's threads: give it one core's worth of threads.
    global _limited
    if not _limited:
        with _LIMITED:
            if not _limited:
                limit_threads(1)
                reuse_freed_memory()  # also undoes the nanny's MALLOC_TRIM_THRESHOLD_
                _limited = True
    return fn(item, _CONTEXTS[name])


def _context_plugin(name: str, context: Any, *, quiet: bool = False):
    """A Dask worker plugin that puts ``context`` on every worker of the cluster: those up
    now and every one that joins later, a worker restarted after it was killed or ran out
    of memory included (scattered data, by contrast, is lost with the workers that held
    it, and with it every task still to run). ``quiet``: the worker logs nothing below
    CRITICAL (the workers of a LocalCluster this process started, whose failures moodscope
    reports itself: a run killed hard left them printing heartbeat tracebacks as they went)."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class _Context(WorkerPlugin):
        def __init__(self):
            self.name, self.context = name, context

        # This class travels by value (cloudpickle), and so would a global it named: the
        # module, imported on the worker, holds the one dict that _run reads.
        def setup(self, worker) -> None:
            from moodscope.backends import cluster

            cluster._CONTEXTS[self.name] = self.context
            if quiet:
                logging.getLogger("distributed").setLevel(logging.CRITICAL)

        def teardown(self, worker) -> None:
            from moodscope.backends import cluster

            cluster._CONTEXTS.pop(self.name, None)

    return _Context()


ANSWER_SECONDS = 10.0
"""How long a scheduler's address may take to say its first bytes (see below)."""

_LARGEST_HANDSHAKE = 1 << 20


def check_answers_as_dask(address: str, *, timeout: float = ANSWER_SECONDS) -> None:
    """Raise :class:`BackendLost` in one line unless ``address`` (``tcp://HOST:PORT``) is
    a Dask server within ``timeout`` seconds.

    A Dask server speaks first: on accepting a connection it sends its handshake, a frame
    of a few hundred bytes whose 8-byte little-endian length leads. dask.distributed's own
    client trusts whatever answers: a listener that says nothing (the wrong port, a stopped
    service behind a proxy) left it waiting for ever, and an HTTP server (the dashboard's
    port 8787 given by mistake) answered its handshake with ``HTTP/1.1 400``, which it read
    as a 3 EiB frame to allocate. Other schemes (tls://, ucx://) are left to Dask.
    """
    import socket
    import struct
    import time

    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    try:
        scheme, location = parse_address(address)
        if scheme != "tcp":
            return
        host, port = parse_host_port(location)
    except ValueError:
        raise BackendLost(f"{address} is not an address of the form tcp://HOST:PORT") from None
    hint = "start one with `dask scheduler` or use --scheduler local:N"
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            head = b""
            while len(head) < 16:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                block = sock.recv(16 - len(head))
                if not block:
                    break
                head += block
    except TimeoutError:
        raise BackendLost(
            f"{address} does not answer as a Dask scheduler (nothing within {timeout:.0f} s; "
            "a dashboard's port, 8787, is not the scheduler's, usually 8786)"
        ) from None
    except OSError as exc:
        raise BackendLost(
            f"cannot reach the Dask scheduler at {address} ({exc.strerror or exc}); {hint}"
        ) from None
    if len(head) == 16:
        size, frames = struct.unpack("<QQ", head)
        if 16 <= size <= _LARGEST_HANDSHAKE and 1 <= frames <= 64:
            return
    raise BackendLost(
        f"{address} answers, but not as a Dask scheduler (is it the dashboard's port, or "
        f"another service?); {hint}"
    )


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
            check_answers_as_dask(scheduler)
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
        self._main_left_alone = None

    @classmethod
    def local(cls, n_workers: int) -> DaskBackend:
        """Start a LocalCluster of ``n_workers`` single-threaded processes on 127.0.0.1."""
        try:
            from distributed import LocalCluster
        except ImportError as exc:
            raise BackendLost(
                "--scheduler local:N needs dask.distributed: pip install '.[cluster]'"
            ) from exc
        from moodscope.backends.pool import callers_main_left_alone, quiet_resource_tracker

        quiet_resource_tracker()  # a killed run's semaphores go without a warning, as for the pool
        # Held until close: a nanny restarting a lost worker spawns it again.
        main_left_alone = callers_main_left_alone().__enter__()
        try:
            import dask

            # Each worker holds only the task it runs (Dask's default queues a second one on
            # it): a file that kills its worker then takes no other file's retry with it.
            with dask.config.set({"distributed.scheduler.worker-saturation": 1.0}):
                cluster = LocalCluster(
                    n_workers=n_workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
            backend = cls(cluster.scheduler_address, cluster=cluster)
        except BaseException:
            main_left_alone.__exit__(None, None, None)
            raise
        backend._main_left_alone = main_left_alone
        return backend

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
        name = f"moodscope-context-{uuid.uuid4().hex}"
        try:
            if self._context is not None:
                self.client.unregister_worker_plugin(self._context)
            plugin = _context_plugin(name, context, quiet=self.cluster is not None)
            self.client.register_plugin(plugin, name=name)
        except Exception as exc:  # noqa: BLE001 - comm errors have many types
            raise self._lost(exc) from exc
        self._context = name

    def submit(self, fn, item) -> Future:
        # A worker that dies (killed, restarted for memory) takes no file with it: the
        # scheduler runs its tasks again on the others, and gives a task up as KilledWorker
        # once it has killed distributed.scheduler.allowed-failures + 1 workers (3 + 1 by
        # default); :func:`~moodscope.backends.base.stream` then runs that file again alone.
        result: Future = Future()
        try:
            task = self.client.submit(_run, fn, item, self._context, pure=False)
        except Exception as exc:  # noqa: BLE001
            result.set_exception(self._lost(exc))
            return result

        def done(task) -> None:
            if task.status == "cancelled":  # the scheduler is gone (or forgot the client)
                result.set_exception(self._lost("task cancelled"))
                return
            try:
                # "finished", or "lost": its result was in the memory of a worker that died
                # before it was fetched; result() waits while the scheduler computes it again.
                result.set_result(task.result())
            except Exception as exc:  # noqa: BLE001 - the task's own error, or a dropped comm
                if task.status != "error":
                    result.set_exception(self._lost(exc))
                    return
                result.set_exception(task.exception())

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
            if self._main_left_alone is not None:
                self._main_left_alone.__exit__(None, None, None)
                self._main_left_alone = None

    def describe(self) -> str:
        return f"Dask cluster at {self.address} ({self.workers} worker threads)"


__all__ = ["DaskBackend"]
