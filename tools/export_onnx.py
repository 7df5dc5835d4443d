"""Export the musicnn networks from the PyTorch port to ONNX, and check them against it.

    python tools/export_onnx.py [--check-only]

Writes ``src/moodscope/musicnn/weights/{MSD_musicnn,MTT_musicnn}.onnx`` (what prediction runs,
on onnxruntime) from :class:`moodscope.musicnn.model.Musicnn` and its converted weights: one
graph from log-mel patches [batch, 187, 96] to the four outputs of ``Musicnn.features``
(taggram, penultimate, max_pool, mean_pool), the batch axis free. The port is traced on its
direct-convolution path (the spectral timbral path's ``unfold`` does not export), one batch
of all patches at once, dead filters skipped as in the port.

Then runs each ONNX file on onnxruntime (one thread) and the port (float32) on the same
patches -- random ones and the log-mel of a synthetic chord -- and fails unless every output
agrees within :data:`TOLERANCE` (absolute, after scaling by the output's largest magnitude).
``--check-only`` runs the check on the shipped files without exporting.

Needs the research extra (PyTorch) and onnxruntime: ``pip install '.[research]'``.
Made with torch 2.13.0 (CPU) and onnxruntime 1.32.0.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from moodscope.musicnn.inputs import PATCH_FRAMES, SAMPLE_RATE, log_mel, patches
from moodscope.musicnn.model import load_musicnn
from moodscope.musicnn.network import MODEL_NAMES, OUTPUTS, onnx_path

TOLERANCE = 1e-4
"""Largest |ONNX - port| / max|port| accepted per output (measured: < 2e-6)."""

OPSET = 17


class _Features(torch.nn.Module):
    """The port's ``features`` as a module with the outputs in :data:`OUTPUTS` order."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.net.features(x)
        return tuple(out[key] for key in OUTPUTS)


def export(name: str) -> None:
    net = load_musicnn(name)
    saved = net.timbral_path, net.cpu_chunk
    net.timbral_path, net.cpu_chunk = "conv", 1 << 30  # one traced pass over the whole batch
    try:
        example = torch.from_numpy(_patches(seed=0, n=4))
        torch.onnx.export(
            _Features(net).eval(),
            (example,),
            str(onnx_path(name)),
            input_names=["patches"],
            output_names=list(OUTPUTS),
            dynamic_axes={"patches": {0: "batch"}, **{k: {0: "batch"} for k in OUTPUTS}},
            opset_version=OPSET,
            dynamo=False,
        )
    finally:
        net.timbral_path, net.cpu_chunk = saved
        net._prepared = None  # the layers prepared for the conv path
    print(f"wrote {onnx_path(name)} ({onnx_path(name).stat().st_size / 1e6:.1f} MB)")


def _patches(*, seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((n, PATCH_FRAMES, 96)) * 3).astype(np.float32)  # log-mel's range


def _chord_patches() -> np.ndarray:
    t = np.arange(10 * SAMPLE_RATE) / SAMPLE_RATE
    y = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6, 440.0))
    y = y + 0.01 * np.random.default_rng(1).standard_normal(len(t))
    return patches(log_mel(y.astype(np.float32), SAMPLE_RATE))


def check(name: str) -> float:
    """The worst scaled difference between the ONNX file and the port over every output."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        str(onnx_path(name)), options, providers=["CPUExecutionProvider"]
    )
    net = load_musicnn(name)
    worst = 0.0
    for batch in (_patches(seed=2, n=3), _patches(seed=3, n=1), _chord_patches()):
        got = dict(zip(OUTPUTS, session.run(None, {"patches": batch})))
        with torch.inference_mode():
            want = {k: v.numpy() for k, v in net.features(torch.from_numpy(batch)).items()}
        for key in OUTPUTS:
            diff = np.abs(got[key] - want[key]).max() / max(np.abs(want[key]).max(), 1e-12)
            worst = max(worst, float(diff))
    print(f"{name}: ONNX vs port, worst scaled difference {worst:.1e} (tolerance {TOLERANCE})")
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check-only", action="store_true", help="check the shipped files")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    failed = False
    for name in MODEL_NAMES:
        if not args.check_only:
            export(name)
        failed |= check(name) > TOLERANCE
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
