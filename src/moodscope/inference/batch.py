"""A batch run over files, as ``moodscope predict`` does it and any script or service can:
the files found, the model loaded once, results streamed to stdout or into an output file
that a stopped run resumes (``--resume``), and JSON/CSV rendered in the input's order."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TextIO

from moodscope.atomic import check_output, output_is_input
from moodscope.audio.decode import AUDIO_EXTENSIONS, MAX_DURATION
from moodscope.backends import Backend, BackendLost
from moodscope.errors import ConfigError
from moodscope.inference.outputs import PredictionFile, check_format, render
from moodscope.inference.predictor import Prediction, find_audio, load_model, predict_iter


class PredictionRun:
    """Predict every audio file under ``paths`` into ``output`` (or a stream).

    Parameters
    ----------
    paths : iterable of path
        Files and folders (searched recursively).
    fmt : {"table", "json", "jsonl", "csv"}
        ``table`` only without ``output``: the caller renders it from :meth:`in_order`.
    output : path, optional
        The file to write; filled as results finish (``OUTPUT.partial``), finished in the
        input's order. Without it, ``jsonl`` streams each result as it finishes and
        ``json``/``csv`` are written to ``stream`` at the end.
    resume : bool
        Keep what an unfinished run left in ``OUTPUT.partial`` and predict only the rest.
    max_duration : float or None
        As in :func:`~moodscope.inference.predictor.predict`.
    """

    def __init__(
        self,
        paths: Iterable[str | Path],
        *,
        fmt: str = "json",
        output: str | Path | None = None,
        model=None,
        timeline: bool = False,
        resume: bool = False,
        max_duration: float | None = MAX_DURATION,
    ):
        self.fmt = check_format(fmt)
        if resume and output is None:
            raise ConfigError("--resume needs --output (the file an earlier run was writing)")
        self.timeline = timeline
        self.max_duration = max_duration
        self.output = Path(output) if output is not None else None
        # The output first: a folder (or anything else it cannot be) is refused before any
        # file is searched or the model loaded; nothing is created until a result comes.
        if self.output is not None:
            check_output(self.output)
        paths = list(paths)
        self.files = [str(f) for f in find_audio(paths)]
        if not self.files:
            raise ConfigError(f"no audio files found in {', '.join(map(str, paths))}")
        if self.output is not None:
            _check_not_an_input(self.output, self.files)
        self.sink = (
            PredictionFile(self.output, self.fmt, timeline=timeline, resume=resume)
            if self.output is not None
            else None
        )
        self.model = load_model(model)
        self.resumed = self.sink.resumed if self.sink is not None else 0
        done = self.sink.done if self.sink is not None else set()
        self.todo = [f for f in self.files if f not in done]
        self.failed: list[Prediction] = []

    def run(
        self,
        *,
        workers: int = 1,
        scheduler: str | None = None,
        backend: Backend | None = None,
        progress: Callable | None = None,
        stream: TextIO | None = None,
        exact: bool = False,
    ) -> Iterator[Prediction]:
        """Predict the files still to do, yielding each result as it finishes; the output
        is complete when the iterator is exhausted (``exact``: as for ``predict``)."""
        stream = stream or sys.stdout
        kept: list[Prediction] = []
        try:
            for r in predict_iter(
                self.todo,
                self.model,
                workers=workers,
                scheduler=scheduler,
                backend=backend,
                progress=progress,
                max_duration=self.max_duration,
                exact=exact,
            ):
                if not r.ok:
                    self.failed.append(r)
                if self.sink is not None:
                    self.sink.add(r)
                elif self.fmt == "jsonl":  # as each finishes: a pipe sees results at once
                    stream.write(json.dumps(r.to_dict(timeline=self.timeline)) + "\n")
                    stream.flush()
                elif self.fmt != "table":
                    kept.append(r)
                yield r
        except BackendLost as exc:
            if self.sink is None:
                raise
            if self.sink.partial is None:  # written through: nothing to resume from
                raise BackendLost(
                    f"{exc}; {self.output} is not a regular file, so the run cannot be resumed"
                ) from exc
            raise BackendLost(
                f"{exc}; {len(self.sink.done)} of {len(self.files)} file(s) are saved in "
                f"{self.sink.partial}: run the same command with --resume to finish"
            ) from exc
        finally:
            if self.sink is not None:
                self.sink.close()
        if self.sink is not None:
            self.sink.finish(order=self.files)
        elif self.fmt in ("json", "csv"):
            stream.write(render(self.in_order(kept), self.fmt, timeline=self.timeline))

    def in_order(self, results: Iterable[Prediction]) -> list[Prediction]:
        """``results`` sorted in the order the files were found."""
        rank = {path: i for i, path in enumerate(self.files)}
        return sorted(results, key=lambda r: rank.get(r.path, len(rank)))


class OutputIsInput(ConfigError):
    """``--output`` names one of the files to read, or another audio file: writing results
    there would replace a song. Refused before any work (the CLI's exit code 2)."""


def _check_not_an_input(output: Path, files: list[str]) -> None:
    for name in (output, output.with_name(output.name + ".partial")):
        song = output_is_input(name, files)
        if song is not None:
            same = "" if str(song) == str(name) else f" (the same file as {song})"
            raise OutputIsInput(
                f"--output {name} is one of the audio files to predict{same}; "
                "give a new file for the results (e.g. moods.json)"
            )
    if output.suffix.lower() in AUDIO_EXTENSIONS and output.exists():
        raise OutputIsInput(
            f"--output {output} is an audio file; results are written as JSON or CSV, "
            "never over a song: give a new file for them (e.g. moods.json)"
        )


__all__ = ["OutputIsInput", "PredictionRun"]
