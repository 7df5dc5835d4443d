"""musicnn as prediction runs it: the network exported to ONNX, run by onnxruntime on the CPU.

``weights/{MSD_musicnn,MTT_musicnn}.onnx`` are made from the PyTorch port
(:mod:`moodscope.musicnn.model`) by ``tools/export_onnx.py``, which checks them against it;
``tests/test_musicnn.py`` checks them against the TensorFlow outputs too. The port itself
(research extra) runs where the bfloat16 path is asked for (:mod:`moodscope.musicnn.fast`) or
where onnxruntime is missing.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from moodscope.errors import ConfigError, ModelError
from moodscope.extras import RESEARCH_INSTALL, has_module, has_research
from moodscope.musicnn.inputs import FFT_HOP, PATCH_FRAMES, SAMPLE_RATE, log_mel, patches
from moodscope.musicnn.tags import MODEL_NAMES, WEIGHTS_DIR, check_name, musicnn_tags

__all__ = [
    "MODEL_NAMES",
    "OUTPUTS",
    "RUNTIMES",
    "WEIGHTS_DIR",
    "musicnn_embed",
    "musicnn_tags",
    "network_outputs",
    "onnx_path",
    "runtime",
]

OUTPUTS = ("taggram", "penultimate", "max_pool", "mean_pool")
"""What the network gives per patch, in the ONNX graph's output order (see
:meth:`moodscope.musicnn.model.Musicnn.features`)."""

RUNTIMES = ("onnxruntime", "torch")


def onnx_path(name: str) -> Path:
    """Where the ONNX network of model ``name`` is shipped."""
    check_name(name)
    return WEIGHTS_DIR / f"{name}.onnx"


def runtime(precision: str = "float32") -> str:
    """Which runtime computes ``precision``: ``"onnxruntime"`` for float32 where it is
    installed (always, with moodscope's own requirements), else the PyTorch port.

    ``MOODSCOPE_RUNTIME=torch`` runs float32 on the port too (research extra): what
    ``benchmarks/bench_runtime.py`` compares the ONNX network with."""
    forced = os.environ.get("MOODSCOPE_RUNTIME", "").strip().lower()
    if forced and forced not in RUNTIMES:
        raise ConfigError(f"MOODSCOPE_RUNTIME must be one of {', '.join(RUNTIMES)}; got {forced!r}")
    if precision == "bfloat16" or forced == "torch" or not has_module("onnxruntime"):
        if not has_research():
            raise ModelError(
                "musicnn needs onnxruntime (pip install .) or, for the bfloat16 path, "
                f"PyTorch (the research extra: {RESEARCH_INSTALL})"
            )
        return "torch"
    return "onnxruntime"


def _threads() -> int:
    """onnxruntime's threads: what the process was limited to (``OMP_NUM_THREADS``, which
    :func:`moodscope.backends.base.limit_threads` sets in each worker), else its default (one
    per core)."""
    try:
        return max(int(os.environ.get("OMP_NUM_THREADS", "0")), 0)
    except ValueError:
        return 0


@functools.cache
def _session(name: str, threads: int):
    import onnxruntime as ort

    path = onnx_path(name)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: its warnings are not the user's business
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types for a missing or bad file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"cannot read musicnn network {path}: {first[:200]}") from exc


def network_outputs(
    batch: np.ndarray,
    *,
    model: str = "MSD_musicnn",
    precision: str = "float32",
    batch_size: int = 32,
) -> dict[str, np.ndarray]:
    """The network's outputs (:data:`OUTPUTS`) for every patch of ``batch``.

    Parameters
    ----------
    batch : np.ndarray [shape=(n_patches, 187, 96), float32]
        Log-mel patches (:func:`moodscope.musicnn.inputs.patches`).
    precision : str
        ``"float32"`` (onnxruntime) or ``"bfloat16"`` (the PyTorch port's AMX path).

    Returns
    -------
    dict of np.ndarray
        ``taggram`` [n, 50], ``penultimate`` [n, 200], ``max_pool`` and ``mean_pool``
        [n, 753], float32.
    """
    if batch_size < 1:
        raise ConfigError("batch_size must be >= 1")
    check_name(model)
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    outputs: dict[str, list[np.ndarray]] = {key: [] for key in OUTPUTS}
    if runtime(precision) == "onnxruntime":
        session = _session(model, _threads())
        for i in range(0, len(batch), batch_size):
            values = session.run(None, {"patches": batch[i : i + batch_size]})
            for key, value in zip(OUTPUTS, values):
                outputs[key].append(value)
    else:
        import torch

        from moodscope.musicnn.model import load_musicnn

        net = load_musicnn(model, "cpu")
        with torch.inference_mode():
            for i in range(0, len(batch), batch_size):
                out = net.features(torch.from_numpy(batch[i : i + batch_size]), precision=precision)
                for key in OUTPUTS:
                    outputs[key].append(out[key].float().numpy())
    return {key: np.concatenate(value) for key, value in outputs.items()}


def musicnn_embed(
    y: np.ndarray,
    sr: int,
    *,
    model: str = "MSD_musicnn",
    batch_size: int = 64,
    device: str | None = None,
) -> dict:
    """Tag probabilities and penultimate-layer embeddings for every 3-s patch of a track.

    Parameters
    ----------
    y : np.ndarray [shape=(n_samples,) or (n_channels, n_samples)]
        Audio at rate ``sr`` (any rate; resampled to 16 kHz).
    sr : int
        Sample rate of ``y``.
    model : str
        ``"MSD_musicnn"`` or ``"MTT_musicnn"``.
    batch_size : int
        Patches per forward pass.
    device : str or None
        None: the ONNX network on onnxruntime. ``"cpu"``, ``"cuda"``: the PyTorch port on
        that device (research extra).

    Returns
    -------
    dict
        ``taggram`` : np.ndarray [shape=(n_patches, n_tags), float32] sigmoid probabilities;
        ``penultimate`` : np.ndarray [shape=(n_patches, 200), float32];
        ``patch_start`` : np.ndarray [shape=(n_patches,), float64] start of each patch in s;
        ``tags`` : list[str] taggram column names.
        Patches are the non-overlapping 3-s windows of :func:`patches` (a clip shorter than
        3 s is repeat-padded to one patch).

    Raises
    ------
    ModelError
        Unknown model name.
    """
    if batch_size < 1:
        raise ConfigError("batch_size must be >= 1")
    check_name(model)
    batch = patches(log_mel(y, sr))
    if device is None:
        out = network_outputs(batch, model=model, batch_size=batch_size)
        taggram, penultimate = out["taggram"], out["penultimate"]
    else:
        import torch

        from moodscope.musicnn.model import load_musicnn

        net = load_musicnn(model, device)
        tags, pens = [], []
        with torch.inference_mode():
            for i in range(0, len(batch), batch_size):
                tg, pen = net(torch.from_numpy(batch[i : i + batch_size]).to(device))
                tags.append(tg.float().cpu().numpy())
                pens.append(pen.float().cpu().numpy())
        taggram, penultimate = np.concatenate(tags), np.concatenate(pens)
    return {
        "taggram": taggram,
        "penultimate": penultimate,
        "patch_start": np.arange(len(batch)) * (PATCH_FRAMES * FFT_HOP / SAMPLE_RATE),
        "tags": musicnn_tags(model),
    }
