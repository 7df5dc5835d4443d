"""What every benchmark shares: the machine description, the data folder, timing."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        mem_text = f", {mem:.0f} GiB RAM"
    except (ValueError, OSError):
        mem_text = ""
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {os.cpu_count()} cores{mem_text}, {system}, Python {platform.python_version()}"


def emotify_dir() -> Path | None:
    env = os.environ.get("MOODSCOPE_EMOTIFY_DIR")
    return Path(env) if env and (Path(env) / "data.csv").is_file() else None


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def stereo_mp3s(folder: Path, n: int) -> tuple[list[Path], str]:
    """``n`` 60-s 44.1 kHz stereo MP3s, what people's libraries hold: Emotify dev tracks
    re-encoded (the release's own format) when the data is there, else synthesized pieces.
    Encoded with libsndfile's LAME, so no ffmpeg is needed."""
    import numpy as np
    import soundfile as sf
    import soxr

    root = emotify_dir()
    sources = []
    if root is not None:
        from moodscope.audio.decode import load_audio
        from moodscope.datasets import EmotifyDataset

        table = EmotifyDataset(root).tracks
        for path in table.groupby("genre").head((n + 3) // 4)["path"].tolist()[:n]:
            sources.append((Path(path).stem, load_audio(path, sr=22050)))
        what = f"{len(sources)} Emotify dev tracks re-encoded as 44.1 kHz stereo MP3"
    else:
        from moodscope.demo.synth import DEMO_PIECES, synthesize_piece

        for i in range(n):
            name = list(DEMO_PIECES)[i % len(DEMO_PIECES)]
            sources.append((f"{name}-{i}", synthesize_piece(name, duration=60.0, seed=i)))
        what = f"{n} synthesized 60-s pieces encoded as 44.1 kHz stereo MP3"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (stem, y) in enumerate(sources):
        y44 = soxr.resample(y, 22050, 44100)
        stereo = np.stack([y44, np.roll(y44, 7) * 0.9], axis=1)  # two different channels
        path = folder / f"{i:03d}-{stem}.mp3"
        sf.write(path, stereo, 44100, format="MP3", subtype="MPEG_LAYER_III")
        paths.append(path)
    return paths, what


def dev_tracks(folder: Path, n: int) -> tuple[list[Path], str]:
    """``n`` Emotify dev tracks (a quarter per genre, ~60 s, MP3) when the data is there,
    else ``n`` synthesized 60-s pieces written as FLAC under ``folder``; and what they are."""
    root = emotify_dir()
    if root is not None:
        from moodscope.datasets import EmotifyDataset

        table = EmotifyDataset(root).tracks
        paths = table.groupby("genre").head((n + 3) // 4)["path"].tolist()[:n]
        return [Path(p) for p in paths], f"{len(paths)} Emotify dev tracks (MP3, ~60 s)"
    import soundfile as sf

    from moodscope.demo.synth import DEMO_PIECES, synthesize_piece

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        name = list(DEMO_PIECES)[i % len(DEMO_PIECES)]
        path = folder / f"{name}-{i}.flac"
        sf.write(path, synthesize_piece(name, duration=60.0, seed=i), 22050)
        paths.append(path)
    return paths, f"{n} synthesized 60-s pieces (FLAC)"


def moodscope_cli() -> str:
    """The ``moodscope`` command of this environment."""
    import sys

    return str(Path(sys.executable).with_name("moodscope"))


def child_peak_rss_mb(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """Run ``cmd`` in a fresh process; return (wall seconds, its peak RSS in MB)."""
    import subprocess
    import sys

    code = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, "
        "stderr=subprocess.DEVNULL); "
        "print(time.perf_counter() - t, "
        "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *map(str, cmd)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.split()
    return float(out[0]), float(out[1])


def load_note() -> str:
    """The machine's load beside a figure: other programs' work is in every wall clock."""
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "load average unknown"
    return f"load average {one:.1f} (1 min) / {five:.1f} (5 min) on {os.cpu_count()} cores"


def bench_count(name: str, default: int) -> int:
    """A file count a benchmark takes from ``$name`` (a smaller one for a quicker run)."""
    value = os.environ.get(name, "").strip()
    return int(value) if value else default
