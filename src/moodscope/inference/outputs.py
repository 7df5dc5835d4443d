"""Predictions written to a file as they finish, and a run that can be resumed.

While a run goes, every finished prediction is appended to ``OUTPUT.partial`` (JSON lines,
flushed line by line); at the end the output is rendered from it in the asked format and
renamed over ``OUTPUT``, so a reader never sees half a file. A run that stopped (killed, the
cluster lost) leaves ``OUTPUT.partial`` behind; run again with ``resume=True`` and the files
already in it are not predicted again.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from moodscope.atomic import atomic_write
from moodscope.errors import ConfigError
from moodscope.inference.predictor import Prediction

FORMATS = ("table", "json", "jsonl", "csv")
"""``table`` is for the terminal; written to a file it is JSON."""


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt


def render(results: Iterable[Prediction], fmt: str, *, timeline: bool = False) -> str:
    """``results`` as one JSON array, JSON lines or CSV (with ``timeline``: a row per
    window)."""
    results = list(results)
    if fmt in ("json", "table"):
        return json.dumps([r.to_dict(timeline=timeline) for r in results], indent=2) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(r.to_dict(timeline=timeline)) + "\n" for r in results)
    check_format(fmt)
    names = next((list(r.emotions) for r in results if r.ok), [])
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    if timeline:
        writer.writerow(["path", "start", "end", *names, "error"])
        for r in results:
            if not r.ok:
                writer.writerow([r.path, "", "", *[""] * len(names), r.error])
            for seg in r.timeline:
                writer.writerow(
                    [
                        r.path,
                        f"{seg.start:.3f}",
                        f"{seg.end:.3f}",
                        *[f"{seg.emotions[n]:.6f}" for n in names],
                        "",
                    ]
                )
    else:
        writer.writerow(["path", "top_emotion", *names, "silent", "error"])
        for r in results:
            writer.writerow(
                [
                    r.path,
                    r.top_emotion or "",
                    *[f"{r.emotions[n]:.6f}" if r.ok else "" for n in names],
                    r.silent if r.ok else "",
                    r.error or "",
                ]
            )
    return buffer.getvalue()


class PredictionFile:
    """The output file of a batch run, filled as predictions finish (see module docstring).

    Parameters
    ----------
    path : path
        Where the finished output goes.
    fmt : {"json", "jsonl", "csv", "table"}
    timeline : bool
        Include the per-window timeline.
    resume : bool
        Keep the predictions of an earlier, unfinished run's ``.partial`` file.
    """

    def __init__(self, path: str | Path, fmt: str, *, timeline: bool, resume: bool = False):
        self.path = Path(path)
        self.fmt = check_format(fmt)
        self.timeline = timeline
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.done: set[str] = set()
        self.resumed = 0
        if resume and self.partial.is_file():
            self._truncate_to_whole_lines()
            for prediction in self._read():
                self.done.add(prediction.path)
            self.resumed = len(self.done)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.partial, "a" if self.resumed else "w", encoding="utf-8")  # noqa: SIM115

    def _truncate_to_whole_lines(self) -> None:
        # A run killed mid-write leaves a last line without its newline: drop it.
        data = self.partial.read_bytes()
        keep = data.rfind(b"\n") + 1
        if keep != len(data):
            with open(self.partial, "r+b") as f:
                f.truncate(keep)

    def _read(self) -> Iterable[Prediction]:
        with open(self.partial, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield Prediction.from_dict(json.loads(line))

    def add(self, prediction: Prediction) -> None:
        """Record one finished prediction (flushed at once, so a crash keeps it)."""
        self._file.write(json.dumps(prediction.to_dict(timeline=self.timeline)) + "\n")
        self._file.flush()
        self.done.add(prediction.path)

    def finish(self, order: Sequence[str] | None = None) -> list[Prediction] | None:
        """Write the output and remove the partial file.

        ``order``: the input order for JSON and CSV (JSON lines keep completion order and
        are copied line by line, so a run of any size needs no memory for them). Returns
        the predictions when they were read back (JSON, CSV), else None.
        """
        self._file.close()
        results = None
        if self.fmt == "jsonl":
            with atomic_write(self.path) as out, open(self.partial, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        out.write(line)
        else:
            results = list(self._read())
            if order is not None:
                rank = {path: i for i, path in enumerate(order)}
                results.sort(key=lambda r: rank.get(r.path, len(rank)))
            with atomic_write(self.path) as out:
                out.write(render(results, self.fmt, timeline=self.timeline))
        os.unlink(self.partial)
        return results

    def close(self) -> None:
        """Stop without finishing: the partial file stays for a resumed run."""
        if not self._file.closed:
            self._file.close()


__all__ = ["FORMATS", "PredictionFile", "check_format", "render"]
