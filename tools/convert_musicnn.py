"""Convert musicnn 0.1.0's TensorFlow checkpoints to PyTorch and record TensorFlow references.

Dev-only: TensorFlow is *not* a dependency of moodscope; it is imported only here, in a separate
virtualenv. What it writes (all committed):

* ``src/moodscope/musicnn/weights/{MSD_musicnn,MTT_musicnn}.pt`` -- plain float32 state_dicts of
  :class:`moodscope.musicnn.Musicnn` (``torch.load(..., weights_only=True)``);
* ``src/moodscope/musicnn/weights/tags.json`` -- the tag lists of musicnn's configuration.py;
* ``tests/resources/musicnn_reference.npz`` -- taggram, penultimate layer and the max/mean
  temporal pools (musicnn's ``max_pool``/``mean_pool`` features) computed by the
  TensorFlow graph itself (musicnn's ``models.define_model`` + its checkpoint) for every patch
  of the clips in ``tests/musicnn_clips.py``. The graph is fed with this package's float32
  log-mel patches (:func:`moodscope.musicnn.log_mel`), not with musicnn's own extractor, whose
  float16 log-mel overflows on loud input and whose batch loop repeats the first patch's
  penultimate layer. The log-mel of each real clip is stored too, so the network parity can
  be told apart from a decoder difference.

Usage (from the repository root; re-runnable, overwrites its outputs)::

    python3.11 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install tensorflow==2.21.0 tf-keras==2.21.0 librosa soundfile soxr \\
        torch==2.13.0            # CPU build (here: the wheel in /opt/wheels)
    /tmp/tfvenv/bin/pip install --no-deps musicnn==0.1.0   # its numpy<1.17 pin is obsolete
    MOODSCOPE_EMOTIFY_DIR=/work/shared/emotify-dev \\
        /tmp/tfvenv/bin/python tools/convert_musicnn.py [--time-extractor]

``--time-extractor`` also times musicnn's own ``extractor()`` on a 60-s synthetic track (it
rebuilds and restores the graph on every call) for ``benchmarks/bench_musicnn.py``'s comparison.
Real clips missing from the Emotify folder are left out of the reference file (with a warning).
Verified with TensorFlow 2.21.0 + tf-keras 2.21.0 on Python 3.11.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import types
from pathlib import Path

# TF >= 2.16 ships Keras 3, whose layers cannot run musicnn's tf.compat.v1.layers graph code;
# this switch (needs the tf-keras package) routes tf.compat.v1.layers to Keras 2.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]
# Import moodscope.musicnn without running moodscope/__init__.py, which pulls in the whole
# package's dependencies (pandas, scikit-learn, ...) that this TensorFlow venv does not need:
# a bare package object whose __path__ points at the source lets submodules import normally.
_pkg = types.ModuleType("moodscope")
_pkg.__path__ = [str(ROOT / "src" / "moodscope")]
sys.modules.setdefault("moodscope", _pkg)

import musicnn  # noqa: E402
from musicnn import configuration as mn_config  # noqa: E402
from musicnn import models as mn_models  # noqa: E402

import musicnn_clips  # noqa: E402
from moodscope.musicnn.model import PATCH_FRAMES, Musicnn, log_mel, patches  # noqa: E402

tf.compat.v1.disable_eager_execution()

MODELS = {"MSD_musicnn": mn_config.MSD_LABELS, "MTT_musicnn": mn_config.MTT_LABELS}
WEIGHTS_DIR = ROOT / "src" / "moodscope" / "musicnn" / "weights"
REFERENCE = ROOT / "tests" / "resources" / "musicnn_reference.npz"

# TF variable -> PyTorch module, in the order build_musicnn creates them (the shapes are
# checked below, so a wrong guess cannot pass silently).
_BN = {
    "batch_normalization": "bn_input",
    "batch_normalization_1": "bn_timbral_74",
    "batch_normalization_2": "bn_timbral_77",
    "batch_normalization_3": "bn_temporal_128",
    "batch_normalization_4": "bn_temporal_64",
    "batch_normalization_5": "bn_temporal_32",
    "batch_normalization_6": "bn_midend_1",
    "batch_normalization_7": "bn_midend_2",
    "batch_normalization_8": "bn_midend_3",
    "batch_normalization_9": "bn_pool",
    "batch_normalization_10": "bn_dense",
}
_CONV2D = {
    "conv2d": "timbral_74",
    "conv2d_1": "timbral_77",
    "conv2d_2": "temporal_128",
    "conv2d_3": "temporal_64",
    "conv2d_4": "temporal_32",
}
_CONV1D = {"conv2d_5": "midend_1", "conv2d_6": "midend_2", "conv2d_7": "midend_3"}
_DENSE = {"dense": "dense", "dense_1": "output"}


def checkpoint_prefix(name: str) -> str:
    # The package saved its checkpoints with an empty file name: files are "<dir>/.index" etc.
    return os.path.join(os.path.dirname(musicnn.__file__), name) + "/"


def convert(name: str) -> dict[str, torch.Tensor]:
    """Map every trained variable of checkpoint ``name`` onto a Musicnn state_dict."""
    reader = tf.compat.v1.train.NewCheckpointReader(checkpoint_prefix(name))
    tf_vars = {
        k for k in reader.get_variable_to_shape_map() if "Adam" not in k and "power" not in k
    }
    used: set[str] = set()

    def get(key: str) -> np.ndarray:
        used.add(key)
        return np.asarray(reader.get_tensor(key), dtype=np.float32)

    sd: dict[str, np.ndarray] = {}
    for tf_name, pt in _BN.items():
        sd[f"{pt}.weight"] = get(f"{tf_name}/gamma")
        sd[f"{pt}.bias"] = get(f"{tf_name}/beta")
        sd[f"{pt}.running_mean"] = get(f"{tf_name}/moving_mean")
        sd[f"{pt}.running_var"] = get(f"{tf_name}/moving_variance")
    for tf_name, pt in _CONV2D.items():
        # TF conv2d kernel [kh, kw, in, out] (NHWC, H = time, W = mel) -> torch [out, in, kh, kw]
        sd[f"{pt}.weight"] = get(f"{tf_name}/kernel").transpose(3, 2, 0, 1)
        sd[f"{pt}.bias"] = get(f"{tf_name}/bias")
    for tf_name, pt in _CONV1D.items():
        # The mid end is a conv2d whose kernel spans the whole channel axis, laid out as width:
        # [7, C_in, 1, out] -> Conv1d [out, C_in, 7]
        sd[f"{pt}.weight"] = get(f"{tf_name}/kernel")[:, :, 0, :].transpose(2, 1, 0)
        sd[f"{pt}.bias"] = get(f"{tf_name}/bias")
    for tf_name, pt in _DENSE.items():
        sd[f"{pt}.weight"] = get(f"{tf_name}/kernel").T  # [in, out] -> [out, in]
        sd[f"{pt}.bias"] = get(f"{tf_name}/bias")
    if used != tf_vars:
        raise RuntimeError(f"{name}: unmapped TF variables {sorted(tf_vars - used)}")

    model = Musicnn(n_tags=len(MODELS[name]))
    expected = model.state_dict()
    state = {}
    for key, ref in expected.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros_like(ref)
            continue
        arr = np.ascontiguousarray(sd.pop(key))
        if tuple(arr.shape) != tuple(ref.shape):
            raise RuntimeError(f"{name}: {key} has shape {arr.shape}, expected {tuple(ref.shape)}")
        state[key] = torch.from_numpy(arr.copy())
    if sd:
        raise RuntimeError(f"{name}: converted tensors not in the model: {sorted(sd)}")
    model.load_state_dict(state, strict=True)
    return state


class TFMusicnn:
    """musicnn's own TF graph (models.define_model) with its checkpoint restored."""

    def __init__(self, name: str, n_frames: int = PATCH_FRAMES):
        self.graph = tf.Graph()
        with self.graph.as_default():
            # same scoping and placeholders as musicnn.extractor.extractor()
            with tf.name_scope("model"):
                self.x = tf.compat.v1.placeholder(tf.float32, [None, n_frames, mn_config.N_MELS])
                self.is_training = tf.compat.v1.placeholder(tf.bool)
                out = mn_models.define_model(self.x, self.is_training, name, len(MODELS[name]))
                # build_musicnn returns (logits, timbral, temporal, cnn1, cnn2, cnn3,
                # mean_pool, max_pool, penultimate); the pools are [batch, 753].
                self.outputs = {
                    "taggram": tf.nn.sigmoid(out[0]),
                    "penultimate": out[-1],
                    "max_pool": out[-2],
                    "mean_pool": out[-3],
                }
            cfg = tf.compat.v1.ConfigProto(
                intra_op_parallelism_threads=2, inter_op_parallelism_threads=1
            )
            self.sess = tf.compat.v1.Session(graph=self.graph, config=cfg)
            tf.compat.v1.train.Saver().restore(self.sess, checkpoint_prefix(name))

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        out = self.sess.run(
            self.outputs, feed_dict={self.x: batch.astype(np.float32), self.is_training: False}
        )
        return {k: v.astype(np.float32) for k, v in out.items()}


