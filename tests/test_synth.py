"""Tests for moodscope.demo.synth: building blocks, demo pieces and writing them to disk."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from moodscope.audio.decode import load_audio
from moodscope.demo.synth import (
    DEMO_PIECES,
    adsr,
    chord,
    clicks,
    noise,
    silence,
    synthesize_piece,
    tone,
    write_demo_pieces,
)
from moodscope.errors import ConfigError

SR = 22050
DURATION = 6.0


@pytest.fixture(scope="module")
def pieces() -> dict[str, np.ndarray]:
    return {name: synthesize_piece(name, duration=DURATION, sr=SR) for name in DEMO_PIECES}


def _assert_mono_float32(y: np.ndarray, n: int) -> None:
    assert y.dtype == np.float32
    assert y.shape == (n,)
    assert np.all(np.isfinite(y))
    assert np.max(np.abs(y)) <= 1.0


@pytest.mark.parametrize(
    "make",
    [
        lambda: tone(440.0, 0.5, sr=SR, amplitude=0.5),
        lambda: tone(440.0, 0.5, sr=SR, harmonics=(1.0, 0.5, 0.25)),
        lambda: noise(0.5, sr=SR, amplitude=0.3, seed=1),
        lambda: chord([261.6, 329.6, 392.0], 0.5, sr=SR),
        lambda: clicks(120.0, 0.5, sr=SR),
        lambda: silence(0.5, sr=SR),
    ],
)
def test_building_blocks_are_mono_float32_in_range(make) -> None:
    _assert_mono_float32(make(), int(0.5 * SR))


def test_tone_has_requested_peak_and_pitch() -> None:
    y = tone(440.0, 1.0, sr=SR, amplitude=0.4)
    assert np.max(np.abs(y)) == pytest.approx(0.4, rel=1e-4)
    spectrum = np.abs(np.fft.rfft(y))
    assert np.fft.rfftfreq(y.size, 1 / SR)[np.argmax(spectrum)] == pytest.approx(440.0, abs=1.0)


def test_noise_is_reproducible_from_seed() -> None:
    np.testing.assert_array_equal(noise(0.2, seed=3), noise(0.2, seed=3))
    assert not np.array_equal(noise(0.2, seed=3), noise(0.2, seed=4))
    assert np.max(np.abs(noise(0.2, amplitude=0.2))) <= 0.2


def test_clicks_fall_on_the_beats() -> None:
    y = clicks(120.0, 2.0, sr=SR, click_duration=0.02)
    sounding = np.flatnonzero(np.abs(y) > 1e-3) / SR
    # Every sounding sample lies within a click's 20 ms after a beat, and every beat sounds.
    assert np.all(np.mod(sounding, 0.5) < 0.02)
    assert sorted(set(np.floor(sounding / 0.5).astype(int))) == [0, 1, 2, 3]


def test_adsr_shape() -> None:
    env = adsr(1.0, sr=1000, attack=0.1, decay=0.2, sustain=0.5, release=0.3)
    assert env.shape == (1300,)
    assert env.max() == pytest.approx(1.0, abs=0.02)
    assert env[500] == pytest.approx(0.5)  # sustaining
    assert env[-1] < 0.01  # released
    assert env.min() >= 0.0


@pytest.mark.parametrize(
    "call",
    [
        lambda: tone(0.0, 1.0),
        lambda: tone(20000.0, 1.0, sr=22050),
        lambda: tone(440.0, -1.0),
        lambda: tone(440.0, 1.0, amplitude=1.5),
        lambda: silence(1.0, sr=0),
        lambda: chord([], 1.0),
        lambda: clicks(0.0, 1.0),
        lambda: synthesize_piece("calm_pads", duration=0.0),
    ],
)
def test_bad_arguments_raise_config_error(call) -> None:
    with pytest.raises(ConfigError):
        call()


def test_demo_pieces_are_four_ordered_names() -> None:
    assert list(DEMO_PIECES) == [
        "bright_arpeggio",
        "slow_minor_line",
        "distorted_riff",
        "calm_pads",
    ]
    assert all(isinstance(text, str) and text for text in DEMO_PIECES.values())


def test_pieces_shape_dtype_range(pieces) -> None:
    for y in pieces.values():
        _assert_mono_float32(y, int(DURATION * SR))
        assert np.sqrt(np.mean(y**2)) > 0.01  # not silent


def test_piece_is_deterministic_and_seed_matters() -> None:
    for name in DEMO_PIECES:
        a = synthesize_piece(name, duration=2.0, seed=7)
        np.testing.assert_array_equal(a, synthesize_piece(name, duration=2.0, seed=7))
        assert not np.array_equal(a, synthesize_piece(name, duration=2.0, seed=8))


def test_piece_honours_sample_rate() -> None:
    assert synthesize_piece("calm_pads", duration=1.5, sr=16000).shape == (24000,)


def test_unknown_piece_lists_valid_names() -> None:
    with pytest.raises(ConfigError) as info:
        synthesize_piece("polka")
    for name in DEMO_PIECES:
        assert name in str(info.value)


def _rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(y.astype(np.float64) ** 2)))


def _centroid(y: np.ndarray) -> float:
    # Whole-signal spectral centroid in Hz (plain numpy: no JIT warm-up in a fast test).
    magnitude = np.abs(np.fft.rfft(y.astype(np.float64)))
    return float(np.sum(np.fft.rfftfreq(y.size, 1 / SR) * magnitude) / np.sum(magnitude))


def _onset_rate(y: np.ndarray) -> float:
    return len(librosa.onset.onset_detect(y=y, sr=SR)) / DURATION


def test_distorted_riff_is_loudest_and_calm_pads_quiet(pieces) -> None:
    assert _rms(pieces["distorted_riff"]) > 3 * _rms(pieces["calm_pads"])
    assert _rms(pieces["distorted_riff"]) > 3 * _rms(pieces["slow_minor_line"])


def test_bright_arpeggio_is_brighter_than_slow_minor_line(pieces) -> None:
    assert _centroid(pieces["bright_arpeggio"]) > 2 * _centroid(pieces["slow_minor_line"])
    assert _centroid(pieces["bright_arpeggio"]) > 2 * _centroid(pieces["calm_pads"])


def test_fast_pieces_have_more_onsets_than_slow_ones(pieces) -> None:
    assert _onset_rate(pieces["bright_arpeggio"]) > 2 * _onset_rate(pieces["slow_minor_line"])
    assert _onset_rate(pieces["distorted_riff"]) > 1.5 * _onset_rate(pieces["calm_pads"])


def test_tempo_of_rhythmic_pieces(pieces) -> None:
    fast = float(np.atleast_1d(librosa.beat.beat_track(y=pieces["bright_arpeggio"], sr=SR)[0])[0])
    riff = float(np.atleast_1d(librosa.beat.beat_track(y=pieces["distorted_riff"], sr=SR)[0])[0])
    assert fast == pytest.approx(150.0, rel=0.08)
    assert riff == pytest.approx(112.0, rel=0.08)


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg"])
def test_write_demo_pieces_round_trip(tmp_path, fmt) -> None:
    out = tmp_path / "demo" / "nested"
    paths = write_demo_pieces(out, duration=1.0, sr=SR, fmt=fmt)
    assert [p.name for p in paths] == [f"{name}.{fmt}" for name in DEMO_PIECES]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)  # no temps
    for path, name in zip(paths, DEMO_PIECES, strict=True):
        y = load_audio(path, sr=SR)
        assert y.shape == (SR,)
        if fmt != "ogg":  # lossless formats give the samples back to 16-bit precision
            expected = synthesize_piece(name, duration=1.0, sr=SR)
            np.testing.assert_allclose(y, expected, atol=2e-4)


def test_write_demo_pieces_rejects_unknown_format(tmp_path) -> None:
    with pytest.raises(ConfigError, match="wav"):
        write_demo_pieces(tmp_path, duration=0.5, fmt="mp4")
