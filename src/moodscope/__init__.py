"""moodscope: recognise the emotion music induces, on the nine GEMS categories.

The public Python API; the command line (``moodscope``) is a thin layer over it. Names load
on first use, so ``moodscope predict`` imports only what inference needs. No subpackage
shares a name with a function exported here (``moodscope.predict`` is always the function).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_WHERE = {
    "SAMPLE_RATE": "moodscope.audio.decode",
    "audio_info": "moodscope.audio.decode",
    "load_audio": "moodscope.audio.decode",
    "stream_audio": "moodscope.audio.decode",
    "EMOTIONS": "moodscope.emotions",
    "EmotifyDataset": "moodscope.datasets",
    "FolderDataset": "moodscope.datasets",
    "load_dataset": "moodscope.datasets",
    "AudioError": "moodscope.errors",
    "ConfigError": "moodscope.errors",
    "DatasetError": "moodscope.errors",
    "FeatureError": "moodscope.errors",
    "ModelError": "moodscope.errors",
    "MoodscopeError": "moodscope.errors",
    "FEATURE_NAMES": "moodscope.features",
    "FeatureConfig": "moodscope.features",
    "extract_features": "moodscope.features",
    "paper_features": "moodscope.features",
    "track_features": "moodscope.features",
    "Segment": "moodscope.features.segments",
    "equal_segments": "moodscope.features.segments",
    "fixed_windows": "moodscope.features.segments",
    "segment_track": "moodscope.features.segments",
    "Prediction": "moodscope.inference.predictor",
    "TimelinePoint": "moodscope.inference.predictor",
    "load_model": "moodscope.inference.predictor",
    "predict": "moodscope.inference.predictor",
    "predict_iter": "moodscope.inference.predictor",
}


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value  # looked up once; a submodule import can never replace it
        return value
    raise AttributeError(f"module 'moodscope' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__all__ = sorted(_WHERE)
