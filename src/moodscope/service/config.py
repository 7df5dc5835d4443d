"""How ``moodscope serve`` runs: every limit of the service with its default, defined once
here (the CLI's options, :func:`moodscope.service.create_app` and the README read them).

Importable without FastAPI, so the CLI can show the defaults without the service extra.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

from moodscope.errors import ConfigError

TOKEN_ENV = "MOODSCOPE_TOKEN"
ACCESS_LOGS = ("text", "json", "off")


@dataclass
class ServiceConfig:
    """A running service's options; each default is the one ``moodscope serve`` uses."""

    workers: int = 2  # prediction processes (decoding, features, model)
    queue: int = 32  # received uploads that may wait for a worker beyond those running; more: 503
    max_upload_mb: float = 100.0  # largest upload, in MiB, enforced while it streams: 413
    max_uploads: int = 64  # uploads being received at once (they hold no worker); more: 503
    upload_timeout: float = 30.0  # seconds an upload may send nothing before it gets 408
    min_upload_rate: float = 16384.0  # bytes/s an upload must average over each window: 408
    upload_rate_window: float = 10.0  # seconds over which the upload rate is measured
    request_timeout: float = 120.0  # seconds a prediction may run in a worker: 504, worker killed
    max_duration: float = 1800.0  # seconds of audio a file may hold (the CLI's default: 86400)
    retry_after_max: int = 60  # cap on the Retry-After seconds a 503 suggests
    header_timeout: float = 10.0  # seconds a connection has to send a request's head: closed
    idle_timeout: float = 5.0  # seconds a connection may stay open between requests: closed
    max_connections: int = 1000  # open connections (also kept under the file limit): 503
    token: str | None = None  # when set, /v1 and /metrics need "Authorization: Bearer TOKEN"
    allowed_hosts: tuple[str, ...] = ()  # Host headers served besides the bound address; "*": any
    use_cache: bool = False  # keep the feature cache for uploads (off: nothing accumulates)
    upload_dir: str | None = None  # where uploads wait for a worker (default: a fresh temp dir)
    access_log: str = "text"  # "text" (uvicorn's lines), "json" (one object a line) or "off"

    def __post_init__(self) -> None:
        self.allowed_hosts = tuple(self.allowed_hosts)
        for name in ("workers", "max_uploads", "max_connections"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.queue < 0:
            raise ConfigError(f"queue must be >= 0, got {self.queue}")
        if not self.max_upload_mb > 0:
            raise ConfigError(f"max upload size must be > 0 MB, got {self.max_upload_mb}")
        checks = {
            "upload timeout": self.upload_timeout,
            "upload rate window": self.upload_rate_window,
            "request timeout": self.request_timeout,
            "max duration": self.max_duration,
            "header timeout": self.header_timeout,
            "idle timeout": self.idle_timeout,
        }
        for what, value in checks.items():
            if not value > 0:
                raise ConfigError(f"{what} must be > 0 s, got {value:g}")
        if not self.min_upload_rate >= 0:
            raise ConfigError(f"min upload rate must be >= 0 bytes/s, got {self.min_upload_rate}")
        if self.retry_after_max < 1:
            raise ConfigError(f"retry-after cap must be >= 1 s, got {self.retry_after_max}")
        if self.access_log not in ACCESS_LOGS:
            raise ConfigError(
                f"access log must be one of {', '.join(ACCESS_LOGS)}, got {self.access_log!r}"
            )

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @classmethod
    def options(cls) -> set[str]:
        return {f.name for f in fields(cls)}


DEFAULTS = ServiceConfig()
"""The defaults, for the CLI's options and the docs."""


def resolve_token(token: str | None = None, token_file: str | Path | None = None) -> str | None:
    """The bearer token: ``token`` as given, else the first line of ``token_file``, else
    ``$MOODSCOPE_TOKEN``; ``None`` when none is set. A token file that cannot be read or
    holds no token is a :class:`ConfigError` (a server must not start open by mistake)."""
    if token:
        return token
    if token_file is not None:
        try:
            text = Path(token_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{token_file}: cannot read the token file ({exc})") from None
        lines = text.strip().splitlines()
        if not lines or not lines[0].strip():
            raise ConfigError(f"{token_file}: the token file is empty")
        return lines[0].strip()
    return os.environ.get(TOKEN_ENV) or None


def token_on_command_line_warning() -> str:
    return (
        "warning: --token is visible to every user of this machine (ps, /proc); "
        f"use --token-file FILE or ${TOKEN_ENV} instead"
    )


__all__ = ["DEFAULTS", "ServiceConfig", "TOKEN_ENV", "resolve_token"]
