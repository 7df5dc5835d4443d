"""Tagging runs: ``tag`` predicts the files under some folders, writes each one's mood into
it and records the result in the library index, skipping what a finished run already did;
``untag`` removes exactly what it wrote."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from moodscope.audio.decode import MAX_DURATION, stat_problem
from moodscope.errors import ConfigError, TagError
from moodscope.inference.identity import model_id  # no torch: a rerun stays light
from moodscope.library.index import IndexRow, LibraryIndex, check_min_confidence, default_db_path
from moodscope.library.lock import IndexLock
from moodscope.library.tags import FileState, remove_tags, write_tags

MAX_PENDING_WRITES = 8
"""Predictions waiting for the writer thread before the run waits for it."""

TAGGED = "tagged"
"""Predicted (or taken from the index) and written into the file."""
SKIPPED = "skipped"
"""Not touched: unchanged since a finished run with the same model, or not music (``reason``
says which)."""
FAILED = "failed"
"""Not tagged: ``error`` says why (the prediction, or the write)."""
WOULD_TAG = "would tag"
"""``dry_run``: predicted; nothing written, neither tags nor index."""
UNTAGGED = "untagged"
"""``untag_files``: moodscope's fields removed."""


@dataclass
class TagOutcome:
    """What happened to one file in :func:`tag_files` or :func:`untag_files`."""

    path: str
    status: str
    prediction: object | None = None  # the Prediction written (None when skipped)
    error: str | None = None  # why it failed; for a skipped file, the error it failed with
    row: IndexRow | None = None  # what the index now holds for the file
    reason: str | None = None  # why it was skipped, in words


UNCHANGED = "unchanged since the last run"
FAILED_BEFORE = "failed before and unchanged since (--force retries it)"


def not_music_reason(prediction) -> str | None:
    """Why a valid prediction carries no mood (``not music (speech)``), or None when it has
    one: a file that is not music gets no mood tag."""
    if prediction.error is not None:
        return None
    if getattr(prediction, "music", True) is not False and prediction.top_emotion is not None:
        return None
    why = getattr(prediction, "not_music", None)
    return f"not music ({why})" if why else "not music"


def _skip_reason(row: IndexRow) -> str:
    if row.error is not None:
        return FAILED_BEFORE
    if row.emotions is not None and row.top_emotion is None:
        return f"not music, {UNCHANGED}"
    return UNCHANGED


def library_files(paths: Iterable[str | Path] | str | Path) -> list[str]:
    """Audio files under ``paths`` as absolute paths with symlinks resolved, each once, in
    the order found (:func:`moodscope.audio.files.find_audio`, which imports no torch, so a
    rerun that has nothing to do starts in a second)."""
    from moodscope.audio.files import find_audio

    return [str(p) for p in find_audio(paths, resolve=True)]


def prune_missing(
    db: str | Path | None = None,
    *,
    lock_timeout: float | None = None,
    on_wait=None,
) -> list[str]:
    """Remove the index's rows whose file is no longer there; return their paths. Another
    run writing the index is waited for as in :func:`tag_files`."""
    path = Path(db) if db is not None else default_db_path()
    if not path.exists():
        return []
    _check_index(path)
    with IndexLock(path, timeout=lock_timeout, on_wait=on_wait), LibraryIndex(path) as index:
        gone = index.missing()
        index.forget(gone)
    return gone


def _check_index(db: str | Path | None) -> None:
    """Refuse a ``db`` that is not a moodscope index before its lock file is made beside it
    (:class:`LibraryIndex` refuses it again when opened for writing)."""
    LibraryIndex(db, readonly=True).close()


