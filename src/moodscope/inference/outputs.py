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
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

from moodscope.atomic import WRITE_THROUGH, atomic_write, describe_os_error, output_target
from moodscope.errors import ConfigError, OutputError
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
    names = next((list(r.emotions) for r in results if r.ok and r.music), [])
    factors = next((list(r.factors) for r in results if r.ok and r.music), [])
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
        writer.writerow(
            ["path", "top_emotion", "confidence", *names, "top_factor", *factors, "arousal",
             "valence", "silent", "truncated", "music", "not_music", "error"]
        )  # fmt: skip
        for r in results:
            shares = r.factors
            writer.writerow(
                [
                    r.path,
                    r.top_emotion or "",
                    "" if r.confidence is None else f"{r.confidence:.6f}",
                    *[f"{r.emotions[n]:.6f}" if n in r.emotions else "" for n in names],
                    (r.top_factor or "") if r.ok else "",
                    *[f"{shares[f]:.6f}" if r.ok and f in shares else "" for f in factors],
                    *["" if v is None else f"{v:.6f}" for v in (r.arousal, r.valence)],
                    r.silent if r.ok else "",
                    r.truncated if r.ok else "",
                    r.music if r.ok else "",
                    r.not_music or "",
                    r.error or "",
                ]
            )
    return buffer.getvalue()


class PredictionFile:
    """The output file of a batch run, filled as predictions finish (see module docstring).

    Where ``path`` leads decides how it is written (:func:`moodscope.atomic.output_target`):
    a regular file, or a symlink's target, is replaced at :meth:`finish`; a device, FIFO or
    ``/dev/stdout`` is written through, its partial results kept in an unnamed temporary
    file meanwhile (such a run cannot be resumed); a folder is refused here, before any work.
    ``OUTPUT.partial`` is only created when the first prediction comes, and removed again
    when a run stops before any came, so a failed run leaves nothing beside ``path``.

    Parameters
    ----------
    path : path
        Where the finished output goes.
    fmt : {"json", "jsonl", "csv", "table"}
    timeline : bool
        Include the per-window timeline.
    resume : bool
        Keep the predictions of an earlier, unfinished run's ``.partial`` file.

    Raises
    ------
    OutputError
        ``path`` is a folder or cannot be an output.
    ConfigError
        ``resume`` with an output that is not a regular file.
    """

    def __init__(self, path: str | Path, fmt: str, *, timeline: bool, resume: bool = False):
        self.path = Path(path)
        self.fmt = check_format(fmt)
        self.timeline = timeline
        self.write_through = output_target(self.path)[0] == WRITE_THROUGH
        self.partial: Path | None = None
        if not self.write_through:
            self.partial = self.path.with_name(self.path.name + ".partial")
            _check_writable_folder(self.partial.parent, path)
        elif resume:
            raise ConfigError(f"--resume needs a regular file as --output; {path} is not one")
        self.done: set[str] = set()
        self.resumed = 0
        self.added = 0
        if resume and self.partial.is_file():
            self._truncate_to_whole_lines()
            for prediction in self._read():
                self.done.add(prediction.path)
            self.resumed = len(self.done)
        self._file: IO[str] | None = None

    def _open(self) -> IO[str]:
        if self._file is None:
            if self.partial is None:
                self._file = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
            else:
                mode = "a" if self.resumed else "w"
                try:
                    self.partial.parent.mkdir(parents=True, exist_ok=True)
                    self._file = open(self.partial, mode, encoding="utf-8")  # noqa: SIM115
                except OSError as exc:
                    problem = describe_os_error(exc)
                    raise OutputError(f"{self.partial}: cannot be written: {problem}") from exc
        return self._file

    def _truncate_to_whole_lines(self) -> None:
        # A run killed mid-write leaves a last line without its newline: drop it.
        data = self.partial.read_bytes()
        keep = data.rfind(b"\n") + 1
        if keep != len(data):
            with open(self.partial, "r+b") as f:
                f.truncate(keep)

    def _lines(self) -> Iterator[str]:
        if self.partial is None:
            if self._file is None:
                return
            self._file.seek(0)
            lines: Iterable[str] = self._file
        elif self.partial.is_file():
            lines = open(self.partial, encoding="utf-8")  # noqa: SIM115
        else:
            return
        try:
            for line in lines:
                if line.strip():
                    yield line
        finally:
            if self.partial is not None:
                lines.close()

    def _read(self) -> Iterable[Prediction]:
        number = 1  # the line being read (a line that is not UTF-8 fails before it is whole)
        try:
            for line in self._lines():
                prediction = Prediction.from_dict(json.loads(line))
                yield prediction
                number += 1
        except (ValueError, TypeError, KeyError, AttributeError):
            raise OutputError(
                f"{self.partial}: line {number} is not a moodscope result (JSON lines), so the "
                "run cannot be resumed from it; move the file away to start over"
            ) from None

    def add(self, prediction: Prediction) -> None:
        """Record one finished prediction (flushed at once, so a crash keeps it)."""
        f = self._open()
        f.write(json.dumps(prediction.to_dict(timeline=self.timeline)) + "\n")
        f.flush()
        self.done.add(prediction.path)
        self.added += 1

    def finish(self, order: Sequence[str] | None = None) -> list[Prediction] | None:
        """Write the output and remove the partial file.

        ``order``: the input order for JSON and CSV (JSON lines keep completion order and
        are copied line by line, so a run of any size needs no memory for them). Returns
        the predictions when they were read back (JSON, CSV), else None.

        Raises
        ------
        OutputError
            The output cannot be written (a full disk, no permission); the partial file
            is kept when it holds predictions, and the message says how to resume.
        """
        if self._file is not None and self.partial is not None:
            self._file.close()
            self._file = None
        results = None
        try:
            if self.fmt == "jsonl":
                with atomic_write(self.path) as out:
                    for line in self._lines():
                        out.write(line)
            else:
                results = list(self._read())
                if order is not None:
                    rank = {path: i for i, path in enumerate(order)}
                    results.sort(key=lambda r: rank.get(r.path, len(rank)))
                with atomic_write(self.path) as out:
                    out.write(render(results, self.fmt, timeline=self.timeline))
        except OutputError as exc:
            kept = self.partial is not None and self.partial.is_file() and len(self.done)
            self.close()
            if kept:
                raise OutputError(
                    f"{exc}; the {len(self.done)} prediction(s) are kept in {self.partial}: "
                    "run the same command with --resume when it can be written"
                ) from exc
            raise
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.partial is not None:
            self.partial.unlink(missing_ok=True)
        return results

    def close(self) -> None:
        """Stop writing (:meth:`finish` may still follow): the partial file stays for a
        resumed run when it holds predictions; one this run left empty goes. The unnamed
        file of a written-through output lives until :meth:`finish` or the process ends."""
        if self._file is not None and self.partial is not None:
            self._file.close()
            self._file = None
        if self.partial is not None and not self.resumed and not self.added:
            try:
                if self.partial.stat().st_size == 0:
                    self.partial.unlink()
            except FileNotFoundError:
                pass


def _check_writable_folder(folder: Path, output: str | Path) -> None:
    # Said before any work: the nearest folder that exists must take new files.
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"{output}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{output}: the folder {folder} cannot be written: permission denied")


__all__ = ["FORMATS", "PredictionFile", "check_format", "render"]
