"""``moodscope predict``: parses its options and runs a
:class:`~moodscope.inference.batch.PredictionRun`."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from moodscope.cli.console import output_format, progress_bar, say, show_predictions
from moodscope.cli.options import (
    FileRunOptions,
    ModelPath,
    audio_path,
    with_options,
)

AudioPaths = typer.Argument(
    ..., help="Audio files or folders (searched recursively).", parser=audio_path
)

_EXTENSION_FORMATS = {".json": "json", ".jsonl": "jsonl", ".csv": "csv"}


def note_unused_options(fmt: str, output: Path | None, *, timeline: bool) -> None:
    """Say in one line (on stderr) what an option does not do in this format, rather
    than ignore it."""
    if timeline and fmt == "table" and output is None:
        say(
            "note: the table shows no timeline; --timeline is written with --format json, "
            "jsonl or csv (or --output FILE.json)"
        )
    if fmt == "table" and output is not None:
        say(f"note: the table is for the terminal; {output} gets JSON")


@with_options
def predict(
    run: FileRunOptions,
    paths: list[Path] = AudioPaths,
    model: ModelPath = None,
    fmt: Optional[str] = typer.Option(
        None,
        "--format",
        metavar="FORMAT",
        help="table | json | jsonl | csv (default: --output's extension .json .jsonl .csv; "
        "else a table on the terminal, JSON in a file).",
    ),
    output: Optional[Path] = typer.Option(
        None, "--output", metavar="FILE", help="Write here, not to stdout."
    ),
    timeline: bool = typer.Option(
        False, "--timeline", help="Include per-segment emotions (json, jsonl and csv)."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Keep what an unfinished run left in OUTPUT.partial."
    ),
) -> None:
    """Predict the emotions of audio files: distribution, top emotion, timeline."""
    from moodscope.inference.batch import OutputIsInput, PredictionRun

    fmt = output_format(fmt, output, _EXTENSION_FORMATS)
    note_unused_options(fmt, output, timeline=timeline)
    try:
        job = PredictionRun(
            paths,
            fmt=fmt,
            output=output,
            model=model,
            timeline=timeline,
            resume=resume,
            max_duration=run.max_duration,
        )
    except OutputIsInput as exc:  # a usage error: nothing was read or written
        say(exc, prefix="error:")
        raise typer.Exit(2) from None
    if job.resumed:
        say(f"resuming: {job.resumed} file(s) already done in {job.sink.partial}")
    table = fmt == "table" and output is None
    results = []
    running = None
    try:
        with progress_bar("predict", len(job.todo), show=len(job.todo) > 1) as update:
            running = job.run(
                workers=run.workers,
                scheduler=run.scheduler,
                progress=update,
                exact=run.exact,
            )
            for r in running:
                if table:  # the other formats are written as they come
                    results.append(r)
    except KeyboardInterrupt:  # Ctrl-C: stop now, keep what is done, say how to go on
        if running is not None:
            running.close()  # the workers stopped and the partial file closed first
        say(_interrupted(job))
        raise typer.Exit(130) from None
    if output is not None:  # on stderr when the output is /dev/stdout, a FIFO, a device
        say(f"wrote {output}", err=job.sink.write_through)
    elif table:
        show_predictions(job.in_order(results))
    for r in job.failed:
        say(r.error, prefix="failed")
    say(
        f"{len(job.todo)} file(s), {len(job.todo) - len(job.failed)} predicted, "
        f"{len(job.failed)} failed" + (f"; {job.resumed} done before" if job.resumed else "")
    )
    say_skipped(paths)
    if job.failed:
        raise typer.Exit(1)


def say_skipped(paths) -> None:
    """What the folder scan passed over, by kind (covers, cue sheets, logs)."""
    from moodscope.audio.files import describe_skipped, skipped_by_kind

    line = describe_skipped(skipped_by_kind(paths))
    if line:
        say(line)


def _interrupted(job) -> str:
    """What an interrupted run kept, and the command that finishes it."""
    total = len(job.files)
    if job.sink is None or job.sink.partial is None:
        return "interrupted; nothing was saved to resume from (write to --output FILE for that)"
    saved = len(job.sink.done)
    if not job.sink.partial.is_file():
        return f"interrupted before any of {total} file(s) was done; nothing to resume"
    args = sys.argv[1:]
    if "predict" in args:
        again = shlex.join(["moodscope", *args, *([] if "--resume" in args else ["--resume"])])
    else:  # called as a function (tests, a host program): no command line to echo
        again = "the same command with --resume"
    return (
        f"interrupted: {saved} of {total} file(s) are saved in {job.sink.partial}; "
        f"to finish, run: {again}"
    )
