"""Your music library: mood tags written into files (``tags``), the index of what was tagged
(``index``, with its one-writer ``lock``), the runs that tag and untag (``tagging``), and
finding tracks by mood with playlists of them (``search``). ``moodscope tag``, ``untag``,
``find`` and the beets plugin use it; its public names are importable from here."""

from moodscope.library.index import (
    SCHEMA_VERSION,
    IndexRow,
    LibraryIndex,
    check_min_confidence,
    default_db_path,
)
from moodscope.library.lock import IndexLock
from moodscope.library.search import (
    Match,
    find_by_mood,
    find_like,
    find_tracks,
    missing_tracks,
    mood_distance,
    playlist_m3u8,
)
from moodscope.library.tagging import (
    FAILED,
    SKIPPED,
    TAGGED,
    UNTAGGED,
    WOULD_TAG,
    TagOutcome,
    damaged_message,
    library_files,
    prune_missing,
    tag_files,
    untag_files,
)

__all__ = [
    "FAILED",
    "SCHEMA_VERSION",
    "SKIPPED",
    "TAGGED",
    "UNTAGGED",
    "WOULD_TAG",
    "IndexLock",
    "IndexRow",
    "LibraryIndex",
    "Match",
    "TagOutcome",
    "check_min_confidence",
    "damaged_message",
    "default_db_path",
    "find_by_mood",
    "find_like",
    "find_tracks",
    "library_files",
    "missing_tracks",
    "mood_distance",
    "playlist_m3u8",
    "prune_missing",
    "tag_files",
    "untag_files",
]
