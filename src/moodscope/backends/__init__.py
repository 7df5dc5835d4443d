"""The executor seam: where per-file work runs (this process, a local pool, a Dask cluster)
and :func:`stream`, the one loop that yields results as they finish.

``base`` holds the contract and the loop, ``pool`` the local processes, ``cluster`` Dask,
``factory`` the choice between them. Nothing here knows about audio or models.
"""

from moodscope.backends.base import (
    Backend,
    BackendLost,
    InlineBackend,
    WorkerLost,
    failure_message,
    limit_threads,
    reuse_freed_memory,
    stream,
)
from moodscope.backends.factory import open_backend, using_backend
from moodscope.backends.pool import ProcessBackend, preload_in_workers

__all__ = [
    "Backend",
    "BackendLost",
    "InlineBackend",
    "ProcessBackend",
    "WorkerLost",
    "failure_message",
    "limit_threads",
    "open_backend",
    "preload_in_workers",
    "reuse_freed_memory",
    "stream",
    "using_backend",
]
