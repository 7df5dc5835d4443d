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
import json
from pathlib import Path

import librosa
import numpy as np
import soxr
import torch
import torch.nn.functional as F
from torch import nn

from moodscope.errors import ModelError

__all__ = [
    "FFT_HOP",
    "FFT_SIZE",
    "MODEL_NAMES",
    "N_MELS",
    "PATCH_FRAMES",
    "SAMPLE_RATE",
    "Musicnn",
    "load_musicnn",
    "log_mel",
    "musicnn_embed",
    "musicnn_tags",
    "patches",
]

SAMPLE_RATE = 16000
"""Rate the models were trained at (musicnn ``configuration.SR``)."""
FFT_SIZE = 512
FFT_HOP = 256
N_MELS = 96
PATCH_FRAMES = 187
"""3 s of frames: ``librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1``."""

MODEL_NAMES = ("MSD_musicnn", "MTT_musicnn")
"""Converted models. (The package's vgg baselines are not musicnn and are not converted.)"""

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

# tf.compat.v1.layers.batch_normalization's default epsilon (the checkpoints were trained with it).
_BN_EPS = 1e-3


# --------------------------------------------------------------------------------------------
# input
# --------------------------------------------------------------------------------------------


def log_mel(y: np.ndarray, sr: int) -> np.ndarray:
    """musicnn's log-mel spectrogram, computed in float32 throughout.

    Parameters
    ----------
    y : np.ndarray [shape=(n_samples,) or (n_channels, n_samples)]
        Audio; several channels are averaged to mono (librosa's downmix).
    sr : int
        Sample rate of ``y``; anything but 16000 is resampled with soxr (HQ).

    Returns
    -------
    np.ndarray [shape=(n_frames, 96), dtype=float32]
        ``log10(10000 * mel_power + 1)`` with ``n_frames = 1 + n_samples_16k // 256``.

    Notes
    -----
    musicnn 0.1.0 casts the mel power to float16 first, which overflows to ``inf`` on loud
    input; this function keeps float32. Frames are centred and the signal is reflect-padded,
    which is what librosa did when the models were trained (librosa >= 0.10 pads with zeros
    by default; the difference only touches the first and last frame).
    """
    y = np.asarray(y, dtype=np.float32)
    if y.ndim == 2:
        y = y.mean(axis=0)
    if y.ndim != 1:
        raise ValueError(f"audio must be 1-D (samples) or 2-D (channels, samples); got {y.shape}")
    if y.size == 0:
        raise ValueError("audio is empty")
    if sr != SAMPLE_RATE:
        y = soxr.resample(y, sr, SAMPLE_RATE).astype(np.float32, copy=False)
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=SAMPLE_RATE,
        n_fft=FFT_SIZE,
        hop_length=FFT_HOP,
        n_mels=N_MELS,
        pad_mode="reflect",
    )
    mel = mel.T.astype(np.float32, copy=False)
    return np.log10(np.float32(10000.0) * mel + np.float32(1.0))


