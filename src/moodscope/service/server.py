"""Running the service: ``moodscope serve`` starts the application under uvicorn, its
connections guarded (:mod:`moodscope.service.connections`), warning when it listens beyond
this machine without a token."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import Any

from moodscope.errors import ConfigError
from moodscope.service.app import create_app
from moodscope.service.config import DEFAULTS, TOKEN_ENV, ServiceConfig, resolve_token
from moodscope.service.connections import ConnectionGuard, connection_cap, file_limit
from moodscope.service.operators import configure_access_log


def public_without_token(host: str, token: str | None) -> bool:
    """Whether serving on ``host`` lets other machines in with no token."""
    if token:
        return False
    if host in ("localhost", "ip6-localhost"):
        return False
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return True  # a host name: assume others can reach it


LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    model: Any = None,
    token_file: str | Path | None = None,
    log_level: str = "info",
    **options: Any,
) -> None:
    """Run the service with uvicorn until interrupted (``moodscope serve``).

    The token is ``token``, else the first line of ``token_file``, else
    ``$MOODSCOPE_TOKEN``; ``options`` are :class:`ServiceConfig` fields.
    """
    import uvicorn

    if log_level not in LOG_LEVELS:
        raise ConfigError(f"log level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    token = resolve_token(options.pop("token", None), token_file)
    if public_without_token(host, token):
        print(
            f"warning: serving on {host} without a token: anyone who can reach port {port} "
            f"can use it; pass --token-file or set {TOKEN_ENV}",
            file=sys.stderr,
            flush=True,
        )
    limits = ServiceConfig(**{k: v for k, v in options.items() if k in ServiceConfig.options()})
    files = file_limit()
    cap = connection_cap(limits.max_connections, limits.max_uploads, files)
    if cap < limits.max_connections:
        print(
            f"note: at most {cap} open connections (not {limits.max_connections}): the "
            f"open-file limit is {files} (ulimit -n)",
            file=sys.stderr,
            flush=True,
        )
    guard = ConnectionGuard(cap, limits.header_timeout, files=files)
    app = create_app(model, host=host, token=token, connections=guard, **options)
    access_log = options.get("access_log", DEFAULTS.access_log)
    if access_log == "json":
        configure_access_log(log_level)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log == "text",
        timeout_graceful_shutdown=10,
        http=guard.protocol(),
        timeout_keep_alive=limits.idle_timeout,
    )


__all__ = ["LOG_LEVELS", "public_without_token", "serve"]
