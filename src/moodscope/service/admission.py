"""What the service lets in: the one-line HTTP refusal every failure becomes
(:class:`RequestRejected`), and the bounded queue in front of the workers that answers 503
with a ``Retry-After`` when full (:class:`Admission`)."""

from __future__ import annotations

import math
from collections.abc import Callable

from moodscope.errors import MoodscopeError
from moodscope.service.config import ServiceConfig


class RequestRejected(MoodscopeError):
    """A request the service answers with an HTTP error: ``status`` and a one-line detail."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = " ".join(detail.split())
        self.headers = headers or {}


class Admission:
    """Two counts, each with its limit, checked without waiting (a full server says 503 at
    once, with a ``Retry-After`` from the measured service time):

    - uploads being received (``max_uploads``): they hold a connection and a temporary
      file, never a worker's place, so clients that trickle cannot starve the others;
    - received uploads running or waiting for a worker (``workers + queue``).
    """

    GUESS_SECONDS = 2.0
    """Service time assumed before the first request is measured."""

    def __init__(self, config: ServiceConfig, service_seconds: Callable[[], float | None]):
        self.workers = config.workers
        self.capacity = config.workers + config.queue
        self.max_receiving = config.max_uploads
        self.retry_after_max = config.retry_after_max
        self.service_seconds = service_seconds
        self.admitted = 0
        self.receiving = 0

    def check(self) -> None:
        """Refuse now when a received upload would find the queue full (before any byte of
        it is read; :meth:`enter` decides once it has arrived)."""
        if self.admitted >= self.capacity:
            raise self._busy(
                f"{self.admitted} requests are running or queued (at most {self.capacity})"
            )

    def start_upload(self) -> None:
        if self.receiving >= self.max_receiving:
            raise self._busy(
                f"{self.receiving} uploads are being received (at most {self.max_receiving}, "
                "--max-uploads)"
            )
        self.receiving += 1

    def end_upload(self) -> None:
        self.receiving -= 1

    def enter(self) -> None:
        # No await between the check and the increment: atomic on the event loop.
        self.check()
        self.admitted += 1

    def leave(self) -> None:
        self.admitted -= 1

    def retry_after(self) -> int:
        """Seconds until a place is likely free: a running request ends about every
        (median recent service time / workers) seconds; capped by ``retry_after_max``."""
        seconds = self.service_seconds() or self.GUESS_SECONDS
        return min(self.retry_after_max, max(1, math.ceil(seconds / self.workers)))

    def _busy(self, why: str) -> RequestRejected:
        return RequestRejected(
            503, f"the server is busy: {why}; retry later", {"Retry-After": str(self.retry_after())}
        )


__all__ = ["Admission", "RequestRejected"]