def time_extractor(n_runs: int = 3) -> float:
    """Median seconds of musicnn's extractor() (graph build + restore + run) on a 60-s track."""
    import soundfile as sf
    from musicnn.extractor import extractor

    rng = np.random.default_rng(0)
    sr = 16000
    t = np.arange(60 * sr) / sr
    y = 0.1 * np.sin(2 * np.pi * 220 * t) + 0.02 * rng.standard_normal(t.size)
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "track.wav")
        sf.write(path, y.astype(np.float32), sr)
        for _ in range(n_runs):
            t0 = time.perf_counter()
            extractor(path, model="MSD_musicnn", extract_features=True)
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--time-extractor", action="store_true")
    args = ap.parse_args()
    print(f"tensorflow {tf.__version__}, torch {torch.__version__}, musicnn {musicnn.__file__}")

    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    (WEIGHTS_DIR / "tags.json").write_text(json.dumps(MODELS, indent=1) + "\n", encoding="utf-8")

    clips = musicnn_clips.synthetic_clips()
    real = musicnn_clips.real_clips()
    missing = sorted(set(musicnn_clips.REAL_CLIPS) - set(real))
    if missing:
        print(f"WARNING: real clips not found under {musicnn_clips.emotify_dir()}: {missing}")
    clips.update(real)
    mels = {name: log_mel(y, sr) for name, (y, sr) in clips.items()}

    ref: dict[str, np.ndarray] = {}
    for name in real:
        ref[f"mel__{name}"] = mels[name]
    for model_name in MODELS:
        state = convert(model_name)
        torch.save(state, WEIGHTS_DIR / f"{model_name}.pt")
        pt = Musicnn(n_tags=len(MODELS[model_name]))
        pt.load_state_dict(state)
        tfm = TFMusicnn(model_name)
        for clip, mel in mels.items():
            batch = patches(mel)
            tf_out = tfm(batch)
            for key, value in tf_out.items():
                ref[f"{model_name}__{clip}__{key}"] = value
            with torch.inference_mode():
                pt_out = {k: v.numpy() for k, v in pt.features(torch.from_numpy(batch)).items()}
            diffs = " ".join(
                f"max|d{k}|={np.abs(pt_out[k] - v).max():.2e}" for k, v in tf_out.items()
            )
            print(f"{model_name:12s} {clip:13s} patches={len(batch)} {diffs}")
        tfm.sess.close()
    ref["clips"] = np.array(sorted(mels))
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(REFERENCE, **ref)
    print(f"wrote {REFERENCE} ({REFERENCE.stat().st_size / 1e6:.2f} MB) and {WEIGHTS_DIR}/*.pt")

    if args.time_extractor:
        print(f"musicnn extractor(), 60-s track, median of 3: {time_extractor():.2f} s")


if __name__ == "__main__":
    main()