def _plan(
    row: IndexRow | None,
    state: FileState,
    model_id: str,
    min_confidence: float | None = None,
    allow_damaged: bool = False,
) -> str:
    """``predict``, ``write`` (the index holds a valid prediction the file lacks, or wrote
    it under another ``min_confidence``) or ``skip``."""
    if row is None or row.model != model_id:
        return "predict"
    if (row.size, row.mtime_ns) != (state.size, state.mtime_ns):
        return "predict"
    if row.emotions is not None and row.top_emotion is None:
        return "skip"  # not music: there is no mood to write
    if row.emotions is not None and row.tagged_at is None:
        # A truncated file left untagged stays so, like a failed one, until it changes or
        # the run allows damaged files.
        return "skip" if row.truncated and not allow_damaged else "write"
    if row.emotions is not None and row.min_confidence != min_confidence:
        return "write"  # the mood field may come or go; the prediction stands
    return "skip"  # tagged; or its prediction failed and the file has not changed since


def _file_sha1(path: str) -> str | None:
    from moodscope.atomic import file_digest

    try:
        return file_digest(path)
    except OSError:
        return None


def _state_now(path: str) -> FileState | None:
    try:
        return FileState.of(path)
    except OSError:
        return None


def damaged_message(path: str, remedy: str = "--allow-damaged") -> str:
    """Why a file flagged truncated is not tagged; ``remedy``: the option that tags it."""
    return (
        f"{path}: is truncated (it holds less audio than its container declares); not tagged "
        f"({remedy} tags it anyway)"
    )


def _tag_would_be_audio(path: str) -> bool:
    """A WAV or AIFF whose data chunk declares more bytes than follow it: a tag chunk
    appended at the end lies inside the declared audio, where readers never find it and
    decoders play it as noise."""
    from moodscope.audio.integrity import check_integrity

    return check_integrity(path).container in ("WAV", "AIFF")


def _finish(
    index: LibraryIndex | None,
    prediction,
    before: FileState,
    min_confidence: float | None = None,
    allow_damaged: bool = False,
) -> TagOutcome:
    """Write one prediction into its file and record the result (``index`` None: dry run)."""
    path = prediction.path
    error = None
    if prediction.ok and prediction.truncated:
        if not allow_damaged:
            error = damaged_message(path)
        elif _tag_would_be_audio(path):
            error = (
                f"{path}: is truncated inside its data chunk; a tag after it would be read as "
                "audio, so it is not tagged even with --allow-damaged"
            )
    if error is not None:
        # The prediction is kept in the index (not in the file), so a run that allows
        # damaged files writes it without predicting again.
        row = None
        if index is not None:
            row = IndexRow.from_prediction(prediction, before, tagged=False, error=error)
            row.sha1 = _file_sha1(path)
            index.record(row)
        return TagOutcome(path, FAILED, prediction, error, row)
    if not prediction.ok:
        row = None
        if index is not None:
            state = FileState(before.size, before.mtime_ns, sha1=_file_sha1(path))
            row = IndexRow.from_prediction(prediction, state, tagged=False)
            row = index.record_failure(row, _state_now(path))
        return TagOutcome(path, FAILED, prediction, prediction.error, row)
    reason = not_music_reason(prediction)
    if reason is not None:  # nothing to write into the file; the index remembers it
        row = None
        if index is not None:
            row = IndexRow.from_prediction(prediction, before, tagged=False)
            row.sha1 = _file_sha1(path)
            index.record(row)
        return TagOutcome(path, SKIPPED, prediction, row=row, reason=reason)
    if index is None:
        return TagOutcome(path, WOULD_TAG, prediction)
    try:
        after = write_tags(path, prediction, expect=before, min_confidence=min_confidence)
    except TagError as exc:
        error = str(exc)
        try:
            still = FileState.of(path).unchanged(before)
        except OSError:
            still = False
        if still:  # the prediction still describes the file: a rerun only writes it
            row = IndexRow.from_prediction(prediction, before, tagged=False, error=error)
            row.sha1 = _file_sha1(path)
        else:  # changed or gone: the prediction is stale, a rerun predicts again
            from moodscope.inference.predictor import Prediction

            stale = Prediction(path, error=error, model=prediction.model)
            row = IndexRow.from_prediction(stale, before, tagged=False)
            row.sha1 = None
        stands = index.record_failure(row, _state_now(path))
        if stands is not row and stands.model == prediction.model and stands.tagged_at:
            # Another run tagged the file with this model meanwhile: nothing is left to do.
            return TagOutcome(path, SKIPPED, stands.prediction(), row=stands)
        return TagOutcome(path, FAILED, prediction, error, stands)
    row = IndexRow.from_prediction(prediction, after, tagged=True, min_confidence=min_confidence)
    index.record(row)
    return TagOutcome(path, TAGGED, prediction, row=row)


