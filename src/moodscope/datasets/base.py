"""What every dataset offers: a table of tracks, its label names, and a validate() check.

A dataset is one row per track (``track_id``, ``genre``, ``path``, ``label``, plus the
dataset's own annotations); audio is read only when features are extracted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from moodscope.audio.decode import audio_info
from moodscope.errors import AudioError

TRACK_COLUMNS = ("track_id", "genre", "path", "label")


@dataclass
class ValidationReport:
    """Outcome of :meth:`Dataset.validate`: paths that are missing, unreadable or altered."""

    n_tracks: int
    missing: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, problem)
    bad_checksum: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unreadable or self.bad_checksum)


class Dataset:
    """Base of the datasets: subclasses fill ``name``, ``root``, ``labels`` and ``tracks``."""

    name: str
    root: Path
    labels: tuple[str, ...]
    tracks: pd.DataFrame

    def __len__(self) -> int:
        return len(self.tracks)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, tracks={len(self)})"

    def by_track(self) -> pd.DataFrame:
        """The track table indexed by ``track_id`` (a string in every dataset)."""
        return self.tracks.set_index("track_id")

    def share_table(self, labels: list[str] | tuple[str, ...] | None = None):
        """Per-track listener shares (index track id, a column per label), or None where the
        dataset holds only one label per track."""
        labels = list(labels if labels is not None else self.labels)
        if not set(labels) <= set(self.tracks.columns):
            return None
        return self.by_track()[labels]

    def shares(self) -> np.ndarray:
        """Per-track target distribution [shape=(n_tracks, n_labels)]; one-hot unless richer."""
        index = {label: i for i, label in enumerate(self.labels)}
        out = np.zeros((len(self.tracks), len(self.labels)))
        out[np.arange(len(self.tracks)), self.tracks["label"].map(index).to_numpy()] = 1.0
        return out

    def class_counts(self) -> dict[str, int]:
        """Tracks per label, in label order (zero counts kept)."""
        counts = self.tracks["label"].value_counts()
        return {label: int(counts.get(label, 0)) for label in self.labels}

    def validate(self, *, decode: bool = True) -> ValidationReport:
        """List missing and unreadable audio files (``decode`` opens each file's header)."""
        report = ValidationReport(n_tracks=len(self.tracks))
        for path in self.tracks["path"]:
            if not Path(path).is_file():
                report.missing.append(path)
                continue
            if decode:
                try:
                    audio_info(path)
                except AudioError as exc:
                    report.unreadable.append((path, exc.problem))
        return report
