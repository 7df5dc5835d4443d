"""``moodscope serve`` (the HTTP service) and ``moodscope demo`` (the offline demo)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from moodscope.cli.console import out
from moodscope.cli.options import ModelPath, Workers, default_workers
from moodscope.errors import MoodscopeError


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (default: local only)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port."),
    model: ModelPath = None,
    workers: Workers = default_workers(),
    max_upload_mb: float = typer.Option(100.0, "--max-upload-mb", help="Largest upload, MiB."),
    token: Optional[str] = typer.Option(
        None, "--token", envvar="MOODSCOPE_TOKEN", help="Require 'Authorization: Bearer TOKEN'."
    ),
    queue: int = typer.Option(
        32, "--queue", min=1, help="Requests waiting for a worker (more: 503)."
    ),
    upload_timeout: float = typer.Option(
        30.0, "--upload-timeout", help="Seconds an upload may stall before it gets 408."
    ),
) -> None:
    """Serve the HTTP API (/v1, docs at /docs) and the web page (/) with uvicorn."""
    try:
        from moodscope.service.app import serve as run_service
    except ImportError as exc:
        raise MoodscopeError(
            f"serve needs the service extra ({exc.name} is missing): pip install 'moodscope[serve]'"
        ) from None

    run_service(
        host=host,
        port=port,
        model=model,
        workers=workers,
        max_upload_mb=max_upload_mb,
        token=token,
        queue=queue,
        upload_timeout=upload_timeout,
    )


def demo(
    out_dir: Path = typer.Option(Path("demo-output"), "--out", help="Folder for the demo's files."),
) -> None:
    """Synthesise a few contrasting pieces and analyse them (no data or network needed)."""
    from moodscope.demo.run import run_demo

    run_demo(out_dir, console=out)
