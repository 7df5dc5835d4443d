"""The server's connections, before any request reaches the application: each one must send
a whole request head within ``header_timeout`` seconds (a socket that sends nothing, or half
a request line, is closed), and at most ``cap`` are open at once, a number kept under the
process's file limit. When the cap is reached, a new connection takes the place of the one
that has waited longest without a request in progress; with none such, it is told 503.
So idle sockets cannot keep ``/healthz`` or anyone else out, and the process never runs
out of file descriptors to sockets.

It is uvicorn's h11 protocol with these rules added, and every answer it gives itself (a
malformed request, a head that timed out, a full server) a one-line JSON object like the
application's.
"""

from __future__ import annotations

import json
import resource
from collections import Counter

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from moodscope.errors import ConfigError

RESERVED_FILES = 128
"""File descriptors kept free besides one per connection and one per upload being received:
the worker processes' pipes, the model and libraries, logs, the listening socket."""

CLOSE_REASONS = ("header_timeout", "shed", "refused", "bad_request")
"""Why the server closed a connection itself, the label of ``moodscope_connections_closed``:
no whole request head in time, idle and its place given to a newcomer, over the cap with no
idle one to give way, not HTTP."""


def file_limit() -> int | None:
    """The process's soft limit on open files (``ulimit -n``); None when unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def connection_cap(max_connections: int, max_uploads: int, files: int | None) -> int:
    """The open connections a server may hold: ``max_connections``, lowered so that they,
    the uploads' temporary files and :data:`RESERVED_FILES` fit in ``files`` (the file
    limit; None: unlimited)."""
    if files is None:
        return max_connections
    room = files - RESERVED_FILES - max_uploads
    if room < 8:
        raise ConfigError(
            f"the open-file limit (ulimit -n {files}) leaves room for {max(room, 0)} "
            f"connections once {max_uploads} uploads and {RESERVED_FILES} files for the "
            f"server itself are counted; raise it to at least {RESERVED_FILES + max_uploads + 64} "
            "or lower --max-uploads"
        )
    return min(max_connections, room)


def raw_json_response(status: int, reason: str, detail: str, headers: dict | None = None) -> bytes:
    """A whole HTTP/1.1 response that closes the connection: ``{"detail": ...}``."""
    body = json.dumps({"detail": detail}, ensure_ascii=True).encode()
    lines = [
        f"HTTP/1.1 {status} {reason}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


class ConnectionGuard:
    """The rules and the counts shared by every connection of one server."""

    def __init__(self, cap: int, header_timeout: float, *, files: int | None = None):
        self.cap = cap
        self.header_timeout = header_timeout
        self.files = files
        self.open: set = set()  # the connections counted against the cap
        self.idle: dict = {}  # those without a request in progress, longest waiting first
        self.closed: Counter = Counter({reason: 0 for reason in CLOSE_REASONS})

    def admit(self, conn) -> bool:
        """Count ``conn`` in, making room by closing the longest-idle connection when the
        cap is reached; False when every open connection has a request in progress."""
        if len(self.open) >= self.cap:
            victim = next(iter(self.idle), None)
            if victim is None:
                self.closed["refused"] += 1
                return False
            self.closed["shed"] += 1
            victim.drop()
        self.open.add(conn)
        return True

    def forget(self, conn) -> None:
        self.open.discard(conn)
        self.idle.pop(conn, None)

    def protocol(self) -> type[H11Protocol]:
        """uvicorn's h11 protocol under these rules (``uvicorn.run(http=...)``)."""
        guard = self

        class GuardedH11Protocol(_GuardedH11Protocol):
            pass

        GuardedH11Protocol.guard = guard
        return GuardedH11Protocol


class _GuardedH11Protocol(H11Protocol):
    """One connection: counted against the cap; a deadline for each request head, armed
    when the connection opens and after each response, disarmed when a head has arrived.
    (Between requests uvicorn's keep-alive timeout also closes a connection that sends
    nothing.)"""

    guard: ConnectionGuard

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._deadline = None
        self._request = None  # the request cycle whose head arrived last
        self._partial = False  # bytes of a next head have arrived
        if not self.guard.admit(self):
            detail = (
                f"the server has {len(self.guard.open)} connections open, each with a request "
                f"in progress (at most {self.guard.cap}, --max-connections); retry later"
            )
            self._answer_and_close(503, "Service Unavailable", detail, {"retry-after": "1"})
            return
        self._await_head()

    def connection_lost(self, exc) -> None:
        self._disarm()
        self.guard.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if data:
            self._partial = True
        super().data_received(data)
        self._notice_request()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start a pipelined request at once
        if self.transport.is_closing():
            return
        if not self._notice_request():
            self._partial = bool(self.conn.trailing_data[0])  # a pipelined head, begun
            self._await_head()

    def send_400_response(self, msg: str) -> None:
        self.guard.closed["bad_request"] += 1
        self._answer_and_close(
            400,
            "Bad Request",
            "not a valid HTTP/1.1 request (or its head is larger than the server reads)",
        )

    def drop(self) -> None:
        """Close this idle connection to make room for another."""
        self.guard.forget(self)
        self._disarm()
        if not self.transport.is_closing():
            self.transport.close()

    def _notice_request(self) -> bool:
        """Whether a new request's head has arrived (then its deadline is off)."""
        cycle = self.cycle
        if cycle is None or cycle is self._request or cycle.response_complete:
            return False
        self._request = cycle
        self._disarm()
        self.guard.idle.pop(self, None)
        return True

    def _await_head(self) -> None:
        self._disarm()
        self.guard.idle.pop(self, None)
        self.guard.idle[self] = None  # last in line to give way
        self._deadline = self.loop.call_later(self.guard.header_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_timed_out(self) -> None:
        self._deadline = None
        self.guard.closed["header_timeout"] += 1
        self.guard.forget(self)
        if not self._partial:  # it sent nothing: nobody to tell
            self._close()
            return
        seconds = f"{self.guard.header_timeout:g}"
        self._answer_and_close(
            408,
            "Request Timeout",
            f"the request's head did not arrive within {seconds} s (--header-timeout); "
            "the connection was closed",
        )

    def _answer_and_close(self, status: int, reason: str, detail: str, headers=None) -> None:
        self.guard.forget(self)
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(raw_json_response(status, reason, detail, headers))
        self._close()

    def _close(self) -> None:
        if self.conn.our_state not in (h11.ERROR, h11.CLOSED):
            try:
                self.conn.send(h11.ConnectionClosed())
            except h11.LocalProtocolError:
                pass
        if not self.transport.is_closing():
            self.transport.close()


__all__ = [
    "CLOSE_REASONS",
    "RESERVED_FILES",
    "ConnectionGuard",
    "connection_cap",
    "file_limit",
    "raw_json_response",
]