def tag_files(
    paths: Iterable[str | Path] | str | Path,
    model=None,
    *,
    db: str | Path | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    backend=None,
    force: bool = False,
    dry_run: bool = False,
    use_cache: bool = True,
    exact: bool = False,
    min_confidence: float | None = None,
    allow_damaged: bool = False,
    max_duration: float | None = MAX_DURATION,
    lock_timeout: float | None = None,
    on_wait=None,
) -> Iterator[TagOutcome]:
    """Predict, tag and index every audio file under ``paths``; yield one
    :class:`TagOutcome` per file as it finishes.

    Files whose size, mtime and model are unchanged since a finished run are skipped
    (``force`` redoes them); a file whose prediction is in the index but whose tag write
    failed is written from the index without predicting again. Predictions go through
    :func:`moodscope.inference.predictor.predict_iter` (``workers``, ``scheduler``, ``backend`` as
    there); tags are written by :func:`moodscope.library.tags.write_tags` on one thread of this
    process while the next files are predicted, in the order the predictions finish, each
    result committed to the index before the next file's.

    Parameters
    ----------
    paths : path or iterable of paths
        Audio files and folders (searched recursively).
    model : None, path or TrainedModel
        ``None``: the shipped model.
    db : path, optional
        The library index; default :func:`default_db_path`.
    dry_run : bool
        Predict only: write neither tags nor the index (outcomes say ``would tag``).
    exact : bool
        Run the network in float32 (as :func:`moodscope.predict.predict`'s ``exact``).
    min_confidence : float, optional
        Write the mood field only for files whose confidence reaches this (0-1); the
        shares and the confidence go in every file. Needs a model with a calibration map.
        Files tagged under another threshold are rewritten from the index, not predicted.
    allow_damaged : bool
        Tag files flagged ``truncated`` too; by default they fail with a line that says so
        (their prediction is kept in the index, not written into the file).
    max_duration : float or None
        As in :func:`moodscope.inference.predictor.predict`.
    lock_timeout, on_wait
        Another run writing the same index is waited for (see :class:`IndexLock`): at most
        ``lock_timeout`` seconds (None: as long as it takes); ``on_wait`` is told it waits.
    """
    check_min_confidence(min_confidence)
    files = library_files(paths)
    wanted = model_id(model)
    if min_confidence is not None:
        from moodscope.inference.predictor import load_model

        if load_model(model).calibration is None:
            raise ConfigError(
                f"--min-confidence needs a calibrated model; {wanted} has no calibration map "
                "(rebuild it with tools/build_default_model.py)"
            )
    _check_index(db)  # these checks run at the call, before the first outcome is asked for
    return _tag_run(
        files,
        model,
        wanted,
        db=db,
        workers=workers,
        scheduler=scheduler,
        backend=backend,
        force=force,
        dry_run=dry_run,
        use_cache=use_cache,
        exact=exact,
        min_confidence=min_confidence,
        allow_damaged=allow_damaged,
        max_duration=max_duration,
        lock_timeout=lock_timeout,
        on_wait=on_wait,
    )


