"""musicnn (Pons & Serra, 2019) re-implemented in PyTorch, with the authors' trained weights.

The original package (``musicnn`` 0.1.0, ISC licence, MTG-UPF) is TensorFlow-1 code. This module
re-implements its ``build_musicnn`` graph layer for layer, in inference mode only, and loads the
``MSD_musicnn`` / ``MTT_musicnn`` checkpoints converted by ``tools/convert_musicnn.py`` (see
``weights/README.md``). ``tests/test_musicnn.py`` checks the outputs against the TensorFlow graph.

Two bugs of the original are deliberately *not* reproduced:

* its log-mel input is cast to float16 before ``log10(10000 x + 1)``, so ``10000 x`` overflows to
  ``inf`` on loud music (any mel power above ~6.5); here everything is float32;
* its ``extractor()`` returns the penultimate layer (and cnn1..3) of the first batch for every
  patch after the first (stale loop variables); here every patch gets its own.

Input pipeline (as musicnn): mono audio at 16 kHz, |STFT|^2 with n_fft 512, hop 256, Hann window,
centred frames, 96 Slaney mel bands (librosa defaults), then ``log10(10000 x + 1)``; the network
sees non-overlapping patches of 187 frames (3 s).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from moodscope.errors import ConfigError, ModelError
from moodscope.musicnn import amx as _fast
from moodscope.musicnn import fast as _precision
from moodscope.musicnn.inputs import (  # noqa: F401 (re-exported: the port's input)
    FFT_HOP,
    FFT_SIZE,
    N_MELS,
    PATCH_FRAMES,
    SAMPLE_RATE,
    log_mel,
    log_mel_batch,
    mel_filterbank,
    patches,
)
from moodscope.musicnn.tags import MODEL_NAMES, WEIGHTS_DIR, check_name, musicnn_tags

__all__ = [
    "MODEL_NAMES",
    "Musicnn",
    "load_musicnn",
    "musicnn_tags",
]

# tf.compat.v1.layers.batch_normalization's default epsilon (the checkpoints were trained with it).
_BN_EPS = 1e-3


# --------------------------------------------------------------------------------------------
# network
# --------------------------------------------------------------------------------------------


def _bn(n: int) -> nn.BatchNorm1d:
    # BatchNorm1d holds the (gamma, beta, moving mean/var) of any per-channel TF batch norm; the
    # forward pass applies them itself through _affine() so the layers can be pooled first.
    return nn.BatchNorm1d(n, eps=_BN_EPS)


def _affine(bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with ``bn(x) == scale * x + shift`` in inference mode."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


DEAD_WEIGHT = 1e-20
"""A filter whose weights all lie below this in magnitude is dead and is not computed.

