"""The PyTorch musicnn port against TensorFlow references (tests/resources/musicnn_reference.npz,
made by tools/convert_musicnn.py from musicnn 0.1.0's own graph and checkpoints).

Tolerances: the converter measured max |d taggram| <= 2.5e-6, max |d penultimate| <= 1.4e-5
and max |d max_pool| <= 4.3e-4 (on values up to ~110) over all clips and both models (float32
summation-order noise). The bounds below leave ~10-70x headroom for other BLAS builds yet fail
for any real porting mistake (a swapped kernel axis, wrong padding side, BN eps 1e-5 instead of
1e-3, max/mean pooling order ...), which moves outputs by 1e-2 or more.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from moodscope.errors import ModelError, MoodscopeError
from moodscope.musicnn import (
    MODEL_NAMES,
    PATCH_FRAMES,
    Musicnn,
    load_musicnn,
    log_mel,
    musicnn_embed,
    musicnn_tags,
    patches,
)
from moodscope.musicnn.model import WEIGHTS_DIR

try:  # tests/ is on sys.path under pytest's default (prepend) import mode
    import musicnn_clips
except ImportError:  # tests/ became a package
    from tests import musicnn_clips

REFERENCE = Path(__file__).parent / "resources" / "musicnn_reference.npz"
TAGGRAM_ATOL = 1e-4
PENULTIMATE_ATOL = 1e-3
PENULTIMATE_MIN_CORR = 0.99999
POOL_ATOL = 5e-3

SYNTHETIC = ("chord", "loud_bursts", "quiet_sweep")


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def synthetic() -> dict[str, tuple[np.ndarray, int]]:
    return musicnn_clips.synthetic_clips()


@pytest.fixture(autouse=True, scope="module")
def _threads():
    # Both cores (the design point); restore afterwards for other test modules.
    old = torch.get_num_threads()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield
    torch.set_num_threads(old)


def _forward(
    model_name: str, mel: np.ndarray, timbral_path: str = "auto", dead_weight: float | None = None
) -> dict:
    net = Musicnn()  # a private instance: the cached one's settings stay untouched
    net.load_state_dict(load_musicnn(model_name).state_dict())
    net.timbral_path = timbral_path
    if dead_weight is not None:
        net.dead_weight = dead_weight
    with torch.inference_mode():
        return {k: v.numpy() for k, v in net.features(torch.from_numpy(patches(mel))).items()}


def _assert_parity(ref: dict, model_name: str, clip: str, out: dict):
    tg, pen = out["taggram"], out["penultimate"]
    ref_tg = ref[f"{model_name}__{clip}__taggram"]
    ref_pen = ref[f"{model_name}__{clip}__penultimate"]
    assert tg.shape == ref_tg.shape and pen.shape == ref_pen.shape
    assert np.abs(tg - ref_tg).max() < TAGGRAM_ATOL
    assert np.abs(pen - ref_pen).max() < PENULTIMATE_ATOL
    for row, ref_row in zip(pen, ref_pen, strict=True):  # per patch: catches a stale patch
        assert np.corrcoef(row, ref_row)[0, 1] > PENULTIMATE_MIN_CORR
    for pool in ("max_pool", "mean_pool"):
        if pool in out:
            ref_pool = ref[f"{model_name}__{clip}__{pool}"]
            assert out[pool].shape == ref_pool.shape == (len(tg), 753)
            assert np.abs(out[pool] - ref_pool).max() < POOL_ATOL, pool


@pytest.mark.parametrize("model_name", MODEL_NAMES)
@pytest.mark.parametrize("clip", SYNTHETIC)
@pytest.mark.parametrize("timbral_path", ["conv", "spectral"])
def test_parity_with_tensorflow_on_synthetic_clips(ref, synthetic, model_name, clip, timbral_path):
    y, sr = synthetic[clip]
    _assert_parity(ref, model_name, clip, _forward(model_name, log_mel(y, sr), timbral_path))


@pytest.mark.parametrize("model_name", MODEL_NAMES)
@pytest.mark.parametrize("clip", sorted(musicnn_clips.REAL_CLIPS))
def test_parity_with_tensorflow_on_stored_real_mels(ref, model_name, clip):
    # The network alone, on the log-mel the converter computed from the real clip (no audio).
    _assert_parity(ref, model_name, clip, _forward(model_name, ref[f"mel__{clip}"]))


@pytest.mark.data
def test_parity_with_tensorflow_on_real_audio(ref):
    root = musicnn_clips.emotify_dir()
    if not root.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Emotify folder {root} missing under CI (set MOODSCOPE_EMOTIFY_DIR)")
        pytest.skip(f"Emotify folder {root} not present")
    clips = musicnn_clips.real_clips(root)
    assert set(clips) == set(musicnn_clips.REAL_CLIPS), f"clips missing under {root}"
    for clip, (y, sr) in clips.items():
        mel = log_mel(y, sr)
        np.testing.assert_allclose(mel, ref[f"mel__{clip}"], atol=1e-3, err_msg=clip)
        out = musicnn_embed(y, sr, model="MSD_musicnn", device="cpu")  # the full pipeline
        _assert_parity(ref, "MSD_musicnn", clip, out)
        _assert_parity(ref, "MTT_musicnn", clip, _forward("MTT_musicnn", mel))


def test_embed_contract_on_short_and_longer_clips():
    sr = 22050
    t = np.arange(int(1.0 * sr)) / sr
    short = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    out = musicnn_embed(short, sr)  # device=None -> CPU here
    assert set(out) == {"taggram", "penultimate", "patch_start", "tags"}
    assert out["taggram"].shape == (1, 50) and out["taggram"].dtype == np.float32
    assert out["penultimate"].shape == (1, 200) and out["penultimate"].dtype == np.float32
    np.testing.assert_array_equal(out["patch_start"], [0.0])
    assert out["tags"] == musicnn_tags("MSD_musicnn") and len(out["tags"]) == 50
    assert out["tags"][:3] == ["rock", "pop", "alternative"]
    assert ((out["taggram"] >= 0) & (out["taggram"] <= 1)).all()

    # 7 s stereo: 2 whole patches (tail dropped); batching must not change the numbers.
    t = np.arange(int(7.0 * sr)) / sr
    stereo = np.stack([np.sin(2 * np.pi * 330 * t), np.sin(2 * np.pi * 0.5 * t)]).astype(np.float32)
    a = musicnn_embed(stereo, sr, model="MTT_musicnn", batch_size=1, device="cpu")
    b = musicnn_embed(stereo, sr, model="MTT_musicnn", batch_size=64, device="cpu")
    assert a["taggram"].shape == (2, 50) and a["penultimate"].shape == (2, 200)
    np.testing.assert_allclose(a["patch_start"], [0.0, PATCH_FRAMES * 256 / 16000])
    assert "guitar" in a["tags"]
    np.testing.assert_allclose(a["taggram"], b["taggram"], atol=1e-5)
    np.testing.assert_allclose(a["penultimate"], b["penultimate"], atol=1e-4)


def test_loud_audio_gives_finite_outputs(synthetic):
    y, sr = synthetic["loud_bursts"]
    # Precondition: this clip does overflow musicnn 0.1.0's float16 log-mel ...
    import librosa

    power = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=512, hop_length=256, n_mels=96)
    with np.errstate(over="ignore"):
        assert np.isinf(np.log10(10000 * power.astype(np.float16) + 1)).any()
    # ... and the port stays finite, on it and on a full-scale square wave.
    square = np.sign(np.sin(2 * np.pi * 55 * np.arange(4 * sr) / sr)).astype(np.float32)
    for audio in (y, square):
        mel = log_mel(audio, sr)
        assert mel.dtype == np.float32 and np.isfinite(mel).all()
        out = musicnn_embed(audio, sr, device="cpu")
        assert np.isfinite(out["taggram"]).all() and np.isfinite(out["penultimate"]).all()


def test_unknown_model_name_raises_model_error():
    y = np.zeros(16000, dtype=np.float32)
    with pytest.raises(ModelError):
        musicnn_embed(y, 16000, model="MSD_vgg")
    with pytest.raises(ModelError, match="unknown musicnn model"):
        load_musicnn("nope")
    assert issubclass(ModelError, MoodscopeError)


def test_every_patch_gets_its_own_outputs(ref, synthetic):
    # musicnn 0.1.0's extractor() repeats patch 1's penultimate layer for every patch.
    y, sr = synthetic["quiet_sweep"]
    out = musicnn_embed(y, sr, device="cpu")
    assert len(out["taggram"]) == 3
    for i in range(1, 3):
        assert np.abs(out["taggram"][i] - out["taggram"][0]).max() > 1e-2
        assert np.abs(out["penultimate"][i] - out["penultimate"][0]).max() > 1e-1
    # and the references themselves have distinct patches (they come from the TF graph)
    pen = ref["MSD_musicnn__quiet_sweep__penultimate"]
    assert np.abs(pen[1] - pen[0]).max() > 1e-1


def test_patches_rule():
    mel = np.arange(400 * 96, dtype=np.float32).reshape(400, 96)
    p = patches(mel)
    assert p.shape == (2, 187, 96)  # 13 trailing frames dropped, as musicnn
    np.testing.assert_array_equal(p[1], mel[187:374])
    p = patches(mel, hop_frames=100)
    assert p.shape == (3, 187, 96)
    np.testing.assert_array_equal(p[2], mel[200:387])
    short = mel[:50]
    p = patches(short)  # repeat-padded to one patch
    assert p.shape == (1, 187, 96)
    np.testing.assert_array_equal(p[0, :50], short)
    np.testing.assert_array_equal(p[0, 50:100], short)
    np.testing.assert_array_equal(p[0, 150:187], short[:37])
    with pytest.raises(MoodscopeError):  # the port's errors are moodscope's
        patches(np.zeros((0, 96), dtype=np.float32))


def test_weights_are_plain_float32_state_dicts_and_models_are_cached():
    for name in MODEL_NAMES:
        state = torch.load(WEIGHTS_DIR / f"{name}.pt", map_location="cpu", weights_only=True)
        assert all(v.dtype in (torch.float32, torch.int64) for v in state.values())
        assert load_musicnn(name) is load_musicnn(name, "cpu")
        assert not load_musicnn(name).training


def test_dead_filters_are_skipped_without_changing_a_bit(ref):
    # MSD_musicnn's weight decay left most timbral filters at ~1e-30: they are not computed,
    # and the outputs are the very same floats as with every filter computed.
    net = load_musicnn("MSD_musicnn")
    front, mid = net._layers(torch.device("cpu"))
    live = {name: len(layer.live) for name, layer in zip(net._front_names(), front, strict=True)}
    assert live["timbral_74"] == 40 and live["timbral_77"] == 21  # of 204 each
    assert [len(layer.live) for layer in mid] == [20, 61, 63]  # of 64 each
    for path in ("conv", "spectral"):
        pruned = _forward("MSD_musicnn", ref["mel__rock_2"], path)
        full = _forward("MSD_musicnn", ref["mel__rock_2"], path, dead_weight=0.0)
        for key in pruned:
            np.testing.assert_array_equal(pruned[key], full[key], err_msg=f"{path} {key}")


def test_spectral_and_conv_timbral_paths_agree_and_bad_path_is_refused(ref):
    mel = ref["mel__classical_2"]
    for name in MODEL_NAMES:
        conv, spectral = _forward(name, mel, "conv"), _forward(name, mel, "spectral")
        np.testing.assert_allclose(spectral["taggram"], conv["taggram"], atol=1e-5)
        np.testing.assert_allclose(spectral["penultimate"], conv["penultimate"], atol=1e-4)
        np.testing.assert_allclose(spectral["max_pool"], conv["max_pool"], atol=2e-3)
    net = Musicnn()
    net.timbral_path = "fft"
    with pytest.raises(MoodscopeError, match="timbral_path"):
        net(torch.zeros(1, PATCH_FRAMES, 96))


def test_filterbank_is_librosas_bit_for_bit():
    import librosa

    from moodscope.musicnn.model import mel_filterbank

    assert np.array_equal(mel_filterbank(), librosa.filters.mel(sr=16000, n_fft=512, n_mels=96))


def _librosa_log_mel(y: np.ndarray) -> np.ndarray:
    """musicnn's input as the per-window path computed it: librosa, one call per window."""
    import librosa

    power = librosa.feature.melspectrogram(
        y=y, sr=16000, n_fft=512, hop_length=256, n_mels=96, pad_mode="reflect"
    )
    return np.log10(np.float32(10000.0) * power.T.astype(np.float32) + np.float32(1.0))


