"""Pretrained musicnn embeddings as feature sets: ``musicnn_msd`` and ``musicnn_mtt``.

Per 3-s patch the network gives its penultimate layer (200 numbers) and its taggram (50
tag probabilities); per segment the rows hold the mean and standard deviation of the
penultimate layer over the segment's patches and the mean taggram. All patches of a track
go through the network in batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..musicnn.model import SAMPLE_RATE, load_musicnn, log_mel, musicnn_tags, patches
from ..segments import Segment
from .sets import FeatureSet, register_feature_set

PENULTIMATE = 200


def _columns(prefix: str, model: str) -> tuple[str, ...]:
    return (
        *(f"{prefix}_emb{i}_mean" for i in range(PENULTIMATE)),
        *(f"{prefix}_emb{i}_std" for i in range(PENULTIMATE)),
        *(f"{prefix}_tag_{t.replace(' ', '_')}" for t in musicnn_tags(model)),
    )


def musicnn_segment_features(
    y: np.ndarray,
    segments: Sequence[Segment],
    *,
    model: str = "MSD_musicnn",
    batch_size: int = 32,
) -> np.ndarray:
    """Rows [len(segments), 450]: penultimate mean (200), its std (200), mean taggram (50).

    ``y`` is mono audio at 16 kHz; each segment is analysed on its own samples (a segment
    shorter than 3 s is repeat-padded to one patch, as musicnn was trained).
    """
    device = "cuda" if torch.cuda.is_available() else "cpu"
    net = load_musicnn(model, device)
    per_segment = [patches(log_mel(seg.slice(y), SAMPLE_RATE)) for seg in segments]
    counts = [len(p) for p in per_segment]
    batch = np.concatenate(per_segment)
    taggram, penultimate = [], []
    with torch.inference_mode():
        for i in range(0, len(batch), batch_size):
            tg, pen = net(torch.from_numpy(batch[i : i + batch_size]).to(device))
            taggram.append(tg.float().cpu().numpy())
            penultimate.append(pen.float().cpu().numpy())
    taggram, penultimate = np.concatenate(taggram), np.concatenate(penultimate)
    rows, start = [], 0
    for n in counts:
        pen, tg = penultimate[start : start + n], taggram[start : start + n]
        rows.append(np.concatenate([pen.mean(axis=0), pen.std(axis=0), tg.mean(axis=0)]))
        start += n
    return np.asarray(rows, dtype=np.float64)


for _name, _model in (("musicnn_msd", "MSD_musicnn"), ("musicnn_mtt", "MTT_musicnn")):
    register_feature_set(
        FeatureSet(
            _name,
            _columns(_name, _model),
            lambda y, segments, _model=_model: musicnn_segment_features(y, segments, model=_model),
            sr=SAMPLE_RATE,
        )
    )
