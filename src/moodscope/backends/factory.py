"""Which backend a run gets: this process, a local pool, or a Dask cluster."""

from __future__ import annotations

import operator
import re
from collections.abc import Iterator
from contextlib import contextmanager

from moodscope.backends.base import Backend, InlineBackend
from moodscope.backends.pool import ProcessBackend
from moodscope.errors import ConfigError

_LOCAL_CLUSTER = re.compile(r"^local(?::(\d+))?$")


def open_backend(*, workers: int = 1, scheduler: str | None = None) -> Backend:
    """The backend for ``workers`` local processes, or for a Dask ``scheduler``.

    Parameters
    ----------
    workers : int
        Local worker processes when no scheduler is given; 1 runs in this process.
    scheduler : str, optional
        ``"tcp://HOST:PORT"`` (a running ``dask scheduler``), ``"local:N"`` (start a Dask
        LocalCluster of N single-threaded worker processes), or a ``distributed.Client``.
    """
    check_workers(workers)
    if scheduler is None or scheduler == "":
        return InlineBackend() if workers == 1 else ProcessBackend(workers)
    from moodscope.backends.cluster import DaskBackend

    if isinstance(scheduler, str):
        match = _LOCAL_CLUSTER.match(scheduler)
        if match:
            n = int(match.group(1)) if match.group(1) is not None else workers
            if n < 1:
                raise ConfigError(f"scheduler {scheduler!r}: a local cluster needs >= 1 worker")
            return DaskBackend.local(n)
        if "://" not in scheduler:
            raise ConfigError(
                f"scheduler {scheduler!r} is neither an address (tcp://HOST:PORT) nor local:N"
            )
    return DaskBackend(scheduler)


def check_workers(workers) -> int:
    """``workers`` if it is a whole number >= 1, else :class:`ConfigError` in one line."""
    try:
        n = operator.index(workers)  # an int or a numpy integer; not 2.0, "2" or True
    except TypeError:
        n = 0
    if isinstance(workers, bool) or n < 1:
        raise ConfigError(f"workers must be a whole number >= 1, got {workers!r}")
    return n


@contextmanager
def using_backend(
    backend: Backend | None = None,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    items: int | None = None,
) -> Iterator[Backend]:
    """``backend`` as given (left open for its owner), else one opened for ``workers`` or
    ``scheduler`` and closed at the end; never more local workers than ``items``."""
    if backend is not None:
        yield backend
        return
    check_workers(workers)
    if items is not None and not scheduler:
        workers = max(1, min(workers, items))
    with open_backend(workers=workers, scheduler=scheduler) as opened:
        yield opened
