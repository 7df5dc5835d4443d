"""Your music library: ``tag`` runs that write mood tags and resume where they stopped, the
SQLite index that remembers every file's result, and finding tracks by mood in it.

The index holds one row per file (its absolute, symlink-resolved path): size, mtime (ns) and
content hash as the file stood after moodscope was done with it, the model, the distribution,
the top emotion, its confidence, when the tags were written (and under which
``min_confidence``) and the last error. Each result is committed in a
transaction of its own (WAL journal), so a run killed at any instant leaves whole rows only,
and a rerun skips the files whose size, mtime and model are unchanged.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sqlite3
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moodscope.audio.decode import MAX_DURATION
from moodscope.emotions import EMOTIONS, factor_shares, top_factor
from moodscope.errors import ConfigError, LibraryError, TagError
from moodscope.inference.identity import model_id  # no torch: a rerun stays light
from moodscope.library.tags import FileState, remove_tags, write_tags

SCHEMA_VERSION = 3
"""1: the first index; 2 adds ``confidence`` and ``min_confidence``; 3 adds ``truncated``
(each added in place, see ``_ADDED``)."""

MAX_PENDING_WRITES = 8
"""Predictions waiting for the writer thread before the run waits for it."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tracks (
    path        TEXT PRIMARY KEY,  -- absolute, symlinks resolved
    size        INTEGER NOT NULL,  -- bytes, after moodscope wrote the file
    mtime_ns    INTEGER NOT NULL,  -- modification time, ns, after moodscope wrote the file
    sha1        TEXT,              -- SHA-1 of the whole file as it stands (NULL: unreadable)
    model       TEXT NOT NULL,     -- name@version of the model
    emotions    TEXT,              -- JSON label -> share (NULL: no valid prediction)
    top_emotion TEXT,
    duration    REAL,              -- seconds of audio
    silent      INTEGER NOT NULL DEFAULT 0,
    tagged_at   TEXT,              -- UTC, ISO 8601, when the tags went in (NULL: not in the file)
    error       TEXT,              -- the last error (NULL: the last run succeeded)
    updated_at  TEXT NOT NULL,
    confidence  REAL,              -- chance the top emotion is right (NULL: not calibrated)
    min_confidence REAL,           -- the threshold the tags were written under (NULL: none)
    truncated   INTEGER NOT NULL DEFAULT 0  -- the file holds less than its container declares
);
"""
_ADDED = {  # the columns each schema version added to the one before
    2: ("confidence REAL", "min_confidence REAL"),
    3: ("truncated INTEGER NOT NULL DEFAULT 0",),
}
_SINCE = {column.split()[0]: version for version, added in _ADDED.items() for column in added}
_MISSING = {"truncated": "0"}  # read from an older index opened read-only (others: NULL)

_COLUMNS = (
    "path", "size", "mtime_ns", "sha1", "model", "emotions", "top_emotion", "duration",
    "silent", "tagged_at", "error", "updated_at", "confidence", "min_confidence", "truncated",
)  # fmt: skip


def default_db_path() -> Path:
    """``$MOODSCOPE_DATA_DIR/library.sqlite``, else ``$XDG_DATA_HOME/moodscope/library.sqlite``,
    else ``~/.local/share/moodscope/library.sqlite``."""
    if os.environ.get("MOODSCOPE_DATA_DIR"):
        return Path(os.environ["MOODSCOPE_DATA_DIR"]) / "library.sqlite"
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "moodscope" / "library.sqlite"


def _key(path: str | Path) -> str | bytes:
    """A path as SQLite stores it: text, or the name's bytes when it is not UTF-8 (a file
    named in Latin-1 on a UTF-8 system), which SQLite's text cannot hold."""
    path = str(path)
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclass
class IndexRow:
    """One file's entry in the library index."""

    path: str
    size: int
    mtime_ns: int
    sha1: str | None
    model: str
    emotions: dict[str, float] | None = None
    top_emotion: str | None = None
    duration: float | None = None
    silent: bool = False
    tagged_at: str | None = None
    error: str | None = None
    updated_at: str = ""
    confidence: float | None = None
    min_confidence: float | None = None
    truncated: bool = False

    @classmethod
    def from_prediction(
        cls,
        prediction,
        state: FileState,
        *,
        tagged: bool,
        error: str | None = None,
        min_confidence: float | None = None,
    ) -> IndexRow:
        """The row for ``prediction`` (its distribution, unless it failed) of the file in
        ``state``; everything comes from the one :class:`~moodscope.Prediction`."""
        d = prediction.to_dict()
        return cls(
            path=prediction.path,
            size=state.size,
            mtime_ns=state.mtime_ns,
            sha1=state.sha1,
            model=prediction.model or "unknown",
            emotions=d.get("emotions"),
            top_emotion=d.get("top_emotion"),
            duration=d.get("duration"),
            silent=bool(d.get("silent", False)),
            tagged_at=_now() if tagged else None,
            error=error if error is not None else prediction.error,
            confidence=d.get("confidence"),
            min_confidence=min_confidence if tagged else None,
            truncated=bool(d.get("truncated", False)),
        )

    def prediction(self):
        """The :class:`~moodscope.Prediction` this row records (``error`` set when
        it holds no distribution)."""
        from moodscope.inference.predictor import Prediction

        if self.emotions is None:
            return Prediction(self.path, error=self.error or "no prediction", model=self.model)
        return Prediction.from_dict(
            {
                "path": self.path,
                "emotions": self.emotions,
                "top_emotion": self.top_emotion,
                "duration": self.duration,
                "silent": self.silent,
                "model": self.model,
                "confidence": self.confidence,
                "truncated": self.truncated,
            }
        )


