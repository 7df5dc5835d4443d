"""musicnn's convolutions as bfloat16 GEMMs, for CPUs with AMX (oneDNN through PyTorch).

The exact path (:mod:`moodscope.musicnn.model`) runs float32 throughout. On a CPU with AMX
tiles, oneDNN multiplies bfloat16 matrices 6-8x faster than float32 ones, but only when the
matrices are large in every dimension; a temporal filter has one input channel, so as a
convolution it is a thin GEMM (K = 1 x taps, N = 51) that gains nothing. Here each convolution
is rewritten as a *blocked Toeplitz* GEMM: time (for the temporal filters) or frequency (for
the timbral ones) is cut into blocks of ``S`` positions; every output block reads ``nb``
consecutive input blocks, and the ``S`` output positions of a block become ``S`` x more output
columns:

    Y[(j, f), (r, c)] = sum_{(i, s)} X[(j + i) S + s, f] * W[c, i S + s - r]

(zero where ``i S + s - r`` falls outside the filter). ``K = nb S`` is a little more than the
filter's taps (the zeros cost ~10-50 % more multiply-adds) and ``N = S C`` is hundreds wide,
so the GEMM runs at ~1.5 TFLOP/s on one Sapphire Rapids core instead of ~0.15.

Numbers: inputs and weights are rounded to bfloat16 (8 significant bits), products are summed
in float32 by oneDNN, outputs rounded to bfloat16 before the max over frequency; batch norms,
the back end and everything after the front end stay float32. ``benchmarks/bench_fast.py``
checks the effect on predictions against the exact path on the dev tracks.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = ["PRECISIONS", "cpu_flags", "fast_precision", "resolve_precision"]

PRECISIONS = ("float32", "bfloat16")
"""What the network can compute in: ``float32`` (exact) or ``bfloat16`` (AMX GEMMs)."""

_FLAGS = ("avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")


@functools.cache
def cpu_flags() -> tuple[str, ...]:
    """The CPU flags that decide the fast path (of :data:`_FLAGS`, as /proc/cpuinfo names them)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return tuple(f for f in _FLAGS if f in have)
    except OSError:
        pass
    return ()


@functools.cache
def fast_precision() -> str:
    """``"bfloat16"`` where this CPU multiplies bfloat16 matrices on AMX tiles (oneDNN) and
    the network runs on it, else ``"float32"``: without AMX, oneDNN's bfloat16 GEMMs are no
    faster than float32 ones, so the exact path is also the fast one there.

    ``MOODSCOPE_PRECISION=float32`` forces the exact path for the whole process.
    """
    forced = os.environ.get("MOODSCOPE_PRECISION", "").strip().lower()
    if forced in PRECISIONS:
        return forced
    if torch.cuda.is_available():  # the network runs there, in float32
        return "float32"
    try:
        amx = torch.cpu._is_amx_tile_supported() and torch.cpu._is_avx512_bf16_supported()
    except AttributeError:  # an older torch: ask the CPU itself
        amx = {"amx_tile", "amx_bf16"} <= set(cpu_flags())
    return "bfloat16" if amx and torch.backends.mkldnn.is_available() else "float32"


def resolve_precision(exact: bool) -> str:
    """The precision a prediction runs in: float32 when ``exact``, else :func:`fast_precision`."""
    return "float32" if exact else fast_precision()


# --------------------------------------------------------------------------------------------
# blocked Toeplitz weights
# --------------------------------------------------------------------------------------------


def _toeplitz(
    weight: torch.Tensor, block: int, n_blocks: int, offset: int, dtype: torch.dtype
) -> torch.Tensor:
    """[C, taps] filters -> [n_blocks * block, block * C] ``dtype``: row ``(i, s)``, column
    ``(r, c)`` holds ``weight[c, i block + s - r - offset]`` (zero outside the filter).

    ``offset`` shifts the filter right within the window (a shorter filter sharing a longer
    one's input blocks)."""
    n_channels, taps = weight.shape
    rows = torch.arange(n_blocks * block)[:, None]
    r = torch.arange(block)[None, :]
    d = rows - r - offset  # [K, block]: the tap each (row, r) multiplies
    valid = (d >= 0) & (d < taps)
    gathered = weight[:, d.clamp(0, taps - 1)]  # [C, K, block]
    gathered = gathered * valid[None].to(weight.dtype)
    return gathered.permute(1, 2, 0).reshape(n_blocks * block, block * n_channels).to(dtype)


