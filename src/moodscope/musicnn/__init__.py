"""musicnn music-tagging networks (converted from musicnn 0.1.0, ISC licence).

Prediction runs the network exported to ONNX on onnxruntime (:mod:`.network`) on the log-mel
patches of :mod:`.inputs`; the PyTorch port it was exported from (:mod:`.model`, research
extra) loads only when asked for. See ``LICENSE-musicnn.txt``.
"""

from __future__ import annotations

import importlib

from moodscope.musicnn.inputs import PATCH_FRAMES, SAMPLE_RATE, log_mel, patches
from moodscope.musicnn.network import musicnn_embed, network_outputs
from moodscope.musicnn.tags import MODEL_NAMES, musicnn_tags

_TORCH = {"Musicnn": "moodscope.musicnn.model", "load_musicnn": "moodscope.musicnn.model"}


def __getattr__(name: str):
    if name in _TORCH:  # PyTorch only when the port itself is asked for
        return getattr(importlib.import_module(_TORCH[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MODEL_NAMES",
    "PATCH_FRAMES",
    "SAMPLE_RATE",
    "Musicnn",
    "load_musicnn",
    "log_mel",
    "musicnn_embed",
    "musicnn_tags",
    "network_outputs",
    "patches",
]
