"""Which files a run reads: the files as given, and audio files (by extension) under
folders, recursively. One rule for ``predict``, ``tag``, the service and beets."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from moodscope.audio.decode import AUDIO_EXTENSIONS
from moodscope.errors import ConfigError


def find_audio(paths: str | Path | Iterable[str | Path], *, resolve: bool = False) -> list[Path]:
    """Files as given, and audio files under folders, recursively, each folder's sorted;
    a subfolder that cannot be read is listed too, so that decoding it reports it (``is a
    folder that cannot be read``) and a batch counts it as a failure instead of skipping it
    in silence.

    ``resolve``: absolute paths with symlinks resolved, each file once (what the library
    index records).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = list(paths)
    if any(str(p) == "" for p in paths):  # Path("") is ".": the whole working folder
        raise ConfigError("an empty path was given (an unset variable?); name a file or a folder")
    found: list[Path] = []
    for p in map(Path, paths):
        if os.path.isdir(p):  # False, not an error, for a path in a folder it cannot enter
            found += _audio_files_under(p)
        else:
            found.append(p)
    if resolve:
        return [Path(f) for f in dict.fromkeys(os.path.realpath(f) for f in found)]
    return found


def _audio_files_under(folder: Path) -> list[Path]:
    """Symlinked subfolders are followed (``Music/X -> /mnt/disk2/X``), each real folder
    once: a link back to a folder above it (a loop) or to one listed already adds nothing."""
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()

    def unreadable(exc: OSError) -> None:
        if exc.filename is not None:
            found.append(Path(exc.filename))

    for root, dirs, files in os.walk(folder, onerror=unreadable, followlinks=True):
        try:
            st = os.stat(root)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []  # its files are listed under the first path that reached it
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs.sort()  # the same path wins for a folder reached twice, run after run
        found += (
            path
            for path in (Path(root, f) for f in files)
            if path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file()
        )
    return sorted(found)


__all__ = ["find_audio"]
