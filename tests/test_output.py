"""Prediction outputs: rendered formats, the partial file while a run goes, resuming."""

from __future__ import annotations

import json

import pytest

from conftest import chord_signal
from moodscope.errors import ConfigError
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


def test_render_formats():
    results = [_prediction("/a.mp3"), Prediction("/b.mp3", error="/b.mp3: bad")]
    assert [r["path"] for r in json.loads(render(results, "json"))] == ["/a.mp3", "/b.mp3"]
    lines = render(results, "jsonl", timeline=True).splitlines()
    assert json.loads(lines[0])["timeline"][0]["end"] == 3.0 and "error" in json.loads(lines[1])
    csv_text = render(results, "csv")
    assert csv_text.splitlines()[0] == "path,top_emotion,calmness,tension,silent,error"
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
