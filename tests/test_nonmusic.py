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


@pytest.mark.skipif(not nonmusic.shutil.which("espeak-ng"), reason="needs espeak-ng")
def test_speech_is_written_by_espeak(tmp_path):
    # Speech is generated (for the table), but not judged: see moodscope.audio.content.
    files = nonmusic.write_nonmusic(tmp_path, seconds=4.0)
    assert len(files["speech"]) == len(nonmusic.SPEECH_TEXTS)
    y, sr = sf.read(files["speech"][0])
    assert sr == nonmusic.SR and len(y) == 4 * sr and np.abs(y).max() > 0.1


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
