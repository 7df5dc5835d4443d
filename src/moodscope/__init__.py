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
    "fixed_windows",
    "load_audio",
    "load_dataset",
    "paper_features",
    "segment_track",
    "stream_audio",
    "track_features",
]
