"""The service: requests per second and p50/p95 latency of `POST /v1/predict` for 60-s
tracks on a real `moodscope serve` with 1 and 2 workers, one client at a time and with the
workers saturated; and how fast `/v1/health` answers meanwhile."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from .common import dev_tracks

NAME = "Service (`moodscope serve`, shipped default model)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    def __init__(self, workers: int, log: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        moodscope = str(Path(sys.executable).with_name("moodscope"))
        args = ["serve", "--port", str(self.port), "--workers", str(workers), "--queue", "64"]
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [moodscope, *args], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moodscope serve exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("moodscope serve did not start in 120 s")

    def cpu_seconds(self) -> float:
        """CPU time of the server's own process (its event loop), not its workers'."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()


async def _load(url: str, bodies: list[tuple[str, bytes]], clients: int, n: int) -> dict:
    """``n`` uploads from ``clients`` clients that each send the next as soon as one returns,
    with ``/v1/health`` asked every 100 ms meanwhile."""
    latencies: list[float] = []
    health: list[float] = []
    todo = iter(range(n))
    stop = asyncio.Event()

    async def client(http):
        for i in todo:
            name, data = bodies[i % len(bodies)]
            start = time.perf_counter()
            response = await http.post("/v1/predict", files={"file": (name, data)})
            latencies.append(time.perf_counter() - start)
            assert response.status_code == 200, response.text

    async def watch(http):
        while not stop.is_set():
            start = time.perf_counter()
            await http.get("/v1/health")
            health.append(time.perf_counter() - start)
            await asyncio.sleep(0.1)

    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        watcher = asyncio.create_task(watch(http))
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - start
        stop.set()
        await watcher
    return {
        "rps": n / wall,
        "p50": float(np.percentile(latencies, 50)),
        "p95": float(np.percentile(latencies, 95)),
        "health_p50": float(np.percentile(health, 50)) * 1000,
        "health_max": max(health) * 1000,
        "n": n,
    }


def run(quick: bool = False) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tracks, source = dev_tracks(folder, 4 if quick else 8)
        bodies = [(p.name, p.read_bytes()) for p in tracks]
        rows = []
        for workers in (1, 2):
            server = _Server(workers, folder / f"serve-{workers}.log")
            try:
                asyncio.run(_load(server.url, bodies, 1, 1))  # warm: worker caches, sockets
                n = (4 if quick else 12) * workers
                for clients in (1, 2 * workers):
                    print(f"  serve: {workers} worker(s), {clients} client(s) ...", file=sys.stderr)
                    cpu, load = server.cpu_seconds(), os.getloadavg()[0]
                    result = asyncio.run(_load(server.url, bodies, clients, n))
                    result["loop_ms"] = (server.cpu_seconds() - cpu) / n * 1000
                    result["load"] = (load + os.getloadavg()[0]) / 2
                    rows.append((workers, clients, result))
            finally:
                server.stop()
    lines = [
        f"## {NAME}",
        "",
        f"`POST /v1/predict` of {source}, each request a whole upload, decode, features "
        "and model (no feature cache), against a real `moodscope serve --workers N` on "
        "127.0.0.1; each client sends its next upload when the previous one is answered. "
        "`/v1/health` is asked every 100 ms during each run.",
        "",
        "| workers | clients | requests | req/s | p50 latency s | p95 latency s "
        "| /v1/health p50 / max ms | event loop CPU ms per request | load average |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for workers, clients, r in rows:
        lines.append(
            f"| {workers} | {clients} | {r['n']} | {r['rps']:.2f} | {r['p50']:.2f} "
            f"| {r['p95']:.2f} | {r['health_p50']:.1f} / {r['health_max']:.1f} "
            f"| {r['loop_ms']:.1f} | {r['load']:.1f} |"
        )
    lines += [
        "",
        "One client at a time shows a request's own latency; two clients per worker keep "
        "every worker busy (throughput), their latency including the wait in the queue. "
        "The event loop's CPU per request (the server process itself: upload parsing, "
        "JSON) shows it only moves bytes. The load average is the machine's 1-minute "
        "load during the row, other programs included: on a machine whose cores are "
        "already busy, a second worker cannot add throughput.",
        "",
    ]
    return "\n".join(lines)