class LibraryIndex:
    """The SQLite library index (see the module docstring). Use as a context manager.

    Parameters
    ----------
    path : path, optional
        The database file; default :func:`default_db_path`. Created with its folder.
    readonly : bool
        Open without writing anything; a file that does not exist reads as empty.
    """

    def __init__(self, path: str | Path | None = None, *, readonly: bool = False):
        self.path = Path(path) if path is not None else default_db_path()
        self.readonly = readonly
        self._conn: sqlite3.Connection | None = None
        self._version = SCHEMA_VERSION
        if readonly and not self.path.exists():
            return
        try:
            if readonly:
                uri = f"{self.path.resolve().as_uri()}?mode=ro"
                self._conn = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # Used by tag_files' writer thread, never by two threads at once.
                self._conn = sqlite3.connect(
                    self.path, timeout=30, isolation_level=None, check_same_thread=False
                )
            self._setup()
        except (sqlite3.Error, OSError) as exc:
            self.close()
            raise LibraryError(
                f"{self.path}: cannot be opened as a moodscope library index ({exc})"
            ) from exc

    def _setup(self) -> None:
        conn = self._conn
        conn.execute("PRAGMA busy_timeout = 30000")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise LibraryError(
                f"{self.path}: index schema {version} is newer than this moodscope reads "
                f"({SCHEMA_VERSION}); upgrade moodscope"
            )
        if self.readonly:
            self._version = version
            return
        # WAL: readers never block the writer, and a committed row survives the process
        # being killed. NORMAL: no fsync per commit; a power cut may lose the last rows
        # (never half a row), and a lost row only means that file is done again.
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        if version < SCHEMA_VERSION:
            conn.execute("BEGIN IMMEDIATE")
            if version == 0:
                conn.execute(_SCHEMA)
            else:  # an older index: its rows stay, the new columns NULL (or 0) there
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    for column in _ADDED[step]:
                        conn.execute(f"ALTER TABLE tracks ADD COLUMN {column}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> LibraryIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        if self._conn is None:
            return []
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # an empty database opened read-only
                return []
            raise LibraryError(f"{self.path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise LibraryError(f"{self.path}: not a moodscope library index ({exc})") from exc

    @property
    def _select(self) -> str:
        """The columns to read: an older index opened read-only lacks the newer ones."""
        return ", ".join(
            c if _SINCE.get(c, 1) <= self._version else _MISSING.get(c, "NULL") for c in _COLUMNS
        )

    @property
    def _confidence(self) -> str:
        """The confidence column in a query (NULL in an index from before confidences)."""
        return "confidence" if self._version >= _SINCE["confidence"] else "NULL"

    @staticmethod
    def _row(values: tuple) -> IndexRow:
        d = dict(zip(_COLUMNS, values))
        d["emotions"] = json.loads(d["emotions"]) if d["emotions"] else None
        d["silent"] = bool(d["silent"])
        d["truncated"] = bool(d["truncated"])
        if isinstance(d["path"], bytes):
            d["path"] = os.fsdecode(d["path"])
        return IndexRow(**d)

    def get(self, path: str | Path) -> IndexRow | None:
        """The row of ``path`` (absolute, resolved), or None."""
        found = self._query(f"SELECT {self._select} FROM tracks WHERE path = ?", (_key(path),))
        return self._row(found[0]) if found else None

    def rows(self) -> list[IndexRow]:
        """Every row, by path."""
        return [
            self._row(r) for r in self._query(f"SELECT {self._select} FROM tracks ORDER BY path")
        ]

    def __len__(self) -> int:
        found = self._query("SELECT COUNT(*) FROM tracks")
        return found[0][0] if found else 0

    def record(self, row: IndexRow) -> None:
        """Insert or replace ``row`` in one transaction of its own."""
        if self.readonly or self._conn is None:
            raise LibraryError(f"{self.path}: opened read-only")
        try:
            with self._conn:  # BEGIN ... COMMIT, or ROLLBACK on an error
                self._conn.execute("BEGIN IMMEDIATE")
                self._upsert(row)
        except sqlite3.Error as exc:
            raise LibraryError(f"{self.path}: cannot record {row.path} ({exc})") from exc

    def _upsert(self, row: IndexRow) -> None:
        row.updated_at = _now()
        values = [getattr(row, c) for c in _COLUMNS]
        values[_COLUMNS.index("emotions")] = (
            json.dumps(row.emotions) if row.emotions is not None else None
        )
        values[_COLUMNS.index("silent")] = int(row.silent)
        values[_COLUMNS.index("truncated")] = int(row.truncated)
        values[0] = _key(row.path)
        if row.error is not None:  # a message naming such a file: shown with \udcXX escapes
            values[_COLUMNS.index("error")] = row.error.encode("utf-8", "backslashreplace").decode()
        updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:])
        sql = (
            f"INSERT INTO tracks ({', '.join(_COLUMNS)}) VALUES "
            f"({', '.join('?' * len(_COLUMNS))}) ON CONFLICT(path) DO UPDATE SET {updates}"
        )
        self._conn.execute(sql, values)

    def record_failure(self, row: IndexRow, state: FileState | None) -> IndexRow:
        """Record the failed ``row`` unless the index holds a result for the file as it
        stands now (``state``; None: unknown), which another run wrote: a failure never
        downgrades a result. Read and write are one transaction; returns the row that
        stands."""
        if self.readonly or self._conn is None:
            raise LibraryError(f"{self.path}: opened read-only")
        try:
            with self._conn:
                self._conn.execute("BEGIN IMMEDIATE")
                found = self._conn.execute(
                    f"SELECT {', '.join(_COLUMNS)} FROM tracks WHERE path = ?", (_key(row.path),)
                ).fetchone()
                current = self._row(found) if found else None
                if (
                    current is not None
                    and current.emotions is not None
                    and state is not None
                    and (current.size, current.mtime_ns) == (state.size, state.mtime_ns)
                ):
                    return current
                self._upsert(row)
        except sqlite3.Error as exc:
            raise LibraryError(f"{self.path}: cannot record {row.path} ({exc})") from exc
        return row

    def labels(self) -> list[str]:
        """The emotion labels found in the index (GEMS order first)."""
        found = {
            key
            for (key,) in self._query(
                "SELECT DISTINCT key FROM tracks, json_each(tracks.emotions) "
                "WHERE tracks.emotions IS NOT NULL"
            )
        }
        return [e for e in EMOTIONS if e in found] + sorted(found - set(EMOTIONS))


