"""The fast path against the exact one: which kernels run on this CPU, and the guard on the
numbers -- on every dev track, the same top emotion for >= 99 % of tracks and the nine
shares within 0.01 (confidence within 0.02 where predictions carry one).

``MOODSCOPE_BENCH_TRACKS`` caps the number of dev tracks (default: all 320).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np

from .common import bench_count, emotify_dir, load_note, stereo_mp3s

NAME = "Fast path (bfloat16 on AMX) against the exact path (float32)"

TOP_AGREEMENT = 0.99
SHARE_TOL = 0.01
CONFIDENCE_TOL = 0.02

# One bfloat16 forward pass in a fresh process with oneDNN's verbose log on: the log names
# every primitive's implementation (e.g. "brg_matmul:avx10_1_512_amx"), i.e. the kernels.
_KERNELS = r"""
import torch
torch.set_num_threads(1)
from moodscope.musicnn import load_musicnn
net = load_musicnn()
with torch.inference_mode():
    net.features(torch.randn(2, 187, 96), precision="bfloat16")
"""


def kernels() -> dict:
    """CPU flags, the precision predict picks, and oneDNN's implementations that ran."""
    import torch

    from moodscope.musicnn.fast import cpu_flags, fast_precision

    env = {**os.environ, "ONEDNN_VERBOSE": "1", "OMP_NUM_THREADS": "1"}
    log = subprocess.run(
        [sys.executable, "-c", _KERNELS], capture_output=True, text=True, env=env, check=True
    ).stdout
    used: dict[str, set[str]] = {}
    for line in log.splitlines():
        parts = line.split(",")
        if len(parts) > 6 and parts[0] == "onednn_verbose" and "exec" in parts:
            i = parts.index("exec")
            primitive, impl = parts[i + 2], parts[i + 3]
            used.setdefault(primitive, set()).add(impl)
    version = next(
        (w for w in torch.__config__.show().split() if w.startswith("v") and w[1:2].isdigit()),
        "?",
    )
    return {
        "flags": cpu_flags(),
        "precision": fast_precision(),
        "torch": torch.__version__,
        "onednn": version,
        "used": {k: sorted(v) for k, v in sorted(used.items())},
    }


def kernel_lines(info: dict) -> list[str]:
    used = "; ".join(f"{k}: {', '.join(v)}" for k, v in info["used"].items()) or "none logged"
    return [
        f"Kernels on this machine: CPU flags {', '.join(info['flags']) or 'none of note'}; "
        f"predict's default precision here: **{info['precision']}**; torch {info['torch']}, "
        f"oneDNN {info['onednn']}. oneDNN implementations that ran in a bfloat16 forward pass "
        f"(`ONEDNN_VERBOSE=1`): {used}.",
        "",
    ]


def agreement(exact: list, quick: list) -> dict:
    """The guard's numbers over pairs of predictions of the same files."""
    pairs = [(e, q) for e, q in zip(exact, quick, strict=True) if e.ok and q.ok]
    diffs = np.array(
        [max(abs(e.emotions[k] - q.emotions[k]) for k in e.emotions) for e, q in pairs]
    )
    same = np.array([e.top_emotion == q.top_emotion for e, q in pairs])
    conf = [
        abs(e.confidence - q.confidence)
        for e, q in pairs
        if getattr(e, "confidence", None) is not None and getattr(q, "confidence", None) is not None
    ]
    return {
        "n": len(pairs),
        "failed": len(exact) - len(pairs),
        "top_agree": float(same.mean()) if len(same) else float("nan"),
        "flips": int((~same).sum()),
        "share_max": float(diffs.max()) if len(diffs) else float("nan"),
        "share_p50": float(np.median(diffs)) if len(diffs) else float("nan"),
        "share_p99": float(np.quantile(diffs, 0.99)) if len(diffs) else float("nan"),
        "conf_max": max(conf) if conf else None,
    }


