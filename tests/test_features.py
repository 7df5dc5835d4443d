"""The paper's 28 features: contract, synthetic sanity, faithfulness to librosa, the cache."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import SR, chord_signal
from moodscope import AudioError, FeatureConfig, load_audio
from moodscope.datasets import EmotifyDataset
from moodscope.demo import synth
from moodscope.features import (
    FEATURE_NAMES,
    META_COLUMNS,
    extract_features,
    paper_features,
    paper_features_reference,
    read_table,
    track_features,
    write_table,
)
from moodscope.features import extract as extract_module
from moodscope.features.segments import equal_segments


def test_feature_names_are_the_papers():
    assert len(FEATURE_NAMES) == 28
    assert FEATURE_NAMES[:8] == (
        "chroma_stft",
        "rms",
        "spectral_centroid",
        "spectral_bandwidth",
        "spectral_rolloff",
        "zero_crossing_rate",
        "harmonic",
        "tempo",
    )
    assert FEATURE_NAMES[8:] == tuple(f"mfcc{i}" for i in range(1, 21))


def test_shapes_and_finite():
    y = chord_signal(10.0)
    x = paper_features(y, equal_segments(len(y), SR, 10))
    assert x.shape == (10, 28) and np.all(np.isfinite(x))


def test_silent_audio_has_defined_features():
    y = np.zeros(SR * 10, np.float32)
    x = paper_features(y, equal_segments(len(y), SR, 20))
    assert np.all(np.isfinite(x))
    assert x[:, FEATURE_NAMES.index("rms")].max() == 0.0


def test_sine_centroid_and_loudness():
    quiet = synth.tone(1000.0, 6.0, sr=SR, amplitude=0.05)
    loud = synth.tone(1000.0, 6.0, sr=SR, amplitude=0.5)
    t = np.arange(len(loud)) / SR
    segs = equal_segments(len(t), SR, 2)
    xq, xl = paper_features(quiet, segs), paper_features(loud, segs)
    centroid = xq[:, FEATURE_NAMES.index("spectral_centroid")]
    assert np.all(np.abs(centroid - 1000) < 50)
    rms = FEATURE_NAMES.index("rms")
    np.testing.assert_allclose(xl[:, rms] / xq[:, rms], 10, rtol=1e-3)


def test_synthetic_agrees_with_reference():
    y = chord_signal(12.0, seed=3)
    segs = equal_segments(len(y), SR, 4)
    fast, ref = paper_features(y, segs), paper_features_reference(y, segs)
    for name in ("rms", "spectral_centroid", "zero_crossing_rate", "mfcc1", "mfcc2"):
        i = FEATURE_NAMES.index(name)
        np.testing.assert_allclose(fast[:, i], ref[:, i], rtol=0.03, err_msg=name)


@pytest.mark.data
@pytest.mark.slow
def test_faithful_to_per_segment_librosa(emotify_subset):
    """On real tracks every feature follows the straightforward per-segment recipe."""
    tracks = EmotifyDataset(emotify_subset).tracks.iloc[::2]  # one track per genre
    fast, ref = [], []
    for path in tracks["path"]:
        y = load_audio(path)
        segs = equal_segments(len(y), SR, 20)
        fast.append(paper_features(y, segs))
        ref.append(paper_features_reference(y, segs))
    fast, ref = np.vstack(fast), np.vstack(ref)
    for i, name in enumerate(FEATURE_NAMES):
        if name == "tempo":
            continue
        r = np.corrcoef(fast[:, i], ref[:, i])[0, 1]
        assert r >= 0.99, f"{name}: r={r:.4f}"
    tempo = FEATURE_NAMES.index("tempo")
    within = np.abs(fast[:, tempo] - ref[:, tempo]) <= 0.05 * ref[:, tempo]
    assert within.mean() >= 0.8, f"tempo within 5 % on {within.mean():.0%} of segments"
    # harmonic, exempt in the bar, is held to r >= 0.99 too: its band-limited separation
    # measured r = 0.998 against librosa.effects.harmonic on each segment.


def test_track_features_cache(write_audio, monkeypatch, tmp_path):
    path = write_audio("a.wav", chord_signal(12.0))
    config = FeatureConfig(segments=4)
    first = track_features(path, config, cache_dir=tmp_path / "c")

    def no_decoding(*args, **kwargs):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(extract_module, "load_audio", no_decoding)
    second = track_features(path, config, cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(first.features, second.features)
    # A copy under another name hits the same entry (content-keyed) ...
    copy = tmp_path / "renamed.wav"
    copy.write_bytes(path.read_bytes())
    track_features(copy, config, cache_dir=tmp_path / "c")
    # ... while another config misses it.
    with pytest.raises(AssertionError, match="cache"):
        track_features(path, FeatureConfig(segments=5), cache_dir=tmp_path / "c")


def test_damaged_cache_entry_is_recomputed(write_audio, tmp_path):
    path = write_audio("a.wav", chord_signal(6.0))
    config = FeatureConfig(segments=3)
    first = track_features(path, config, cache_dir=tmp_path / "c")
    for entry in (tmp_path / "c").rglob("*.npz"):
        entry.write_bytes(b"garbage")
    again = track_features(path, config, cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(first.features, again.features)


def test_too_short_for_segments_names_file(write_audio):
    path = write_audio("short.wav", chord_signal(2.0))
    with pytest.raises(AudioError, match="short.wav") as info:
        track_features(path, FeatureConfig(segments=20))
    assert "10.00 s" in str(info.value)


def test_fixed_windows_config(write_audio):
    path = write_audio("w.wav", chord_signal(10.0))
    result = track_features(path, FeatureConfig(segments=None, window=3.0, hop=1.5))
    np.testing.assert_allclose(result.starts, [0, 1.5, 3, 4.5, 6.0])
    assert result.features.shape == (5, 28)


@pytest.mark.data
@pytest.mark.slow
def test_extract_dataset_parallel_with_a_bad_file(emotify_dir, tmp_path):
    from conftest import make_emotify_subset

    root = make_emotify_subset(emotify_dir, tmp_path / "e", [2, 102, 201, 301])
    bad = root / "emotifymusic" / "pop" / "1.mp3"
    bad.unlink()
    bad.write_bytes(b"\x00" * 5000)  # corrupt
    dataset = EmotifyDataset(root)
    seen = []
    table, failures = extract_features(
        dataset, FeatureConfig(segments=10), workers=2, progress=lambda d, n: seen.append(d)
    )
    assert [p for p, _ in failures] == [str(bad)]
    assert "pop/1.mp3" in failures[0][1]
    assert list(table.columns) == [*META_COLUMNS, *FEATURE_NAMES]
    assert table.groupby("track_id").size().to_dict() == {"2": 10, "102": 10, "201": 10}
    assert seen[-1] == 4
    labels = dataset.tracks.set_index("track_id")["label"]
    assert (table["label"] == table["track_id"].map(labels)).all()
    out = write_table(table, tmp_path / "t.parquet")
    back = read_table(out)
    pd.testing.assert_frame_equal(back, table, check_dtype=False)
    assert back.attrs.get("feature_config", {}).get("segments") == 10