# -- one writer per index ------------------------------------------------------------------

LOCK_POLL_SECONDS = 0.2
"""How often a run waiting for an index's lock tries again."""

log = logging.getLogger("moodscope")


class IndexLock:
    """The one writer of an index: an exclusive ``flock`` on ``DB.lock`` beside it, held for
    a whole ``tag`` or ``untag`` run, so two runs on one database take turns instead of
    undoing each other's rows. The kernel drops it when its process ends, however it ends.

    Parameters
    ----------
    db : path
        The index database.
    timeout : float, optional
        Seconds to wait for another run to finish; None waits as long as it takes.
    on_wait : callable, optional
        Told once, in words, that the run waits (default: a warning on the ``moodscope``
        logger, which reaches stderr when nothing configured logging).
    """

    def __init__(self, db: str | Path, *, timeout: float | None = None, on_wait=None):
        self.db = Path(db)
        self.path = self.db.with_name(self.db.name + ".lock")
        self.timeout = timeout
        self.on_wait = on_wait or log.warning
        self._fd: int | None = None

    def acquire(self) -> None:
        import fcntl
        import time

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise LibraryError(f"{self.path}: the index's lock cannot be made ({exc})") from exc
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pass
            if not told:
                holder = self._holder()
                self.on_wait(
                    f"another moodscope tag{holder} is using {self.db}, waiting for it to "
                    "finish" + ("" if self.timeout is None else f" (at most {self.timeout:g} s)")
                )
                told = True
            if deadline is not None and time.monotonic() >= deadline:
                os.close(fd)
                raise LibraryError(
                    f"{self.db}: another moodscope tag{self._holder()} is still using it "
                    f"after {self.timeout:g} s; try again when it has finished"
                )
            time.sleep(LOCK_POLL_SECONDS)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def _holder(self) -> str:
        try:
            pid = int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return ""
        return f" (process {pid})"

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> IndexLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# -- tagging runs --------------------------------------------------------------------------

