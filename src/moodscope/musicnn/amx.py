"""musicnn's convolutions as bfloat16 GEMMs, for CPUs with AMX (oneDNN through PyTorch): the
research extra's fast path (:mod:`moodscope.musicnn.fast` decides when it runs).

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

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

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


# The max over frequency reads every GEMM output back once: as a bfloat16 reduction it costs
# as much as the GEMM itself; on integers it is 8x cheaper. An IEEE float's bits, read as a
# signed integer of the same width, order the non-negative floats as the floats themselves,
# put every negative float below every non-negative one, and order the negative floats in
# reverse. So the float max of a set is its integer max where that is >= 0 (a non-negative
# member exists), else its integer min (all negative: the one nearest zero) -- exactly.
_BITS = {torch.bfloat16: torch.int16, torch.float32: torch.int32}

# AMX multiplies bfloat16 tiles of 32 along K and 16 along N: a GEMM whose K or N is not a
# multiple of those pads them itself, at a cost (K 97 -> 96 measured 1.4x faster); zero rows
# and columns here are cheaper.
_ALIGN_K, _ALIGN_N = 32, 16


def _aligned(n: int, to: int) -> int:
    return -(-n // to) * to


def _padded(w: torch.Tensor) -> torch.Tensor:
    """GEMM weights [K, N] with zero rows and columns up to the AMX tile sizes."""
    k, n = _aligned(w.shape[0], _ALIGN_K), _aligned(w.shape[1], _ALIGN_N)
    return F.pad(w, (0, n - w.shape[1], 0, k - w.shape[0]))


def _float_max(hi: torch.Tensor, lo: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The float max from the integer max ``hi`` and integer min ``lo`` of the same set."""
    return torch.where(hi >= 0, hi, lo).view(dtype)


