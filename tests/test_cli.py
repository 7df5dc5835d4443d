"""The command line: each command end to end, one-line errors, exit codes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from conftest import chord_signal, make_emotify_subset
from moodscope.cli import main


def run(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def test_help_lists_commands(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for command in ("features", "validate", "plot", "plot-classes", "demo"):
        assert command in out


def test_missing_data_is_one_line_error(capsys, monkeypatch):
    monkeypatch.delenv("MOODSCOPE_EMOTIFY_DIR", raising=False)
    code, _, err = run(["validate"], capsys)
    assert code == 1
    assert err.strip().startswith("error:") and len(err.strip().splitlines()) == 1
    assert "MOODSCOPE_EMOTIFY_DIR" in err


def test_plot_bad_audio_names_file(tmp_path, capsys):
    bad = tmp_path / "song.mp3"
    bad.write_text("not audio")
    code, _, err = run(["plot", bad, "--kind", "mel", "--out", tmp_path / "x.png"], capsys)
    assert code == 1 and "song.mp3" in err and "Traceback" not in err


@pytest.mark.parametrize("kind", ["waveform", "spectrum", "spectrogram", "mel", "mfcc"])
def test_plot_kinds(write_audio, tmp_path, capsys, kind):
    audio = write_audio("a.wav", chord_signal(3.0))
    png = tmp_path / f"{kind}.png"
    code, _, _ = run(["plot", audio, "--kind", kind, "--out", png], capsys)
    assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_unknown_kind(write_audio, tmp_path, capsys):
    audio = write_audio("a.wav", chord_signal(1.0))
    code, _, err = run(["plot", audio, "--kind", "pie", "--out", tmp_path / "x.png"], capsys)
    assert code == 1 and "pie" in err


@pytest.mark.data
def test_validate_and_plot_classes(emotify_dir, tmp_path, capsys):
    code, out, _ = run(["validate", "--data", emotify_dir], capsys)
    assert code == 0 and "320 tracks, 0 missing, 0 unreadable" in out
    png = tmp_path / "classes.png"
    code, out, _ = run(["plot-classes", "--data", emotify_dir, "--out", png], capsys)
    assert code == 0 and png.is_file() and "calmness" in out


@pytest.mark.data
@pytest.mark.slow
def test_features_goes_past_a_corrupt_file(emotify_dir, tmp_path, capsys):
    root = make_emotify_subset(emotify_dir, tmp_path / "e", [2, 102, 201, 301])
    bad = root / "emotifymusic" / "rock" / "2.mp3"
    bad.unlink()
    bad.write_bytes(b"ID3" + b"\x00" * 2000)
    table = tmp_path / "f.parquet"
    code, out, err = run(
        ["features", "--data", root, "--segments", "10", "--workers", "2", "--out", table], capsys
    )
    assert code == 1
    assert "rock/2.mp3" in err and "1 of 4 file(s) failed" in err
    frame = pd.read_parquet(table)
    assert sorted(frame["track_id"].unique()) == ["2", "201", "301"]
    assert "30 segments of 3 tracks" in out


def test_features_on_a_folder_dataset(write_audio, tmp_path, capsys):
    for i in range(3):
        write_audio(f"t{i}.wav", chord_signal(6.0, seed=i))
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\nt0.wav,calm\nt1.wav,tense\nt2.wav,calm\n")
    out_path = tmp_path / "f.parquet"
    code, _, _ = run(
        [
            "features",
            "--data",
            tmp_path,
            "--labels",
            labels,
            "--segments",
            "3",
            "--workers",
            "1",
            "--out",
            out_path,
        ],
        capsys,
    )
    assert code == 0
    frame = pd.read_parquet(out_path)
    assert len(frame) == 9 and set(frame["label"]) == {"calm", "tense"}


def test_validate_folder_dataset_reports_bad_file(write_audio, tmp_path, capsys):
    write_audio("ok.wav", chord_signal(1.0))
    (tmp_path / "bad.wav").write_text("nope")
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\nok.wav,a\nbad.wav,b\ngone.wav,a\n")
    code, out, _ = run(["validate", "--data", tmp_path, "--labels", labels], capsys)
    assert code == 1
    assert "unreadable" in out and "bad.wav" in out and "missing" in out and "gone.wav" in out


def test_demo_runs_offline(tmp_path, capsys):
    code, out, _ = run(["demo", "--out", tmp_path / "demo"], capsys)
    assert code == 0
    assert (tmp_path / "demo").is_dir() and any(Path(tmp_path / "demo").rglob("*.png"))


def test_usage_error_is_not_a_traceback(capsys):
    code, _, err = run(["features", "--segments", "many", "--out", "x.parquet"], capsys)
    assert code == 2 and "Traceback" not in err and "--segments" in err


class _Captured(Exception):
    pass


class _StubDataset:
    labels = ("calm", "power")
    root = Path("stub")

    def by_track(self):
        return pd.DataFrame()

    def share_table(self):
        return None


@pytest.fixture
def captured(monkeypatch):
    """Run train/crossval/compare up to the Python API call and keep what reached it."""
    import moodscope.research.comparison
    import moodscope.research.evaluation
    import moodscope.research.experiment
    import moodscope.research.runs
    from moodscope.errors import MoodscopeError

    seen: dict = {}

    def stop(**kwargs):
        seen.update(kwargs)
        raise MoodscopeError("captured")

    monkeypatch.setattr(
        moodscope.research.runs,
        "dataset_table",
        lambda *a, **kw: (_StubDataset(), pd.DataFrame(), []),
    )
    research = moodscope.research
    monkeypatch.setattr(research.experiment, "train_and_test", lambda table, **kw: stop(**kw))
    monkeypatch.setattr(research.evaluation, "crossval", lambda table, tracks, **kw: stop(**kw))
    monkeypatch.setattr(
        research.comparison, "compare_models", lambda dataset, table, models, **kw: stop(**kw)
    )
    return seen


TRAINING_FLAGS = [
    (["--class-weight"], {"balance": "class_weight"}),
    (["--no-smote"], {"balance": "none"}),
    (["--smote"], {"balance": "smote"}),
    ([], {"balance": None, "select": "val_loss", "bn_reestimate": False, "stop_on": "select"}),
    (
        ["--select", "val_macro_f1", "--bn-reestimate", "--stop-on", "both"],
        {"select": "val_macro_f1", "bn_reestimate": True, "stop_on": "both"},
    ),
]


@pytest.mark.parametrize("command", ["train", "crossval", "compare"])
@pytest.mark.parametrize("flags, expected", TRAINING_FLAGS)
def test_training_options_reach_train_config(command, flags, expected, captured, tmp_path, capsys):
    code, _, err = run([command, "--data", tmp_path, "--out", tmp_path / "o", *flags], capsys)
    assert code == 1 and "captured" in err, err
    config = captured["train_config"]
    for key, value in expected.items():
        assert getattr(config, key) == value, key


def test_flags_override_the_yaml_train_section(captured, tmp_path, capsys):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("train:\n  balance: class_weight\n  select: val_macro_f1\n")
    run(["crossval", "--data", tmp_path, "--out", tmp_path / "o", "--config", yaml_file], capsys)
    assert captured["train_config"].balance == "class_weight"
    assert captured["train_config"].select == "val_macro_f1"
    captured.clear()
    run(
        ["crossval", "--data", tmp_path, "--out", tmp_path, "--config", yaml_file, "--smote"],
        capsys,
    )
    assert captured["train_config"].balance == "smote"


def test_compare_variants_reach_the_api(captured, tmp_path, capsys):
    run(["compare", "--data", tmp_path, "--out", tmp_path, "--variants", "smote,none"], capsys)
    assert captured["variants"] == ["smote", "none"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--smote", "--class-weight"], "pick one"),
        (["--select", "val_accuracy"], "select must be one of val_loss, val_macro_f1"),
        (["--stop-on", "never"], "stop_on must be one of"),
        (["--variants", "smote,oversample"], "unknown balance 'oversample'"),
    ],
)
def test_bad_training_options_are_one_line_errors(flags, message, captured, tmp_path, capsys):
    code, _, err = run(["compare", "--data", tmp_path, "--out", tmp_path, *flags], capsys)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err
    assert not captured  # refused before any training
