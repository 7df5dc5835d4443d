"""Feature extraction: the paper's 28 features, ours against the straightforward recipe.

Per 60-s track on one core (same tracks, same run), then the whole dev copy with 2 workers
from a cold cache, then again from the warm cache.
"""

from __future__ import annotations

import statistics
import tempfile

from threadpoolctl import threadpool_limits

from moodscope.audio.decode import load_audio
from moodscope.datasets import EmotifyDataset
from moodscope.features import FeatureConfig, extract_features
from moodscope.features.paper import paper_features, paper_features_reference
from moodscope.features.segments import equal_segments

from .common import emotify_dir, timed

NAME = "Feature extraction (paper's 28 features, 20 segments per track)"


def run(quick: bool = False) -> str:
    root = emotify_dir()
    if root is None:
        return f"## {NAME}\n\nSkipped: set MOODSCOPE_EMOTIFY_DIR to the Emotify copy.\n"
    dataset = EmotifyDataset(root)
    sample = dataset.tracks.groupby("genre").head(1 if quick else 3)["path"].tolist()
    fast_t, ref_t = [], []
    with threadpool_limits(1):
        y0 = load_audio(sample[0])
        paper_features(y0, equal_segments(len(y0), 22050, 20))  # warm numba/librosa caches
        paper_features_reference(y0, equal_segments(len(y0), 22050, 2))
        for path in sample:
            y = load_audio(path)
            segments = equal_segments(len(y), 22050, 20)
            fast_t.append(timed(paper_features, y, segments)[0])
            ref_t.append(timed(paper_features_reference, y, segments)[0])
    fast, ref = statistics.median(fast_t), statistics.median(ref_t)
    lines = [
        f"## {NAME}",
        "",
        f"One core (`threadpool_limits(1)`), median over {len(sample)} real 60-s tracks, "
        "decoding excluded:",
        "",
        "| recipe | seconds per track |",
        "|---|---|",
        f"| straightforward per-segment librosa (reference) | {ref:.3f} |",
        f"| moodscope `paper_features` | {fast:.3f} |",
        f"| **speed-up** | **{ref / fast:.1f}x** (target >= 10x) |",
        "",
    ]
    if not quick:
        with tempfile.TemporaryDirectory() as cache:
            config = FeatureConfig(segments=20)
            cold, (table, failures) = timed(
                extract_features, dataset, config, workers=2, cache_dir=cache
            )
            warm, _ = timed(extract_features, dataset, config, workers=2, cache_dir=cache)
        lines += [
            f"Whole dev copy ({len(dataset)} tracks, {len(table)} segments, decoding included), "
            "`extract_features(..., workers=2)`:",
            "",
            "| run | wall seconds |",
            "|---|---|",
            f"| cold cache | {cold:.1f} (target < 120) |",
            f"| warm cache | {warm:.1f} |",
            "",
        ]
        if failures:
            lines.append(f"{len(failures)} track(s) failed: {failures[:3]}\n")
    return "\n".join(lines)
