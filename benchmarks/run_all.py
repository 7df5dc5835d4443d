"""Run every benchmark and write docs/benchmarks.md (atomically), with machine and command.

python -m benchmarks.run_all --out docs/benchmarks.md [--quick] [--only features,...]
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import sys
import tempfile
from pathlib import Path

from .common import machine

BENCHMARKS = [
    "bench_features", "bench_musicnn", "bench_predict", "bench_fast", "bench_cluster",
    "bench_serve", "bench_tag",
]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller inputs")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    args = parser.parse_args(argv)
    wanted = [b.strip() for b in args.only.split(",") if b.strip()]
    sections = []
    for name in BENCHMARKS:
        if wanted and name not in wanted and name.removeprefix("bench_") not in wanted:
            continue
        try:
            module = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"benchmarks.{name}":
                continue  # not written yet
            raise
        print(f"running {name} ...", file=sys.stderr, flush=True)
        sections.append(module.run(quick=args.quick))
    command = "make bench" if not argv else "python -m benchmarks.run_all " + " ".join(argv)
    files = os.environ.get("MOODSCOPE_BENCH_LIBRARY_FILES")
    if files and not argv:  # the one knob the Makefile passes on
        command += f" BENCH_LIBRARY_FILES={files}"
    elif files:
        command = f"MOODSCOPE_BENCH_LIBRARY_FILES={files} {command}"
    header = [
        "# Benchmarks",
        "",
        f"Machine: {machine()}.",
        f"Date: {datetime.date.today().isoformat()}. Command: `{command}`.",
        "Every ratio compares against the reference measured in the same run.",
        "",
    ]
    text = "\n".join(header + sections) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=args.out.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, args.out)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
