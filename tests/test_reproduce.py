"""End to end on a handful of real tracks: reproduce, train, crossval, evaluate (1-2 epochs;
these check files and keys, not accuracy)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from moodscope.inference.checkpoint import load_checkpoint
from test_cli import run

pytestmark = [pytest.mark.data, pytest.mark.slow]


def test_reproduce_writes_report(emotify_subset, tmp_path, capsys):
    out = tmp_path / "report"
    code, stdout, _ = run(
        [
            "reproduce",
            "--data",
            emotify_subset,
            "--out",
            out,
            "--segments",
            "10",
            "12",
            "--epochs",
            "1",
            "--honest-folds",
            "2",
            "--variants",
            "smote",
            "--workers",
            "2",
        ],
        capsys,
    )
    assert code == 0, stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["segmentations"]) == {"10", "12"}
    for m in metrics["segmentations"].values():
        for key in (
            "segment_accuracy",
            "per_class",
            "confusion_matrix",
            "labels",
            "leak_fraction",
            "epochs",
            "train_seconds",
        ):
            assert key in m, key
        assert m["leak_fraction"] > 0.5  # paper mode leaks, and says so
        assert set(m["per_class"][m["labels"][0]]) == {"precision", "recall", "f1", "support"}
        honest = m["honest"]
        assert honest["majority"]["summary"]["track_accuracy"]["mean"] >= 0
        assert "paper_cnn_lstm" in honest  # as the paper trained it, split by track
        assert len(honest["variants"]) == 4  # one balance: 2 checkpoint rules x BN or not
        assert honest["chosen"] in honest["variants"]
        assert honest["choose_by"] == "validation track_accuracy"
    md = (out / "report.md").read_text()
    assert "Table 4" in md and "74.8 %" in md and "The leak" in md and "by track" in md
    # Table 4: the paper's number, paper mode with its leak, and the model without the leak.
    table4 = md.split("Table 4")[1].split("\n\n")[1].splitlines()
    assert "the paper's number" in table4[0] and "paper mode, measured" in table4[0]
    assert "trained without the leak" in table4[0]
    for n, row in zip(("10", "12"), table4[2:4]):
        cells = [c.strip() for c in row.strip("|").split("|")]
        chosen = metrics["segmentations"][n]["honest"]
        chosen = chosen["variants"][chosen["chosen"]]
        assert cells[1] == ("74.8 %" if n == "10" else "-")
        assert cells[3].endswith("%")  # the leak
        assert cells[4] == "{:.1f} ± {:.1f} %".format(
            100 * chosen["summary"]["segment_accuracy"]["mean"],
            100 * chosen["summary"]["segment_accuracy"]["std"],
        )
        assert cells[6] == chosen["variant"]["label"]
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 10  # figures embedded
    for name in (
        "accuracy-10seg",
        "loss-12seg",
        "confusion-10seg",
        "class-counts",
        "example-waveform",
        "example-spectrum",
        "example-mfcc",
    ):
        assert (out / "figures" / f"{name}.png").is_file(), name
    assert yaml.safe_load((out / "config.yaml").read_text())["segmentations"] == [10, 12]
    load_checkpoint(out / "model-10seg.ckpt")


def test_train_then_evaluate(emotify_subset, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, stdout, _ = run(
        [
            "train",
            "--data",
            emotify_subset,
            "--model",
            "logistic_regression",
            "--out",
            run_dir,
            "--segments",
            "10",
            "--protocol",
            "track",
            "--workers",
            "1",
        ],
        capsys,
    )
    assert code == 0, stdout
    assert {p.name for p in run_dir.iterdir()} >= {"model.ckpt", "metrics.json", "config.yaml"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["leak_fraction"] == 0.0 and "track_accuracy" in metrics
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"] == "logistic_regression" and config["protocol"] == "track"

    eval_dir = tmp_path / "eval"
    code, stdout, _ = run(
        ["evaluate", run_dir / "model.ckpt", "--data", emotify_subset, "--out", eval_dir],
        capsys,
    )
    assert code == 0, stdout
    m = json.loads((eval_dir / "metrics.json").read_text())
    for key in (
        "track_accuracy",
        "track_macro_f1",
        "track_balanced_accuracy",
        "segment_accuracy",
        "per_class",
        "per_genre",
        "confusion_matrix",
        "labels",
        "emotion_correlation",
    ):
        assert key in m, key
    assert m["n_tracks"] == 8 and "mean" in m["emotion_correlation"]
    assert (eval_dir / "report.html").is_file()
    # A model trained without a calibration map: ranked by its raw margin, and said so.
    held = m["held_out"]
    assert held["calibration"] is None and held["ranked_by"] == "margin"
    assert [r["coverage"] for r in held["risk_coverage"]["table"]] == [0.25, 0.5, 0.75, 1.0]
    assert held["risk_coverage"]["table"][-1]["accuracy"] == m["track_accuracy"]
    assert held["factors"]["n_tracks"] == 8 and held["listeners"]["n_tracks"] == 8
    report = (eval_dir / "report.md").read_text()
    assert "carries no calibration map" in report and "listener panels" in report
    assert (eval_dir / "figures" / "risk_coverage.png").is_file()


def test_crossval_cli(emotify_subset, tmp_path, capsys):
    out = tmp_path / "cv"
    code, stdout, _ = run(
        [
            "crossval",
            "--data",
            emotify_subset,
            "--model",
            "random_forest",
            "--folds",
            "2",
            "--segments",
            "10",
            "--out",
            out,
            "--workers",
            "1",
        ],
        capsys,
    )
    assert code == 0, stdout
    m = json.loads((out / "metrics.json").read_text())
    assert len(m["folds"]) == 2
    for key in (
        "track_accuracy",
        "track_macro_f1",
        "track_balanced_accuracy",
        "segment_accuracy",
        "per_class",
        "per_genre",
        "confusion_matrix",
        "labels",
        "emotion_correlation",
    ):
        assert key in m, key
    assert (out / "out_of_fold.csv").is_file() and (out / "report.md").is_file()


def test_compare_soft_track_level(emotify_subset, tmp_path, capsys):
    out = tmp_path / "cmp"
    code, stdout, _ = run(
        [
            "compare",
            "--data",
            emotify_subset,
            "--models",
            "majority,ridge",
            "--folds",
            "2",
            "--segments",
            "10",
            "--aggregate",
            "track",
            "--soft",
            "--out",
            out,
            "--workers",
            "1",
        ],
        capsys,
    )
    assert code == 0, stdout
    table = (out / "comparison.md").read_text()
    assert "| ridge |" in table and "soft labels" in table and "model input: tracks" in table
    summary = json.loads((out / "comparison.json").read_text())
    assert summary["ridge"]["soft_labels"] is True and summary["ridge"]["aggregate"] == "track"


def test_evaluate_on_release_format_originals(emotify_dir, tmp_path, capsys):
    """The full release is 44.1 kHz stereo MP3: evaluate must take it as it takes the dev copy."""
    import pandas as pd
    import soundfile as sf

    from conftest import SUBSET_IDS
    from moodscope import load_audio
    from moodscope.datasets import track_path

    root = tmp_path / "release"
    raw = pd.read_csv(emotify_dir / "data.csv", skipinitialspace=True)
    raw = raw[raw["track id"].isin(SUBSET_IDS[::2])]
    root.mkdir()
    raw.to_csv(root / "data.csv", index=False)
    for tid, genre in raw.groupby("track id")["genre"].first().items():
        y = load_audio(track_path(emotify_dir, tid, genre), sr=44100)
        dst = track_path(root, tid, genre)
        dst.parent.mkdir(parents=True, exist_ok=True)
        sf.write(dst, np.stack([y, 0.9 * y], axis=1), 44100, format="MP3")
        assert sf.info(dst).channels == 2 and sf.info(dst).samplerate == 44100
    from moodscope.inference.predictor import default_model_path

    out = tmp_path / "eval"
    code, stdout, _ = run(
        ["evaluate", default_model_path(), "--data", root, "--out", out, "--workers", "2"], capsys
    )
    assert code == 0, stdout
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_tracks"] == 4 and m["n_failed"] == 0
    cal = m["held_out"]["calibration"]  # the shipped model is calibrated
    assert 0 <= cal["ece"] <= 1 and sum(b["n_tracks"] for b in cal["bins"]) == 4
    assert (out / "figures" / "reliability.png").is_file()
