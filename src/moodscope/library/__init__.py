"""A music library: mood tags written into files (``tags``) and an index of what was tagged,
searchable by mood (``index``). ``moodscope tag``, ``find`` and the beets plugin use it."""

from moodscope.library import index as _index
from moodscope.library.index import *  # noqa: F403  (the index's public names are the package's)

__all__ = list(_index.__all__)