TAGGED = "tagged"
"""Predicted (or taken from the index) and written into the file."""
SKIPPED = "skipped"
"""Unchanged since a finished run with the same model: not touched."""
FAILED = "failed"
"""Not tagged: ``error`` says why (the prediction, or the write)."""
WOULD_TAG = "would tag"
"""``dry_run``: predicted; nothing written, neither tags nor index."""
UNTAGGED = "untagged"
"""``untag_files``: moodscope's fields removed."""


def not_music_message(path: str, reason: str | None) -> str:
    """Why a file judged not music is skipped (the outcome's and the index row's ``error``)."""
    return f"{path}: not music ({reason}); not tagged"


def is_not_music(error: str | None) -> bool:
    """Whether a skipped file's ``error`` is :func:`not_music_message`'s."""
    return bool(error) and error.endswith("); not tagged") and ": not music (" in error


@dataclass
class TagOutcome:
    """What happened to one file in :func:`tag_files` or :func:`untag_files`."""

    path: str
    status: str
    prediction: object | None = None  # the Prediction written (None when skipped)
    error: str | None = None  # why it failed; for a skipped file, the error it failed with
    row: IndexRow | None = None  # what the index now holds for the file


def library_files(paths: Iterable[str | Path] | str | Path) -> list[str]:
    """Audio files under ``paths`` as absolute paths with symlinks resolved, each once, in
    the order found (:func:`moodscope.audio.files.find_audio`, which imports no torch, so a
    rerun that has nothing to do starts in a second)."""
    from moodscope.audio.files import find_audio

    return [str(p) for p in find_audio(paths, resolve=True)]


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
    if not prediction.music:
        # No mood and no shares: nothing is written. The index keeps the reason, so a rerun
        # skips the unchanged file again, saying why.
        why, row = not_music_message(path, prediction.not_music), None
        if index is not None:
            row = IndexRow.from_prediction(prediction, before, tagged=False, error=why)
            row.emotions, row.sha1 = None, _file_sha1(path)
            index.record(row)
        return TagOutcome(path, SKIPPED, prediction, why, row)
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
            except FileNotFoundError:
                yield TagOutcome(path, FAILED, error=f"{path}: no such file")
                continue
            except OSError as exc:
                yield TagOutcome(path, FAILED, error=f"{path}: cannot be read ({exc.strerror})")
                continue
            row = None if force else index.get(path)
            plan = _plan(row, state, wanted, min_confidence, allow_damaged)
            if plan == "skip":
                yield TagOutcome(path, SKIPPED, error=row.error, row=row)
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