Weight decay drove many of musicnn's filters to ~1e-30 (MSD_musicnn: 164 of 204 and 183 of
204 timbral filters, 44 of 64 in the first mid-end layer; the smallest live filter peaks at
~1e-14, so the gap is 16 orders of magnitude). Such a filter adds at most ~5e-25 x max|input|
to its bias, far below float32's resolution of any bias here (>= 5e-5): its output *is* its
bias, so skipping it changes nothing but the time."""


@dataclass(frozen=True)
class _Layer:
    """A convolution, its ReLU and batch norm, prepared to run on its live filters only.

    ``weight``/``bias`` hold the live filters (``live``), ``bias_all`` every channel's bias
    (a dead channel's output). For a front-end layer, pooled over frequency, each channel's
    weights and biases are multiplied by the sign of its batch-norm scale (``sign``; see
    :func:`_pool_relu_bn`). ``spectral`` holds the frequency-path matrices of a timbral layer
    (:func:`_spectral_filters`) when that path is used.
    """

    live: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    bias_all: torch.Tensor
    sign: torch.Tensor
    scale: torch.Tensor
    shift: torch.Tensor
    spectral: tuple[torch.Tensor, torch.Tensor] | None = None

    def fill(self, live_out: torch.Tensor) -> torch.Tensor:
        """[b, n_live, T] outputs of the live filters -> [b, C, T], dead channels at their bias."""
        if len(self.live) == len(self.bias_all):
            return live_out
        b, _, t = live_out.shape
        out = self.bias_all.view(1, -1, 1).expand(b, -1, t).clone()
        out[:, self.live] = live_out
        return out


def _prepare(
    conv: nn.Module, bn: nn.BatchNorm1d, *, pooled: bool, spectral: bool, dead_weight: float
) -> _Layer:
    """``conv`` + ``bn`` as a :class:`_Layer` (``pooled``: followed by a max over frequency,
    so the batch norm's sign is folded in; ``spectral``: also the frequency-path matrices;
    filters whose weights all lie below ``dead_weight`` are left out)."""
    scale, shift = _affine(bn)
    sign = torch.where(scale < 0, -1.0, 1.0).to(scale.dtype) if pooled else torch.ones_like(scale)
    weight = conv.weight * sign.view(-1, *([1] * (conv.weight.ndim - 1)))
    bias = conv.bias * sign
    live = torch.nonzero(conv.weight.flatten(1).abs().amax(1) >= dead_weight).flatten()
    layer_weight = weight[live].contiguous()
    return _Layer(
        live,
        layer_weight,
        bias[live],
        bias,
        sign,
        scale,
        shift,
        _spectral_filters(layer_weight, N_MELS) if spectral else None,
    )


def _pool_relu_bn(
    pooled: torch.Tensor, sign: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor
) -> torch.Tensor:
    """``bn(relu(.))`` of a per-channel max-pooled, sign-folded conv output [B, C, T].

    musicnn applies ReLU, then batch norm, then a max over the whole frequency axis. Pooling
    first is exact and does the elementwise work on a tensor 30-96x smaller: ReLU commutes with
    max, and so does an affine map with positive scale. A channel with a *negative* BN scale
    needs ``min_f z = -max_f(-z)`` instead, so its conv weights and bias were negated
    (:func:`_prepare`) and its pooled value is negated back here; negation is exact.
    """
    return torch.relu(pooled * sign[:, None]) * scale[:, None] + shift[:, None]


# --------------------------------------------------------------------------------------------
# the timbral convolutions through the frequency domain (CPU)
# --------------------------------------------------------------------------------------------
#
# A timbral filter spans 7 frames x 38 (or 67) of the 96 mel bands and is "valid" along
# frequency, so each output is a 266- (469-) term dot product and the two layers cost 2.3
# GFLOP per patch: as direct convolutions they take ~80 % of the network's time on a CPU.
# Along frequency the filter is a correlation, which the real DFT of the 96 bands turns into
# a product per DFT bin (no wrap-around: every valid output reads bands < 96). So per bin k,
#     Y_k[t, c] = sum_{d < 7} X_k[t + d] * conj(W_k[c, d])       (a batched GEMM, K = 14)
# and the valid outputs come back through the inverse real DFT restricted to them
#     y[f, (t, c)] = sum_k (Re Y_k cos - Im Y_k sin)(2 pi k f / 96) s_k   (one GEMM, K = 98).
# That is 2.6x fewer multiply-adds than the direct convolution, all of them in GEMMs that
# run near the core's peak; the sums come in another order, so outputs match the direct
# convolution to float32 rounding (~1e-6 relative), not bit for bit.


@functools.cache
def _real_dft(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and -sin of the real DFT of length ``n``: [n, n // 2 + 1] each, float64."""
    f = torch.arange(n, dtype=torch.float64)
    k = torch.arange(n // 2 + 1, dtype=torch.float64)
    angle = 2 * math.pi * torch.outer(f, k) / n
    return torch.cos(angle), -torch.sin(angle)


def _spectral_filters(weight: torch.Tensor, n_freq: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A [C, 1, taps, width] timbral filter bank as the two matrices of the frequency path.

    Returns ``rhs`` [2 K, 2 taps, C]: for the real part of the product (first K batches)
    and the imaginary part (last K), the weights to apply to the ``[Re X, Im X]`` taps of
    :func:`_spectral_taps`; and ``inverse`` [n_valid, 2 K]: the inverse real DFT onto the
    ``n_freq - width + 1`` valid frequency positions.
    """
    n_valid = n_freq - weight.shape[-1] + 1
    cos, msin = _real_dft(n_freq)
    padded = F.pad(weight[:, 0].double(), (0, n_freq - weight.shape[-1]))  # [C, taps, n_freq]
    w_re = torch.einsum("cdf,fk->kdc", padded, cos)
    w_im = torch.einsum("cdf,fk->kdc", padded, msin)
    # X * conj(W) = (Xr Wr + Xi Wi) + i (Xi Wr - Xr Wi), with the taps ordered [Xr..., Xi...]
    rhs = torch.cat([torch.cat([w_re, w_im], 1), torch.cat([-w_im, w_re], 1)])
    k = torch.arange(n_freq // 2 + 1, dtype=torch.float64)
    angle = 2 * math.pi * torch.outer(torch.arange(n_valid, dtype=torch.float64), k) / n_freq
    s = torch.full_like(k, 2.0 / n_freq)
    s[0] = s[-1] = 1.0 / n_freq  # DC and Nyquist bins appear once in a real spectrum
    inverse = torch.cat([s * torch.cos(angle), -s * torch.sin(angle)], 1)
    return rhs.float().contiguous(), inverse.float().contiguous()


def _spectral_taps(x: torch.Tensor, taps: int) -> torch.Tensor:
    """[b, T + taps - 1, n_freq] time-padded input -> [2 K, b T, 2 taps]: per DFT bin, the
    real then imaginary parts of the ``taps`` frames each output frame reads (twice over,
    once for the real and once for the imaginary part of the product)."""
    cos, msin = _real_dft(x.shape[-1])
    spectrum = torch.cat([x @ cos.to(x.dtype), x @ msin.to(x.dtype)], -1)  # [b, T', 2K]
    b, n_bins = x.shape[0], cos.shape[1]
    windows = spectrum.unfold(1, taps, 1)  # [b, T, 2K, taps]
    n_frames = windows.shape[1]
    windows = windows.reshape(b, n_frames, 2, n_bins, taps).permute(3, 0, 1, 2, 4)
    windows = windows.reshape(n_bins, b * n_frames, 2 * taps)
    return torch.cat([windows, windows])


def _spectral_max(taps: torch.Tensor, rhs: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """max over the valid frequency positions of the correlation: [b T, C] (no bias)."""
    spectrum = torch.bmm(taps, rhs)  # [2K, bT, C]
    n_rows, n_channels = spectrum.shape[1], spectrum.shape[2]
    out = inverse @ spectrum.view(spectrum.shape[0], n_rows * n_channels)  # [n_valid, bT C]
    return out.amax(0).view(n_rows, n_channels)


class Musicnn(nn.Module):
    """The musicnn network (``build_musicnn`` of musicnn 0.1.0), inference only.

    Front end: batch norm of the input, then five "musically motivated" convolutions read the
    [time, frequency] patch -- two timbral (7 frames x 38 / 67 bands, 204 filters each, time
    zero-padded by 3) and three temporal (128 / 64 / 32 frames x 1 band, 51 filters each, TF
    ``same`` padding) -- each followed by ReLU, batch norm and a max over all frequencies,
    giving 561 channels per frame. Mid end: three 1-D convolutions over time (7 frames,
    ``num_filt_midend`` filters, zero-padded by 3; ReLU then batch norm), the 2nd and 3rd with
    residual connections; front- and mid-end outputs are concatenated (561 + 3 x 64 = 753).
    Back end: max and mean over time (interleaved per channel, as TF's flatten orders them),
    batch norm, dense ``num_units_backend`` + ReLU + batch norm (the "penultimate" layer),
    dense ``n_tags`` logits, sigmoid. Dropout layers are identity at inference and omitted.

    Parameters
    ----------
    n_tags : int
        Output tags (50 for both shipped models).
    n_mels : int
        Mel bands of the input (96).
    num_filt_midend : int
        Filters of each mid-end layer (64; 512 for the unshipped ``MSD_musicnn_big``).
    num_units_backend : int
        Width of the penultimate layer (200; 500 for ``MSD_musicnn_big``).
    """

    _TIMBRAL = (("timbral_74", 0.4), ("timbral_77", 0.7))
    _TEMPORAL = (("temporal_128", 128), ("temporal_64", 64), ("temporal_32", 32))

    def __init__(
        self,
        n_tags: int = 50,
        n_mels: int = N_MELS,
        num_filt_midend: int = 64,
        num_units_backend: int = 200,
    ) -> None:
        super().__init__()
        self.n_mels = n_mels
        n_timbral = int(1.6 * 128)  # 204, as musicnn's int(num_filt * 128)
        n_temporal = int(1.6 * 32)  # 51
        self.bn_input = _bn(1)
        for name, frac in self._TIMBRAL:
            setattr(self, name, nn.Conv2d(1, n_timbral, (7, int(frac * n_mels))))
            setattr(self, "bn_" + name, _bn(n_timbral))
        for name, k in self._TEMPORAL:
            setattr(self, name, nn.Conv2d(1, n_temporal, (k, 1)))
            setattr(self, "bn_" + name, _bn(n_temporal))
        n_front = 2 * n_timbral + 3 * n_temporal  # 561
        self.midend_1 = nn.Conv1d(n_front, num_filt_midend, 7, padding=3)
        self.bn_midend_1 = _bn(num_filt_midend)
        self.midend_2 = nn.Conv1d(num_filt_midend, num_filt_midend, 7, padding=3)
        self.bn_midend_2 = _bn(num_filt_midend)
        self.midend_3 = nn.Conv1d(num_filt_midend, num_filt_midend, 7, padding=3)
        self.bn_midend_3 = _bn(num_filt_midend)
        n_mid = n_front + 3 * num_filt_midend  # 753
        self.bn_pool = _bn(2 * n_mid)
        self.dense = nn.Linear(2 * n_mid, num_units_backend)
        self.bn_dense = _bn(num_units_backend)
        self.output = nn.Linear(num_units_backend, n_tags)
        self.cpu_chunk = 1
        """Patches per front-end pass on CPU (speed only; results do not depend on it)."""
        self.timbral_path = "auto"
        """How the timbral convolutions run: ``"conv"`` (direct ``conv2d``), ``"spectral"``
        (through the DFT of the mel axis, 2.6x fewer operations; see :func:`_spectral_max`)
        or ``"auto"``: spectral on CPU, conv on an accelerator. Both agree to float32
        rounding."""
        self.dead_weight = DEAD_WEIGHT
        """Filters whose weights all lie below this are not computed (see
        :data:`DEAD_WEIGHT`); 0 computes every filter."""
        self.eval()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tag probabilities and penultimate features of a batch of patches.

        Parameters
        ----------
        x : torch.Tensor [shape=(B, T, n_mels), float32]
            Log-mel patches (``T`` = 187 for the trained models; the network is fully
            convolutional in time, so other lengths run too).

        Returns
        -------
        taggram : torch.Tensor [shape=(B, n_tags)]
            Sigmoid tag probabilities.
        penultimate : torch.Tensor [shape=(B, num_units_backend)]
            The batch-normalised penultimate dense layer (musicnn's ``penultimate`` feature).
        """
        out = self.features(x)
        return out["taggram"], out["penultimate"]

    def features(self, x: torch.Tensor, *, precision: str = "float32") -> dict[str, torch.Tensor]:
        """Every output musicnn's ``extractor()`` names, per patch.

        Parameters
        ----------
        x : torch.Tensor [shape=(B, T, n_mels), float32]
            Log-mel patches, as for :meth:`forward`.
        precision : str
            ``"float32"``: exact (every operation in float32). ``"bfloat16"``: the front-
            and mid-end convolutions as bfloat16 GEMMs (:mod:`moodscope.musicnn.fast`; fast
            on CPUs with AMX), the batch norms and the back end in float32.

        Returns
        -------
        dict of torch.Tensor
            ``taggram`` [B, n_tags] and ``penultimate`` [B, num_units_backend] as from
            :meth:`forward`; ``max_pool`` and ``mean_pool`` [B, 561 + 3 num_filt_midend]:
            the front- and mid-end feature maps pooled over time (before the back end's
            batch norm), musicnn's ``max_pool`` / ``mean_pool`` features.
        """
        if x.ndim != 3 or x.shape[2] != self.n_mels:
            raise ConfigError(f"expected (batch, frames, {self.n_mels}); got {tuple(x.shape)}")
        if precision not in _precision.PRECISIONS:
            choices = _precision.PRECISIONS
            raise ConfigError(f"precision must be one of {choices}; got {precision!r}")
        front, mid = self._layers(x.device)
        front_pools = None
        if precision == "bfloat16":
            front_out, front_pools, convs = self._frontend_bf16(x, front, mid)
        else:
            # On CPU the front end runs patch by patch: its intermediate maps (~15-25 MB per
            # patch) then stay in cache, measured faster than one 20-patch batch on one core.
            step = self.cpu_chunk if x.device.type == "cpu" else max(len(x), 1)
            front_out = torch.cat(
                [self._frontend(x[i : i + step], front) for i in range(0, len(x), step)]
            )  # [B, 561, T]
            convs = [None] * len(mid)

        m1 = self._mid(mid[0], front_out, convs[0])
        m2 = self._mid(mid[1], m1, convs[1]) + m1
        m3 = self._mid(mid[2], m2, convs[2]) + m2
        if front_pools is None:
            feats = torch.cat([front_out, m1, m2, m3], dim=1)  # [B, 753, T]
            max_pool, mean_pool = feats.amax(dim=2), feats.mean(dim=2)
        else:  # the fast path pooled the front end itself (its live channels only)
            mids = torch.cat([m1, m2, m3], dim=1)
            max_pool = torch.cat([front_pools[0], mids.amax(dim=2)], dim=1)
            mean_pool = torch.cat([front_pools[1], mids.mean(dim=2)], dim=1)
        # TF concatenates [max, mean] on a trailing axis and flattens: channel-major interleave.
        pooled = self.bn_pool(torch.stack([max_pool, mean_pool], dim=2).flatten(1))
        penultimate = self.bn_dense(torch.relu(self.dense(pooled)))
        taggram = torch.sigmoid(self.output(penultimate))
        return {
            "taggram": taggram,
            "penultimate": penultimate,
            "max_pool": max_pool,
            "mean_pool": mean_pool,
        }

    def _front_names(self) -> list[str]:
        return [name for name, _ in self._TIMBRAL] + [name for name, _ in self._TEMPORAL]

    def _layers(self, device: torch.device) -> tuple[list[_Layer], list[_Layer]]:
        """The front- and mid-end layers prepared for ``device`` (cached until a weight
        changes, or ``timbral_path`` or ``dead_weight`` does)."""
        path = self.timbral_path
        if path == "auto":
            path = "spectral" if device.type == "cpu" else "conv"
        if path not in ("conv", "spectral"):
            raise ConfigError(f"timbral_path must be 'auto', 'conv' or 'spectral'; got {path!r}")
        tensors = [*self.parameters(), *self.buffers()]
        key = (
            str(device),
            path,
            self.dead_weight,
            tuple((t.data_ptr(), t._version) for t in tensors),
        )
        cached = getattr(self, "_prepared", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        timbral = {name for name, _ in self._TIMBRAL}
        with torch.no_grad():
            front = [
                _prepare(
                    getattr(self, name),
                    getattr(self, "bn_" + name),
                    pooled=True,
                    spectral=path == "spectral" and name in timbral,
                    dead_weight=self.dead_weight,
                )
                for name in self._front_names()
            ]
            mid = [
                _prepare(
                    getattr(self, f"midend_{i}"),
                    getattr(self, f"bn_midend_{i}"),
                    pooled=False,
                    spectral=False,
                    dead_weight=self.dead_weight,
                )
                for i in (1, 2, 3)
            ]
        self._prepared = (key, (front, mid))
        return front, mid

    def _frontend(self, x: torch.Tensor, layers: list[_Layer]) -> torch.Tensor:
        """Front end of patches ``x`` [b, T, n_mels] -> [b, 561, T]."""
        scale, shift = _affine(self.bn_input)
        x = (x * scale + shift).unsqueeze(1)  # [b, 1, T, F]; TF pads *after* this batch norm
        out = []
        # Timbral: 7-frame kernels, time zero-padded by 3 on both sides (F.pad's order is
        # (freq_left, freq_right, time_top, time_bottom)); valid in frequency.
        xt = F.pad(x, (0, 0, 3, 3))
        n_timbral = len(self._TIMBRAL)
        taps = None
        for layer in layers[:n_timbral]:
            if layer.spectral is None:
                pooled = F.conv2d(xt, layer.weight, layer.bias).amax(dim=3)
            else:
                if taps is None:
                    taps = _spectral_taps(xt[:, 0], 7)
                pooled = _spectral_max(taps, *layer.spectral).view(len(x), -1, len(layer.live))
                pooled = pooled.transpose(1, 2) + layer.bias[:, None]
            out.append(_pool_relu_bn(layer.fill(pooled), layer.sign, layer.scale, layer.shift))
        # Temporal: TF "same" padding with an even kernel pads (k-1)//2 before, the rest after.
        for (_, k), layer in zip(self._TEMPORAL, layers[n_timbral:], strict=True):
            before = (k - 1) // 2
            xp = F.pad(x, (0, 0, before, k - 1 - before))
            pooled = F.conv2d(xp, layer.weight, layer.bias).amax(dim=3)
            out.append(_pool_relu_bn(layer.fill(pooled), layer.sign, layer.scale, layer.shift))
        return torch.cat(out, dim=1)

    def _frontend_bf16(
        self, x: torch.Tensor, front: list[_Layer], mid: list[_Layer]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], list]:
        """The front end of all patches ``x`` at once through bfloat16 GEMMs: its live
        channels, every channel's max and mean over time, and the mid-end convolutions to
        use (see :mod:`moodscope.musicnn.fast`)."""
        key = (self._prepared[0], "bfloat16")
        cached = getattr(self, "_prepared_bf16", None)
        if cached is None or cached[0] != key:
            with torch.no_grad():
                kernels = [k for _, k in self._TEMPORAL]
                layers = _fast.prepare(front, mid, len(self._TIMBRAL), kernels, self.n_mels)
            self._prepared_bf16 = cached = (key, layers)
        layers = cached[1]
        scale, shift = _affine(self.bn_input)

        def relu_bn(pooled: torch.Tensor, layer: _Layer) -> torch.Tensor:
            live = layer.live
            return _pool_relu_bn(pooled, layer.sign[live], layer.scale[live], layer.shift[live])

        live, time_max, time_mean = _fast.frontend(x * scale + shift, front, layers, relu_bn)
        convs = [functools.partial(_fast.first_mid_conv, fast=layers)]
        convs += [functools.partial(_fast.mid_conv, weight_bias=wb) for wb in layers.mid[1:]]
        return live, (time_max, time_mean), convs

    @staticmethod
    def _mid(layer: _Layer, x: torch.Tensor, conv=None) -> torch.Tensor:
        """A mid-end layer: 7-frame conv (zero-padded by 3; ``conv(x)`` when given), ReLU,
        batch norm."""
        out = F.conv1d(x, layer.weight, layer.bias, padding=3) if conv is None else conv(x)
        return torch.relu(layer.fill(out)) * layer.scale[:, None] + layer.shift[:, None]

    def train(self, mode: bool = True) -> Musicnn:
        # The batch norms are applied as fixed affine maps in forward(); training mode would
        # silently mean something else, so refuse it.
        if mode:
            raise ModelError("Musicnn is inference-only (converted weights); use eval()")
        return super().train(False)


# --------------------------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------------------------


def load_musicnn(name: str = "MSD_musicnn", device: str | torch.device = "cpu") -> Musicnn:
    """Load a converted musicnn model (cached: one instance per name and device per process).

    Parameters
    ----------
    name : str
        ``"MSD_musicnn"`` (Million Song Dataset tags) or ``"MTT_musicnn"`` (MagnaTagATune).
    device : str or torch.device
        Where to put the weights.

    Returns
    -------
    Musicnn
        In eval mode. Shared between callers: do not modify it.

    Raises
    ------
    ModelError
        Unknown name, or a missing/corrupt weight file.
    """
    check_name(name)
    return _load(name, str(torch.device(device)))


@functools.cache
def _load(name: str, device: str) -> Musicnn:
    path = WEIGHTS_DIR / f"{name}.pt"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # FileNotFoundError, unpickling errors, truncated zip ...
        raise ModelError(f"cannot read musicnn weights {path}: {exc}") from exc
    model = Musicnn(n_tags=len(musicnn_tags(name)))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{path} is not a musicnn state_dict: {exc}") from exc
    model.requires_grad_(False)
    return model.to(device).eval()