@dataclass(frozen=True)
class TemporalBank:
    """The three temporal layers as GEMMs on one input matrix (see module docstring).

    All three read the input padded for the longest filter; a shorter filter's window
    starts ``before - (k - 1) // 2`` frames later, so its GEMM reads the columns from there
    on (rounded down to a tile) to where its window ends."""

    block: int
    before: int  # frames of zero padding before the patch (the longest filter's)
    n_blocks: int  # input blocks per output block, as far as any layer reads
    n_cols: int  # columns of the input matrix: n_blocks * block of data, then zeros
    columns: tuple[tuple[int, int], ...]  # per layer: [lo, hi) columns of the input it reads
    weights: tuple[torch.Tensor, ...]  # per layer: [width, >= block * C], zero-padded
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
    before = (max(kernels) - 1) // 2
    step = math.lcm(block, _ALIGN_K)  # a GEMM starts at a column where blocks and tiles do
    mats, ranges, reach = [], [], 0
    for w, k in zip(weights, kernels, strict=True):
        shift = before - (k - 1) // 2  # where this filter's window starts in the long one
        lo = shift // step * step  # the columns before lo it would multiply by zeros
        n_blocks = -(-(shift - lo + block + k - 1) // block)
        mats.append(_padded(_toeplitz(w, block, n_blocks, shift - lo, dtype)))
        ranges.append((lo, lo + mats[-1].shape[0]))
        reach = max(reach, lo // block + n_blocks)
    channels = tuple(w.shape[0] for w in weights)
    n_cols = max(hi for _, hi in ranges)
    return TemporalBank(block, before, reach, n_cols, tuple(ranges), tuple(mats), channels)


def temporal_max(x: torch.Tensor, bank: TemporalBank, chunk: int = 1) -> list[torch.Tensor]:
    """Batch-normed patches ``x`` [b, T, F] -> per temporal layer, the max over frequency of
    its live filters' outputs (no bias): [b, C_i, T] float32.

    ``chunk`` patches go through each GEMM at once: one patch's outputs (~1 MB in bfloat16)
    stay in the core's L2 cache for the max that reads them back; 20 patches' would not."""
    dtype, bits = bank.weights[0].dtype, _BITS[bank.weights[0].dtype]
    b, n_frames, n_freq = x.shape
    blk = bank.block
    n_out = -(-n_frames // blk)  # output blocks
    n_in = n_out + bank.n_blocks - 1
    after = n_in * blk - n_frames - bank.before
    xp = F.pad(x.to(dtype), (0, 0, bank.before, after))  # [b, n_in * blk, F]
    # A[(b, j, f), (i, s)] = xp[b, (j + i) blk + s, f]: one copy, n_blocks x the input
    blocks = xp.view(b, n_in, blk, n_freq).unfold(1, bank.n_blocks, 1)  # [b, J, blk, F, nb]
    a = xp.new_empty((b, n_out * n_freq, bank.n_cols))
    a[..., bank.n_blocks * blk :] = 0  # the GEMMs' K padding
    data = a[..., : bank.n_blocks * blk].unflatten(-1, (bank.n_blocks, blk))
    data.view(b, n_out, n_freq, bank.n_blocks, blk).copy_(blocks.permute(0, 1, 3, 4, 2))
    hi = [xp.new_empty((b, n_out, blk * c), dtype=bits) for c in bank.channels]
    lo = [xp.new_empty((b, n_out, blk * c), dtype=bits) for c in bank.channels]
    for p in range(0, b, chunk):
        ap = a[p : p + chunk].reshape(-1, a.shape[2])
        n = len(ap) // (n_out * n_freq)
        for i, ((lo_col, hi_col), w) in enumerate(zip(bank.columns, bank.weights, strict=True)):
            y = (ap[:, lo_col:hi_col] @ w).view(bits).view(n, n_out, n_freq, -1)
            y = y[..., : hi[i].shape[-1]]  # [(b, J), F, (r, c)]
            torch.amax(y, 2, out=hi[i][p : p + chunk])
            torch.amin(y, 2, out=lo[i][p : p + chunk])
    out = []
    for h, m, c in zip(hi, lo, bank.channels, strict=True):
        v = _float_max(h, m, dtype).view(b, n_out * blk, c)[:, :n_frames]
        out.append(v.transpose(1, 2).float())
    return out


@dataclass(frozen=True)
class TimbralBank:
    """A timbral layer (``taps`` frames x ``width`` bands, valid along frequency) as one
    GEMM blocked along frequency: output band ``f = j block + r`` reads input blocks
    ``j .. j + n_blocks - 1`` over ``taps`` frames."""

    block: int
    taps: int
    n_blocks: int
    n_valid: int  # output positions along frequency
    weight: torch.Tensor  # [>= taps * n_blocks * block, >= block * C], zero-padded
    channels: int


def timbral_bank(
    weight: torch.Tensor,
    n_freq: int,
    block: int = 8,
    dtype: torch.dtype = torch.bfloat16,
) -> TimbralBank:
    """``weight``: [C, taps, width] live, sign-folded filters of a timbral layer over
    ``n_freq`` bands (``dtype`` as for :func:`temporal_bank`)."""
    n_channels, taps, width = weight.shape
    n_blocks = -(-(block + width - 1) // block)
    # per time tap, the frequency Toeplitz matrix [n_blocks * block, block * C]
    mats = [_toeplitz(weight[:, dt], block, n_blocks, 0, dtype) for dt in range(taps)]
    full = _padded(torch.cat(mats))
    return TimbralBank(block, taps, n_blocks, n_freq - width + 1, full, n_channels)


def timbral_max(xt: torch.Tensor, bank: TimbralBank, chunk: int = 1) -> torch.Tensor:
    """Time-padded, batch-normed patches ``xt`` [b, T + taps - 1, F] -> the max over the
    valid bands of the layer's live filters (no bias): [b, C, T] float32. ``chunk`` patches
    per GEMM, as in :func:`temporal_max`."""
    dtype, bits = bank.weight.dtype, _BITS[bank.weight.dtype]
    xt = xt.to(dtype)
    b, n_padded, n_freq = xt.shape
    blk, nb, n_ch = bank.block, bank.n_blocks, bank.channels
    n_frames = n_padded - bank.taps + 1
    n_out = -(-bank.n_valid // blk)
    n_in = n_out + nb - 1
    n_data = bank.taps * nb * blk
    x = F.pad(xt, (0, n_in * blk - n_freq)) if n_in * blk > n_freq else xt[..., : n_in * blk]
    past = bank.n_valid - (n_out - 1) * blk  # the last block's first band past the valid ones
    hi = xt.new_empty((b * n_frames, n_ch), dtype=bits)
    lo = xt.new_empty((b * n_frames, n_ch), dtype=bits)
    for p in range(0, b, chunk):
        xc = x[p : p + chunk]
        n = len(xc)
        # A[(b, t, j), (dt, i, s)] = x[b, t + dt, (j + i) blk + s]
        win = xc.unfold(1, bank.taps, 1)  # [n, T, n_in * blk, taps]
        win = win.reshape(n, n_frames, n_in, blk, bank.taps).unfold(2, nb, 1)
        a = xc.new_empty((n * n_frames * n_out, bank.weight.shape[0]))
        a[:, n_data:] = 0  # the GEMM's K padding
        data = a[:, :n_data].unflatten(-1, (bank.taps, nb, blk))
        data.view(n, n_frames, n_out, bank.taps, nb, blk).copy_(win.permute(0, 1, 2, 4, 5, 3))
        y = (a @ bank.weight).view(n * n_frames, n_out, -1)[..., : blk * n_ch]
        if past < blk:  # no max picks -inf (as an integer: the largest negative, never the min)
            y[:, -1].view(-1, blk, n_ch)[:, past:] = -torch.inf
        y = y.view(bits)
        # over the blocks j, then over r within a block: (max of maxes, min of mins)
        rows = slice(p * n_frames, (p + n) * n_frames)
        torch.amax(y.amax(1).view(-1, blk, n_ch), 1, out=hi[rows])
        torch.amin(y.amin(1).view(-1, blk, n_ch), 1, out=lo[rows])
    v = _float_max(hi, lo, dtype).view(b, n_frames, n_ch)
    return v.transpose(1, 2).float()


# --------------------------------------------------------------------------------------------
# the network's convolutions in bfloat16
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FastLayers:
    """The bfloat16 matrices of one network, built from its prepared float32 layers.

    A dead front-end filter (``model.DEAD_WEIGHT``) outputs its bias, so after its ReLU and
    batch norm a constant (``dead_values``); most of the 561 channels are. The first mid-end
    layer reads only the live ones (``live``: their indices among the 561, in order), and
    the constants' share of its output is ``dead_taps`` [C, 7] per tap: their sum wherever
    the 7-frame window lies inside the patch, a part of it at the zero-padded edges."""

    timbral: tuple[TimbralBank, ...]
    temporal: TemporalBank
    mid: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # per mid-end layer: weight, bias
    live: torch.Tensor
    dead_values: torch.Tensor  # [561] float32 (meaningful where not live)
    dead_taps: torch.Tensor


def prepare(front: list, mid: list, n_timbral: int, kernels: list[int], n_freq: int) -> FastLayers:
    """``front``/``mid``: the network's prepared layers (``model._Layer``), the first
    ``n_timbral`` of ``front`` timbral, the rest temporal with ``kernels`` taps."""

    timbral = tuple(timbral_bank(layer.weight[:, 0], n_freq) for layer in front[:n_timbral])
    temporal = temporal_bank([layer.weight[:, 0, :, 0] for layer in front[n_timbral:]], kernels)
    live, values, offset = [], [], 0
    for layer in front:
        live.append(layer.live + offset)
        values.append(torch.relu(layer.bias_all * layer.sign) * layer.scale + layer.shift)
        offset += len(layer.bias_all)
    live, values = torch.cat(live), torch.cat(values)
    first = mid[0].weight  # [C, 561, 7]
    dead = torch.ones(offset, dtype=torch.bool)
    dead[live] = False
    dead_taps = torch.einsum("ckd,k->cd", first[:, dead].double(), values[dead].double()).float()
    mids = [(first[:, live].bfloat16(), mid[0].bias.bfloat16())]
    mids += [(layer.weight.bfloat16(), layer.bias.bfloat16()) for layer in mid[1:]]
    return FastLayers(timbral, temporal, tuple(mids), live, values, dead_taps)


def first_mid_conv(x: torch.Tensor, fast: FastLayers) -> torch.Tensor:
    """The first mid-end layer's convolution of the live front-end channels ``x``
    [b, n_live, T], plus the dead channels' constant share: [b, C, T] float32."""
    n_frames = x.shape[2]
    inside = torch.ones(1, 1, n_frames)  # where each tap reads the patch, not the padding
    share = F.conv1d(inside, fast.dead_taps[:, None], padding=3, groups=1)  # [1, C, T]
    return mid_conv(x, fast.mid[0]) + share


def frontend(
    x: torch.Tensor, front: list, fast: FastLayers, relu_bn
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch-normed patches ``x`` [b, T, F] float32 -> the live front-end channels after
    their ReLU and batch norm, [b, n_live, T] float32, and every one of the 561 channels'
    max and mean over time, [b, 561] each (a dead channel's: its constant).

    ``relu_bn(pooled, layer)``: the exact path's ReLU + batch norm of a layer's live
    channels pooled over frequency (sign-folded, bias added), which the GEMMs give to
    bfloat16 rounding."""
    xb = x.to(torch.bfloat16)
    xt = F.pad(xb, (0, 0, 3, 3))  # timbral: 7 frames, zero-padded by 3
    pooled = [timbral_max(xt, bank) for bank in fast.timbral]
    pooled += temporal_max(xb, fast.temporal)
    live = torch.cat(
        [relu_bn(p + layer.bias[:, None], layer) for p, layer in zip(pooled, front, strict=True)],
        1,
    )
    b = len(x)
    time_max = fast.dead_values.expand(b, -1).clone()
    time_mean = time_max.clone()
    time_max[:, fast.live] = live.amax(2)
    time_mean[:, fast.live] = live.mean(2)
    return live, time_max, time_mean


def mid_conv(x: torch.Tensor, weight_bias: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """A mid-end layer's 7-frame convolution (zero-padded by 3) in bfloat16: [b, C, T] float32."""
    weight, bias = weight_bias
    return F.conv1d(x.to(torch.bfloat16), weight, bias, padding=3).float()
