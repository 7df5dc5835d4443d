"""Your music library: ``tag``, ``untag`` and ``find`` over :mod:`moodscope.library`."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from moodscope.cli.console import (
    cell,
    out,
    prediction_table,
    progress_bar,
    say,
    short_path,
    sureness,
)
from moodscope.cli.options import (
    FileRunOptions,
    MinConfidence,
    ModelPath,
    audio_path,
    with_options,
)

Db = typer.Option(
    None,
    "--db",
    help="Library index (SQLite); default $MOODSCOPE_DATA_DIR/library.sqlite, else "
    "$XDG_DATA_HOME/moodscope/library.sqlite or ~/.local/share/moodscope/library.sqlite.",
)
AudioPaths = typer.Argument(
    ..., help="Audio files or folders (searched recursively).", parser=audio_path
)
LockTimeout = typer.Option(
    None,
    "--lock-timeout",
    min=0,
    help="Seconds to wait for another tag/untag run on the same --db, then fail "
    "(default: wait until it finishes).",
)


def _library_files(paths: list[Path]) -> list[str]:
    from moodscope.errors import ConfigError
    from moodscope.library.tagging import library_files

    files = library_files(paths)
    if not files:
        raise ConfigError(f"no audio files found in {', '.join(map(str, paths))}")
    return files


@with_options
def tag(
    run: FileRunOptions,
    paths: list[Path] = AudioPaths,
    model: ModelPath = None,
    db: Optional[Path] = Db,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Predict and show the moods; write neither tags nor index."
    ),
    force: bool = typer.Option(False, "--force", help="Redo files already done and unchanged."),
    min_confidence: MinConfidence = None,
    allow_damaged: bool = typer.Option(
        False,
        "--allow-damaged",
        help="Also tag files flagged truncated (they hold less audio than their container "
        "declares); by default they fail, their prediction kept in the index.",
    ),
    lock_timeout: Optional[float] = LockTimeout,
) -> None:
    """Write mood tags into audio files and record them in the library index (resumable);
    with --min-confidence the mood field only where it is earned (shares and confidence
    always)."""
    from moodscope.library.index import default_db_path
    from moodscope.library.tagging import FAILED, SKIPPED, TAGGED, WOULD_TAG, tag_files
    from moodscope.library.tags import mood_earned

    files = _library_files(paths)
    done = WOULD_TAG if dry_run else TAGGED
    counts: Counter = Counter()
    failed_before, planned, moods = 0, [], 0

    def text() -> str:
        return f"tag: {counts[done]} {done}, {counts[SKIPPED]} skipped, {counts[FAILED]} failed"

    outcomes = tag_files(
        files,
        model,
        db=db,
        workers=run.workers,
        scheduler=run.scheduler,
        dry_run=dry_run,
        force=force,
        exact=run.exact,
        min_confidence=min_confidence,
        allow_damaged=allow_damaged,
        max_duration=run.max_duration,
        lock_timeout=lock_timeout,
        on_wait=say,  # another run holds the index
    )
    with progress_bar(text(), len(files)) as update:
        for n, outcome in enumerate(outcomes, start=1):
            counts[outcome.status] += 1
            if outcome.status == FAILED:
                say(outcome.error, prefix="failed")
            elif outcome.status == SKIPPED and outcome.error:
                failed_before += 1
            elif outcome.status == WOULD_TAG:
                planned.append(outcome.prediction)
            if outcome.status in (TAGGED, WOULD_TAG):
                moods += mood_earned(outcome.prediction, min_confidence)
            update(n, text=text())
    if dry_run:
        out.print(prediction_table(planned))
    skipped = f"{counts[SKIPPED]} skipped (unchanged)"
    if failed_before:
        skipped += f", {failed_before} of them failed before (--force retries them)"
    if min_confidence is not None:
        skipped += (
            f"; {moods} of the {counts[done]} got a mood (confidence >= {min_confidence:g}), "
            f"{counts[done] - moods} only shares and confidence"
        )
    say(
        f"{len(files)} file(s): {counts[done]} {'would be tagged' if dry_run else 'tagged'}, "
        f"{skipped}, {counts[FAILED]} failed; "
        + ("nothing written (dry run)" if dry_run else f"index {db or default_db_path()}")
    )
    if counts[FAILED]:
        raise typer.Exit(1)


def untag(
    paths: list[Path] = AudioPaths,
    db: Optional[Path] = Db,
    lock_timeout: Optional[float] = LockTimeout,
) -> None:
    """Remove exactly the tags moodscope wrote (a mood the file had before comes back)."""
    from moodscope.library.tagging import FAILED, SKIPPED, UNTAGGED, untag_files

    files = _library_files(paths)
    counts: Counter = Counter()
    for outcome in untag_files(files, db=db, lock_timeout=lock_timeout, on_wait=say):
        counts[outcome.status] += 1
        if outcome.status == FAILED:
            say(outcome.error, prefix="failed")
    say(
        f"{len(files)} file(s): {counts[UNTAGGED]} untagged, {counts[SKIPPED]} had no moodscope "
        f"tags, {counts[FAILED]} failed"
    )
    if counts[FAILED]:
        raise typer.Exit(1)


def find(
    mood: Optional[str] = typer.Option(None, "--mood", help="Tracks with most of this emotion."),
    min_share: Optional[float] = typer.Option(
        None, "--min", help="With --mood: every track whose share is at least this (0-1)."
    ),
    like: Optional[Path] = typer.Option(
        None, "--like", help="Tracks whose mood is nearest this file's ('more like this')."
    ),
    limit: Optional[int] = typer.Option(
        None, "--limit", min=1, help="At most N tracks (default 20; all with --min)."
    ),
    fmt: str = typer.Option("table", "--format", help="table | json | m3u8 (a playlist)"),
    output: Optional[Path] = typer.Option(None, "--output", help="Write here, not to stdout."),
    db: Optional[Path] = Db,
    model: Optional[Path] = typer.Option(
        None, "--model", help="With --like of a file not in the index: the model to predict it."
    ),
    min_confidence: MinConfidence = None,
) -> None:
    """Find tracks in the library index by mood, or like a given track, as a table, JSON or
    an M3U8 playlist."""
    from moodscope.library.search import check_find_format, find_tracks, render_matches
    from moodscope.research.report import write_text_atomic

    check_find_format(fmt)
    query = dict(mood=mood, like=like, min_share=min_share, min_confidence=min_confidence)
    matches, path = find_tracks(**query, limit=limit, db=db, model=model)
    if fmt == "table" and output is None:
        table = Table("#", mood or "distance", "top emotion", "how sure", "file")
        for i, m in enumerate(matches, start=1):
            score = m.share if m.share is not None else m.distance
            table.add_row(
                str(i),
                f"{score:.3f}",
                cell(m.top_emotion),
                cell(sureness(m.confidence)),
                cell(short_path(m.path)),
            )
        out.print(table)
    else:
        text = render_matches(matches, "json" if fmt == "table" else fmt)
        if output is not None:
            write_text_atomic(output, text)
        else:
            sys.stdout.write(text)
    say(f"{len(matches)} track(s) found in {path}")
