"""moodscope: recognise the emotion music induces, on the nine GEMS categories.

The public Python API; the command line (``moodscope``) is a thin layer over it.
"""

from .audio import SAMPLE_RATE, audio_info, load_audio, stream_audio
from .datasets import EMOTIONS, EmotifyDataset, FolderDataset, load_dataset
from .errors import (
    AudioError,
    ConfigError,
    DatasetError,
    FeatureError,
    ModelError,
    MoodscopeError,
)
from .features import (
    FEATURE_NAMES,
    FeatureConfig,
    extract_features,
    paper_features,
    track_features,
)
from .segments import Segment, equal_segments, fixed_windows, segment_track

__version__ = "0.1.0"

_LAZY = {"predict": "predict", "load_model": "predict", "Prediction": "predict"}


def __getattr__(name: str):
    # predict() needs torch; importing moodscope for its features should not pay for it.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'moodscope' has no attribute {name!r}")


__all__ = [
    "EMOTIONS",
    "FEATURE_NAMES",
    "SAMPLE_RATE",
    "AudioError",
    "ConfigError",
    "DatasetError",
    "EmotifyDataset",
    "FeatureConfig",
    "FeatureError",
    "FolderDataset",
    "ModelError",
    "MoodscopeError",
    "Segment",
    "audio_info",
    "equal_segments",
    "extract_features",
    "load_model",
    "predict",
    "Prediction",
    "fixed_windows",
    "load_audio",
    "load_dataset",
    "paper_features",
    "segment_track",
    "stream_audio",
    "track_features",
]