def _tag_run(
    files: list[str],
    model,
    wanted: str,
    *,
    db,
    workers,
    scheduler,
    backend,
    force,
    dry_run,
    use_cache,
    exact,
    min_confidence,
    allow_damaged,
    max_duration,
    lock_timeout,
    on_wait,
) -> Iterator[TagOutcome]:
    lock = None
    if not dry_run:
        lock = IndexLock(db or default_db_path(), timeout=lock_timeout, on_wait=on_wait)
        lock.acquire()
    try:
        index = LibraryIndex(db, readonly=dry_run)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    try:
        to_predict: dict[str, FileState] = {}
        to_write: list[tuple[IndexRow, FileState]] = []
        for path in files:
            try:
                state = FileState.of(path)
            except OSError as exc:
                yield TagOutcome(path, FAILED, error=f"{path}: {stat_problem(path, exc)}")
                continue
            row = None if force else index.get(path)
            plan = _plan(row, state, wanted, min_confidence, allow_damaged)
            if plan == "skip":
                yield TagOutcome(path, SKIPPED, error=row.error, row=row, reason=_skip_reason(row))
            elif plan == "write":
                to_write.append((row, state))
            else:
                to_predict[path] = state
        target = None if dry_run else index
        for row, state in to_write:
            yield _finish(target, row.prediction(), state, min_confidence, allow_damaged)
        if to_predict:
            from moodscope.inference.predictor import (  # torch: only when predicting
                load_model,
                predict_iter,
            )

            predictions = predict_iter(
                list(to_predict),
                load_model(model),
                workers=workers,
                scheduler=scheduler,
                backend=backend,
                use_cache=use_cache,
                max_duration=max_duration,
                exact=exact,
            )
            # Writes run on one thread of their own, in order, while the next files are
            # predicted: a write waits on the disk (fsync, rename) far more than it computes.
            with ThreadPoolExecutor(1, thread_name_prefix="moodscope-tag") as writer:
                pending: deque[Future] = deque()
                for prediction in predictions:
                    before = to_predict[prediction.path]
                    pending.append(
                        writer.submit(
                            _finish, target, prediction, before, min_confidence, allow_damaged
                        )
                    )
                    while pending and (pending[0].done() or len(pending) > MAX_PENDING_WRITES):
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
    finally:
        index.close()
        if lock is not None:
            lock.release()


def untag_files(
    paths: Iterable[str | Path] | str | Path,
    *,
    db: str | Path | None = None,
    lock_timeout: float | None = None,
    on_wait=None,
) -> Iterator[TagOutcome]:
    """Remove the fields moodscope wrote from every audio file under ``paths`` (see
    :func:`~moodscope.library.tags.remove_tags`); yield one :class:`TagOutcome` per file
    (``skipped``: it held none). The index keeps each file's prediction, marked as not in
    the file, so a later ``tag`` writes it back without predicting. Another run writing the
    index is waited for as in :func:`tag_files`."""
    files = library_files(paths)
    path = Path(db) if db is not None else default_db_path()
    _check_index(path)
    return _untag_run(files, path, lock_timeout=lock_timeout, on_wait=on_wait)


def _untag_run(files: list[str], path: Path, *, lock_timeout, on_wait) -> Iterator[TagOutcome]:
    lock = None
    if path.exists():
        lock = IndexLock(path, timeout=lock_timeout, on_wait=on_wait)
        lock.acquire()
    try:
        index = LibraryIndex(path) if path.exists() else None
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    try:
        for file in files:
            try:
                after = remove_tags(file)
            except TagError as exc:
                yield TagOutcome(file, FAILED, error=str(exc))
                continue
            if after is None:
                yield TagOutcome(file, SKIPPED)
                continue
            row = index.get(file) if index is not None else None
            if row is not None:
                row.size, row.mtime_ns, row.sha1 = after.size, after.mtime_ns, after.sha1
                row.tagged_at, row.error = None, None
                index.record(row)
            yield TagOutcome(file, UNTAGGED, row=row)
    finally:
        if index is not None:
            index.close()
        if lock is not None:
            lock.release()


__all__ = [
    "FAILED",
    "SKIPPED",
    "TAGGED",
    "UNTAGGED",
    "WOULD_TAG",
    "TagOutcome",
    "damaged_message",
    "library_files",
    "not_music_reason",
    "prune_missing",
    "tag_files",
    "untag_files",
]
