"""``moodscope predict``: parses its options and runs a
:class:`~moodscope.inference.batch.PredictionRun`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from moodscope.cli.console import out, prediction_table, progress_bar, say
from moodscope.cli.options import (
    FileRunOptions,
    ModelPath,
    with_options,
)

AudioPaths = typer.Argument(..., help="Audio files or folders (searched recursively).")


@with_options
def predict(
    run: FileRunOptions,
    paths: list[Path] = AudioPaths,
    model: ModelPath = None,
    fmt: str = typer.Option("table", "--format", help="table | json | jsonl | csv"),
    output: Optional[Path] = typer.Option(None, "--output", help="Write here, not to stdout."),
    timeline: bool = typer.Option(False, "--timeline", help="Include per-segment emotions."),
    resume: bool = typer.Option(
        False, "--resume", help="Keep what an unfinished run left in OUTPUT.partial."
    ),
) -> None:
    """Predict the emotions of audio files: distribution, top emotion, timeline."""
    from moodscope.inference.batch import PredictionRun

    job = PredictionRun(
        paths,
        fmt=fmt,
        output=output,
        model=model,
        timeline=timeline,
        resume=resume,
        max_duration=run.max_duration,
    )
    if job.resumed:
        say(f"resuming: {job.resumed} file(s) already done in {job.sink.partial}")
    table = fmt == "table" and output is None
    results = []
    with progress_bar("predict", len(job.todo), show=len(job.todo) > 1) as update:
        for r in job.run(
            workers=run.workers,
            scheduler=run.scheduler,
            progress=update,
            exact=run.exact,
        ):
            if table:  # the other formats are written as they come
                results.append(r)
    if output is not None:  # on stderr when the output is /dev/stdout, a FIFO, a device
        say(f"wrote {output}", err=job.sink.write_through)
    elif table:
        out.print(prediction_table(job.in_order(results)))
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
