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
        return [Path(f) for f in dict.fromkeys(map(_real, found))]
    return found


def _real(path: Path) -> str:
    # A broken or looping link keeps its own name: its error should name what the user has.
    return os.path.realpath(path) if os.path.exists(path) else os.path.abspath(path)


def _audio_files_under(folder: Path) -> list[Path]:
    """Symlinked subfolders are followed (``Music/X -> /mnt/disk2/X``), each real folder
    once: a link back to a folder above it (a loop) or to one listed already adds nothing.
    What bears an audio name but is no regular file (a broken link, a pipe, a socket) is
    listed too: reading it says what it is, where skipping it would hide a lost song."""
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
            if path.suffix.lower() in AUDIO_EXTENSIONS
        )
    return sorted(found)


SKIPPED_KINDS = {
    **dict.fromkeys(
        (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".heic", ".ico"),
        "image",
    ),  # fmt: skip
    ".cue": "cue sheet",
    **dict.fromkeys((".log", ".nfo", ".txt", ".md", ".rtf", ".pdf", ".htm", ".html"), "text"),
    **dict.fromkeys((".m3u", ".m3u8", ".pls", ".xspf", ".wpl"), "playlist"),
    **dict.fromkeys((".sfv", ".md5", ".ffp", ".st5", ".sha1", ".sha256", ".accurip"), "checksum"),
    **dict.fromkeys(
        (".mkv", ".avi", ".mov", ".mpg", ".mpeg", ".m4v", ".wmv", ".flv", ".ts"), "video"
    ),  # fmt: skip
    **dict.fromkeys((".mid", ".midi", ".kar"), "MIDI"),
    **dict.fromkeys((".zip", ".rar", ".7z", ".tar", ".gz"), "archive"),
    **dict.fromkeys((".db", ".ini", ".json", ".xml", ".yaml", ".yml", ".lrc"), "metadata"),
}
"""What the files a folder scan passes over are, by extension (anything else: ``other``)."""


def skipped_kind(path: str | Path) -> str:
    """What a file the folder scan passes over is, in a word or two."""
    name = Path(path).name
    if name.startswith("."):
        return "hidden"
    return SKIPPED_KINDS.get(Path(name).suffix.lower(), "other")


def skipped_by_kind(paths: str | Path | Iterable[str | Path]) -> dict[str, int]:
    """The files under the folders among ``paths`` that a folder scan passes over, counted
    by kind (``{"image": 2, "cue sheet": 1}``), for a run's summary: a user sees that
    nothing audio was missed. Files named one by one are never passed over."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    counts: dict[str, int] = {}
    seen: set[tuple[int, int]] = set()
    for p in map(Path, paths):
        if not os.path.isdir(p):
            continue
        for root, dirs, files in os.walk(p, followlinks=True):  # as find_audio walks
            try:
                st = os.stat(root)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                dirs[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            for name in files:
                if Path(name).suffix.lower() not in AUDIO_EXTENSIONS:
                    kind = skipped_kind(name)
                    counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def describe_skipped(counts: dict[str, int]) -> str | None:
    """``counts`` of :func:`skipped_by_kind` as a summary line, or None when there are none."""
    if not counts:
        return None
    parts = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    return f"passed over {sum(counts.values())} file(s) that are not audio: {parts}"


__all__ = ["describe_skipped", "find_audio", "skipped_by_kind", "skipped_kind"]
