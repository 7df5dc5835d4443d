"""What an operator sees of a running service: Prometheus metrics (``GET /metrics``), the
access log (uvicorn's lines, or one JSON object a line) and the Host-header check that
keeps other web pages from reaching a local server (DNS rebinding), as one ASGI middleware.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

ACCESS_LOGGER = "moodscope.access"

METHODS = frozenset("GET HEAD POST PUT DELETE PATCH OPTIONS TRACE CONNECT".split())
"""HTTP's methods: any other a client makes up is counted as ``other``, so requests cannot
grow the metrics' label sets (routes are bounded the same way, by ``_route_of``)."""

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
"""Seconds: probes answer in milliseconds, predictions in seconds, long files in minutes."""


class ServiceMetrics:
    """The service's metrics in a registry of its own (one per application, so two apps in
    one process, as in the tests, never share counts). ``state`` is read at scrape time:
    a callable returning the queue depth, busy and total workers, uploads being received,
    readiness and the worker restarts by reason."""

    def __init__(self, state: Callable[[], dict]):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "moodscope_http_requests",
            "HTTP requests answered, by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "moodscope_http_request_duration_seconds",
            "Time from a request's start to the end of its answer, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "moodscope_predictions",
            "Uploads that reached a worker or were refused for their content, by outcome "
            "(ok, or the error: not_audio, unusable, crash, timeout, cancelled).",
            ["outcome"],
            registry=self.registry,
        )
        self.registry.register(_StateCollector(state))

    def watch_connections(self, guard) -> None:
        """Show a :class:`~moodscope.service.connections.ConnectionGuard`'s counts: open
        connections, the cap, and those the server closed itself, by reason."""
        self.registry.register(_ConnectionCollector(guard))

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _StateCollector:
    """Gauges read from the service when scraped, so they never drift from what it does."""

    def __init__(self, state: Callable[[], dict]):
        self.state = state

    def describe(self):
        return []

    def collect(self):
        s = self.state()
        gauges = {
            "moodscope_queue_depth": ("Received uploads waiting for a worker.", s["queued"]),
            "moodscope_workers_busy": ("Workers running a prediction.", s["running"]),
            "moodscope_workers": ("Worker processes.", s["workers"]),
            "moodscope_uploads_receiving": ("Uploads being received.", s["receiving"]),
            "moodscope_ready": ("1 once the model is loaded and the workers are up.", s["ready"]),
        }
        for name, (text, value) in gauges.items():
            yield GaugeMetricFamily(name, text, value=float(value))
        restarts = CounterMetricFamily(
            "moodscope_worker_restarts",
            "Worker processes replaced, by reason (died, timeout, cancelled).",
            labels=["reason"],
        )
        for reason, count in sorted(s["restarts"].items()):
            restarts.add_metric([reason], count)
        yield restarts


class _ConnectionCollector:
    def __init__(self, guard):
        self.guard = guard

    def describe(self):
        return []

    def collect(self):
        g = self.guard
        yield GaugeMetricFamily("moodscope_connections_open", "Open connections.", len(g.open))
        yield GaugeMetricFamily(
            "moodscope_connections_max", "Open connections allowed (--max-connections).", g.cap
        )
        closed = CounterMetricFamily(
            "moodscope_connections_closed",
            "Connections the server closed itself, by reason (header_timeout, shed: idle and "
            "its place given to a newcomer, refused: full, bad_request: not HTTP).",
            labels=["reason"],
        )
        for reason, count in sorted(g.closed.items()):
            closed.add_metric([reason], count)
        yield closed


# -- the Host header --------------------------------------------------------------------------

_WILDCARD = {"0.0.0.0", "::", ""}


def host_of(header: str) -> str:
    """The host part of a Host header, lower case, without the port or IPv6 brackets."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    if header.count(":") == 1:
        return header.split(":", 1)[0]
    return header


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def default_allowed_hosts(bound: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The bound address, the loopback names and ``extra`` (``--allowed-host``)."""
    names = {"localhost", "127.0.0.1", "::1", host_of(bound)}
    names.update(host_of(h) for h in extra)
    return frozenset(names - {""})


