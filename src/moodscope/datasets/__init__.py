"""Datasets: Emotify in its release layout, and any folder of audio with a labels CSV."""

from __future__ import annotations

from pathlib import Path

from moodscope.datasets.base import Dataset, ValidationReport
from moodscope.datasets.emotify import EMOTIONS, GENRES, EmotifyDataset, track_path
from moodscope.datasets.folder import FolderDataset

__all__ = [
    "EMOTIONS",
    "GENRES",
    "Dataset",
    "EmotifyDataset",
    "FolderDataset",
    "ValidationReport",
    "load_dataset",
    "track_path",
]


def load_dataset(data: str | Path, labels: str | Path | None = None) -> Dataset:
    """An Emotify-layout folder, or with ``labels`` a :class:`FolderDataset`."""
    return EmotifyDataset(data) if labels is None else FolderDataset(data, labels)
