"""Track-level rows from segment rows: the mean and standard deviation of every feature.

A model trained with ``aggregate="track"`` sees one row per track; at prediction time the
same summary is taken over a file's windows (and, for the timeline, over a neighbourhood of
windows around each one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from moodscope.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

AGGREGATES = ("segment", "track")
TIMELINE_CONTEXT = 2
"""Windows on each side summarised for a track-level model's timeline (5 x 3 s = 15 s)."""


def check_aggregate(aggregate: str) -> str:
    if aggregate not in AGGREGATES:
        raise ConfigError(f"unknown aggregate {aggregate!r}; choose one of {', '.join(AGGREGATES)}")
    return aggregate


def aggregate_columns(columns: Sequence[str]) -> list[str]:
    return [f"{c}@mean" for c in columns] + [f"{c}@std" for c in columns]


def aggregate_rows(features: np.ndarray) -> np.ndarray:
    """[n_segments, D] -> [2 D]: per-feature mean then standard deviation."""
    features = np.asarray(features, dtype=np.float64)
    return np.concatenate([features.mean(axis=0), features.std(axis=0)])


def local_aggregates(features: np.ndarray, context: int = TIMELINE_CONTEXT) -> np.ndarray:
    """[n, D] -> [n, 2 D]: the summary of windows ``i - context .. i + context``, per window."""
    n = len(features)
    return np.stack(
        [aggregate_rows(features[max(0, i - context) : i + context + 1]) for i in range(n)]
    )


def aggregate_tracks(table: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """One row per track: meta columns of its first segment (start 0, end = last end) and
    the mean and std of ``columns`` over its segments."""
    import pandas as pd

    grouped = table.groupby("track_id", sort=False)
    values = grouped[list(columns)]
    mean, std = values.mean(), values.std(ddof=0)
    out = pd.concat([mean.add_suffix("@mean"), std.add_suffix("@std")], axis=1).reset_index()
    meta = grouped[["genre", "label"]].first().reset_index()
    out = meta.merge(out, on="track_id")
    out.insert(1, "segment", 0)
    out.insert(2, "start", 0.0)
    out.insert(3, "end", grouped["end"].max().to_numpy())
    return out
