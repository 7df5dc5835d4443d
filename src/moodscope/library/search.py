"""Finding music in the index by mood, as ``moodscope find`` does it: one query (a mood, or
"like this track"), its checks, and the matches as JSON or an M3U8 playlist."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from moodscope.errors import ConfigError
from moodscope.library.index import Match, default_db_path, find_by_mood, find_like, playlist_m3u8

FIND_FORMATS = ("table", "json", "m3u8")


def find_tracks(
    *,
    mood: str | None = None,
    like: str | Path | None = None,
    min_share: float | None = None,
    limit: int | None = None,
    db: str | Path | None = None,
    model=None,
    min_confidence: float | None = None,
) -> tuple[list[Match], Path]:
    """``(matches, index path)`` for one of ``mood`` (with ``min_share``) or ``like``;
    ``min_confidence`` keeps only tracks whose confidence reaches it."""
    if (mood is None) == (like is None):
        raise ConfigError("give one of --mood EMOTION or --like FILE")
    if min_share is not None and mood is None:
        raise ConfigError("--min goes with --mood")
    path = Path(db) if db is not None else default_db_path()
    if not path.exists():
        raise ConfigError(f"no library index at {path}: run `moodscope tag FOLDER` first")
    if mood is not None:
        found = find_by_mood(
            mood, min_share=min_share, limit=limit, db=path, min_confidence=min_confidence
        )
        return found, path
    return find_like(like, limit=limit, db=path, model=model, min_confidence=min_confidence), path


def check_find_format(fmt: str) -> str:
    if fmt not in FIND_FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FIND_FORMATS)}")
    return fmt


def render_matches(matches: Sequence[Match], fmt: str) -> str:
    """The matches as JSON (a list of objects) or an M3U8 playlist."""
    if check_find_format(fmt) == "m3u8":
        return playlist_m3u8(matches)
    if fmt == "json":
        return json.dumps([m.to_dict() for m in matches], indent=2) + "\n"
    raise ConfigError("a table of matches is the command line's to draw; use json or m3u8")


__all__ = ["FIND_FORMATS", "check_find_format", "find_tracks", "render_matches"]
