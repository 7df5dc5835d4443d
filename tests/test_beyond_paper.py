"""Beyond the paper: musicnn feature sets, track-level rows, soft labels, the temporal model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import chord_signal
from moodscope.features import FeatureConfig, aggregate_tracks, get_feature_set, track_features
from moodscope.features.aggregate import aggregate_rows, local_aggregates
from moodscope.models.training import TrainConfig
from moodscope.research.evaluation import crossval
from moodscope.research.experiment import train_and_test
from moodscope.research.splits import share_targets
from test_training import tiny_table

LABELS = ["calm", "power", "tension"]


@pytest.mark.parametrize("name", ["musicnn_msd", "musicnn_mtt"])
def test_musicnn_feature_set_contract(write_audio, name):
    path = write_audio("x.wav", chord_signal(12.0))
    fs = get_feature_set(name)
    assert fs.sr == 16000 and len(fs.columns) == 450
    short = track_features(path, FeatureConfig(name, segments=4), use_cache=False)
    assert short.features.shape == (4, 450) and np.all(np.isfinite(short.features))
    std = short.features[:, 200:400]
    assert np.all(std == 0)  # 3-s segments hold one patch each
    longer = track_features(path, FeatureConfig(name, segments=2), use_cache=False)
    assert np.any(longer.features[:, 200:400] > 0)  # 6-s segments hold two
    tags = longer.features[:, 400:]
    assert np.all((tags >= 0) & (tags <= 1))


@pytest.mark.parametrize("name", ["musicnn_msd_full", "musicnn_mtt_full"])
def test_full_musicnn_feature_set_contract(write_audio, name, monkeypatch):
    import torch

    # The row against the PyTorch port's outputs: both on the port, so the mean is exact
    # (the ONNX network agrees with the port to ~1e-5, tests/test_musicnn_onnx.py).
    monkeypatch.setenv("MOODSCOPE_RUNTIME", "torch")

    from moodscope.audio.decode import load_audio
    from moodscope.musicnn import load_musicnn, log_mel, patches

    y = chord_signal(12.0, 16000)
    path = write_audio("x.wav", y, 16000)
    fs = get_feature_set(name)
    assert fs.sr == 16000 and len(fs.columns) == 200 + 50 + 753 + 753
    assert fs.columns[250] == f"{name}_maxpool0" and fs.columns[-1] == f"{name}_meanpool752"
    rows = track_features(path, FeatureConfig(name, segments=2), use_cache=False).features
    assert rows.shape == (2, 1756) and np.all(np.isfinite(rows))
    # Each 6-s segment holds two patches; its row is their mean, block by block.
    net = load_musicnn("MSD_musicnn" if "msd" in name else "MTT_musicnn")
    decoded = load_audio(path, sr=16000)  # the file holds 16-bit samples, not y itself
    with torch.inference_mode():
        out = net.features(torch.from_numpy(patches(log_mel(decoded[: 6 * 16000], 16000))))
    assert len(out["taggram"]) == 2
    expected = np.concatenate(
        [out[k].numpy().mean(axis=0) for k in ("penultimate", "taggram", "max_pool", "mean_pool")]
    )
    np.testing.assert_allclose(rows[0], expected, rtol=1e-5, atol=1e-5)
    # the same penultimate mean and taggram as the compact set
    compact = track_features(path, FeatureConfig(name[:-5], segments=2), use_cache=False)
    np.testing.assert_allclose(rows[:, :200], compact.features[:, :200], atol=1e-6)
    np.testing.assert_allclose(rows[:, 200:250], compact.features[:, 400:], atol=1e-6)


def test_musicnn_patches_are_batched(write_audio, monkeypatch):
    from moodscope.features import musicnn_sets
    from moodscope.musicnn import model as mm

    monkeypatch.setenv("MOODSCOPE_RUNTIME", "torch")  # the port's forward passes are counted
    net = mm.load_musicnn("MSD_musicnn", "cpu")
    calls = []
    original = type(net).features

    def counting(self, x, **kwargs):
        calls.append(len(x))
        return original(self, x, **kwargs)

    monkeypatch.setattr(type(net), "features", counting)
    y = chord_signal(30.0, 16000)
    segments = FeatureConfig("musicnn_msd", segments=10).segment(y)
    musicnn_sets.musicnn_segment_features(y, segments, batch_size=8)
    assert calls == [8, 2]  # 10 patches, two forward passes


def test_track_aggregation():
    table = tiny_table(n_tracks=6, segments=4)
    cols = ["rms", "tempo"]
    agg = aggregate_tracks(table, cols)
    assert len(agg) == 6 and list(agg.columns[-4:]) == [
        "rms@mean",
        "tempo@mean",
        "rms@std",
        "tempo@std",
    ]
    first = table[table.track_id == "0"]
    assert agg.loc[0, "rms@mean"] == pytest.approx(first["rms"].mean())
    assert agg.loc[0, "tempo@std"] == pytest.approx(first["tempo"].std(ddof=0))
    rows = first[cols].to_numpy()
    np.testing.assert_allclose(aggregate_rows(rows), agg.iloc[0][-4:].to_numpy(float))
    local = local_aggregates(rows, context=1)
    np.testing.assert_allclose(local[0], aggregate_rows(rows[:2]))


def _shares(table):
    rng = np.random.default_rng(0)
    tracks = table.groupby("track_id")["label"].first()
    values = rng.random((len(tracks), 3)) * 0.3
    for i, label in enumerate(tracks):
        values[i, LABELS.index(label)] += 0.7
    return pd.DataFrame(values, index=tracks.index, columns=LABELS), tracks


def test_share_targets_normalised_in_label_order():
    table = tiny_table(n_tracks=6)
    shares, _ = _shares(table)
    targets = share_targets(table, shares, ["tension", "calm", "power"])
    np.testing.assert_allclose(targets.sum(axis=1), 1)
    row0 = shares.loc["0", ["tension", "calm", "power"]].to_numpy()
    np.testing.assert_allclose(targets[0], row0 / row0.sum())


@pytest.mark.parametrize(
    "model, aggregate",
    [("ridge", "track"), ("logistic_regression", "track"), ("random_forest", "segment")],
)
def test_soft_label_crossval(model, aggregate):
    table = tiny_table(n_tracks=45)
    shares, _ = _shares(table)
    tracks = table.groupby("track_id")[["label", "genre"]].first()
    result = crossval(
        table,
        tracks,
        model=model,
        feature_config=FeatureConfig(segments=5),
        labels=LABELS,
        folds=3,
        shares=shares,
        soft=True,
        aggregate=aggregate,
    )
    assert result["soft_labels"] and not result["smote"]
    assert result["summary"]["track_accuracy"]["mean"] > 0.7
    assert result["summary"]["emotion_correlation_mean"]["mean"] > 0.3


@pytest.mark.slow
def test_temporal_model_under_crossval_and_prediction():
    table = tiny_table(n_tracks=45)
    shares, tracks = _shares(table)
    tracks = table.groupby("track_id")[["label", "genre"]].first()
    config = TrainConfig(epochs=30, batch_size=8, lr=3e-3, patience=10, seed=0)
    result = crossval(
        table,
        tracks,
        model="attention_gru",
        feature_config=FeatureConfig(segments=5),
        labels=LABELS,
        folds=3,
        train_config=config,
        shares=shares,
        soft=True,
    )
    assert result["summary"]["track_accuracy"]["mean"] > 0.7
    assert result["summary"]["segment_accuracy"] is None  # it reads whole tracks
    trained = train_and_test(
        table,
        model="attention_gru",
        protocol="all",
        feature_config=FeatureConfig(segments=5),
        train_config=config,
        labels=LABELS,
    ).model
    rows = table[table.track_id == "3"][list(FeatureConfig().columns)].to_numpy()
    track, timeline = trained.predict_track(rows)
    assert track.shape == (3,) and timeline.shape == (5, 3)
    np.testing.assert_allclose(timeline.sum(axis=1), 1, rtol=1e-5)


def test_track_level_model_predicts_tracks_and_timeline():
    table = tiny_table(n_tracks=30)
    trained = train_and_test(
        table,
        model="logistic_regression",
        protocol="all",
        feature_config=FeatureConfig(segments=5),
        aggregate="track",
        labels=LABELS,
    ).model
    assert trained.aggregate == "track" and len(trained.scaler.mean) == 56
    rows = table[table.track_id == "1"][list(FeatureConfig().columns)].to_numpy()
    track, timeline = trained.predict_track(rows)
    assert track.shape == (3,) and timeline.shape == (5, 3)
    assert LABELS[int(track.argmax())] == table[table.track_id == "1"].label.iloc[0]


def test_joined_feature_sets(write_audio):
    path = write_audio("j.wav", chord_signal(9.0))
    joined = FeatureConfig("paper+musicnn_msd", segments=3)
    assert len(joined.columns) == 28 + 450
    both = track_features(path, joined, use_cache=False)
    paper = track_features(path, FeatureConfig("paper", segments=3), use_cache=False)
    msd = track_features(path, FeatureConfig("musicnn_msd", segments=3), use_cache=False)
    np.testing.assert_allclose(both.features, np.hstack([paper.features, msd.features]))