# -- finding music by mood -----------------------------------------------------------------


@dataclass
class Match:
    """A track found in the index, with the emotion's ``share`` (:func:`find_by_mood`) or
    its mood ``distance`` to the given track (:func:`find_like`; 0 = the same mood)."""

    path: str
    top_emotion: str
    emotions: dict[str, float]
    duration: float | None
    model: str
    share: float | None = None
    distance: float | None = None
    confidence: float | None = None

    def to_dict(self) -> dict:
        out = {"path": self.path}
        if self.share is not None:
            out["share"] = round(self.share, 6)
        if self.distance is not None:
            out["distance"] = round(self.distance, 6)
        factors = factor_shares(self.emotions)
        out.update(
            top_emotion=self.top_emotion,
            confidence=self.confidence,
            emotions=self.emotions,
            top_factor=top_factor(factors),
            factors={k: round(v, 6) for k, v in factors.items()},
            duration=self.duration,
            model=self.model,
        )
        return out


DEFAULT_LIMIT = 20


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be >= 1, got {limit}")


def check_min_confidence(min_confidence: float | None) -> None:
    if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
        raise ConfigError(f"--min-confidence is a chance between 0 and 1, got {min_confidence}")


def find_by_mood(
    emotion: str,
    *,
    min_share: float | None = None,
    limit: int | None = None,
    db: str | Path | None = None,
    min_confidence: float | None = None,
) -> list[Match]:
    """The indexed tracks with the highest share of ``emotion``, highest first.

    Parameters
    ----------
    emotion : str
        One of the model's labels (the nine GEMS emotions for the shipped model).
    min_share : float, optional
        Only tracks whose share is at least this (0-1); then ``limit`` defaults to all.
    limit : int, optional
        At most this many (default 20 without ``min_share``).
    min_confidence : float, optional
        Only tracks whose prediction's confidence is at least this (0-1); tracks without a
        confidence (an uncalibrated model) are then left out.
    """
    _check_limit(limit)
    check_min_confidence(min_confidence)
    if min_share is not None and not 0.0 <= min_share <= 1.0:
        raise ConfigError(f"--min is a share between 0 and 1, got {min_share}")
    if limit is None and min_share is None:
        limit = DEFAULT_LIMIT
    with LibraryIndex(db, readonly=True) as index:
        if emotion not in EMOTIONS and emotion not in index.labels():
            known = index.labels() or list(EMOTIONS)
            raise ConfigError(f"unknown emotion {emotion!r}; choose one of {', '.join(known)}")
        sql = (
            "SELECT path, json_extract(emotions, ?) AS share, top_emotion, emotions, duration, "
            f"model, {index._confidence} AS conf FROM tracks "
            "WHERE emotions IS NOT NULL AND share IS NOT NULL"
        )
        params: list = [f'$."{emotion}"']
        if min_share is not None:
            sql += " AND share >= ?"
            params.append(min_share)
        if min_confidence is not None:
            sql += " AND conf >= ?"
            params.append(min_confidence)
        sql += " ORDER BY share DESC, path"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        found = index._query(sql, tuple(params))
    return [
        Match(p, t, json.loads(e), d, m, share=float(share), confidence=c)
        for p, share, t, e, d, m, c in found
    ]


