"""moodscope: recognise the emotion music induces, on the nine GEMS categories.

The public Python API; the command line (``moodscope``) is a thin layer over it. Names load
on first use, so ``moodscope predict`` imports only what inference needs.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_WHERE = {
    "SAMPLE_RATE": "audio",
    "audio_info": "audio",
    "load_audio": "audio",
    "stream_audio": "audio",
    "EMOTIONS": "emotions",
    "EmotifyDataset": "datasets",
    "FolderDataset": "datasets",
    "load_dataset": "datasets",
    "AudioError": "errors",
    "ConfigError": "errors",
    "DatasetError": "errors",
    "FeatureError": "errors",
    "ModelError": "errors",
    "MoodscopeError": "errors",
    "FEATURE_NAMES": "features",
    "FeatureConfig": "features",
    "extract_features": "features",
    "paper_features": "features",
    "track_features": "features",
    "Segment": "segments",
    "equal_segments": "segments",
    "fixed_windows": "segments",
    "segment_track": "segments",
    "Prediction": "predict",
    "load_model": "predict",
    "predict": "predict",
    "predict_iter": "predict",
}


def __getattr__(name: str):
    if name in _WHERE:
        module = importlib.import_module(f".{_WHERE[name]}", __name__)
        # "predict" is both a module and a function: the function is the API.
        return getattr(module, name)
    raise AttributeError(f"module 'moodscope' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__all__ = sorted(_WHERE)
