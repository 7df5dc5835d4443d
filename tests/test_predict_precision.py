"""predict's fast path against its exact one: ``exact=True`` is float32, the default follows
the CPU, every Prediction says which ran, the two never share a cache entry, and on real
tracks they agree within the guard (same top emotion, shares within 0.01, confidence within
0.02)."""

from __future__ import annotations

import json

import pytest

from conftest import chord_signal
from moodscope.inference.predictor import Prediction, load_model, predict
from moodscope.musicnn.fast import fast_precision

SHARE_TOL = 0.01
CONFIDENCE_TOL = 0.02


def test_exact_is_float32_and_the_default_follows_the_cpu(write_audio, tmp_path):
    path = write_audio("c.mp3", chord_signal(7.0, 44100), 44100, 2)
    cache = tmp_path / "cache"
    (exact,) = predict(path, exact=True, cache_dir=cache)
    (default,) = predict(path, cache_dir=cache)
    assert exact.ok and default.ok
    assert exact.precision == "float32"
    assert default.precision == fast_precision()
    assert max(abs(exact.emotions[k] - default.emotions[k]) for k in exact.emotions) < SHARE_TOL
    # one cache entry per number format: a cached fast result is never served as exact
    entries = sorted(p.parent.name for p in (cache / "features").rglob("*.npz"))
    assert len(entries) == (2 if fast_precision() != "float32" else 1)
    (again,) = predict(path, exact=True, cache_dir=cache)
    assert again.precision == "float32" and again.emotions == exact.emotions
    # what every output is written from carries it, and reads it back
    assert default.to_dict()["precision"] == default.precision
    assert Prediction.from_dict(default.to_dict()).precision == default.precision


def test_tagging_takes_exact_too(write_audio, tmp_path):
    from moodscope.library import tag_files

    path = write_audio("c.flac", chord_signal(7.0, 44100), 44100, 2)
    for exact, want in ((True, "float32"), (False, fast_precision())):
        (outcome,) = tag_files([path], db=tmp_path / "lib.sqlite", dry_run=True, exact=exact)
        assert outcome.prediction.precision == want


def test_cli_exact_flag(write_audio, tmp_path, capsys):
    from test_cli import run

    path = write_audio("c.wav", chord_signal(7.0, 22050))
    for args, want in (([], fast_precision()), (["--exact"], "float32")):
        code, out, _ = run(["predict", path, "--format", "json", "--workers", "1", *args], capsys)
        assert code == 0
        (item,) = json.loads(out)
        assert item["precision"] == want
    code, _, _ = run(["tag", path, "--dry-run", "--exact", "--db", tmp_path / "l.sqlite"], capsys)
    assert code == 0


def test_a_failed_file_claims_no_precision(tmp_path):
    (result,) = predict(tmp_path / "missing.mp3")
    assert not result.ok and result.precision is None


@pytest.mark.data
@pytest.mark.slow
def test_fast_and_exact_agree_on_dev_tracks(emotify_dir, tmp_path):
    from moodscope.datasets import EmotifyDataset

    if fast_precision() == "float32":
        pytest.skip("this CPU has no fast path: predict runs float32 only")
    tracks = EmotifyDataset(emotify_dir).tracks
    paths = tracks.groupby("genre").head(2)["path"].tolist()  # 8 tracks, 2 per genre
    model = load_model()
    exact = predict(paths, model, exact=True, use_cache=False)
    quick = predict(paths, model, use_cache=False)
    for e, q in zip(exact, quick, strict=True):
        assert e.ok and q.ok and q.precision == "bfloat16"
        diff = max(abs(e.emotions[k] - q.emotions[k]) for k in e.emotions)
        assert diff < SHARE_TOL, e.path
        if e.confidence is not None:  # a model with a calibration map
            assert abs(e.confidence - q.confidence) < CONFIDENCE_TOL, e.path
        ranked = sorted(e.emotions.values(), reverse=True)
        # the top may only differ where the exact path's top two are within the difference
        assert q.top_emotion == e.top_emotion or ranked[0] - ranked[1] <= 2 * diff, e.path


@pytest.mark.data
@pytest.mark.slow
def test_onnx_and_the_torch_port_agree_on_dev_tracks(emotify_dir, monkeypatch):
    """What ``pip install .`` predicts with (the ONNX network on onnxruntime) against the
    PyTorch port it was exported from, on a handful of dev tracks, within the fast path's
    guard (``benchmarks/bench_runtime.py`` runs all 320)."""
    pytest.importorskip("torch")
    from moodscope.datasets import EmotifyDataset

    tracks = EmotifyDataset(emotify_dir).tracks
    paths = tracks.groupby("genre").head(1)["path"].tolist()  # 4 tracks, 1 per genre
    model = load_model()
    monkeypatch.setenv("MOODSCOPE_RUNTIME", "torch")
    port = predict(paths, model, exact=True, use_cache=False)
    monkeypatch.delenv("MOODSCOPE_RUNTIME")
    onnx = predict(paths, model, exact=True, use_cache=False)
    for p, o in zip(port, onnx, strict=True):
        assert p.ok and o.ok, (p.error, o.error)
        assert p.top_emotion == o.top_emotion, p.path
        assert max(abs(p.emotions[k] - o.emotions[k]) for k in p.emotions) < SHARE_TOL, p.path
        if p.confidence is not None:
            assert abs(p.confidence - o.confidence) < CONFIDENCE_TOL, p.path


def test_an_unknown_runtime_is_refused(monkeypatch):
    from moodscope.errors import ConfigError
    from moodscope.musicnn.network import runtime

    monkeypatch.setenv("MOODSCOPE_RUNTIME", "tensorflow")
    with pytest.raises(ConfigError, match="MOODSCOPE_RUNTIME"):
        runtime()
