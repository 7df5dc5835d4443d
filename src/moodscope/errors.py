"""The one error family of moodscope.

Every error a user can cause derives from :class:`MoodscopeError`; the CLI turns
them into one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

from pathlib import Path


class MoodscopeError(Exception):
    """Root of every error moodscope raises on purpose."""


class ConfigError(MoodscopeError, ValueError):
    """A parameter or configuration value breaks a rule (the message states the rule)."""


class AudioError(MoodscopeError):
    """An audio file cannot be used: missing, not audio, corrupt, empty, too short, non-finite."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")


class NotAudioError(AudioError):
    """The file's content is not audio at all (text, or bytes no decoder recognises), whatever
    its name says."""


class DatasetError(MoodscopeError):
    """A dataset folder or its annotation/label file is missing or malformed."""


class FeatureError(MoodscopeError):
    """Features cannot be computed or a feature table is malformed."""


class ModelError(MoodscopeError):
    """A model name is unknown, or a checkpoint is missing, corrupt or foreign."""


class TagError(MoodscopeError):
    """Mood tags cannot be read from or written into a file (a container mutagen cannot tag,
    a read-only, vanished or changed file, a full disk); the file is left as it was."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")


class LibraryError(MoodscopeError):
    """The library index cannot be opened or queried (not an index, a bad query)."""


class OutputError(MoodscopeError):
    """An output cannot be written where it was asked to go (a folder, a full disk, no
    permission); what was there before is left as it was."""
