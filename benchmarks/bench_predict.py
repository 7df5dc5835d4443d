"""Prediction: warm throughput on the dev copy (1 and 2 workers), the cold start of
`moodscope predict one.mp3`, and peak memory on a 1-hour file against loading it whole."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from moodscope.datasets import EmotifyDataset
from moodscope.predict import load_model, predict

from .common import emotify_dir

NAME = "Prediction (`moodscope predict`, shipped default model)"


def _moodscope() -> str:
    return str(Path(sys.executable).with_name("moodscope"))


def _child_peak_rss_mb(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd`` in a fresh process; return (wall seconds, its peak RSS in MB)."""
    code = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, "
        "stderr=subprocess.DEVNULL); "
        "print(time.perf_counter() - t, "
        "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *cmd], capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]), float(out[1])


def _hour_file(path: Path, minutes: int) -> Path:
    rng = np.random.default_rng(0)
    sr = 44100
    t = np.arange(sr * 60) / sr
    with sf.SoundFile(path, "w", sr, 2, format="FLAC") as f:
        for m in range(minutes):
            tone = 0.3 * np.sin(2 * np.pi * (220 + 20 * (m % 7)) * t)
            block = (tone + 0.02 * rng.standard_normal(len(t))).astype(np.float32)
            f.write(np.stack([block, block * 0.8], axis=1))
    return path


def run(quick: bool = False) -> str:
    lines = [f"## {NAME}", ""]
    root = emotify_dir()
    if root is not None:
        dataset = EmotifyDataset(root)
        n = 16 if quick else 96
        paths = dataset.tracks.groupby("genre").head(n // 4)["path"].tolist()
        audio_seconds = sum(sf.info(p).duration for p in paths)
        load_model()
        predict(paths[:1], use_cache=False)  # warm: model loaded, numba compiled
        rows = []
        for workers in (1, 2):
            start = time.perf_counter()
            results = predict(paths, workers=workers, use_cache=False)
            seconds = time.perf_counter() - start
            assert all(r.ok for r in results)
            rows.append((workers, seconds))
        lines += [
            f"Warm throughput on {len(paths)} dev tracks ({audio_seconds / 60:.0f} min of audio, "
            "decoding + features + model, no cache):",
            "",
            "| workers | wall s | seconds of audio per second | per track |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {w} | {s:.1f} | {audio_seconds / s:.0f} | {s / len(paths):.2f} s |" for w, s in rows
        ]
        lines += [
            "",
            f"Two workers vs one: {rows[0][1] / rows[1][1]:.2f}x.",
            "",
        ]
        one = paths[0]
    else:
        one = None
        lines += ["Throughput skipped: set MOODSCOPE_EMOTIFY_DIR.", ""]

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if one is None:
            one = str(tmp / "one.wav")
            sf.write(one, np.zeros(22050 * 60, np.float32), 22050)
        env = {**os.environ, "MOODSCOPE_CACHE_DIR": str(tmp / "cache")}
        os.environ.update(env)
        colds = [
            _child_peak_rss_mb([_moodscope(), "predict", one, "--workers", "1"])[0]
            for _ in range(3)
        ]
        imports = [
            _child_peak_rss_mb([sys.executable, "-c", "import moodscope.predict"])[0]
            for _ in range(3)
        ]
        lines += [
            f"Cold start of `moodscope predict one.mp3` (new process, imports included, cache "
            f"empty), median of 3: **{statistics.median(colds):.2f} s** (target < 5 s); of "
            f"which importing moodscope.predict: {statistics.median(imports):.2f} s.",
            "",
        ]
        minutes = 10 if quick else 60
        long = _hour_file(tmp / "long.flac", minutes)
        wall, rss = _child_peak_rss_mb(
            [_moodscope(), "predict", str(long), "--workers", "1", "--format", "json"]
        )
        ref_code = (
            "import librosa, sys; y, sr = librosa.load(sys.argv[1], sr=22050, mono=True); "
            "print(len(y))"
        )
        ref_wall, ref_rss = _child_peak_rss_mb([sys.executable, "-c", ref_code, str(long)])
        lines += [
            f"A {minutes}-minute 44.1 kHz stereo FLAC:",
            "",
            "| run | wall s | peak RSS |",
            "|---|---|---|",
            f"| `moodscope predict` (block-wise decoding) | {wall:.1f} | {rss:.0f} MB "
            "(target < 1024 MB) |",
            f"| reference: `librosa.load` of the whole file, nothing else | {ref_wall:.1f} | "
            f"{ref_rss:.0f} MB |",
            "",
            f"Peak memory ratio, predict / whole-file load: {rss / ref_rss:.2f}.",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