def patches(
    mel: np.ndarray, patch_frames: int = PATCH_FRAMES, hop_frames: int = PATCH_FRAMES
) -> np.ndarray:
    """Cut a log-mel spectrogram into the fixed-length patches the network takes.

    Parameters
    ----------
    mel : np.ndarray [shape=(n_frames, n_mels)]
    patch_frames : int
        Frames per patch (187 = 3 s, what the models were trained on).
    hop_frames : int
        Frames between patch starts (187 = no overlap, musicnn's default).

    Returns
    -------
    np.ndarray [shape=(n_patches, patch_frames, n_mels), dtype=float32]
        Patch ``i`` starts at frame ``i * hop_frames``. As in musicnn, only whole patches are
        kept (the tail after the last whole patch is dropped), so
        ``n_patches = 1 + (n_frames - patch_frames) // hop_frames``.

    Notes
    -----
    Short-input rule (musicnn itself returns nothing and then crashes): an input shorter than
    one patch is *repeat-padded* (tiled from its start) up to ``patch_frames`` and gives one
    patch. Repeat-padding is what the models saw in training (``"pad_short": "repeat-pad"`` in
    the checkpoints' ``config.json``); zero-padding would feed them silence they never saw.
    """
    mel = np.asarray(mel, dtype=np.float32)
    if mel.ndim != 2 or mel.shape[0] == 0:
        raise ValueError(f"mel must be a non-empty (n_frames, n_mels) array; got {mel.shape}")
    if patch_frames < 1 or hop_frames < 1:
        raise ValueError("patch_frames and hop_frames must be >= 1")
    n_frames = mel.shape[0]
    if n_frames < patch_frames:
        reps = -(-patch_frames // n_frames)
        return np.tile(mel, (reps, 1))[None, :patch_frames]
    starts = np.arange(0, n_frames - patch_frames + 1, hop_frames)
    view = np.lib.stride_tricks.sliding_window_view(mel, patch_frames, axis=0)[starts]
    # sliding_window_view puts the window axis last: (n, n_mels, patch) -> (n, patch, n_mels)
    return np.ascontiguousarray(view.transpose(0, 2, 1))


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


def _signed_conv_params(
    conv: nn.Conv2d, bn: nn.BatchNorm1d
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Conv weights with the sign of each channel's BN scale folded in, plus that BN as an affine.

    musicnn applies ReLU, then batch norm, then a max over the whole frequency axis. Pooling
    first is exact and does the elementwise work on a tensor 30-96x smaller: ReLU commutes with
    max, and so does an affine map with positive scale. A channel with a *negative* BN scale
    needs ``min_f z = -max_f(-z)`` instead, so its conv weights and bias are negated here and
    its pooled value negated back (:func:`_pool_relu_bn`); negation is exact in floating point.
    """
    scale, shift = _affine(bn)
    sign = torch.where(scale < 0, -1.0, 1.0).to(scale.dtype)
    weight = conv.weight * sign.view(-1, *([1] * (conv.weight.ndim - 1)))
    return weight, conv.bias * sign, sign, scale, shift


def _pool_relu_bn(
    pooled: torch.Tensor, sign: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor
) -> torch.Tensor:
    """``bn(relu(.))`` of the per-channel max/min-pooled conv output [B, C, T]."""
    return torch.relu(pooled * sign[:, None]) * scale[:, None] + shift[:, None]


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
        if x.ndim != 3 or x.shape[2] != self.n_mels:
            raise ValueError(f"expected (batch, frames, {self.n_mels}); got {tuple(x.shape)}")
        params = [
            _signed_conv_params(getattr(self, name), getattr(self, "bn_" + name))
            for name in self._front_names()
        ]
        # On CPU the front end runs patch by patch: its conv outputs (~25 MB per patch) then
        # stay in cache, measured ~1.7x faster than one 20-patch batch on one core.
        step = self.cpu_chunk if x.device.type == "cpu" else max(len(x), 1)
        front_out = torch.cat(
            [self._frontend(x[i : i + step], params) for i in range(0, len(x), step)]
        )  # [B, 561, T]

        m1 = self._mid(self.midend_1, self.bn_midend_1, front_out)
        m2 = self._mid(self.midend_2, self.bn_midend_2, m1) + m1
        m3 = self._mid(self.midend_3, self.bn_midend_3, m2) + m2
        feats = torch.cat([front_out, m1, m2, m3], dim=1)  # [B, 753, T]

        # TF concatenates [max, mean] on a trailing axis and flattens: channel-major interleave.
        pooled = torch.stack([feats.amax(dim=2), feats.mean(dim=2)], dim=2).flatten(1)
        pooled = self.bn_pool(pooled)
        penultimate = self.bn_dense(torch.relu(self.dense(pooled)))
        taggram = torch.sigmoid(self.output(penultimate))
        return taggram, penultimate

    def _front_names(self) -> list[str]:
        return [name for name, _ in self._TIMBRAL] + [name for name, _ in self._TEMPORAL]

    def _frontend(self, x: torch.Tensor, params: list) -> torch.Tensor:
        """Front end of patches ``x`` [b, T, n_mels] -> [b, 561, T]."""
        scale, shift = _affine(self.bn_input)
        x = (x * scale + shift).unsqueeze(1)  # [b, 1, T, F]; TF pads *after* this batch norm
        out = []
        # Timbral: 7-frame kernels, time zero-padded by 3 on both sides (F.pad's order is
        # (freq_left, freq_right, time_top, time_bottom)); valid in frequency.
        xt = F.pad(x, (0, 0, 3, 3))
        for weight, bias, sign, bn_scale, bn_shift in params[: len(self._TIMBRAL)]:
            pooled = F.conv2d(xt, weight, bias).amax(dim=3)
            out.append(_pool_relu_bn(pooled, sign, bn_scale, bn_shift))
        # Temporal: TF "same" padding with an even kernel pads (k-1)//2 before, the rest after.
        for (_, k), (weight, bias, sign, bn_scale, bn_shift) in zip(
            self._TEMPORAL, params[len(self._TIMBRAL) :], strict=True
        ):
            before = (k - 1) // 2
            pooled = F.conv2d(F.pad(x, (0, 0, before, k - 1 - before)), weight, bias).amax(dim=3)
            out.append(_pool_relu_bn(pooled, sign, bn_scale, bn_shift))
        return torch.cat(out, dim=1)

    @staticmethod
    def _mid(conv: nn.Conv1d, bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
        return bn(torch.relu(conv(x)))

    def train(self, mode: bool = True) -> Musicnn:
        # The batch norms are applied as fixed affine maps in forward(); training mode would
        # silently mean something else, so refuse it.
        if mode:
            raise RuntimeError("Musicnn is inference-only (converted weights); use eval()")
        return super().train(False)


# --------------------------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------------------------


@functools.cache
def _tag_table() -> dict[str, list[str]]:
    path = WEIGHTS_DIR / "tags.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"musicnn tag list {path} is missing or corrupt: {exc}") from exc


def _check_name(name: str) -> None:
    if name not in MODEL_NAMES:
        raise ModelError(f"unknown musicnn model {name!r}; choose one of {', '.join(MODEL_NAMES)}")


def musicnn_tags(name: str = "MSD_musicnn") -> list[str]:
    """The tag names of model ``name``, in taggram column order."""
    _check_name(name)
    return list(_tag_table()[name])


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
    _check_name(name)
    return _load(name, str(torch.device(device)))


@functools.cache
def _load(name: str, device: str) -> Musicnn:
    path = WEIGHTS_DIR / f"{name}.pt"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # FileNotFoundError, unpickling errors, truncated zip ...
        raise ModelError(f"cannot read musicnn weights {path}: {exc}") from exc
    model = Musicnn(n_tags=len(_tag_table()[name]))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{path} is not a musicnn state_dict: {exc}") from exc
    model.requires_grad_(False)
    return model.to(device).eval()


# --------------------------------------------------------------------------------------------
# one call: audio -> taggram + embeddings
# --------------------------------------------------------------------------------------------


def musicnn_embed(
    y: np.ndarray,
    sr: int,
    *,
    model: str = "MSD_musicnn",
    batch_size: int = 64,
    device: str | torch.device | None = None,
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
        Patches per forward pass. On GPU a pass holds ~25 MB of front-end activations per
        patch; on CPU the front end runs patch by patch anyway (``Musicnn.cpu_chunk``).
    device : str, torch.device or None
        None picks CUDA when available, else CPU.

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
        raise ValueError("batch_size must be >= 1")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    net = load_musicnn(model, device)
    batch = patches(log_mel(y, sr))
    taggram, penultimate = [], []
    with torch.inference_mode():
        for i in range(0, len(batch), batch_size):
            xb = torch.from_numpy(batch[i : i + batch_size]).to(device)
            tg, pen = net(xb)
            taggram.append(tg.float().cpu().numpy())
            penultimate.append(pen.float().cpu().numpy())
    return {
        "taggram": np.concatenate(taggram),
        "penultimate": np.concatenate(penultimate),
        "patch_start": np.arange(len(batch)) * (PATCH_FRAMES * FFT_HOP / SAMPLE_RATE),
        "tags": musicnn_tags(model),
    }
