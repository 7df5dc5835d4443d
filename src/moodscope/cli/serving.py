"""``moodscope serve`` (the HTTP service) and ``moodscope demo`` (the offline demo)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from moodscope.cli.console import out, say
from moodscope.cli.options import ModelPath, Workers, default_workers, with_options
from moodscope.errors import MoodscopeError
from moodscope.service.config import (
    ACCESS_LOGS,
    DEFAULTS,
    TOKEN_ENV,
    token_on_command_line_warning,
)

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def _one_of(values: tuple[str, ...]):
    def check(value: str) -> str:
        if value not in values:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(values)}")
        return value

    return check


def _positive(value: float) -> float:
    if not value > 0:
        raise typer.BadParameter(f"must be > 0, got {value:g}")
    return value


_LIMITS = {  # flag: (help, the check of its value)
    "--max-upload-mb": ("Largest upload, MiB (more: 413).", _positive),
    "--max-uploads": ("Uploads received at once (more: 503).", {"min": 1}),
    "--queue": ("Received uploads waiting for a worker (more: 503).", {"min": 0}),
    "--upload-timeout": ("Seconds an upload may send nothing (then 408).", _positive),
    "--min-upload-rate": (
        "Bytes/s an upload must average over each window (slower: 408; 0: no minimum).",
        {"min": 0},
    ),
    "--upload-rate-window": ("Seconds the upload rate is averaged over.", _positive),
    "--request-timeout": ("Seconds a prediction may run (then 504, worker replaced).", _positive),
    "--max-duration": ("Seconds of audio a file may hold (more: 422).", _positive),
    "--retry-after-max": ("Cap on a 503's Retry-After, s.", {"min": 1}),
    "--header-timeout": (
        "Seconds a connection has to send a request's head (then closed).",
        _positive,
    ),
    "--idle-timeout": ("Seconds a connection may wait between requests (then closed).", _positive),
    "--max-connections": (
        "Open connections (then the longest idle gives way, or 503); kept under ulimit -n.",
        {"min": 1},
    ),
}


def _limit(flag: str):
    help, check = _LIMITS[flag]
    if callable(check):
        return typer.Option(flag, callback=check, help=help)
    return typer.Option(flag, help=help, **check)


@dataclass
class ServiceLimits:
    """What one request may take; each default is the service's own
    (:class:`moodscope.service.config.ServiceConfig`, defined once there)."""

    max_upload_mb: Annotated[float, _limit("--max-upload-mb")] = DEFAULTS.max_upload_mb
    max_uploads: Annotated[int, _limit("--max-uploads")] = DEFAULTS.max_uploads
    queue: Annotated[int, _limit("--queue")] = DEFAULTS.queue
    upload_timeout: Annotated[float, _limit("--upload-timeout")] = DEFAULTS.upload_timeout
    min_upload_rate: Annotated[float, _limit("--min-upload-rate")] = DEFAULTS.min_upload_rate
    upload_rate_window: Annotated[float, _limit("--upload-rate-window")] = (
        DEFAULTS.upload_rate_window
    )
    request_timeout: Annotated[float, _limit("--request-timeout")] = DEFAULTS.request_timeout
    max_duration: Annotated[float, _limit("--max-duration")] = DEFAULTS.max_duration
    retry_after_max: Annotated[int, _limit("--retry-after-max")] = DEFAULTS.retry_after_max
    header_timeout: Annotated[float, _limit("--header-timeout")] = DEFAULTS.header_timeout
    idle_timeout: Annotated[float, _limit("--idle-timeout")] = DEFAULTS.idle_timeout
    max_connections: Annotated[int, _limit("--max-connections")] = DEFAULTS.max_connections


@with_options
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (default: local only)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port."),
    model: ModelPath = None,
    workers: Workers = default_workers(),
    token_file: Optional[Path] = typer.Option(
        None,
        "--token-file",
        help=f"Require the bearer token on this file's first line (or ${TOKEN_ENV}).",
    ),
    token: Optional[str] = typer.Option(
        None, "--token", help="The token itself (other users see it in ps: use --token-file)."
    ),
    allowed_host: Optional[list[str]] = typer.Option(
        None,
        "--allowed-host",
        help="A Host name to answer besides the bound address and localhost (repeat; '*': any).",
    ),
    log_level: str = typer.Option(
        "info", "--log-level", callback=_one_of(LOG_LEVELS), help=f"{', '.join(LOG_LEVELS)}."
    ),
    access_log: str = typer.Option(
        DEFAULTS.access_log,
        "--access-log",
        callback=_one_of(ACCESS_LOGS),
        help="uvicorn's text lines, one JSON object a line, or off.",
    ),
    limits: ServiceLimits = None,
) -> None:
    """Serve the HTTP API (/v1, docs at /docs), the web page (/), the probes (/healthz,
    /readyz) and Prometheus /metrics with uvicorn."""
    try:
        from moodscope.service.server import serve as run_service
    except ImportError as exc:
        raise MoodscopeError(
            f"serve needs the service extra ({exc.name} is missing): pip install '.[serve]'"
        ) from None

    if token:
        say(token_on_command_line_warning())
    run_service(
        host=host,
        port=port,
        model=model,
        workers=workers,
        token=token,
        token_file=token_file,
        allowed_hosts=tuple(allowed_host or ()),
        log_level=log_level,
        access_log=access_log,
        **dataclasses.asdict(limits),
    )


def demo(
    out_dir: Path = typer.Option(Path("demo-output"), "--out", help="Folder for the demo's files."),
) -> None:
    """Synthesise a few contrasting pieces and analyse them (no data or network needed)."""
    from moodscope.demo.run import run_demo

    run_demo(out_dir, console=out)
