"""Prediction on anyone's music: the API, the CLI, formats, bad files, silence, long files."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import soundfile as sf

from conftest import SR, chord_signal
from moodscope import EMOTIONS
from moodscope.backends import WorkerLost
from moodscope.errors import AudioError, NotAudioError
from moodscope.features.extract import track_features
from moodscope.inference.predictor import (
    Prediction,
    default_model_path,
    load_model,
    predict,
    prediction_features,
)
from test_cli import run


def test_default_model_ships_with_the_package():
    path = default_model_path()
    assert path.is_file() and path.stat().st_size < 15 * 2**20
    model = load_model()
    assert set(model.labels) == set(EMOTIONS)
    assert load_model() is model  # loaded once per process


@pytest.mark.parametrize(
    "name, sr, channels",
    [
        ("a.wav", 8000, 1),
        ("b.flac", 16000, 2),
        ("c.mp3", 44100, 2),
        ("d.ogg", 48000, 1),
        ("e.wav", 22050, 2),
        ("f.mp3", 32000, 1),
    ],
)
def test_predict_formats_rates_channels(write_audio, name, sr, channels):
    path = write_audio(name, chord_signal(7.0, sr), sr, channels)
    (result,) = predict(path)
    assert result.ok, result.error
    assert list(result.emotions) == list(EMOTIONS)
    assert sum(result.emotions.values()) == pytest.approx(1.0)
    assert result.top_emotion == max(result.emotions, key=result.emotions.get)
    assert [(s.start, s.end) for s in result.timeline] == [(0.0, 3.0), (3.0, 6.0)]
    for seg in result.timeline:
        assert sum(seg.emotions.values()) == pytest.approx(1.0)
    # How sure, from the map the shipped model carries (the shares, and where the track's
    # features lie against the training tracks'), and the GEMS factors.
    model = load_model()
    features = track_features(path, prediction_features(model), precision=result.precision)
    shares = np.array([result.emotions[label] for label in model.labels])
    assert result.confidence == pytest.approx(
        model.confidence(shares, model.track_row(features.features))
    )
    assert 0.0 <= result.confidence <= 1.0
    assert list(result.factors) == ["sublimity", "vitality", "unease"]
    assert sum(result.factors.values()) == pytest.approx(1.0)
    assert result.factors["unease"] == pytest.approx(
        result.emotions["tension"] + result.emotions["sadness"]
    )
    assert result.top_factor == max(result.factors, key=result.factors.get)


def test_silent_file_is_predicted_and_flagged(write_audio):
    (result,) = predict(write_audio("silence.wav", np.zeros(SR * 4, np.float32)))
    assert result.ok and result.silent
    assert sum(result.emotions.values()) == pytest.approx(1.0)


def _bad_folder(tmp_path, write_audio):
    folder = tmp_path / "music"
    folder.mkdir()
    good = write_audio("music/good.wav", chord_signal(6.0))
    (folder / "sub").mkdir()
    write_audio("music/sub/also good.flac", chord_signal(6.5, seed=2))
    mp3 = write_audio("music/whole.mp3", chord_signal(8.0))
    (folder / "truncated.mp3").write_bytes(mp3.read_bytes()[:600])
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + b"\x07" * 64)
    (folder / "empty.ogg").write_bytes(b"")
    (folder / "notes.mp3").write_text("this is a text file\n" * 50)
    write_audio("music/short.wav", chord_signal(0.5))
    (folder / "cover.jpg").write_bytes(b"\xff\xd8\xff")  # not audio: skipped, not an error
    return folder, good


def test_folder_with_bad_files(tmp_path, write_audio):
    folder, _ = _bad_folder(tmp_path, write_audio)
    results = {r.path.split("/music/")[1]: r for r in predict(folder, workers=2)}
    assert "cover.jpg" not in results
    assert {k for k, r in results.items() if r.ok} == {
        "good.wav",
        "sub/also good.flac",
        "whole.mp3",
    }
    bad = {k: r.error for k, r in results.items() if not r.ok}
    assert set(bad) == {"truncated.mp3", "corrupt.wav", "empty.ogg", "notes.mp3", "short.wav"}
    for name, error in bad.items():
        assert name in error and "\n" not in error
    assert "empty" in bad["empty.ogg"]
    assert "0.50 s long" in bad["short.wav"]
    kinds = {k: r.error_kind for k, r in results.items()}
    assert kinds["notes.mp3"] == "not_audio"
    assert {kinds[k] for k in bad if k != "notes.mp3"} == {"unusable"}
    assert {kinds[k] for k in results if results[k].ok} == {None}


def test_a_failure_says_what_kind_it_was():
    cases = [
        (NotAudioError("a.mp3", "is not an audio file (it holds text)"), "not_audio"),
        (AudioError("a.mp3", "is 0.50 s long; at least 3.00 s is needed"), "unusable"),
        (WorkerLost("the worker process died"), "crash"),
        (ZeroDivisionError("division by zero"), "crash"),
    ]
    for exc, kind in cases:
        failed = Prediction.failed("a.mp3", exc, "m@1")
        assert (failed.error_kind, failed.model, failed.ok) == (kind, "m@1", False)
        assert failed.error.startswith("a.mp3: ") and "\n" not in failed.error


def test_cli_json_schema_and_exit_code(tmp_path, write_audio, capsys):
    folder, _ = _bad_folder(tmp_path, write_audio)
    out_file = tmp_path / "out.json"
    code, _, err = run(
        [
            "predict",
            folder,
            "--format",
            "json",
            "--timeline",
            "--output",
            out_file,
            "--workers",
            "2",
        ],
        capsys,
    )
    assert code == 1
    assert "8 file(s), 3 predicted, 5 failed" in err
    items = json.loads(out_file.read_text())
    assert len(items) == 8
    for item in items:
        assert "path" in item
        if "error" in item:
            assert set(item) == {"path", "error"}
            continue
        assert set(item) >= {"path", "top_emotion", "emotions", "timeline"}
        assert list(item["emotions"]) == list(EMOTIONS)
        assert abs(sum(item["emotions"].values()) - 1) < 1e-4
        for seg in item["timeline"]:
            assert set(seg) == {"start", "end", "emotions"} and seg["end"] > seg["start"]


def test_cli_all_good_exits_zero_and_formats(tmp_path, write_audio, capsys):
    a = write_audio("a.wav", chord_signal(6.0))
    b = write_audio("b.flac", chord_signal(9.0, seed=1))
    code, out, err = run(["predict", a, b, "--format", "jsonl", "--workers", "1"], capsys)
    assert code == 0 and "2 predicted, 0 failed" in err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [x["path"] for x in lines] == [str(a), str(b)] and "timeline" not in lines[0]
    code, out, _ = run(["predict", a, "--format", "csv"], capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and rows[0]["top_emotion"] in EMOTIONS
    assert abs(sum(float(rows[0][e]) for e in EMOTIONS) - 1) < 1e-4
    code, out, _ = run(["predict", a], capsys)
    assert code == 0 and "top emotion" in out and any(e in out for e in EMOTIONS)


def test_cli_bad_arguments(tmp_path, write_audio, capsys):
    a = write_audio("a.wav", chord_signal(4.0))
    code, _, err = run(["predict", a, "--format", "xml"], capsys)
    assert code == 1 and "xml" in err
    code, _, err = run(["predict", tmp_path / "empty_dir_that_is_missing"], capsys)
    assert code == 1 and "empty_dir_that_is_missing" in err
    code, _, err = run(["predict", a, "--model", tmp_path / "nope.ckpt"], capsys)
    assert code == 1 and "no such checkpoint" in err


def test_output_written_atomically(tmp_path, write_audio, capsys):
    a = write_audio("a.wav", chord_signal(4.0))
    target = tmp_path / "keep.json"
    target.write_text("previous results")
    code, _, _ = run(
        ["predict", a, "--format", "json", "--model", tmp_path / "nope.ckpt", "--output", target],
        capsys,
    )
    assert code == 1 and target.read_text() == "previous results"  # untouched on failure
    code, _, _ = run(["predict", a, "--format", "json", "--output", target], capsys)
    assert code == 0 and json.loads(target.read_text())[0]["path"] == str(a)
    assert not list(tmp_path.glob("*.tmp"))


def test_long_file_streams_in_windows(tmp_path):
    # 200 s written in pieces; windows are computed block by block as it is decoded.
    path = tmp_path / "long.flac"
    with sf.SoundFile(path, "w", SR, 1, format="FLAC") as f:
        for i in range(10):
            f.write(chord_signal(20.0, seed=i))
    (result,) = predict(path)
    assert result.ok and len(result.timeline) == 66
    assert result.timeline[-1].end == pytest.approx(198.0)
    assert result.duration == pytest.approx(200.0, abs=0.01)


def test_predict_with_a_checkpoint_path(tmp_path, write_audio):
    from moodscope.inference.checkpoint import save_checkpoint

    ckpt = save_checkpoint(load_model(), tmp_path / "copy.ckpt")
    (a,) = predict(write_audio("a.wav", chord_signal(4.0)), model=ckpt)
    (b,) = predict(write_audio("b.wav", chord_signal(4.0)))
    assert a.emotions == pytest.approx(b.emotions)


def test_predicting_imports_only_what_inference_uses(write_audio):
    """The cold start of `moodscope predict` is mostly imports: the shipped model's head is
    plain arrays, so scikit-learn, skops, librosa (numba), pandas and matplotlib stay out."""
    import subprocess
    import sys

    path = write_audio("one.wav", chord_signal(4.0))
    code = (
        "import sys\n"
        "from moodscope.cli import main\n"
        "try:\n"
        f"    main(['predict', {str(path)!r}, '--format', 'json'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "heavy = ('sklearn', 'skops', 'librosa', 'numba', 'pandas', 'matplotlib', 'scipy')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"
