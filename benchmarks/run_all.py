"""Run every benchmark and write docs/benchmarks.md (atomically), with machine and command.

python -m benchmarks.run_all --out docs/benchmarks.md [--quick] [--only features,...]

With ``--only``, the sections run replace their namesakes in the existing file and the others
stay; every section opens with the date, machine and command it was measured with, so a file
assembled from several runs says which figure came from which.
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
    "bench_features", "bench_musicnn", "bench_predict", "bench_fast", "bench_runtime",
    "bench_cluster",
    "bench_serve", "bench_tag",
]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller inputs")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    args = parser.parse_args(argv)
    wanted = [b.strip() for b in args.only.split(",") if b.strip()]
    given = sys.argv[1:] if argv is None else argv
    make = given == ["--out", "docs/benchmarks.md"]  # what `make bench` runs
    command = "make bench" if make else "python -m benchmarks.run_all " + " ".join(given)
    files = os.environ.get("MOODSCOPE_BENCH_LIBRARY_FILES")
    if files and make:  # the one knob the Makefile passes on
        command += f" BENCH_LIBRARY_FILES={files}"
    elif files:
        command = f"MOODSCOPE_BENCH_LIBRARY_FILES={files} {command}"
    stamp = f"_Measured {datetime.date.today().isoformat()} on {machine()}, `{command}`._"
    sections = _sections(args.out) if wanted else {}
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
        heading, _, body = module.run(quick=args.quick).partition("\n")
        sections[heading] = f"{heading}\n\n{stamp}\n{body.rstrip()}\n"
    header = [
        "# Benchmarks",
        "",
        "Every ratio compares against the reference measured in the same run; each section "
        "names the machine, date and command it comes from (`make bench` runs them all).",
        "",
    ]
    text = "\n".join(header + list(sections.values())) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=args.out.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, args.out)
    print(text)
    return 0


def _sections(path: Path) -> dict[str, str]:
    """The ``## `` sections of an existing benchmarks file, by heading, in their order."""
    if not path.exists():
        return {}
    sections: dict[str, str] = {}
    heading = None
    for line in path.read_text().splitlines(keepends=True):
        if line.startswith("## "):
            heading = line.rstrip("\n")
            sections[heading] = line
        elif heading is not None:
            sections[heading] += line
    return {h: text.rstrip() + "\n" for h, text in sections.items()}


if __name__ == "__main__":
    raise SystemExit(main())
