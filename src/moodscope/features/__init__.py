"""Features per segment: the paper's 28 and other registered sets, cached and parallel."""

from .aggregate import AGGREGATES, aggregate_columns, aggregate_rows, aggregate_tracks
from .extract import (
    META_COLUMNS,
    TrackFeatures,
    default_cache_dir,
    extract_features,
    read_table,
    track_features,
    write_table,
)
from .paper import FEATURE_NAMES, PaperFeatureConfig, paper_features, paper_features_reference
from .sets import (
    FeatureConfig,
    FeatureSet,
    get_feature_set,
    list_feature_sets,
    register_feature_set,
)

__all__ = [
    "AGGREGATES",
    "aggregate_columns",
    "aggregate_rows",
    "aggregate_tracks",
    "FEATURE_NAMES",
    "META_COLUMNS",
    "FeatureConfig",
    "FeatureSet",
    "PaperFeatureConfig",
    "TrackFeatures",
    "default_cache_dir",
    "extract_features",
    "get_feature_set",
    "list_feature_sets",
    "paper_features",
    "paper_features_reference",
    "read_table",
    "register_feature_set",
    "track_features",
    "write_table",
]
