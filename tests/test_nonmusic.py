"""Not music, no mood: silence, tones, sweeps, noise and clicks are judged, music is not."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import soundfile as sf
import soxr

from conftest import SR, chord_signal
from moodscope.audio.content import ContentMeter, not_music
from moodscope.demo.synth import DEMO_PIECES, synthesize_piece
from moodscope.inference.outputs import render
from moodscope.inference.predictor import Prediction, predict
from moodscope.research import nonmusic


def _judge(y: np.ndarray, sr: int = nonmusic.SR) -> str | None:
    """The judgement on ``y`` as musicnn's features read it: 16 kHz, block by block."""
    y = soxr.resample(y, sr, 16000)
    meter = ContentMeter(16000)
    for i in range(0, len(y), 16000 * 4):
        meter.add(y[i : i + 16000 * 4])
    return not_music(meter.measures())


EXPECTED = {
    "digital_silence": "digital silence",
    "dc_offset": "silence (a constant offset)",
    "negative_dc_offset": "silence (a constant offset)",
    "near_silent_noise": "silence",
    "dither": "silence",
    "sine_440": "a steady tone",
    "sine_1k_quiet": "a steady tone",
    "sine_60_with_dc": "a steady tone",
    "square_220": "a steady tone",
    "sawtooth_110": "a steady tone",
    "sine_sweep": "a sliding tone (a sweep)",
    "sine_sweep_down": "a sliding tone (a sweep)",
    "square_sweep": "a sliding tone (a sweep)",
    "white": "noise",
    "pink": "noise",
    "brown": "noise",
    "white_quiet": "noise",
    "uniform_white": "noise",
    "impulse_every_second": "isolated sounds",
    "click_train_10hz": "noise",
    "irregular_clicks": "isolated sounds",
    "single_impulse": "near silence",
}


@pytest.mark.parametrize(
    "kind, name", [(k, n) for k, makers in nonmusic.KINDS.items() for n in makers]
)
def test_every_generated_kind_is_not_music(kind, name):
    reason = _judge(nonmusic.synthesize(kind, name, seconds=10.0))
    assert reason is not None and reason.startswith(EXPECTED[name]), reason


@pytest.mark.parametrize("name", list(DEMO_PIECES))
def test_the_demo_pieces_are_music(name):
    assert _judge(synthesize_piece(name), 22050) is None


def test_the_test_suites_music_stand_in_is_music():
    assert _judge(chord_signal(7.0, SR), SR) is None


def test_a_not_music_file_gets_no_mood_in_any_output(write_audio):
    tone = write_audio("tone.wav", nonmusic.synthesize("tone", "sine_440", 8.0), nonmusic.SR)
    music = write_audio("music.wav", chord_signal(7.0, SR))
    r, m = predict([tone, music])
    assert r.ok and not r.music and r.not_music == "a steady tone"
    assert r.emotions == {} and r.top_emotion is r.confidence is r.top_factor is None
    assert r.timeline == [] and r.duration == pytest.approx(8.0, abs=0.01)
    assert m.ok and m.music and m.not_music is None and m.top_emotion is not None
    d = r.to_dict(timeline=True)
    assert d["music"] is False and d["not_music"] == "a steady tone" and d["emotions"] == {}
    assert Prediction.from_dict(json.loads(json.dumps(d))).to_dict(timeline=True) == d
    rows = list(csv.DictReader(io.StringIO(render([r, m], "csv"))))
    assert rows[0]["music"] == "False" and rows[0]["not_music"] == "a steady tone"
    assert rows[0]["top_emotion"] == rows[0]["calmness"] == rows[0]["confidence"] == ""
    assert rows[1]["music"] == "True" and rows[1]["not_music"] == ""


def test_a_dc_offset_is_silent(write_audio):
    (r,) = predict(write_audio("dc.wav", np.full(SR * 5, 0.3, np.float32)))
    assert r.ok and r.silent and not r.music and r.not_music == "silence (a constant offset)"


def _syllables(seconds: float, seed: int) -> np.ndarray:
    """A stand-in for speech at :data:`nonmusic.SR`: voiced syllables of 80-250 ms, their
    pitch gliding, at irregular times with pauses between words (seeded numpy)."""
    rng = np.random.default_rng(seed)
    y = np.zeros(int(seconds * nonmusic.SR))
    at = 0
    while at < len(y):
        n = int(rng.uniform(0.08, 0.25) * nonmusic.SR)
        t = np.arange(n) / nonmusic.SR
        f0 = rng.uniform(100, 180) * (1 + rng.uniform(-0.3, 0.3) * t / t[-1])
        phase = 2 * np.pi * np.cumsum(f0) / nonmusic.SR
        voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
        syllable = voiced * np.hanning(n)
        y[at : at + n] = syllable[: len(y) - at]
        at += n + int(rng.choice([rng.uniform(0.02, 0.08), rng.uniform(0.15, 0.5)])
                      * nonmusic.SR)  # fmt: skip
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


