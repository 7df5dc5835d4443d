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


def test_silent_file_is_flagged_and_gets_no_mood(write_audio):
    (result,) = predict(write_audio("silence.wav", np.zeros(SR * 4, np.float32)))
    assert result.ok and result.silent and not result.music
    assert result.not_music == "digital silence" and result.emotions == {}


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


# -- Ctrl-C, and the API from a plain script --------------------------------------------------


def _cli() -> list[str]:
    import sys
    from pathlib import Path

    return [str(Path(sys.executable).with_name("moodscope"))]


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_stops_keeps_the_partial_and_prints_the_resume_command(tmp_path, workers):
    """SIGINT to the whole process group, as a terminal sends it: exit 130, no file's error,
    the partial file kept, and the command it prints finishes the run."""
    import os
    import shlex
    import signal
    import subprocess
    import time

    from test_backends import _synth_folder

    folder = tmp_path / "music"
    _synth_folder(folder, 24)
    out = tmp_path / "moods.jsonl"
    partial = tmp_path / "moods.jsonl.partial"
    args = ["predict", str(folder), "--format", "jsonl", "--output", str(out), "--workers", workers]
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen(_cli() + args, stderr=err, cwd=tmp_path, start_new_session=True)
        try:
            deadline = time.monotonic() + 240
            while not (partial.is_file() and partial.read_text().count("\n") >= 2):
                assert proc.poll() is None and time.monotonic() < deadline, "finished first"
                time.sleep(0.05)
            os.killpg(proc.pid, signal.SIGINT)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    said = (tmp_path / "stderr.txt").read_text()
    assert code == 130, said
    assert "KeyboardInterrupt" not in said and "Traceback" not in said and "failed" not in said
    last = said.strip().splitlines()[-1]
    saved = partial.read_text().count("\n")
    assert last.startswith(f"interrupted: {saved} of 24 file(s) are saved in {partial}; ")
    command = last.split("to finish, run: ", 1)[1]
    assert shlex.split(command) == ["moodscope", *args, "--resume"]
    assert not out.exists() and 2 <= saved < 24
    again = subprocess.run(
        _cli() + shlex.split(command)[1:], capture_output=True, text=True, cwd=tmp_path,
        timeout=300,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert f"resuming: {saved} file(s) already done" in again.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in folder.iterdir())


def test_ctrl_c_with_one_worker_is_not_a_files_error(write_audio):
    """In this process (``--workers 1``) a KeyboardInterrupt raised while a file is read
    stops the run; it never becomes that file's error entry."""
    from moodscope.inference import predictor

    song = write_audio("a.wav", chord_signal(4.0))
    with pytest.MonkeyPatch.context() as patch:

        def interrupted(*args, **kwargs):
            raise KeyboardInterrupt

        patch.setattr(predictor, "track_features", interrupted)
        with pytest.raises(KeyboardInterrupt):
            predict([song, song], use_cache=False)


def test_an_empty_path_is_an_error_not_the_working_folder(tmp_path, capsys, monkeypatch):
    from moodscope.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="an empty path"):
        predict("")
    with pytest.raises(ConfigError, match="an empty path"):
        predict(["", "x.mp3"])
    (tmp_path / "a.wav").write_bytes(b"")  # would be found, were "" the working folder
    for command in (["predict", ""], ["tag", "", "--dry-run"]):
        code, _, err = run(command, capsys)
        assert code == 2 and "an empty path (an unset variable?)" in err, err
        assert "a.wav" not in err


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_workers_must_be_a_whole_number_of_at_least_one(write_audio, bad):
    from moodscope.errors import ConfigError

    song = write_audio("a.wav", chord_signal(4.0))
    with pytest.raises(ConfigError, match="workers must be a whole number >= 1"):
        predict(song, workers=bad)


def test_max_duration_nan_is_refused(write_audio):
    from moodscope.errors import ConfigError

    song = write_audio("a.wav", chord_signal(4.0))
    (first,) = predict(song)  # cached now: the cache must not bypass the check
    assert first.ok
    for bad in (float("nan"), 0, -5.0):
        with pytest.raises(ConfigError, match="max_duration"):
            predict(song, max_duration=bad)


def test_symlinked_subfolders_are_followed_and_loops_end(tmp_path):
    from moodscope.audio.files import find_audio

    disk2 = tmp_path / "disk2" / "X"
    disk2.mkdir(parents=True)
    (disk2 / "far.flac").write_bytes(b"")
    music = tmp_path / "Music"
    (music / "A").mkdir(parents=True)
    (music / "A" / "near.flac").write_bytes(b"")
    (music / "X").symlink_to(disk2)  # Music/X -> /mnt/disk2/X
    (music / "A" / "up").symlink_to(music)  # a loop back to the top
    (music / "Y").symlink_to(disk2)  # the same folder a second time
    found = [p.relative_to(music) for p in find_audio(music)]
    assert [str(p) for p in found] == ["A/near.flac", "X/far.flac"]
    assert sorted(map(str, find_audio(music, resolve=True))) == sorted(
        [str(disk2 / "far.flac"), str(music / "A" / "near.flac")]
    )


_PLAIN_SCRIPT = """\
import os, sys
print("top level of", os.getpid(), flush=True)
import moodscope
from moodscope.library.index import tag_files

music = sys.argv[1]
found = moodscope.predict(music, workers=2)
print("predict", sorted(os.path.basename(r.path) for r in found if r.ok), flush=True)
streamed = list(moodscope.predict_iter(music, workers=2))
print("predict_iter", len([r for r in streamed if r.ok]), flush=True)
done = list(tag_files([music], db=sys.argv[2], workers=2))
print("tag_files", sorted(o.status for o in done), flush=True)
"""


@pytest.mark.slow
def test_the_api_from_a_plain_script_without_a_main_guard(tmp_path):
    """The README's calls pasted into a script with no ``if __name__ == "__main__":``: the
    script runs once (workers never run it again), and tag_files does not wait for ever in
    its own workers for the library lock it holds."""
    import subprocess
    import sys

    from test_backends import _synth_folder

    _synth_folder(tmp_path / "music", 3)
    script = tmp_path / "plain.py"
    script.write_text(_PLAIN_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "music"), str(tmp_path / "lib.sqlite")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert len([line for line in lines if line.startswith("top level of")]) == 1, lines
    assert "predict ['00.flac', '01.flac', '02.flac']" in lines
    assert "predict_iter 3" in lines and "tag_files ['tagged', 'tagged', 'tagged']" in lines
    assert "Traceback" not in done.stderr and "bootstrapping" not in done.stderr
