"""Prediction outputs: rendered formats, the partial file while a run goes, resuming."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import stat
import subprocess
import threading

import pytest

from conftest import chord_signal
from moodscope.errors import ConfigError, OutputError
from moodscope.inference.outputs import PredictionFile, render
from moodscope.inference.predictor import Prediction, TimelinePoint
from test_cli import run


def _prediction(path: str, top: str = "calmness") -> Prediction:
    emotions = {"calmness": 0.6, "tension": 0.4} if top == "calmness" else {
        "calmness": 0.3, "tension": 0.7,
    }  # fmt: skip
    return Prediction(
        path,
        emotions=emotions,
        top_emotion=top,
        timeline=[TimelinePoint(0.0, 3.0, emotions)],
        duration=3.5,
        model="m@1",
    )


def test_prediction_round_trips_through_its_dict():
    p = _prediction("/a.mp3")
    assert Prediction.from_dict(p.to_dict(timeline=True)) == p
    bad = Prediction("/b.mp3", error="/b.mp3: file is empty (0 bytes)")
    assert Prediction.from_dict(bad.to_dict()).error == bad.error


def test_confidence_and_factors_reach_every_format():
    calibrated = _prediction("/a.mp3")
    calibrated.confidence = 0.4321
    uncalibrated = _prediction("/b.mp3", "tension")
    assert Prediction.from_dict(calibrated.to_dict()).confidence == pytest.approx(0.4321)
    d = calibrated.to_dict()
    assert d["factors"] == pytest.approx({"sublimity": 0.6, "vitality": 0.0, "unease": 0.4})
    assert d["top_factor"] == "sublimity" and sum(d["factors"].values()) == pytest.approx(1)
    assert uncalibrated.to_dict()["confidence"] is None  # said, not invented
    assert uncalibrated.to_dict()["top_factor"] == "unease"
    rows = list(csv.DictReader(io.StringIO(render([calibrated, uncalibrated], "csv"))))
    assert rows[0]["confidence"] == "0.432100" and rows[1]["confidence"] == ""
    assert (rows[0]["top_factor"], rows[1]["top_factor"]) == ("sublimity", "unease")
    assert float(rows[1]["unease"]) == pytest.approx(0.7)
    line = json.loads(render([calibrated], "jsonl"))
    assert line["confidence"] == pytest.approx(0.4321) and line["top_factor"] == "sublimity"


def test_render_formats():
    results = [_prediction("/a.mp3"), Prediction("/b.mp3", error="/b.mp3: bad")]
    assert [r["path"] for r in json.loads(render(results, "json"))] == ["/a.mp3", "/b.mp3"]
    lines = render(results, "jsonl", timeline=True).splitlines()
    assert json.loads(lines[0])["timeline"][0]["end"] == 3.0 and "error" in json.loads(lines[1])
    csv_text = render(results, "csv")
    assert csv_text.splitlines()[0] == (
        "path,top_emotion,confidence,calmness,tension,top_factor,sublimity,vitality,unease,"
        "arousal,valence,silent,truncated,music,not_music,error"
    )
    with pytest.raises(ConfigError, match="unknown format 'xml'"):
        render(results, "xml")


def test_partial_file_then_finish_in_input_order(tmp_path):
    out = tmp_path / "moods.json"
    sink = PredictionFile(out, "json", timeline=False)
    sink.add(_prediction("/b.mp3"))
    sink.add(_prediction("/a.mp3", "tension"))
    assert sink.partial.is_file() and not out.exists()
    assert len(sink.partial.read_text().splitlines()) == 2  # flushed as they come
    sink.finish(order=["/a.mp3", "/b.mp3"])
    assert [r["path"] for r in json.loads(out.read_text())] == ["/a.mp3", "/b.mp3"]
    assert not sink.partial.exists()


def test_resume_keeps_whole_lines_and_drops_a_torn_one(tmp_path):
    out = tmp_path / "moods.jsonl"
    first = PredictionFile(out, "jsonl", timeline=False)
    first.add(_prediction("/a.mp3"))
    first.add(_prediction("/b.mp3"))
    first.close()  # the run stopped: killed, or its cluster lost
    with open(first.partial, "a") as f:
        f.write('{"path": "/c.mp3", "top_em')  # killed mid-line
    again = PredictionFile(out, "jsonl", timeline=False, resume=True)
    assert again.done == {"/a.mp3", "/b.mp3"} and again.resumed == 2
    again.add(_prediction("/c.mp3"))
    again.finish()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["path"] for r in rows] == ["/a.mp3", "/b.mp3", "/c.mp3"]


def test_without_resume_a_stale_partial_is_started_over(tmp_path):
    out = tmp_path / "moods.jsonl"
    stale = PredictionFile(out, "jsonl", timeline=False)
    stale.add(_prediction("/old.mp3"))
    stale.close()
    fresh = PredictionFile(out, "jsonl", timeline=False)
    assert fresh.done == set()
    fresh.add(_prediction("/new.mp3"))
    fresh.finish()
    assert [json.loads(line)["path"] for line in out.read_text().splitlines()] == ["/new.mp3"]


def test_cli_resume_skips_what_was_done(tmp_path, write_audio, capsys):
    (tmp_path / "music").mkdir()
    a = write_audio("music/a.wav", chord_signal(4.0))
    write_audio("music/b.wav", chord_signal(5.0, seed=1))
    out = tmp_path / "moods.json"
    code, _, err = run(["predict", a.parent, "--resume", "--format", "json"], capsys)
    assert code == 1 and "--resume needs --output" in err
    # An earlier run got as far as a.wav before it stopped.
    earlier = PredictionFile(out, "json", timeline=False)
    earlier.add(Prediction(str(a), emotions={"calmness": 1.0}, top_emotion="calmness"))
    earlier.close()
    code, _, err = run(
        ["predict", a.parent, "--format", "json", "--output", out, "--resume"], capsys
    )
    assert code == 0, err
    assert "resuming: 1 file(s) already done" in err and "1 file(s), 1 predicted" in err
    rows = json.loads(out.read_text())
    assert [r["path"].rsplit("/", 1)[1] for r in rows] == ["a.wav", "b.wav"]
    assert rows[0]["emotions"] == {"calmness": 1.0}  # kept, not predicted again


# -- where --output leads: a file is replaced, a device or FIFO written through, a folder refused


def _moodscope() -> str:
    import sys
    from pathlib import Path

    return str(Path(sys.executable).with_name("moodscope"))


def test_a_folder_is_refused_at_once_and_nothing_is_left(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        PredictionFile(folder, "json", timeline=False)
    assert list(folder.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_run_that_stops_before_any_prediction_leaves_no_partial(tmp_path):
    out = tmp_path / "moods.json"
    sink = PredictionFile(out, "json", timeline=False)
    sink.close()  # the model failed to load, the backend could not start, ...
    assert list(tmp_path.iterdir()) == []


def test_a_symlinked_output_replaces_its_target(tmp_path):
    real = tmp_path / "runs" / "moods.json"
    real.parent.mkdir()
    real.write_text("[]")
    link = tmp_path / "latest.json"
    link.symlink_to(real)
    sink = PredictionFile(link, "json", timeline=False)
    sink.add(_prediction("/a.mp3"))
    sink.close()
    sink.finish()
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert [r["path"] for r in json.loads(real.read_text())] == ["/a.mp3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.json", "runs"]


def test_a_fifo_output_is_written_through_with_no_partial_beside_it(tmp_path):
    fifo = tmp_path / "moods.fifo"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()), daemon=True)
    reader.start()
    sink = PredictionFile(fifo, "jsonl", timeline=False)
    sink.add(_prediction("/a.mp3"))
    sink.add(_prediction("/b.mp3", "tension"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["moods.fifo"]
    sink.close()
    sink.finish()
    reader.join(timeout=10)
    assert [json.loads(line)["path"] for line in got[0].splitlines()] == ["/a.mp3", "/b.mp3"]
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    with pytest.raises(ConfigError, match="--resume needs a regular file"):
        PredictionFile(fifo, "jsonl", timeline=False, resume=True)


def test_a_device_output_is_written_through(tmp_path):
    sink = PredictionFile("/dev/null", "csv", timeline=False)
    sink.add(_prediction("/a.mp3"))
    sink.close()
    sink.finish()
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert not os.path.exists("/dev/null.partial")


def test_an_output_that_cannot_be_written_keeps_the_work_and_says_how_to_resume(
    tmp_path, monkeypatch
):
    out = tmp_path / "moods.json"
    sink = PredictionFile(out, "json", timeline=False)
    sink.add(_prediction("/a.mp3"))
    sink.close()

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OutputError) as info:
        sink.finish()
    assert "disk is full" in str(info.value) and "--resume" in str(info.value)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["moods.json.partial"]
    again = PredictionFile(out, "json", timeline=False, resume=True)
    assert again.done == {"/a.mp3"}
    again.finish()
    assert [r["path"] for r in json.loads(out.read_text())] == ["/a.mp3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["moods.json"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_cli_output_to_dev_full_is_one_line_and_the_device_stays(tmp_path, write_audio):
    a = write_audio("a.wav", chord_signal(4.0))
    before = os.stat("/dev/full")
    proc = subprocess.run(
        [_moodscope(), "predict", str(a), "--format", "json", "--output", "/dev/full"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: /dev/full: cannot be written: the disk is full (no space left "
                      "on device)"], proc.stderr  # fmt: skip
    assert "Traceback" not in proc.stderr
    after = os.stat("/dev/full")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
    assert not [n for n in os.listdir("/dev") if "full." in n or n.endswith(".partial")]


def test_cli_output_to_a_folder_fails_in_one_line_before_any_work(tmp_path, write_audio):
    a = write_audio("a.wav", chord_signal(4.0))
    folder = tmp_path / "results"
    folder.mkdir()
    # A checkpoint that does not exist: were the model loaded first, that would be the error.
    proc = subprocess.run(
        [_moodscope(), "predict", str(a), "--format", "json", "--output", str(folder),
         "--model", str(tmp_path / "missing.ckpt")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: {folder}: is a folder; give a file to write (e.g. {folder}/moods.json)"
    ]
    assert list(folder.iterdir()) == [] and not list(tmp_path.glob("*.partial"))


@pytest.mark.slow
def test_cli_jsonl_into_a_pipe_closed_early_ends_quietly_with_exit_0(tmp_path, write_audio):
    (tmp_path / "music").mkdir()
    for i in range(6):
        write_audio(f"music/{i}.wav", chord_signal(4.0, seed=i))
    music = tmp_path / "music"
    script = f"set -o pipefail; '{_moodscope()}' predict '{music}' --format jsonl | head -2"
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr  # pipefail: moodscope's own exit status
    names = [json.loads(line)["path"].rsplit("/", 1)[1] for line in proc.stdout.splitlines()]
    assert len(names) == 2 and set(names) <= {f"{i}.wav" for i in range(6)}
    assert "Traceback" not in proc.stderr and "Broken pipe" not in proc.stderr
    assert "error" not in proc.stderr


def test_cli_output_to_dev_stdout_keeps_stdout_for_the_results(tmp_path, write_audio):
    a = write_audio("a.wav", chord_signal(4.0))
    proc = subprocess.run(
        [_moodscope(), "predict", str(a), "--format", "jsonl", "--output", "/dev/stdout"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["path"] for line in proc.stdout.splitlines()] == [str(a)]
    assert "wrote /dev/stdout" in proc.stderr and not list(tmp_path.glob(".*"))


# -- an output that would replace a song is refused before any work ------------------------


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink", "dot", "another song"])
def test_an_output_that_is_a_song_is_refused_before_any_work(tmp_path, write_audio, capsys, how):
    song = write_audio("song.wav", chord_signal(4.0))
    other = write_audio("other.wav", chord_signal(4.0, seed=1))
    before = {p: p.read_bytes() for p in (song, other)}
    output = {
        "same": song,
        "symlink": tmp_path / "link.wav",
        "hardlink": tmp_path / "moods.json",
        "dot": tmp_path / "." / "song.wav",
        # `predict --format json --output *.mp3`: the shell gave the first song to --output
        "another song": other,
    }[how]
    if how == "symlink":
        output.symlink_to(song)
    if how == "hardlink":
        os.link(song, output)
    # A checkpoint that does not exist: had the model been loaded first, that would fail.
    code, stdout, err = run(
        ["predict", "--format", "json", "--output", output, song, "--model",
         tmp_path / "missing.ckpt"], capsys,
    )  # fmt: skip
    assert code == 2 and stdout == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"error: --output {output}")
    assert "Traceback" not in err and "missing.ckpt" not in err
    assert {p: p.read_bytes() for p in before} == before
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob(".*.tmp"))


def test_resume_from_a_partial_that_is_not_json_lines_is_one_line(tmp_path, write_audio, capsys):
    song = write_audio("song.wav", chord_signal(4.0))
    out = tmp_path / "moods.json"
    partial = tmp_path / "moods.json.partial"
    for garbage in (b"path,top_emotion\nsong.wav,calmness\n", b"\xff\xfe\x00garbage\n", b"[1]\n"):
        partial.write_bytes(garbage)
        code, _, err = run(
            ["predict", song, "--format", "json", "--output", out, "--resume"], capsys
        )
        assert code == 1 and len(err.strip().splitlines()) == 1, err
        assert err.startswith(f"error: {partial}: line 1 is not a moodscope result")
        assert partial.read_bytes() == garbage and not out.exists()


def test_a_long_cjk_name_can_be_the_output(tmp_path, write_audio, capsys):
    song = write_audio("a.wav", chord_signal(4.0))
    out = tmp_path / ("静" * 76 + ".json")  # 232 bytes: legal, the temporary name is not
    code, _, err = run(["predict", song, "--format", "json", "--output", out], capsys)
    assert code == 0, err
    assert [r["path"] for r in json.loads(out.read_text())] == [str(song)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.wav", out.name])