class HostCheck:
    """Whether a request's Host header names this server.

    A page on another site can make the browser send requests to 127.0.0.1 under the
    site's own name (DNS rebinding); only the Host header tells them apart, so a name not
    allowed gets 421. An IP address cannot be rebound: bound to every interface
    (``0.0.0.0``, ``::``), any address literal is served, as a probe or a client that
    knows the machine's address sends one. ``*`` among the names turns the check off
    (behind a proxy that checks it).
    """

    def __init__(self, bound: str, allowed: Iterable[str] = ()):
        allowed = tuple(allowed)
        self.any = "*" in allowed
        self.names = default_allowed_hosts(bound, (h for h in allowed if h != "*"))
        self.any_ip = host_of(bound) in _WILDCARD

    def allows(self, header: str | None) -> bool:
        if self.any:
            return True
        if not header:
            return False
        host = host_of(header)
        return host in self.names or (self.any_ip and _is_ip(host))

    def describe(self) -> str:
        names = sorted(self.names)
        if self.any_ip:
            names.append("any IP address")
        return ", ".join(names)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a line is logged (uvicorn's own loggers do
    the same), never to a stream replaced since."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_access_log(level: str) -> None:
    """The JSON access log's lines to stderr, one object a line, at uvicorn's ``level``
    (its access lines are ``info``: ``warning`` and above hide them, as they hide
    uvicorn's)."""
    log = logging.getLogger(ACCESS_LOGGER)
    if not log.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.DEBUG if level == "trace" else level.upper())
    log.propagate = False


# -- the middleware ---------------------------------------------------------------------------


def _route_of(scope: dict) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if path else "other"  # unknown paths share one label: bounded cardinality


class OperatorMiddleware:
    """Pure ASGI (streaming bodies and disconnects pass through untouched): refuses unknown
    Host headers, counts every answer by route and status, times it, and writes the JSON
    access log line when asked to."""

    def __init__(
        self,
        app,
        *,
        metrics: ServiceMetrics,
        hosts: HostCheck,
        json_log: bool = False,
    ):
        self.app, self.metrics, self.hosts, self.json_log = app, metrics, hosts, json_log
        self.log = logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        status = {"code": 500}

        async def sending(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            if not self.hosts.allows(host):
                scope["route"] = None
                await _refuse_host(host, self.hosts, sending)
            else:
                await self.app(scope, receive, sending)
        finally:
            seconds = time.perf_counter() - started
            route = _route_of(scope)
            method = scope.get("method", "")
            label = method if method in METHODS else "other"
            self.metrics.requests.labels(route, label, str(status["code"])).inc()
            self.metrics.latency.labels(route).observe(seconds)
            if self.json_log:
                client = scope.get("client") or ("", 0)
                self.log.info(
                    json.dumps(
                        {
                            "time": round(time.time(), 3),
                            "client": f"{client[0]}:{client[1]}",
                            "method": method,
                            "path": scope.get("path", ""),
                            "route": route,
                            "status": status["code"],
                            "seconds": round(seconds, 4),
                            "host": host,
                            "user_agent": headers.get(b"user-agent", b"").decode("latin-1"),
                        },
                        ensure_ascii=True,  # a hostile header cannot add a line
                    )
                )


async def _refuse_host(host: str, hosts: HostCheck, send) -> None:
    detail = (
        f"host {host!r} is not served here (allowed: {hosts.describe()}); "
        "start the server with --allowed-host NAME for another name"
    )
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 421,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


__all__ = [
    "ACCESS_LOGGER",
    "HostCheck",
    "OperatorMiddleware",
    "ServiceMetrics",
    "configure_access_log",
    "default_allowed_hosts",
    "host_of",
]
