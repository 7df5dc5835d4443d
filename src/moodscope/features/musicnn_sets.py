"""Pretrained musicnn embeddings as feature sets.

``musicnn_msd`` / ``musicnn_mtt``: per 3-s patch the network's penultimate layer (200
numbers) and its taggram (50 tag probabilities); per segment the rows hold the mean and
standard deviation of the penultimate layer over the segment's patches and the mean taggram.

``musicnn_msd_full`` / ``musicnn_mtt_full``: also the front- and mid-end feature maps pooled
over each patch's time axis (musicnn's ``max_pool`` and ``mean_pool``, 753 numbers each), the
layers below the tag-trained dense head; per segment the mean over its patches of all four
(penultimate, taggram, max pool, mean pool: 1,756 numbers).

All patches of a track go through the network in batches: the ONNX network on onnxruntime,
or the PyTorch port's bfloat16 path where that is the fast one (:mod:`moodscope.musicnn.fast`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from moodscope.features.segments import Segment
from moodscope.features.sets import FeatureSet, register_feature_set
from moodscope.musicnn.fast import PRECISIONS
from moodscope.musicnn.inputs import SAMPLE_RATE, log_mel_batch, patches
from moodscope.musicnn.network import network_outputs
from moodscope.musicnn.tags import musicnn_tags

PENULTIMATE = 200
POOLED = 753  # 561 front-end + 3 x 64 mid-end channels


def _tag_columns(prefix: str, model: str) -> tuple[str, ...]:
    return tuple(f"{prefix}_tag_{t.replace(' ', '_')}" for t in musicnn_tags(model))


def _columns(prefix: str, model: str) -> tuple[str, ...]:
    return (
        *(f"{prefix}_emb{i}_mean" for i in range(PENULTIMATE)),
        *(f"{prefix}_emb{i}_std" for i in range(PENULTIMATE)),
        *_tag_columns(prefix, model),
    )


def _full_columns(prefix: str, model: str) -> tuple[str, ...]:
    return (
        *(f"{prefix}_emb{i}" for i in range(PENULTIMATE)),
        *_tag_columns(prefix, model),
        *(f"{prefix}_maxpool{i}" for i in range(POOLED)),
        *(f"{prefix}_meanpool{i}" for i in range(POOLED)),
    )


def _patch_outputs(
    y: np.ndarray, segments: Sequence[Segment], model: str, batch_size: int, precision: str
) -> tuple[list[int], dict[str, np.ndarray]]:
    """Every segment's patches through the network: patches per segment, outputs per patch."""
    per_segment = [patches(mel) for mel in _segment_mels(y, segments)]
    batch = np.concatenate(per_segment)
    outputs = network_outputs(batch, model=model, precision=precision, batch_size=batch_size)
    return [len(p) for p in per_segment], outputs


def _segment_mels(y: np.ndarray, segments: Sequence[Segment]) -> list[np.ndarray]:
    """Each segment's log-mel spectrogram, analysed on its own samples; segments of one
    length (fixed windows; equal segments differ by a sample at most) share one batch."""
    mels: list[np.ndarray | None] = [None] * len(segments)
    by_length: dict[int, list[int]] = {}
    for i, seg in enumerate(segments):
        by_length.setdefault(seg.end_sample - seg.start_sample, []).append(i)
    for indices in by_length.values():
        clips = np.stack([segments[i].slice(y) for i in indices])
        for i, mel in zip(indices, log_mel_batch(clips)):
            mels[i] = mel
    return mels


def musicnn_segment_features(
    y: np.ndarray,
    segments: Sequence[Segment],
    *,
    model: str = "MSD_musicnn",
    batch_size: int = 32,
    full: bool = False,
    precision: str = "float32",
) -> np.ndarray:
    """One row per segment.

    ``full=False``: [len(segments), 450] = penultimate mean (200), its std (200), mean
    taggram (50). ``full=True``: [len(segments), 1756] = the means over the segment's
    patches of the penultimate layer (200), taggram (50), max pool (753), mean pool (753).
    ``y`` is mono audio at 16 kHz; each segment is analysed on its own samples (a segment
    shorter than 3 s is repeat-padded to one patch, as musicnn was trained). ``precision``:
    the network's (``"float32"``, exact, or ``"bfloat16"``; see :mod:`moodscope.musicnn.fast`).
    """
    counts, out = _patch_outputs(y, segments, model, batch_size, precision)
    rows, start = [], 0
    for n in counts:
        part = {k: v[start : start + n] for k, v in out.items()}
        pen, tg = part["penultimate"], part["taggram"]
        if full:
            blocks = [pen, tg, part["max_pool"], part["mean_pool"]]
            rows.append(np.concatenate([b.mean(axis=0) for b in blocks]))
        else:
            rows.append(np.concatenate([pen.mean(axis=0), pen.std(axis=0), tg.mean(axis=0)]))
        start += n
    return np.asarray(rows, dtype=np.float64)


for _name, _model in (("musicnn_msd", "MSD_musicnn"), ("musicnn_mtt", "MTT_musicnn")):
    register_feature_set(
        FeatureSet(
            _name,
            _columns(_name, _model),
            lambda y, segments, precision="float32", _model=_model: musicnn_segment_features(
                y, segments, model=_model, precision=precision
            ),
            sr=SAMPLE_RATE,
            precisions=PRECISIONS,
        )
    )
    register_feature_set(
        FeatureSet(
            f"{_name}_full",
            _full_columns(f"{_name}_full", _model),
            lambda y, segments, precision="float32", _model=_model: musicnn_segment_features(
                y, segments, model=_model, full=True, precision=precision
            ),
            sr=SAMPLE_RATE,
            precisions=PRECISIONS,
        )
    )
