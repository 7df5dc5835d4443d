"""The library index: one SQLite row per file with what moodscope last did to it, so a
``tag`` run resumes where it stopped and ``find`` searches without reading a file.

A row holds the file's absolute, symlink-resolved path; its size, mtime (ns) and content hash
as the file stood after moodscope was done with it; the model, the distribution, the top
emotion, its confidence, when the tags were written (and under which ``min_confidence``) and
the last error. Each result is committed in a transaction of its own (WAL journal), so a run
killed at any instant leaves whole rows only. The runs that fill it are in
:mod:`moodscope.library.tagging`, the searches in :mod:`moodscope.library.search`.
"""

from __future__ import annotations

import datetime
import importlib
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from moodscope.emotions import EMOTIONS
from moodscope.errors import ConfigError, LibraryError
from moodscope.library.tags import FileState

SCHEMA_VERSION = 3
"""1: the first index; 2 adds ``confidence`` and ``min_confidence``; 3 adds ``truncated``
(each added in place, see ``_ADDED``)."""

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


_OWN_COLUMNS = tuple(c for c in _COLUMNS if c not in _SINCE)  # every moodscope index has them


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


def path_text(stored: str | bytes) -> str:
    """A path as SQLite gave it back (see :func:`_key`) as the ``str`` Python names files by."""
    return os.fsdecode(stored) if isinstance(stored, bytes) else stored


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
        except BaseException:
            self.close()
            raise

    def _setup(self) -> None:
        conn = self._conn
        conn.execute("PRAGMA busy_timeout = 30000")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise LibraryError(
                f"{self.path}: index schema {version} is newer than this moodscope reads "
                f"({SCHEMA_VERSION}); upgrade moodscope"
            )
        self._check_ours(version)
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

    def _check_ours(self, version: int) -> None:
        """Refuse a database moodscope did not make (``--db`` at another program's file)
        before anything is written to it: no journal switch, no table added."""
        conn = self._conn
        tables = {
            name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if version == 0 and not tables:
            return  # empty: a new index
        columns = {row[1] for row in conn.execute("PRAGMA table_info(tracks)")}
        if version >= 1 and tables == {"tracks"} and set(_OWN_COLUMNS) <= columns:
            return
        others = len(tables - {"tracks"}) or len(tables)
        raise LibraryError(
            f"{self.path}: is not a moodscope library index (an SQLite database with "
            f"{others} table(s) moodscope did not make); it was left as it was: give --db a "
            "file of its own"
        )

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
        d["path"] = path_text(d["path"])
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

    def missing(self) -> list[str]:
        """The paths whose file is no longer there (moved, deleted, or on a disk that is
        not mounted), by path."""
        paths = (p for (p,) in self._query("SELECT path FROM tracks ORDER BY path"))
        return [p for p in map(path_text, paths) if not os.path.exists(p)]

    def forget(self, paths: list[str]) -> None:
        """Remove the rows of ``paths``, in one transaction."""
        if self.readonly or self._conn is None:
            raise LibraryError(f"{self.path}: opened read-only")
        try:
            with self._conn:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany(
                    "DELETE FROM tracks WHERE path = ?", [(_key(p),) for p in paths]
                )
        except sqlite3.Error as exc:
            raise LibraryError(f"{self.path}: cannot remove rows ({exc})") from exc

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


def check_min_confidence(min_confidence: float | None) -> None:
    """A confidence threshold (``tag`` and ``find --min-confidence``) is a chance, 0-1."""
    if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
        raise ConfigError(f"--min-confidence is a chance between 0 and 1, got {min_confidence}")


_MOVED = {
    **dict.fromkeys(
        ("FAILED", "SKIPPED", "TAGGED", "UNTAGGED", "WOULD_TAG", "TagOutcome", "damaged_message",
         "library_files", "model_id", "tag_files", "untag_files"),
        "tagging",
    ),
    **dict.fromkeys(
        ("Match", "find_by_mood", "find_like", "mood_distance", "playlist_m3u8"), "search"
    ),
    "IndexLock": "lock",
}  # fmt: skip
"""Names this module held before the library was split into rooms: scripts that import them
from here keep working (``from moodscope.library import ...`` is the documented path)."""


def __getattr__(name: str):
    # Looked up when asked for, not imported: those modules import this one.
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"moodscope.library.{_MOVED[name]}"), name)


__all__ = [
    "SCHEMA_VERSION",
    "IndexRow",
    "LibraryIndex",
    "check_min_confidence",
    "default_db_path",
]
