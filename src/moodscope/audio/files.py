"""Which files a run reads: the files as given, and audio files (by extension) under
folders, recursively. One rule for ``predict``, ``tag``, the service and beets."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from moodscope.audio.decode import AUDIO_EXTENSIONS


def find_audio(paths: str | Path | Iterable[str | Path], *, resolve: bool = False) -> list[Path]:
    """Files as given, and audio files under folders, recursively, each folder's sorted.

    ``resolve``: absolute paths with symlinks resolved, each file once (what the library
    index records).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS
            )
        else:
            found.append(p)
    if resolve:
        return [Path(f) for f in dict.fromkeys(os.path.realpath(f) for f in found)]
    return found


__all__ = ["find_audio"]
