"""The ONNX musicnn that prediction runs (moodscope.musicnn.network, on onnxruntime) against
the TensorFlow references and the PyTorch port it was exported from (tools/export_onnx.py).

The ONNX graph is the port's direct-convolution path, so against TensorFlow it meets the same
bounds as the port (tests/test_musicnn.py); against the port itself, float32 rounding only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from moodscope.errors import ConfigError, ModelError
from moodscope.musicnn import MODEL_NAMES, log_mel, musicnn_embed, network_outputs, patches
from moodscope.musicnn.network import OUTPUTS, runtime
from test_musicnn import REFERENCE, SYNTHETIC, _assert_parity

try:  # tests/ is on sys.path under pytest's default (prepend) import mode
    import musicnn_clips
except ImportError:  # tests/ became a package
    from tests import musicnn_clips


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as z:
        return {k: z[k] for k in z.files}


def test_float32_runs_on_onnxruntime():
    assert runtime("float32") == "onnxruntime"


@pytest.mark.parametrize("model_name", MODEL_NAMES)
@pytest.mark.parametrize("clip", SYNTHETIC)
def test_onnx_parity_with_tensorflow_on_synthetic_clips(ref, model_name, clip):
    y, sr = musicnn_clips.synthetic_clips()[clip]
    out = network_outputs(patches(log_mel(y, sr)), model=model_name)
    _assert_parity(ref, model_name, clip, out)


@pytest.mark.parametrize("model_name", MODEL_NAMES)
@pytest.mark.parametrize("clip", sorted(musicnn_clips.REAL_CLIPS))
def test_onnx_parity_with_tensorflow_on_stored_real_mels(ref, model_name, clip):
    out = network_outputs(patches(ref[f"mel__{clip}"]), model=model_name)
    _assert_parity(ref, model_name, clip, out)


@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_onnx_equals_the_port_it_was_exported_from(ref, model_name):
    torch = pytest.importorskip("torch")
    from moodscope.musicnn.model import load_musicnn

    batch = np.concatenate([patches(ref[f"mel__{c}"]) for c in sorted(musicnn_clips.REAL_CLIPS)])
    got = network_outputs(batch, model=model_name, batch_size=5)  # batches of any size
    net = load_musicnn(model_name)  # outside inference mode: its weights stay plain tensors
    with torch.inference_mode():
        want = net.features(torch.from_numpy(batch))
    for key in OUTPUTS:
        scale = np.abs(want[key].numpy()).max()
        assert np.abs(got[key] - want[key].numpy()).max() < 1e-4 * scale, key


def test_embed_runs_the_onnx_network():
    sr = 16000
    t = np.arange(7 * sr) / sr
    y = (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    out = musicnn_embed(y, sr)
    assert out["taggram"].shape == (2, 50) and out["penultimate"].shape == (2, 200)
    direct = network_outputs(patches(log_mel(y, sr)))
    np.testing.assert_array_equal(out["taggram"], direct["taggram"])


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(ModelError, match="unknown musicnn model"):
        network_outputs(np.zeros((1, 187, 96), np.float32), model="MSD_vgg")
    with pytest.raises(ConfigError, match="batch_size"):
        network_outputs(np.zeros((1, 187, 96), np.float32), batch_size=0)


def test_shipped_onnx_files_exist():
    from moodscope.musicnn.network import onnx_path

    for name in MODEL_NAMES:
        path = onnx_path(name)
        assert isinstance(path, Path) and path.is_file() and path.stat().st_size > 1_000_000
