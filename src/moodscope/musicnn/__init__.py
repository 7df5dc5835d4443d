"""musicnn music-tagging networks in PyTorch (converted from musicnn 0.1.0, ISC licence).

See :mod:`moodscope.musicnn.model` and ``LICENSE-musicnn.txt``.
"""

from moodscope.musicnn.model import (
    MODEL_NAMES,
    PATCH_FRAMES,
    SAMPLE_RATE,
    Musicnn,
    load_musicnn,
    log_mel,
    musicnn_embed,
    musicnn_tags,
    patches,
)

__all__ = [
    "MODEL_NAMES",
    "PATCH_FRAMES",
    "SAMPLE_RATE",
    "Musicnn",
    "load_musicnn",
    "log_mel",
    "musicnn_embed",
    "musicnn_tags",
    "patches",
]