def holds(a: dict) -> bool:
    return (
        a["n"] > 0
        and a["failed"] == 0
        and a["top_agree"] >= TOP_AGREEMENT
        and a["share_max"] <= SHARE_TOL
        and (a["conf_max"] is None or a["conf_max"] <= CONFIDENCE_TOL)
    )


def guard_tracks(quick: bool) -> tuple[list[str], str]:
    """The files a guard predicts, and what they are in words: the Emotify dev tracks
    (40 with ``quick``; ``MOODSCOPE_BENCH_TRACKS`` caps them), else 8 stereo MP3s made here."""
    root = emotify_dir()
    if root is not None:
        from moodscope.datasets import EmotifyDataset

        paths = EmotifyDataset(root).tracks["path"].tolist()
        paths = paths[: bench_count("MOODSCOPE_BENCH_TRACKS", 40 if quick else len(paths))]
        return paths, f"{len(paths)} Emotify dev tracks (MP3, ~60 s)"
    import tempfile
    from pathlib import Path

    files, what = stereo_mp3s(Path(tempfile.mkdtemp()) / "mp3", 8)
    return [str(p) for p in files], what


def _guard(quick: bool) -> list[str]:
    from moodscope.backends import limit_threads
    from moodscope.inference.predictor import load_model, predict

    paths, what = guard_tracks(quick)
    limit_threads(1)
    model = load_model()
    walls = {}
    start = time.perf_counter()
    exact = predict(paths, model, exact=True, workers=2, use_cache=False)
    walls["exact"] = time.perf_counter() - start
    start = time.perf_counter()
    fast = predict(paths, model, workers=2, use_cache=False)
    walls["fast"] = time.perf_counter() - start
    a = agreement(exact, fast)
    precisions = sorted({p.precision for p in fast if p.ok})
    conf = (
        "n/a (no `confidence` on these predictions)"
        if a["conf_max"] is None
        else (f"{a['conf_max']:.4f} (guard <= {CONFIDENCE_TOL})")
    )
    verdict = "**holds**" if holds(a) else "**does not hold**"
    return [
        f"The guard, on {what}: `predict(paths, exact=True)` against `predict(paths)` (fast "
        f"path: {', '.join(precisions)}), 2 workers, no feature cache, {load_note()}:",
        "",
        "| measure | value | guard |",
        "|---|---|---|",
        f"| same top emotion | {100 * a['top_agree']:.1f} % ({a['flips']} of {a['n']} differ) "
        f"| >= {100 * TOP_AGREEMENT:.0f} % |",
        f"| largest share difference, any track, any emotion | {a['share_max']:.4f} "
        f"| <= {SHARE_TOL} |",
        f"| median / 99th percentile of the per-track largest difference | "
        f"{a['share_p50']:.4f} / {a['share_p99']:.4f} | |",
        f"| largest confidence difference | {conf} | |",
        f"| files that failed | {a['failed']} | 0 |",
        f"| wall s, exact / fast (2 workers, one after the other) | {walls['exact']:.1f} / "
        f"{walls['fast']:.1f} | |",
        "",
        f"The guard {verdict} on this machine"
        + (
            ", so `predict` runs the fast path by default here; `--exact` / `exact=True` "
            "forces float32."
            if holds(a)
            else ": predictions should be run with `--exact` here."
        ),
        "",
        "Command for this table alone: `PYTHONPATH=src python -m benchmarks.bench_fast` "
        "(`MOODSCOPE_BENCH_TRACKS=N` for fewer tracks).",
        "",
    ]


def run(quick: bool = False) -> str:
    from moodscope.musicnn.fast import fast_precision

    lines = [f"## {NAME}", ""]
    info = kernels()
    lines += kernel_lines(info)
    if fast_precision() == "float32":
        lines += [
            "This CPU has no AMX tiles (`amx_tile`, `amx_bf16`), so `predict` runs float32 "
            "only (the exact path is the fast one here) and there is nothing to guard.",
            "",
        ]
        return "\n".join(lines)
    lines += _guard(quick)
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
