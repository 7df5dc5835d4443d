"""Emotify: 400 one-minute excerpts, 4 genres x 100, induced emotion on the GEMS-9 scale.

Aljanaki, Wiering & Veltkamp, "Studying emotion induced by music through a crowdsourcing
game", Information Processing & Management 52(1), 2016. Music from Magnatune, licence
CC BY-NC-SA. Layout of the release (and of the project's 320-track dev copy)::

    data.csv                     one row per participant and track, not averaged
    emotifymusic/<genre>/<N>.mp3 classical 1-100, rock 101-200, electronic 201-300, pop 301-400

The file number of a track is ``id - (first id of its genre's block) + 1``, the genre taken
from data.csv's ``genre`` column; folder order is never used (alphabetical order would map
101 to electronic). A track's label is its dominant emotion: the largest share of
participants who felt it, ties going to the first emotion in :data:`EMOTIONS` order.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from moodscope.atomic import file_digest
from moodscope.datasets.base import Dataset, ValidationReport
from moodscope.emotions import EMOTIONS
from moodscope.errors import DatasetError

GENRES: tuple[str, ...] = ("classical", "rock", "electronic", "pop")
"""The release's genres, in id-block order."""

_REQUIRED = ("track id", "genre", *EMOTIONS, "liked", "disliked")
TRACKS_PER_GENRE = 100


def track_path(root: str | Path, track_id: int, genre: str) -> Path:
    """The audio file of ``track_id`` in ``genre``: id 101 of rock is ``rock/1.mp3``."""
    if genre not in GENRES:
        raise DatasetError(f"unknown Emotify genre {genre!r}; expected one of {', '.join(GENRES)}")
    number = track_id - GENRES.index(genre) * TRACKS_PER_GENRE
    if not 1 <= number <= TRACKS_PER_GENRE:
        raise DatasetError(
            f"track id {track_id} does not belong to genre {genre!r} "
            f"(its ids are {GENRES.index(genre) * 100 + 1}-{GENRES.index(genre) * 100 + 100})"
        )
    return Path(root) / "emotifymusic" / genre / f"{number}.mp3"


def _read_annotations(csv_path: Path) -> pd.DataFrame:
    if not csv_path.is_file():
        raise DatasetError(f"{csv_path}: no annotation file (expected Emotify's data.csv)")
    try:
        raw = pd.read_csv(csv_path, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{csv_path}: not a readable CSV ({exc})") from exc
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in _REQUIRED if c not in raw.columns]
    if missing:
        raise DatasetError(f"{csv_path}: missing column(s) {', '.join(missing)}")
    numeric = raw[["track id", *EMOTIONS, "liked", "disliked"]].apply(
        pd.to_numeric, errors="coerce"
    )
    bad = numeric.isna().any(axis=1)
    if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # header is line 1
        raise DatasetError(f"{csv_path}: line {line} has a missing or non-numeric value")
    raw[numeric.columns] = numeric
    raw["track id"] = raw["track id"].astype(int)
    raw["genre"] = raw["genre"].astype(str).str.strip().str.lower()
    return raw


class EmotifyDataset(Dataset):
    """The Emotify release (or a copy with the same layout and a subset of tracks).

    Parameters
    ----------
    root : str or Path
        Folder holding ``data.csv`` and ``emotifymusic/``.

    Attributes
    ----------
    tracks : pd.DataFrame
        One row per track, sorted by id: ``track_id`` (str), ``genre``, ``path``, ``label``
        (dominant emotion), ``n_annotations``, the nine emotion shares, ``liked``,
        ``disliked`` (shares of participants).
    annotations : pd.DataFrame
        One row per participant and track: ``track_id`` (str) and the nine 0/1 emotion
        columns (what listener-panel comparisons resample).
    """

    name = "emotify"
    labels = EMOTIONS

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise DatasetError(f"{root}: no such folder (expected an Emotify layout folder)")
        raw = _read_annotations(self.root / "data.csv")
        genres = raw.groupby("track id")["genre"].nunique()
        if (genres > 1).any():
            tid = int(genres[genres > 1].index[0])
            raise DatasetError(f"{self.root / 'data.csv'}: track {tid} is listed under two genres")
        grouped = raw.groupby("track id")
        tracks = grouped[[*EMOTIONS, "liked", "disliked"]].mean()
        tracks.insert(0, "n_annotations", grouped.size())
        tracks.insert(0, "genre", grouped["genre"].first())
        # idxmax returns the first maximum, i.e. ties go to the first emotion in column order.
        tracks.insert(1, "label", tracks[list(EMOTIONS)].idxmax(axis=1))
        tracks = tracks.reset_index().rename(columns={"track id": "track_id"})
        tracks.insert(
            2,
            "path",
            [str(track_path(self.root, t, g)) for t, g in zip(tracks.track_id, tracks.genre)],
        )
        tracks["track_id"] = tracks["track_id"].astype(str)
        self.tracks = tracks[
            ["track_id", "genre", "path", "label", "n_annotations", *EMOTIONS, "liked", "disliked"]
        ]
        self.annotations = raw[["track id", *EMOTIONS]].rename(columns={"track id": "track_id"})
        self.annotations["track_id"] = self.annotations["track_id"].astype(str)

    def shares(self) -> np.ndarray:
        """Share of participants who felt each emotion [shape=(n_tracks, 9)]."""
        return self.tracks[list(EMOTIONS)].to_numpy(dtype=float)

    def validate(self, *, decode: bool = True, checksums: bool = False) -> ValidationReport:
        """Missing and unreadable files; with ``checksums`` also files that differ from the
        original release's MD5 (the dev copy is re-encoded, so it never matches)."""
        report = super().validate(decode=decode)
        if checksums:
            index = _release_checksums()
            for path in self.tracks["path"]:
                rel = Path(path).relative_to(self.root).as_posix()
                if Path(path).is_file() and index.get(rel) != _md5(Path(path)):
                    report.bad_checksum.append(path)
        return report


def _md5(path: Path) -> str:
    return file_digest(path, algorithm="md5")  # the release's checksum file is MD5


def _release_checksums() -> dict[str, str]:
    text = resources.files(__package__).joinpath("emotify_release_md5.txt").read_text()
    pairs = (line.split(None, 1) for line in text.splitlines() if line.strip())
    return {path.strip(): md5 for md5, path in pairs}
