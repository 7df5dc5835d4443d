"""Features per segment: the paper's 28 and other registered sets, cached and parallel.

Names load on first use, so that prediction (which needs the config and the cache, not
librosa or pandas) starts fast.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "AGGREGATES": "aggregate",
    "aggregate_columns": "aggregate",
    "aggregate_rows": "aggregate",
    "aggregate_tracks": "aggregate",
    "META_COLUMNS": "extract",
    "TrackFeatures": "extract",
    "default_cache_dir": "extract",
    "extract_features": "extract",
    "read_table": "extract",
    "track_features": "extract",
    "write_table": "extract",
    "FEATURE_NAMES": "paper",
    "PaperFeatureConfig": "paper",
    "paper_features": "paper",
    "paper_features_reference": "paper",
    "FeatureConfig": "sets",
    "FeatureSet": "sets",
    "get_feature_set": "sets",
    "list_feature_sets": "sets",
    "register_feature_set": "sets",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_WHERE)
