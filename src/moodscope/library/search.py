"""Finding music in the library index by mood, as ``moodscope find`` does it: the tracks with
most of one emotion, or those whose mood is nearest a given track's, and the matches as JSON
or an M3U8 playlist."""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moodscope.emotions import EMOTIONS, factor_shares, top_factor
from moodscope.errors import ConfigError, LibraryError
from moodscope.library.index import (
    LibraryIndex,
    _key,
    check_min_confidence,
    default_db_path,
    path_text,
)

FIND_FORMATS = ("table", "json", "m3u8")


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


def find_by_mood(
    emotion: str,
    *,
    min_share: float | None = None,
    limit: int | None = None,
    db: str | Path | None = None,
    min_confidence: float | None = None,
) -> list[Match]:
    """The indexed tracks whose top emotion is ``emotion``, those with most of it first: a
    "calm" playlist holds calm tracks only, never the tensest track with a little calm.

    Parameters
    ----------
    emotion : str
        One of the model's labels (the nine GEMS emotions for the shipped model).
    min_share : float, optional
        Only tracks whose share of ``emotion`` is at least this (0-1); then ``limit``
        defaults to all. A top emotion's share is seldom over 0.4 (nine emotions share 1).
    limit : int, optional
        At most this many (default 20 without ``min_share``).
    min_confidence : float, optional
        Only tracks whose confidence in ``emotion`` (their top emotion) is at least this
        (0-1); tracks without a confidence (an uncalibrated model) are then left out.
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
            "WHERE emotions IS NOT NULL AND share IS NOT NULL AND top_emotion = ?"
        )
        params: list = [f'$."{emotion}"', emotion]
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
        Match(path_text(p), t, json.loads(e), d, m, share=float(share), confidence=c)
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
            "FROM tracks WHERE emotions IS NOT NULL AND top_emotion IS NOT NULL AND path != ?"
        )
        params: tuple = (_key(query_path),)
        if min_confidence is not None:
            sql += " AND conf >= ?"
            params += (min_confidence,)
        found = [(path_text(p), *rest) for p, *rest in index._query(sql, params)]
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


LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
"""Characters some playlist reader takes for the end of a line (Python's ``splitlines`` takes
them all): inside an entry, one would start a new entry."""


def _one_line(text: str) -> str:
    """``text`` with control characters and line breaks as spaces, runs of space as one."""
    kept = (" " if c in LINE_BREAKS or unicodedata.category(c) == "Cc" else c for c in text)
    return " ".join("".join(kept).split())


def _tag_text(tags, *keys: str) -> str:
    for key in keys:
        try:
            value = tags.get(key)
        except (KeyError, ValueError):
            value = None
        if value is None:
            continue
        text = getattr(value, "text", value)  # an ID3 frame, or a list of strings
        if isinstance(text, (list, tuple)):
            text = text[0] if text else ""
        text = _one_line(str(text))
        if text:
            return text
    return ""


def track_title(path: str | Path) -> str:
    """What a player shows for a track: "artist - title" from the file's tags, the title
    alone when it has no artist, else the file name without its extension; one line."""
    import mutagen

    audio = None
    if Path(path).is_file():  # never a FIFO or a device: reading one could wait for ever
        try:
            audio = mutagen.File(path, easy=True)
        except Exception:  # noqa: BLE001 - any file mutagen cannot read: the name will do
            audio = None
    tags = getattr(audio, "tags", None)
    artist = title = ""
    if tags is not None:  # easy keys (ID3, Vorbis, MP4), or an ID3 tag in WAV/AIFF
        artist = _tag_text(tags, "artist", "TPE1")
        title = _tag_text(tags, "title", "TIT2")
    if title:
        return f"{artist} - {title}" if artist else title
    return _one_line(Path(path).stem) or "untitled"


def unplayable(path: str) -> str | None:
    """Why ``path`` cannot be a playlist entry (a line break in it, or a name that is not
    UTF-8, which an M3U8 cannot hold), or None."""
    if any(c in LINE_BREAKS for c in path):
        return f"{path!r}: left out of the playlist (its name holds a line break)"
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return f"{path!r}: left out of the playlist (its name is not UTF-8, as M3U8 must be)"
    return None


def playlist_m3u8(matches: Iterable[Match]) -> str:
    """An extended M3U playlist (UTF-8) of ``matches`` with absolute paths, in order, each
    titled by :func:`track_title`. A path with a line break in it cannot be one line of a
    playlist, nor a name that is not UTF-8 be written in one: each is left out, with a
    comment line that says so (see :func:`unplayable`)."""
    lines = ["#EXTM3U"]
    for m in matches:
        problem = unplayable(m.path)
        if problem is not None:
            lines.append("# " + _one_line(problem))
            continue
        seconds = int(round(m.duration)) if m.duration is not None else -1
        lines += [f"#EXTINF:{seconds},{track_title(m.path)}", m.path]
    return "\n".join(lines) + "\n"


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


def missing_tracks(db: str | Path | None = None) -> list[str]:
    """The index's files that are no longer there (``moodscope find --missing``)."""
    with LibraryIndex(db, readonly=True) as index:
        return index.missing()


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


__all__ = [
    "DEFAULT_LIMIT",
    "FIND_FORMATS",
    "Match",
    "check_find_format",
    "find_by_mood",
    "find_like",
    "find_tracks",
    "missing_tracks",
    "mood_distance",
    "playlist_m3u8",
    "render_matches",
    "track_title",
    "unplayable",
]