# librosa warns that 512 > 200 samples; that short clip is the case under test.
@pytest.mark.filterwarnings("ignore:n_fft=512 is too large:UserWarning")
@pytest.mark.parametrize("n_samples", [200, 8000, 48000, 48001])
def test_batched_log_mel_equals_librosa_per_window(n_samples):
    from moodscope.musicnn.model import log_mel_batch

    rng = np.random.default_rng(n_samples)
    clips = (0.3 * rng.standard_normal((5, n_samples))).astype(np.float32)
    clips[1] *= 1e-3  # quiet
    clips[2] = 0.9 * np.sign(clips[2])  # loud and clipped
    batched = log_mel_batch(clips)
    for clip, mel in zip(clips, batched):
        np.testing.assert_allclose(mel, _librosa_log_mel(clip), rtol=1e-5, atol=1e-5)


def test_batched_segment_features_equal_the_per_window_path():
    """What predict computes now (all windows of a block through one log-mel pass and the
    network in batches) against the old path: librosa's log-mel per window, one network
    call per window. Float32 rounding apart, the same numbers."""
    import torch

    from moodscope.features.musicnn_sets import musicnn_segment_features
    from moodscope.features.segments import fixed_windows
    from moodscope.musicnn.model import load_musicnn

    rng = np.random.default_rng(3)
    t = np.arange(16000 * 13) / 16000
    y = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    windows = fixed_windows(len(y), 16000, length=3.0)
    batched = musicnn_segment_features(y, windows, full=True)
    net = load_musicnn("MSD_musicnn")
    rows = []
    with torch.inference_mode():
        for w in windows:
            out = net.features(torch.from_numpy(patches(_librosa_log_mel(w.slice(y)))))
            rows.append(
                np.concatenate(
                    [out[k].numpy().mean(axis=0) for k in
                     ("penultimate", "taggram", "max_pool", "mean_pool")]
                )
            )  # fmt: skip
    np.testing.assert_allclose(batched, np.asarray(rows), rtol=1e-4, atol=2e-5)