def mood_distance(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon distance (base 2: 0 = the same distribution, 1 = disjoint) between
    ``p`` [shape=(n_labels,)] and each row of ``q`` [shape=(n, n_labels)]."""
    p = np.asarray(p, np.float64)[None, :]
    q = np.atleast_2d(np.asarray(q, np.float64))
    p, q = p / p.sum(axis=1, keepdims=True), q / q.sum(axis=1, keepdims=True)
    m = (p + q) / 2

    def kl(a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(a > 0, a * np.log2(a / b), 0.0)
        return terms.sum(axis=1)

    return np.sqrt(np.clip((kl(p, m) + kl(q, m)) / 2, 0.0, 1.0))


def find_like(
    track: str | Path,
    *,
    limit: int | None = None,
    db: str | Path | None = None,
    model=None,
    min_confidence: float | None = None,
) -> list[Match]:
    """The indexed tracks whose emotion distribution is nearest ``track``'s ("more like
    this", by mood), nearest first; ``track`` itself is left out.

    ``track``'s distribution comes from the index, or is predicted (with ``model``) when
    it is not there; ``min_confidence`` keeps only tracks whose confidence reaches it.
    """
    _check_limit(limit)
    check_min_confidence(min_confidence)
    limit = limit or DEFAULT_LIMIT
    query_path = os.path.realpath(track)
    with LibraryIndex(db, readonly=True) as index:
        row = index.get(query_path)
        if row is not None and row.emotions is not None:
            query = row.emotions
        else:
            from moodscope.inference.predictor import predict_iter

            (prediction,) = list(predict_iter([track], model))
            if not prediction.ok:
                raise LibraryError(prediction.error)
            query = prediction.emotions
        sql = (
            f"SELECT path, top_emotion, emotions, duration, model, {index._confidence} AS conf "
            "FROM tracks WHERE emotions IS NOT NULL AND path != ?"
        )
        params: tuple = (query_path,)
        if min_confidence is not None:
            sql += " AND conf >= ?"
            params += (min_confidence,)
        found = index._query(sql, params)
    if not found:
        return []
    labels = list(query)
    candidates = [json.loads(e) for _, _, e, _, _, _ in found]
    matrix = np.array([[c.get(label, 0.0) for label in labels] for c in candidates])
    distances = mood_distance(np.array([query[label] for label in labels]), matrix)
    order = sorted(range(len(found)), key=lambda i: (distances[i], found[i][0]))[:limit]
    return [
        Match(
            path,
            top,
            candidates[i],
            duration,
            model_id,
            distance=float(distances[i]),
            confidence=conf,
        )
        for i in order
        for path, top, _, duration, model_id, conf in [found[i]]
    ]


def playlist_m3u8(matches: Iterable[Match]) -> str:
    """An extended M3U playlist (UTF-8) of ``matches`` with absolute paths, in order."""
    lines = ["#EXTM3U"]
    for m in matches:
        seconds = int(round(m.duration)) if m.duration is not None else -1
        lines += [f"#EXTINF:{seconds},{Path(m.path).stem}", m.path]
    return "\n".join(lines) + "\n"


__all__ = [
    "FAILED",
    "SKIPPED",
    "TAGGED",
    "UNTAGGED",
    "WOULD_TAG",
    "IndexLock",
    "IndexRow",
    "LibraryIndex",
    "Match",
    "TagOutcome",
    "default_db_path",
    "find_by_mood",
    "find_like",
    "library_files",
    "mood_distance",
    "playlist_m3u8",
    "tag_files",
    "untag_files",
]
