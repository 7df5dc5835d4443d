"""Feature sets by name and the config that fixes how a track becomes a feature matrix.

A feature set maps (track samples, segments) to one row per segment; the paper's 28 is the
first, pretrained embeddings register beside it.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from moodscope.atomic import bytes_digest
from moodscope.audio.decode import SAMPLE_RATE
from moodscope.errors import ConfigError
from moodscope.features.segments import MIN_SEGMENT_SECONDS, Segment, segment_track

FEATURES_VERSION = 3
"""Bumped whenever a feature's computation changes, so old cache entries are not reused
(3: entries also hold the track's loudness and content measures; configs may normalise)."""

EMOTIFY_LOUDNESS = -15.6
"""LUFS: the median integrated loudness of the 320 Emotify dev tracks as the features read
them (16 kHz mono; ``python -m moodscope.research.invariance --loudness``). The default model's
features bring every track to it, so in-domain tracks move by their own offset from it only."""


@dataclass(frozen=True)
class FeatureSet:
    """A named way to compute one feature row per segment."""

    name: str
    columns: tuple[str, ...]
    compute: Callable[[np.ndarray, Sequence[Segment]], np.ndarray]
    sr: int = SAMPLE_RATE
    compiles: bool = False  # compiles numba kernels on first use (see extract.warm_up)
    precisions: tuple[str, ...] = ("float32",)
    """Number formats ``compute`` takes as ``precision=`` (beyond float32, the default; see
    :mod:`moodscope.musicnn.fast`)."""


_FEATURE_SETS: dict[str, FeatureSet] = {}
# Registered on first use, so extracting the paper's features never imports the network
# and predicting with musicnn never imports librosa.
_LAZY = {
    "paper": "paper",
    **{
        name: "musicnn_sets"
        for name in ("musicnn_msd", "musicnn_mtt", "musicnn_msd_full", "musicnn_mtt_full")
    },
}


def register_feature_set(feature_set: FeatureSet) -> FeatureSet:
    _FEATURE_SETS[feature_set.name] = feature_set
    return feature_set


def get_feature_set(name: str) -> FeatureSet:
    """A registered feature set, or ``"a+b"``: the columns of ``a`` then those of ``b``,
    each computed (and cached) on its own and joined segment by segment."""
    if "+" in name:
        parts = [get_feature_set(part) for part in name.split("+")]
        return FeatureSet(name, tuple(c for p in parts for c in p.columns), None, parts[0].sr)
    if name not in _FEATURE_SETS and name in _LAZY:
        importlib.import_module(f"{__package__}.{_LAZY[name]}")
    if name not in _FEATURE_SETS:
        raise ConfigError(
            f"unknown feature set {name!r}; choose one of {', '.join(list_feature_sets())}"
        )
    return _FEATURE_SETS[name]


def list_feature_sets() -> list[str]:
    return sorted({*_FEATURE_SETS, *_LAZY})


@dataclass(frozen=True)
class FeatureConfig:
    """Which features, on which segments. Saved with every feature table and checkpoint."""

    feature_set: str = "paper"  # a registered feature set (see list_feature_sets())
    segments: int | None = 20  # n equal segments per track (paper: 10 or 20); None: windows
    window: float = 3.0  # seconds per fixed window, used when segments is None
    hop: float | None = None  # seconds between windows (default: window, no overlap)
    loudness: float | None = None  # LUFS every track is brought to first; None: as decoded

    def __post_init__(self) -> None:
        get_feature_set(self.feature_set)
        if self.segments is not None and self.segments < 1:
            raise ConfigError(f"segments must be >= 1, got {self.segments}")
        if self.segments is None and self.window < MIN_SEGMENT_SECONDS:
            raise ConfigError(f"window must be >= {MIN_SEGMENT_SECONDS} s, got {self.window}")

    @property
    def columns(self) -> tuple[str, ...]:
        return get_feature_set(self.feature_set).columns

    @property
    def sr(self) -> int:
        return get_feature_set(self.feature_set).sr

    @property
    def parts(self) -> list[FeatureConfig]:
        """One config per component of a joined feature set ``"a+b"`` (else ``[self]``)."""
        if "+" not in self.feature_set:
            return [self]
        return [replace(self, feature_set=part) for part in self.feature_set.split("+")]

    @property
    def min_duration(self) -> float:
        """Seconds of audio the segmenting needs."""
        if self.segments is not None:
            return self.segments * MIN_SEGMENT_SECONDS
        return self.window

    def segment(self, y: np.ndarray) -> list[Segment]:
        if self.segments is not None:
            return segment_track(y, self.sr, n=self.segments)
        return segment_track(y, self.sr, length=self.window, hop=self.hop)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FeatureConfig:
        fields = ("feature_set", "segments", "window", "hop", "loudness")
        known = {k: d[k] for k in fields if k in d}
        return cls(**known)

    def key(self, precision: str = "float32") -> str:
        """A short hash of everything that changes the numbers (config + code version, and
        the number format when it is not float32)."""
        payload = json.dumps({**self.to_dict(), "version": FEATURES_VERSION}, sort_keys=True)
        key = bytes_digest(payload.encode())[:16]
        return key if precision == "float32" else f"{key}-{precision}"

    def precision(self, wanted: str) -> str:
        """The number format this config's features are computed in when ``wanted`` is
        asked for: ``wanted`` where the feature set has it, else float32."""
        return wanted if wanted in get_feature_set(self.feature_set).precisions else "float32"
