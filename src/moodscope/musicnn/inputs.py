"""musicnn's input: the log-mel spectrogram of 16 kHz mono audio, cut into 3-s patches.

numpy only (no librosa, no PyTorch): what every runtime of the network reads. As musicnn:
|STFT|^2 with n_fft 512, hop 256, periodic Hann window, centred frames (reflect-padded), 96
Slaney mel bands (librosa's defaults), then ``log10(10000 x + 1)`` in float32 (musicnn 0.1.0
cast to float16 first, which overflows on loud music); non-overlapping patches of 187 frames.
"""

from __future__ import annotations

import functools

import numpy as np
import soxr

from moodscope.errors import ConfigError

__all__ = [
    "FFT_HOP",
    "FFT_SIZE",
    "N_MELS",
    "PATCH_FRAMES",
    "SAMPLE_RATE",
    "log_mel",
    "log_mel_batch",
    "mel_filterbank",
    "patches",
]

SAMPLE_RATE = 16000
"""Rate the models were trained at (musicnn ``configuration.SR``)."""
FFT_SIZE = 512
FFT_HOP = 256
N_MELS = 96
PATCH_FRAMES = 187
"""3 s of frames: ``librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1``."""


# --------------------------------------------------------------------------------------------
# input
# --------------------------------------------------------------------------------------------


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default): linear to 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    mels = hz / f_sp
    above = hz >= min_log_hz
    mels[above] = min_log_mel + np.log(hz[above] / min_log_hz) / logstep
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    hz = f_sp * mels
    above = mels >= min_log_mel
    hz[above] = min_log_hz * np.exp(logstep * (mels[above] - min_log_mel))
    return hz


@functools.cache
def mel_filterbank(
    sr: int = SAMPLE_RATE, n_fft: int = FFT_SIZE, n_mels: int = N_MELS
) -> np.ndarray:
    """Slaney-scale, Slaney-normalised triangular mel filters from 0 Hz to ``sr / 2``.

    What ``librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)`` returns (tested equal),
    built here once per process so that inference needs no librosa (and no numba).

    Returns
    -------
    np.ndarray [shape=(n_mels, 1 + n_fft // 2), dtype=float32]
    """
    fft_freqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    mel_f = _mel_to_hz(
        np.linspace(_hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([sr / 2.0]))[0], n_mels + 2)
    )
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, np.newaxis]
    weights.setflags(write=False)
    return weights


@functools.cache
def _stft_constants() -> tuple[np.ndarray, np.ndarray]:
    """The periodic Hann window [512] and the mel basis transposed [257, 96], float32."""
    n = np.arange(FFT_SIZE)
    window = (0.5 - 0.5 * np.cos(2 * np.pi * n / FFT_SIZE)).astype(np.float32)
    return window, np.ascontiguousarray(mel_filterbank().T)


_FRAMES_PER_BLOCK = 2048
"""Frames analysed at once (~4 MB of windowed samples): memory stays bounded whatever the
length, and the blocks stay in cache."""


def log_mel_batch(y: np.ndarray) -> np.ndarray:
    """musicnn's log-mel spectrogram of equal-length clips at 16 kHz, all in one pass.

    Parameters
    ----------
    y : np.ndarray [shape=(n_clips, n_samples)]
        Mono audio at :data:`SAMPLE_RATE`.

    Returns
    -------
    np.ndarray [shape=(n_clips, 1 + n_samples // 256, 96), dtype=float32]
        Each clip's :func:`log_mel`, framed and padded on its own (the same numbers as one
        call per clip, to float32 rounding).
    """
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 2 or y.shape[1] == 0:
        raise ConfigError(f"expected (n_clips, n_samples) audio; got {y.shape}")
    window, basis_t = _stft_constants()
    # Centred frames: reflect-padded by half a window (numpy keeps reflecting a clip shorter
    # than that, as librosa does).
    padded = np.pad(y, ((0, 0), (FFT_SIZE // 2, FFT_SIZE // 2)), mode="reflect")
    n_frames = 1 + y.shape[1] // FFT_HOP
    frames = np.lib.stride_tricks.sliding_window_view(padded, FFT_SIZE, axis=1)[:, ::FFT_HOP]
    out = np.empty((len(y), n_frames, N_MELS), dtype=np.float32)
    for start in range(0, n_frames, _FRAMES_PER_BLOCK):
        block = frames[:, start : start + _FRAMES_PER_BLOCK] * window  # [n, b, 512]
        spec = np.fft.rfft(block, axis=-1)  # complex64 with numpy >= 2
        power = np.square(spec.real, dtype=np.float32) + np.square(spec.imag, dtype=np.float32)
        mel = np.matmul(power, basis_t, out=out[:, start : start + block.shape[1]])
        mel *= 10000.0
        mel += 1.0
        np.log10(mel, out=mel)
    return out


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
    by default; the difference only touches the first and last frame). The STFT and the
    filterbank are librosa's (|STFT|^2 of the periodic Hann window, Slaney mel filters),
    computed without librosa; ``tests/test_musicnn.py`` compares the two.
    """
    y = np.asarray(y, dtype=np.float32)
    if y.ndim == 2:
        y = y.mean(axis=0)
    if y.ndim != 1:
        raise ConfigError(f"audio must be 1-D (samples) or 2-D (channels, samples); got {y.shape}")
    if y.size == 0:
        raise ConfigError("audio is empty")
    if sr != SAMPLE_RATE:
        y = soxr.resample(y, sr, SAMPLE_RATE).astype(np.float32, copy=False)
    return log_mel_batch(y[None])[0]


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
        raise ConfigError(f"mel must be a non-empty (n_frames, n_mels) array; got {mel.shape}")
    if patch_frames < 1 or hop_frames < 1:
        raise ConfigError("patch_frames and hop_frames must be >= 1")
    n_frames = mel.shape[0]
    if n_frames < patch_frames:
        reps = -(-patch_frames // n_frames)
        return np.tile(mel, (reps, 1))[None, :patch_frames]
    starts = np.arange(0, n_frames - patch_frames + 1, hop_frames)
    view = np.lib.stride_tricks.sliding_window_view(mel, patch_frames, axis=0)[starts]
    # sliding_window_view puts the window axis last: (n, n_mels, patch) -> (n, patch, n_mels)
    return np.ascontiguousarray(view.transpose(0, 2, 1))
