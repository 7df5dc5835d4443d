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