def _beat(seconds: float, bpm: float = 95.0) -> np.ndarray:
    """A drum loop and a held bass note: kick on the beats, hi-hat between."""
    sr, n = nonmusic.SR, int(seconds * nonmusic.SR)
    y = 0.1 * np.sin(2 * np.pi * 55 * np.arange(n) / sr)
    hit = np.arange(int(0.12 * sr)) / sr
    kick = np.sin(2 * np.pi * 60 * hit) * np.exp(-hit * 30)
    hat = np.random.default_rng(3).standard_normal(len(hit)) * np.exp(-hit * 80) * 0.3
    step = int(60 / bpm * sr)
    for i, at in enumerate(range(0, n - len(hit), step // 2)):
        y[at : at + len(hit)] += kick if i % 2 == 0 else hat
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_syllables_and_pauses_without_a_beat_are_speech(seed):
    assert _judge(_syllables(25.0, seed)) == "speech (syllables and pauses, no beat)"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_same_voice_over_a_beat_is_music(seed):
    # rap stays music: the beat repeats, and the bass holds the level up between syllables
    assert _judge(_syllables(25.0, seed) + _beat(25.0)) is None


def test_a_voice_over_held_notes_is_music():
    # spoken word over music with no beat: the pads hold the level up between the words
    pads = synthesize_piece("calm_pads", duration=25.0, sr=nonmusic.SR)
    voice = _syllables(25.0, 1)
    assert _judge(voice) is not None  # alone, speech
    assert _judge(voice + 0.5 * pads[: len(voice)] / np.abs(pads).max()) is None


def _plucks(seconds: float, seed: int) -> np.ndarray:
    """Sparse, dry plucked notes played freely (no beat): each starts at once and dies
    away within ~0.3 s, with pauses between them, like a solo koto or pizzicato."""
    rng = np.random.default_rng(seed)
    sr = nonmusic.SR
    y = np.zeros(int(seconds * sr))
    t = np.arange(int(0.6 * sr)) / sr
    at = 0
    while at < len(y):
        f = rng.choice([196.0, 220.0, 247.0, 262.0, 294.0, 330.0, 392.0, 440.0])
        note = sum(np.sin(2 * np.pi * k * f * t) / k for k in range(1, 8)) * np.exp(-t / 0.05)
        y[at : at + len(t)] += note[: len(y) - at]
        at += int(rng.uniform(0.12, 0.6) * sr)
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


@pytest.mark.parametrize("seed", [1, 2])
def test_sparse_plucked_notes_without_a_beat_are_music(seed):
    assert _judge(_plucks(25.0, seed)) is None


def test_a_short_voice_is_judged_on_what_there_is():
    # under half a speech window: nothing to judge speech on, so no speech judgement
    assert _judge(_syllables(4.0, 1)) is None


def test_the_speech_table_counts_reasons_for_a_long_kind():
    reasons = {f"v{i}": "speech" for i in range(9)} | {"v9": None}
    table = {"speech": {"files": 10, "flagged": 9, "share": 0.9, "reasons": reasons}}
    assert nonmusic.nonmusic_markdown(table) == (
        "| speech | 9/10 | speech: 9; judged music: 1 (v9) |"
    )


def test_speech_from_every_voice_here_is_not_music(tmp_path):
    from conftest import _required

    if not nonmusic.shutil.which("espeak-ng"):
        _required("needs espeak-ng (make speech-tools)")
    files = nonmusic.write_nonmusic(tmp_path, seconds=20.0)["speech"]
    assert len(files) >= len(nonmusic.SPEECH_VOICES) + len(nonmusic.SPEECH_VARIANTS)
    y, sr = sf.read(files[0])
    assert sr == nonmusic.SR and len(y) == 20 * sr and np.abs(y).max() > 0.1
    judged = {f.stem: _judge(sf.read(f, dtype="float32")[0]) for f in files}
    clean = {k: v for k, v in judged.items() if not k.endswith("_reverberant")}
    assert all(v and v.startswith("speech") for v in clean.values()), judged
    # and a file of speech goes through predict with no mood, like any not-music file
    (r,) = predict(files[0])
    assert r.ok and not r.music and r.not_music.startswith("speech") and r.emotions == {}


@pytest.mark.data
@pytest.mark.slow
def test_dev_tracks_are_music(emotify_dir):
    from moodscope.datasets import EmotifyDataset
    from moodscope.research.invariance import pick_tracks

    paths = pick_tracks(EmotifyDataset(emotify_dir).tracks, 4, seed=1)
    for r in predict(paths):
        assert r.ok and r.music, (r.path, r.not_music)


def test_tag_skips_a_not_music_file_and_says_why(write_audio, tmp_path, capsys):
    from moodscope.library import SKIPPED, TAGGED, tag_files
    from test_cli import run

    tone = write_audio("tone.wav", nonmusic.synthesize("tone", "sine_440", 8.0), nonmusic.SR)
    music = write_audio("music.wav", chord_signal(7.0, SR))
    before = tone.read_bytes()
    db = tmp_path / "index.db"
    first = {o.path: o for o in tag_files([tone, music], db=db)}
    assert first[str(tone)].status == SKIPPED and first[str(music)].status == TAGGED
    assert first[str(tone)].reason == "not music (a steady tone)"
    assert tone.read_bytes() == before  # nothing written into it
    again = {o.path: o for o in tag_files([tone], db=db)}  # unchanged: skipped, same reason
    assert again[str(tone)].status == SKIPPED and again[str(tone)].reason.startswith("not music")
    code, _, err = run(["tag", tone, "--db", db], capsys)
    assert code == 0
    assert "1 skipped (not music)" in " ".join(err.split())


def test_a_folder_of_other_music_is_judged_file_by_file(write_audio, tmp_path):
    from moodscope.features import FeatureConfig

    folder = tmp_path / "other"
    folder.mkdir()
    write_audio("other/chord.wav", chord_signal(12.0, SR))
    write_audio("other/tone.wav", nonmusic.synthesize("tone", "sine_440", 12.0), nonmusic.SR)
    write_audio("other/short.wav", chord_signal(4.0, SR))
    config = FeatureConfig(feature_set="musicnn_msd", segments=20, loudness=-15.6)  # >= 10 s
    found = nonmusic.folder_flags(folder, config)
    assert found["tracks"] == 2 and found["flagged"] == {"tone.wav": "a steady tone"}
    assert list(found["errors"]) == ["short.wav"] and "long" in found["errors"]["short.wav"]
