"""Your music library: ``tag``, ``untag`` and ``find`` over :mod:`moodscope.library`."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from moodscope.cli.console import (
    cell,
    out,
    output_format,
    prediction_table,
    printable,
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
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No line per file, only the counts (failures still say why)."
    ),
) -> None:
    """Write mood tags into audio files and record them in the library index (resumable),
    one line per file as it goes; with --min-confidence the mood field only where it is
    earned (shares and confidence always)."""
    from moodscope.library.index import default_db_path
    from moodscope.library.tagging import (
        FAILED,
        SKIPPED,
        TAGGED,
        WOULD_TAG,
        tag_files,
    )
    from moodscope.library.tags import mood_earned

    files = _library_files(paths)
    done = WOULD_TAG if dry_run else TAGGED
    counts: Counter = Counter()
    failed_before, planned, moods, not_music = 0, [], 0, 0

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
            elif outcome.status == SKIPPED and (outcome.reason or "").startswith("not music"):
                not_music += 1
            elif outcome.status == SKIPPED and outcome.error:
                failed_before += 1
            elif outcome.status == WOULD_TAG:
                planned.append(outcome.prediction)
            if outcome.status in (TAGGED, WOULD_TAG):
                moods += mood_earned(outcome.prediction, min_confidence)
            if not quiet and outcome.status in (TAGGED, SKIPPED):
                what = _what_happened(outcome, min_confidence)
                line = Text(printable(f"{outcome.status} {outcome.path}: {what}"))
                out.print(line, highlight=False, soft_wrap=True)
            update(n, text=text())
    if dry_run:  # in the order the files were given, whatever order they finished in
        order = {path: i for i, path in enumerate(files)}
        planned.sort(key=lambda p: order.get(p.path, len(order)))
        out.print(prediction_table(planned))
    skipped = f"{counts[SKIPPED] - not_music} skipped (unchanged)"
    if not_music:
        skipped += f", {not_music} skipped (not music)"
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
    from moodscope.cli.predicting import say_skipped

    say_skipped(paths)
    if counts[FAILED]:
        raise typer.Exit(1)


def _what_happened(outcome, min_confidence: float | None) -> str:
    """A tagged file's mood and how sure the model is, or why a file was skipped."""
    from moodscope.library.tags import mood_earned

    p = outcome.prediction
    if outcome.status != "tagged" or p is None:
        return outcome.reason or "skipped"
    if mood_earned(p, min_confidence):
        return f"{p.top_emotion} ({sureness(p.confidence)})"
    return (
        f"no mood: {p.top_emotion} at {sureness(p.confidence)}, under --min-confidence "
        f"{min_confidence:g} (shares and confidence written)"
    )


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


def _find_missing(missing, prune, fmt, output, db, lock_timeout, *, given) -> None:
    """``find --missing [--prune]``: the gone files' paths, one a line (or a JSON list)."""
    import json

    from moodscope.errors import ConfigError
    from moodscope.library.index import default_db_path
    from moodscope.library.search import missing_tracks
    from moodscope.library.tagging import prune_missing
    from moodscope.research.report import write_text_atomic

    if not missing:
        raise ConfigError("--prune goes with --missing")
    if any(value is not None for value in given):
        raise ConfigError("--missing goes alone (not with --mood, --like, --min or --limit)")
    if fmt == "m3u8":
        raise ConfigError("--missing lists files that are gone: a playlist of them cannot play")
    path = Path(db) if db is not None else default_db_path()
    if not path.exists():
        raise ConfigError(f"no library index at {path}: run `moodscope tag FOLDER` first")
    if prune:
        gone = prune_missing(path, lock_timeout=lock_timeout, on_wait=say)
    else:
        gone = missing_tracks(path)
    if fmt == "json":
        text = json.dumps(gone, indent=2) + "\n"
        if output is not None:
            write_text_atomic(output, text)
        else:
            sys.stdout.write(text)
    elif output is not None:
        write_text_atomic(output, "".join(f"{printable(p)}\n" for p in gone))
    else:  # one whole path a line, however long: never folded at the console's width
        sys.stdout.write("".join(f"{printable(p)}\n" for p in gone))
    done = f"removed from {path}" if prune else f"in {path} (--prune removes them)"
    say(f"{len(gone)} indexed file(s) no longer there, {done}")


_FIND_EXTENSIONS = {".json": "json", ".m3u8": "m3u8", ".m3u": "m3u8"}


def find(
    mood: Optional[str] = typer.Option(
        None, "--mood", help="Tracks whose top emotion is this, those with most of it first."
    ),
    min_share: Optional[float] = typer.Option(
        None, "--min", help="With --mood: every such track whose share of it is >= this (0-1)."
    ),
    like: Optional[Path] = typer.Option(
        None, "--like", help="Tracks whose mood is nearest this file's ('more like this')."
    ),
    limit: Optional[int] = typer.Option(
        None, "--limit", min=1, help="At most N tracks (default 20; all with --min)."
    ),
    fmt: Optional[str] = typer.Option(
        None,
        "--format",
        metavar="FORMAT",
        help="table | json | m3u8 (a playlist) (default: --output's extension .json .m3u8 .m3u; "
        "else a table on the terminal, JSON in a file).",
    ),
    output: Optional[Path] = typer.Option(None, "--output", help="Write here, not to stdout."),
    db: Optional[Path] = Db,
    model: Optional[Path] = typer.Option(
        None, "--model", help="With --like of a file not in the index: the model to predict it."
    ),
    min_confidence: MinConfidence = None,
    missing: bool = typer.Option(
        False, "--missing", help="The indexed files that are no longer there (moved or deleted)."
    ),
    prune: bool = typer.Option(
        False, "--prune", help="With --missing: remove their rows from the index."
    ),
    lock_timeout: Optional[float] = LockTimeout,
) -> None:
    """Find tracks in the library index by mood, or like a given track, as a table, JSON or
    an M3U8 playlist; or the indexed files that are gone (--missing)."""
    from moodscope.library.search import (
        check_find_format,
        find_tracks,
        render_matches,
        unplayable,
    )
    from moodscope.research.report import write_text_atomic

    if missing or prune:  # a list of paths: any file name takes it, .json gets JSON
        named_json = output is not None and output.suffix.lower() == ".json"
        fmt = check_find_format(fmt or ("json" if named_json else "table"))
        given = (mood, like, min_share, limit)
        _find_missing(missing, prune, fmt, output, db, lock_timeout, given=given)
        return
    if fmt is not None:
        check_find_format(fmt)
    fmt = output_format(fmt, output, _FIND_EXTENSIONS)
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
        problems = [unplayable(m.path) for m in matches] if fmt == "m3u8" else []
        for problem in filter(None, problems):
            say(problem, prefix="warning:")
        if output is not None:
            write_text_atomic(output, text)
        else:
            sys.stdout.write(text)
    say(f"{len(matches)} track(s) found in {path}")
