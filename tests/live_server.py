"""A real `moodscope serve` process on 127.0.0.1, port 0 (the kernel picks a free one and
the server says which: no bind-close-reuse race), for the service and page tests: started
with the venv's `moodscope` script, stopped (and its workers with it) at the end, its uploads
kept in a folder of its own so the tests can see them removed."""

from __future__ import annotations

import atexit
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

_RUNNING = re.compile(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)")


@dataclass
class LiveServer:
    url: str
    port: int
    process: subprocess.Popen
    tmpdir: Path  # the server's TMPDIR: its upload folder lives here
    log: Path

    def memory_kb(self, field: str = "VmRSS") -> int:
        """``VmRSS`` (now) or ``VmHWM`` (peak) of the server process, in kB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def uploads_left(self) -> list[Path]:
        return [p for p in self.tmpdir.rglob("*") if p.is_file()]


def start_server(
    tmp: Path,
    *args: str,
    timeout: float = 90.0,
    rlimits: dict[int, int] | None = None,
    wrapper: list[str] | None = None,
) -> LiveServer:
    """Start ``moodscope serve --port 0 *args``; return once the port it got answers
    ``/readyz`` (the workers are up). ``rlimits``: ``resource`` limits (soft and hard) the
    server runs under, e.g. ``{resource.RLIMIT_NOFILE: 320}``; ``wrapper``: a command line
    that runs the server (``... "$@"``), e.g. one that mounts a small file system on its
    ``$TMPDIR`` first."""
    # A TMPDIR of its own, so the tests can look for uploads left behind (short, though the
    # pool no longer needs it: tests/test_backends.py runs it under one too long for a socket).
    tmpdir = Path(tempfile.mkdtemp(prefix="ms-serve-", dir="/tmp"))
    atexit.register(shutil.rmtree, tmpdir, True)  # after the tests have looked inside
    log = tmp / "server.log"
    moodscope = str(Path(sys.executable).with_name("moodscope"))
    env = {**os.environ, "TMPDIR": str(tmpdir), "PYTHONUNBUFFERED": "1"}
    env.pop("MOODSCOPE_TOKEN", None)

    def limited() -> None:
        for which, value in (rlimits or {}).items():
            resource.setrlimit(which, (value, value))

    with open(log, "wb") as out:
        process = subprocess.Popen(
            [*(wrapper or []), moodscope, "serve", "--host", "127.0.0.1", "--port", "0", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: the workers stop with it
            preexec_fn=limited if rlimits else None,
        )
    server = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moodscope serve exited early:\n{log.read_text()[-3000:]}")
        if server is None:
            found = _RUNNING.search(log.read_bytes())
            if found is None:
                time.sleep(0.2)
                continue
            port = int(found.group(1))
            server = LiveServer(f"http://127.0.0.1:{port}", port, process, tmpdir, log)
        try:
            if httpx.get(server.url + "/readyz", timeout=1.0).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop_server(server or LiveServer("", 0, process, tmpdir, log))
    raise RuntimeError(f"moodscope serve did not answer in {timeout:.0f} s:\n{log.read_text()}")


def stop_server(server: LiveServer) -> None:
    """Ask the server to shut down (SIGINT, as Ctrl-C); kill its group if it hangs."""
    process = server.process
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # any worker left behind
    except ProcessLookupError:
        pass
    process.wait(timeout=10)