@dataclass(frozen=True)
class TemporalBank:
    """The three temporal layers as column slices of one input matrix (see module docstring).

    All three read the input padded for the longest filter; a shorter filter's window starts
    ``offset`` frames later, a multiple of ``block``, so its GEMM uses the columns
    ``[lo, hi)`` of the same blocked input."""

    block: int
    before: int  # frames of zero padding before the patch (the longest filter's)
    n_blocks: int  # input blocks per output block, for the longest filter
    columns: tuple[tuple[int, int], ...]  # per layer: [lo, hi) columns of the blocked input
    weights: tuple[torch.Tensor, ...]  # per layer: [hi - lo, block * C] bfloat16
    channels: tuple[int, ...]


def temporal_bank(
    weights: list[torch.Tensor],
    kernels: list[int],
    block: int = 16,
    dtype: torch.dtype = torch.bfloat16,
) -> TemporalBank:
    """``weights[i]``: [C_i, k_i] live, sign-folded filters of the temporal layer with
    ``kernels[i]`` taps, TF ``same`` padding ((k - 1) // 2 before). ``dtype``: of the GEMMs
    (float32 only to test the layout: it is slower than the direct convolution)."""
    longest = max(kernels)
    before = (longest - 1) // 2
    cols, mats = [], []
    for w, k in zip(weights, kernels, strict=True):
        shift = before - (k - 1) // 2  # where this filter's window starts in the long one
        lo_block, offset = divmod(shift, block)
        n_blocks = -(-(offset + block + k - 1) // block)
        cols.append((lo_block * block, (lo_block + n_blocks) * block))
        mats.append(_toeplitz(w, block, n_blocks, offset, dtype))
    n_blocks = max(hi for _, hi in cols) // block
    return TemporalBank(
        block, before, n_blocks, tuple(cols), tuple(mats), tuple(w.shape[0] for w in weights)
    )


def temporal_max(x: torch.Tensor, bank: TemporalBank, chunk: int = 1) -> list[torch.Tensor]:
    """Batch-normed patches ``x`` [b, T, F] -> per temporal layer, the max over frequency of
    its live filters' outputs (no bias): [b, C_i, T] float32.

    ``chunk`` patches go through each GEMM at once: one patch's outputs (~1 MB in bfloat16)
    stay in the core's L2 cache for the max that reads them back; 20 patches' would not."""
    b, n_frames, n_freq = x.shape
    blk = bank.block
    n_out = -(-n_frames // blk)  # output blocks
    n_in = n_out + bank.n_blocks - 1
    after = n_in * blk - n_frames - bank.before
    xp = F.pad(x.to(bank.weights[0].dtype), (0, 0, bank.before, after))  # [b, n_in * blk, F]
    # A[(b, j, f), (i, s)] = xp[b, (j + i) blk + s, f]: one copy, n_blocks x the input
    blocks = xp.view(b, n_in, blk, n_freq).unfold(1, bank.n_blocks, 1)  # [b, J, blk, F, nb]
    a = blocks.permute(0, 1, 3, 4, 2).reshape(b, n_out * n_freq, bank.n_blocks * blk)
    out = [xp.new_empty((b, n_out * blk, c)) for c in bank.channels]
    for p in range(0, b, chunk):
        ap = a[p : p + chunk].reshape(-1, a.shape[2])
        n = len(ap) // (n_out * n_freq)
        for (lo, hi), w, c, o in zip(bank.columns, bank.weights, bank.channels, out, strict=True):
            y = (ap[:, lo:hi] @ w).view(n, n_out, n_freq, blk * c)  # [(b, J, F), (r, c)]
            torch.amax(y, 2, out=o[p : p + chunk].view(n, n_out, blk * c))
    return [o[:, :n_frames].transpose(1, 2).float() for o in out]


@dataclass(frozen=True)
class TimbralBank:
    """A timbral layer (``taps`` frames x ``width`` bands, valid along frequency) as one
    GEMM blocked along frequency: output band ``f = j block + r`` reads input blocks
    ``j .. j + n_blocks - 1`` over ``taps`` frames."""

    block: int
    taps: int
    n_blocks: int
    n_valid: int  # output positions along frequency
    weight: torch.Tensor  # [taps * n_blocks * block, block * C] bfloat16
    channels: int


def timbral_bank(
    weight: torch.Tensor, n_freq: int, block: int = 8, dtype: torch.dtype = torch.bfloat16
) -> TimbralBank:
    """``weight``: [C, taps, width] live, sign-folded filters of a timbral layer over
    ``n_freq`` bands (``dtype`` as for :func:`temporal_bank`)."""
    n_channels, taps, width = weight.shape
    n_blocks = -(-(block + width - 1) // block)
    # per time tap, the frequency Toeplitz matrix [n_blocks * block, block * C]
    mats = [_toeplitz(weight[:, dt], block, n_blocks, 0, dtype) for dt in range(taps)]
    return TimbralBank(block, taps, n_blocks, n_freq - width + 1, torch.cat(mats), n_channels)


def timbral_max(xt: torch.Tensor, bank: TimbralBank, chunk: int = 1) -> torch.Tensor:
    """Time-padded, batch-normed patches ``xt`` [b, T + taps - 1, F] -> the max
    over the valid bands of the layer's live filters (no bias): [b, C, T] float32.
    ``chunk`` patches per GEMM, as in :func:`temporal_max`."""
    xt = xt.to(bank.weight.dtype)
    b, n_padded, n_freq = xt.shape
    blk, nb = bank.block, bank.n_blocks
    n_frames = n_padded - bank.taps + 1
    n_out = -(-bank.n_valid // blk)
    n_in = n_out + nb - 1
    x = F.pad(xt, (0, n_in * blk - n_freq)) if n_in * blk > n_freq else xt[..., : n_in * blk]
    out = xt.new_empty((b, n_frames, bank.channels))
    for p in range(0, b, chunk):
        xc = x[p : p + chunk]
        n = len(xc)
        # A[(b, t, j), (dt, i, s)] = x[b, t + dt, (j + i) blk + s]
        win = xc.unfold(1, bank.taps, 1)  # [n, T, n_in * blk, taps]
        win = win.reshape(n, n_frames, n_in, blk, bank.taps).unfold(2, nb, 1)
        a = win.permute(0, 1, 2, 4, 5, 3).reshape(n * n_frames * n_out, -1)
        y = (a @ bank.weight).view(n * n_frames, n_out * blk, bank.channels)
        y[:, bank.n_valid :] = -torch.inf  # the last block's bands past the valid ones
        # the max over bands in two steps, each over an axis with a long contiguous inner one
        y = y.view(n * n_frames, n_out, blk * bank.channels).amax(1)
        torch.amax(y.view(n, n_frames, blk, bank.channels), 2, out=out[p : p + chunk])
    return out.transpose(1, 2).float()


# --------------------------------------------------------------------------------------------
# the network's convolutions in bfloat16
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FastLayers:
    """The bfloat16 matrices of one network, built from its prepared float32 layers."""

    timbral: tuple[TimbralBank, ...]
    temporal: TemporalBank
    mid: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # per mid-end layer: weight, bias


def prepare(front: list, mid: list, n_timbral: int, kernels: list[int], n_freq: int) -> FastLayers:
    """``front``/``mid``: the network's prepared layers (``model._Layer``), the first
    ``n_timbral`` of ``front`` timbral, the rest temporal with ``kernels`` taps."""
    timbral = tuple(timbral_bank(layer.weight[:, 0], n_freq) for layer in front[:n_timbral])
    temporal = temporal_bank([layer.weight[:, 0, :, 0] for layer in front[n_timbral:]], kernels)
    mids = tuple((layer.weight.bfloat16(), layer.bias.bfloat16()) for layer in mid)
    return FastLayers(timbral, temporal, mids)


def frontend(x: torch.Tensor, front: list, fast: FastLayers) -> list[torch.Tensor]:
    """Batch-normed patches ``x`` [b, T, F] float32 -> per front-end layer, the max over
    frequency of its live filters plus their bias, [b, n_live, T] float32 (what the exact
    path feeds to ``_Layer.fill`` and the pooled ReLU + batch norm)."""
    xb = x.to(torch.bfloat16)
    xt = F.pad(xb, (0, 0, 3, 3))  # timbral: 7 frames, zero-padded by 3
    pooled = [timbral_max(xt, bank) for bank in fast.timbral]
    pooled += temporal_max(xb, fast.temporal)
    return [p + layer.bias[:, None] for p, layer in zip(pooled, front, strict=True)]


def mid_conv(x: torch.Tensor, weight_bias: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """A mid-end layer's 7-frame convolution (zero-padded by 3) in bfloat16: [b, C, T] float32."""
    weight, bias = weight_bias
    return F.conv1d(x.to(torch.bfloat16), weight, bias, padding=3).float()
