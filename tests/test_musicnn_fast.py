"""The bfloat16 fast path of musicnn (moodscope.musicnn.amx; .fast decides): the blocked GEMMs
compute the very convolutions of the exact path (checked in float32, to rounding), in
bfloat16 they stay within bfloat16's resolution of it, and the choice of path follows the
CPU and the user's ``exact``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from moodscope.musicnn import MODEL_NAMES, amx, fast, load_musicnn, patches

REFERENCE = Path(__file__).parent / "resources" / "musicnn_reference.npz"


@pytest.fixture(scope="module")
def mels() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as z:
        return {k: z[k] for k in z.files if k.startswith("mel__")}


def _rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max())


def _some_all_negative(x: torch.Tensor, w: torch.Tensor) -> None:
    """Make every output of filter 0 on patch 0 negative: the max over frequency is then
    the value nearest zero, which the integer max alone would get wrong."""
    x[0] = x[0].abs() + 0.1
    w[0] = -w[0].abs()


@pytest.mark.parametrize("block", [8, 16, 32])
@pytest.mark.parametrize("n_frames", [187, 50])
def test_blocked_temporal_gemm_is_the_convolution(block, n_frames):
    # block 32 puts the 32-tap filter's window 16 frames into a block; 50 frames is not a
    # multiple of any block.
    g = torch.Generator().manual_seed(block + n_frames)
    kernels, channels = [128, 64, 32], [5, 7, 3]
    weights = [torch.randn(c, k, generator=g) for c, k in zip(channels, kernels, strict=True)]
    x = torch.randn(3, n_frames, 96, generator=g)
    _some_all_negative(x, weights[0])
    bank = amx.temporal_bank(weights, kernels, block=block, dtype=torch.float32)
    got = amx.temporal_max(x, bank)
    for w, k, out in zip(weights, kernels, got, strict=True):
        before = (k - 1) // 2  # TF "same" padding
        xp = F.pad(x[:, None], (0, 0, before, k - 1 - before))
        want = F.conv2d(xp, w[:, None, :, None]).amax(3)  # [b, C, T]
        assert out.shape == want.shape
        assert _rel_err(out, want) < 1e-5
    assert (got[0][0, 0] < 0).all()  # the all-negative case was exercised


@pytest.mark.parametrize("block", [4, 8, 16])
@pytest.mark.parametrize("width", [38, 67])
def test_blocked_timbral_gemm_is_the_convolution(block, width):
    g = torch.Generator().manual_seed(block * width)
    w = torch.randn(6, 7, width, generator=g)
    xt = torch.randn(2, 40 + 6, 96, generator=g)
    _some_all_negative(xt, w)
    bank = amx.timbral_bank(w, 96, block=block, dtype=torch.float32)
    got = amx.timbral_max(xt, bank)
    want = F.conv2d(xt[:, None], w[:, None]).amax(3)
    assert got.shape == want.shape == (2, 6, 40)
    assert _rel_err(got, want) < 1e-5
    assert (got[0, 0] < 0).all()


def test_bfloat16_gemms_round_like_bfloat16():
    g = torch.Generator().manual_seed(1)
    w, x = torch.randn(4, 64, generator=g), torch.randn(2, 187, 96, generator=g)
    exact = amx.temporal_max(x, amx.temporal_bank([w], [64], dtype=torch.float32))[0]
    rounded = amx.temporal_max(x, amx.temporal_bank([w], [64]))[0]
    # 8 significant bits: inputs, weights and outputs each within 2^-8 relative
    assert 1e-4 < _rel_err(rounded, exact) < 2e-2


@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_bfloat16_network_stays_close_to_float32(mels, model_name):
    net = load_musicnn(model_name)
    for name, mel in mels.items():
        x = torch.from_numpy(patches(mel))
        with torch.inference_mode():
            exact, quick = net.features(x), net.features(x, precision="bfloat16")
        assert float((quick["taggram"] - exact["taggram"]).abs().max()) < 0.02, name
        for key in ("penultimate", "max_pool", "mean_pool"):
            a, b = exact[key].flatten().numpy(), quick[key].flatten().numpy()
            assert np.corrcoef(a, b)[0, 1] > 0.999, (name, key)
            assert _rel_err(quick[key], exact[key]) < 0.05, (name, key)


def test_a_precision_the_network_lacks_is_refused():
    with pytest.raises(ValueError, match="precision must be one of"):
        load_musicnn().features(torch.zeros(1, 187, 96), precision="float16")


def test_the_fast_path_follows_the_cpu_and_exact(monkeypatch):
    monkeypatch.delenv("MOODSCOPE_PRECISION", raising=False)
    fast.fast_precision.cache_clear()
    try:
        on_this_cpu = fast.fast_precision()
        has_amx = {"amx_tile", "amx_bf16"} <= set(fast.cpu_flags())
        assert on_this_cpu == ("bfloat16" if has_amx else "float32")
        assert fast.resolve_precision(exact=True) == "float32"
        assert fast.resolve_precision(exact=False) == on_this_cpu
        # a CPU without AMX tiles (what this one would be without them) gets float32
        monkeypatch.setattr(fast, "cpu_flags", lambda: ("avx512f",))
        fast.fast_precision.cache_clear()
        assert fast.fast_precision() == "float32"
        # AMX without PyTorch (no research extra): float32 on onnxruntime
        monkeypatch.setattr(fast, "cpu_flags", lambda: ("amx_tile", "amx_bf16"))
        monkeypatch.setattr(fast, "has_research", lambda: False)
        fast.fast_precision.cache_clear()
        assert fast.fast_precision() == "float32"
        monkeypatch.setattr(fast, "has_research", lambda: True)
        fast.fast_precision.cache_clear()
        assert fast.fast_precision() == "bfloat16"
        monkeypatch.setenv("MOODSCOPE_PRECISION", "float32")
        fast.fast_precision.cache_clear()
        assert fast.resolve_precision(exact=False) == "float32"
    finally:
        fast.fast_precision.cache_clear()
