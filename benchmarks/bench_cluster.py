"""Batch runs on Dask against the local pool: the same 44.1 kHz stereo MP3s through this
process, a local pool of 2 processes, and LocalClusters of 1 and 2 workers, in one run;
throughput, start-up, overhead per file; a capacity estimate from the measured rate."""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import soundfile as sf

from moodscope.backends import open_backend
from moodscope.inference.predictor import load_model, predict

from .common import stereo_mp3s

NAME = "Batch runs on a Dask cluster (`--scheduler local:N`) against the local pool"


def _timed_run(files: list[Path], scheduler: str | None, workers: int) -> tuple[float, float]:
    """(start-up s, run s): opening the backend and a first file (workers spawned, model
    sent and loaded), then the batch on the warm backend."""
    model = load_model()
    start = time.perf_counter()
    backend = open_backend(workers=workers, scheduler=scheduler)
    try:
        predict(files[:workers], model, backend=backend, use_cache=False)
        ready = time.perf_counter()
        results = predict(files, model, backend=backend, use_cache=False)
        done = time.perf_counter()
    finally:
        backend.close()
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    return ready - start, done - ready


def run(quick: bool = False) -> str:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # "this process" is one core, as each pool or Dask worker is
    try:
        return _run(quick)
    finally:
        torch.set_num_threads(threads)


def _run(quick: bool) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        files, what = stereo_mp3s(Path(tmp) / "mp3", 8 if quick else 32)
        audio = sum(sf.info(str(f)).duration for f in files)
        rows = []
        for label, scheduler, workers in [
            ("this process, one thread (`--workers 1`)", None, 1),
            ("local pool, 2 processes (`--workers 2`)", None, 2),
            ("Dask LocalCluster, 1 worker (`--scheduler local:1`)", "local:1", 1),
            ("Dask LocalCluster, 2 workers (`--scheduler local:2`)", "local:2", 2),
        ]:
            rows.append((label, workers, *_timed_run(files, scheduler, workers)))
    n = len(files)
    by_workers = {w: run_s for label, w, _, run_s in rows if "Dask" not in label}
    lines = [
        f"## {NAME}",
        "",
        f"{what} ({n} files, {audio / 60:.0f} min of audio), no feature cache. Start-up: "
        "opening the backend and predicting a first file (processes spawned, the model sent "
        "and loaded); run: the whole batch on the warm backend. Overhead per file: the "
        "difference to the local backend with as many workers, divided by the files.",
        "",
        "| backend | start-up s | run s | tracks/s | s of audio per s | overhead per file |",
        "|---|---|---|---|---|---|",
    ]
    for label, workers, ready, run_s in rows:
        overhead = f"{(run_s - by_workers[workers]) / n * 1000:+.0f} ms" if "Dask" in label else "-"
        lines.append(
            f"| {label} | {ready:.1f} | {run_s:.1f} | {n / run_s:.2f} | {audio / run_s:.0f} | "
            f"{overhead} |"
        )
    one_core = by_workers[1]
    per_track = one_core / n * (60.0 / (audio / n))  # seconds per minute of audio
    per_core_hour_60 = 3600 / (per_track * 1.0)
    per_core_hour_240 = per_core_hour_60 / 4
    cores = math.ceil(1_000_000 / (per_core_hour_240 * 24))
    lines += [
        "",
        f"Capacity from the one-process rate ({per_track:.3f} s per minute of 44.1 kHz stereo "
        f"MP3 on one core of this machine): **{per_core_hour_60:,.0f} one-minute tracks** or "
        f"**{per_core_hour_240:,.0f} four-minute songs per core-hour**; a million four-minute "
        f"songs in a day need **~{cores} cores**, before Dask's overhead per file above and "
        "provided the storage every worker reads delivers the files that fast.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(run(quick="--quick" in sys.argv))
