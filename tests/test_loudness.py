"""The loudness meter (BS.1770-4) and the level-independent features it gives."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf

from conftest import SR, chord_signal
from moodscope.audio.loudness import LoudnessMeter, gain_to, integrated_loudness
from moodscope.features import FeatureConfig
from moodscope.features.extract import track_features


def _sine(amplitude: float, sr: int, seconds: float = 5.0, hz: float = 997.0) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * hz * np.arange(int(seconds * sr)) / sr)


@pytest.mark.parametrize("sr", [16000, 44100, 48000])
def test_a_full_scale_sine_reads_as_the_standard_says(sr):
    # BS.1770-4: a 0 dBFS 997 Hz sine in one channel reads -3.01 LKFS; -20 dB reads -23.01.
    assert integrated_loudness(_sine(1.0, sr), sr) == pytest.approx(-3.01, abs=0.1)
    assert integrated_loudness(_sine(0.1, sr), sr) == pytest.approx(-23.01, abs=0.1)


def test_a_gain_moves_the_loudness_by_itself_and_blocks_change_nothing():
    y = chord_signal(8.0, SR).astype(np.float64)
    whole = integrated_loudness(y, SR)
    assert integrated_loudness(0.5 * y, SR) == pytest.approx(whole - 6.02, abs=0.01)
    meter = LoudnessMeter(SR)
    for i in range(0, len(y), 7777):  # blocks that do not line up with the 100-ms steps
        meter.add(y[i : i + 7777])
    assert meter.integrated == pytest.approx(whole, abs=1e-9)


def test_silence_and_a_dc_offset_have_no_loudness():
    assert integrated_loudness(np.zeros(SR * 3), SR) == -math.inf
    assert integrated_loudness(np.full(SR * 3, 0.4), SR) == -math.inf
    assert integrated_loudness(_sine(0.1, SR, seconds=0.3), SR) == -math.inf  # < one block
    assert gain_to(-15.0, -math.inf) == 1.0
    assert gain_to(-15.0, -21.0) == pytest.approx(10 ** (6 / 20))
    assert gain_to(-15.0, -90.0) == pytest.approx(10 ** (40 / 20))  # at most 40 dB up


@pytest.mark.parametrize("segments", [2, None])
def test_normalised_features_do_not_follow_the_file_level(tmp_path, segments):
    y = chord_signal(6.0, SR)
    loud, quiet = tmp_path / "loud.wav", tmp_path / "quiet.wav"
    sf.write(loud, 0.9 * y, SR, subtype="FLOAT")
    sf.write(quiet, 0.9 * y / 8, SR, subtype="FLOAT")  # 18 dB down

    def moved(config: FeatureConfig) -> float:
        a, b = track_features(loud, config).features, track_features(quiet, config).features
        assert a.shape == b.shape and len(a) == 2
        return float(np.abs(a - b).max())

    normalised = moved(FeatureConfig(feature_set="musicnn_msd", segments=segments, loudness=-15.6))
    raw = moved(FeatureConfig(feature_set="musicnn_msd", segments=segments))
    # Without normalisation musicnn's log-mel follows the level (the reason for all this);
    # with it, what is left is musicnn's float16 rounding of the log-mel.
    print(f"features moved {raw:.3f} as decoded, {normalised:.4f} normalised")
    assert normalised < raw / 10


def test_the_target_loudness_is_part_of_the_cache_key():
    a = FeatureConfig(feature_set="musicnn_msd_full", segments=20)
    b = FeatureConfig(feature_set="musicnn_msd_full", segments=20, loudness=-15.6)
    assert a.key() != b.key()
    assert FeatureConfig.from_dict(b.to_dict()) == b
    assert FeatureConfig.from_dict({"feature_set": "paper"}).loudness is None  # older configs
