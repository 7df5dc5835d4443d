"""The ONNX network on onnxruntime (what ``pip install .`` predicts with) against the PyTorch
port it was exported from: the guard on the dev tracks, throughput on one core, cold start,
and (``MOODSCOPE_BENCH_INSTALL=1``) the size of a fresh ``pip install .``.

- Guard: ``predict`` of every dev track with ``MOODSCOPE_RUNTIME=torch`` (the port, float32)
  and with the default (onnxruntime), one process, no feature cache: the same top emotion for
  >= 99 % of tracks, shares within 0.01, confidence within 0.02 (bench_fast's guard).
- Throughput: the network alone on the 20 patches of a 60-s track, one thread, each runtime
  timed in turns in the same process (the median of the rounds; the ratio is what to read);
  and the bfloat16 path where this CPU has AMX.
- Cold start: ``moodscope predict one.mp3`` in a fresh process against
  ``python -c 'import torch'``, median wall of several runs each, alternated.

``MOODSCOPE_BENCH_TRACKS`` caps the number of dev tracks (default: all 320).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .bench_fast import (
    CONFIDENCE_TOL,
    SHARE_TOL,
    TOP_AGREEMENT,
    agreement,
    guard_tracks,
    holds,
)
from .common import load_note, moodscope_cli, stereo_mp3s

NAME = "Runtimes: the ONNX network (onnxruntime) against the PyTorch port"

ROOT = Path(__file__).resolve().parents[1]


def _with_runtime(runtime: str | None, fn, *args, **kwargs):
    saved = os.environ.pop("MOODSCOPE_RUNTIME", None)
    if runtime is not None:
        os.environ["MOODSCOPE_RUNTIME"] = runtime
    try:
        return fn(*args, **kwargs)
    finally:
        os.environ.pop("MOODSCOPE_RUNTIME", None)
        if saved is not None:
            os.environ["MOODSCOPE_RUNTIME"] = saved


def guard(quick: bool) -> list[str]:
    from moodscope.backends import limit_threads
    from moodscope.inference.predictor import load_model, predict

    paths, what = guard_tracks(quick)
    limit_threads(1)
    model = load_model()
    walls = {}
    start = time.perf_counter()
    port = _with_runtime("torch", predict, paths, model, exact=True, use_cache=False)
    walls["port"] = time.perf_counter() - start
    start = time.perf_counter()
    onnx = _with_runtime(None, predict, paths, model, exact=True, use_cache=False)
    walls["onnx"] = time.perf_counter() - start
    a = agreement(port, onnx)
    conf = "n/a" if a["conf_max"] is None else f"{a['conf_max']:.5f}"
    verdict = "**holds**" if holds(a) else "**does not hold**"
    return [
        f"The guard, on {what}: `predict(paths, exact=True)` on the PyTorch port "
        f"(`MOODSCOPE_RUNTIME=torch`) against the same on onnxruntime, one process, one "
        f"thread, no feature cache, {load_note()}:",
        "",
        "| measure | value | guard |",
        "|---|---|---|",
        f"| same top emotion | {100 * a['top_agree']:.1f} % ({a['flips']} of {a['n']} differ) "
        f"| >= {100 * TOP_AGREEMENT:.0f} % |",
        f"| largest share difference, any track, any emotion | {a['share_max']:.2e} "
        f"| <= {SHARE_TOL} |",
        f"| largest confidence difference | {conf} | <= {CONFIDENCE_TOL} |",
        f"| files that failed | {a['failed']} | 0 |",
        f"| wall s, port / onnxruntime (decode included; one after the other, not "
        f"interleaved: the throughput table is the comparison) | {walls['port']:.1f} / "
        f"{walls['onnx']:.1f} | |",
        "",
        f"The guard {verdict}.",
        "",
    ]


def throughput(quick: bool) -> list[str]:
    import torch

    from moodscope.musicnn.fast import cpu_flags
    from moodscope.musicnn.inputs import SAMPLE_RATE, log_mel, patches
    from moodscope.musicnn.model import load_musicnn
    from moodscope.musicnn.network import _session

    torch.set_num_threads(1)
    t = np.arange(60 * SAMPLE_RATE) / SAMPLE_RATE
    rng = np.random.default_rng(0)
    y = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(len(t))).astype(
        np.float32
    )
    batch = patches(log_mel(y, SAMPLE_RATE))  # 20 patches
    session = _session("MSD_musicnn", 1)
    net = load_musicnn("MSD_musicnn")
    x = torch.from_numpy(batch)
    amx = {"amx_tile", "amx_bf16"} <= set(cpu_flags())

    def run_onnx():
        session.run(None, {"patches": batch})

    def run_port(precision: str = "float32"):
        with torch.inference_mode():
            net.features(x, precision=precision)

    paths = {"onnxruntime float32": run_onnx, "PyTorch port float32": run_port}
    if amx:
        paths["PyTorch port bfloat16 (AMX)"] = lambda: run_port("bfloat16")
    for fn in paths.values():  # warm up: first calls prepare layers and sessions
        fn()
    rounds = 3 if quick else 7
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, fn in paths.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    ref = statistics.median(times["PyTorch port float32"])
    lines = [
        f"Throughput, the network alone on one 60-s track ({len(batch)} patches), one thread, "
        f"median of {rounds} rounds taken in turns, {load_note()}:",
        "",
        "| runtime | ms per 60-s track | vs the port's float32 |",
        "|---|---|---|",
    ]
    for name, values in times.items():
        med = statistics.median(values)
        lines.append(f"| {name} | {1000 * med:.0f} | {med / ref:.2f}x |")
    if not amx:
        lines += [
            "",
            "This CPU has no AMX tiles, so the bfloat16 path is not a fast path here and "
            "`predict` runs float32 on onnxruntime. On a CPU with AMX and the research extra "
            "installed, `predict` picks bfloat16 (see the fast-path section).",
        ]
    return [*lines, ""]


def _wall(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def cold_start(quick: bool) -> list[str]:
    folder = Path(tempfile.mkdtemp())
    files, _ = stereo_mp3s(folder / "mp3", 1)
    one = files[0]
    env_cache = folder / "cache"
    predict = [
        moodscope_cli(), "predict", str(one), "--format", "json", "--output",
        str(folder / "out.json"),
    ]  # fmt: skip
    torch_cmd = [sys.executable, "-c", "import torch"]
    os.environ["MOODSCOPE_CACHE_DIR"] = str(env_cache)  # a cold feature cache every run
    runs = 3 if quick else 7
    walls: dict[str, list[float]] = {"predict": [], "torch": []}
    _wall(torch_cmd, folder)  # page cache warm for both
    _wall(predict, folder)
    for _ in range(runs):
        shutil.rmtree(env_cache, ignore_errors=True)
        walls["predict"].append(_wall(predict, folder))
        walls["torch"].append(_wall(torch_cmd, folder))
    p, t = statistics.median(walls["predict"]), statistics.median(walls["torch"])
    shutil.rmtree(folder, ignore_errors=True)
    return [
        f"Cold start, median of {runs} fresh processes each, alternated, {load_note()}:",
        "",
        "| command | wall s |",
        "|---|---|",
        f"| `moodscope predict one.mp3` (a 60-s stereo MP3, feature cache empty) | {p:.2f} |",
        f"| `python -c 'import torch'` | {t:.2f} |",
        "",
        f"The whole prediction takes {p / t:.2f}x the time of importing PyTorch alone "
        "(which predicting no longer does).",
        "",
    ]


def install_size() -> list[str]:
    """A fresh venv with ``pip install .`` of this checkout: its size, and no torch in it."""
    folder = Path(tempfile.mkdtemp())
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    start = time.perf_counter()
    subprocess.run([*pip, "install", "-q", str(ROOT)], check=True)
    wall = time.perf_counter() - start
    size = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink())
    listed = subprocess.run([*pip, "list"], check=True, capture_output=True, text=True).stdout
    torch = any(line.split()[0].lower() == "torch" for line in listed.splitlines()[2:])
    shutil.rmtree(folder, ignore_errors=True)
    return [
        f"Install: `python -m venv v && v/bin/pip install .` from this checkout: "
        f"{size / 1e6:.0f} MB of files in the venv, torch installed: {'yes' if torch else 'no'}, "
        f"{wall:.0f} s (packages from this machine's index and wheel cache).",
        "",
    ]


def run(quick: bool = False) -> str:
    lines = [f"## {NAME}", ""]
    if os.environ.get("MOODSCOPE_BENCH_INSTALL") == "1":
        lines += install_size()
    lines += throughput(quick)
    lines += cold_start(quick)
    lines += guard(quick)
    lines += [
        "Command for this section alone: `PYTHONPATH=src python -m benchmarks.bench_runtime` "
        "(`MOODSCOPE_BENCH_TRACKS=N` for fewer tracks, `MOODSCOPE_BENCH_INSTALL=1` to measure "
        "a fresh install too).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
