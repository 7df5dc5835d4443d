"""Write a cross-validation or evaluation run: metrics.json, report.md, report.html, figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moodscope.atomic import write_text_atomic
from moodscope.research.plots import plot_confusion_matrix
from moodscope.research.report import Report, write_json


def _fmt(stat) -> str:
    if stat is None:
        return "n/a"
    if isinstance(stat, dict):
        return f"{stat['mean']:.3f} ± {stat['std']:.3f}"
    return f"{stat:.3f}"


def _per_class(report: Report, per_class: dict, heading: str) -> None:
    """Precision, recall, F1 and support per class (values or mean ± std over folds)."""
    report.heading(heading)
    report.table(
        ["class", "precision", "recall", "F1", "tracks"],
        [
            [label, _fmt(c["precision"]), _fmt(c["recall"]), _fmt(c["f1"]), c["support"]]
            for label, c in per_class.items()
        ],
    )


def _correlation(report: Report, correlation: dict | None) -> None:
    """Pearson r of predicted probability against listener share, per emotion (if known)."""
    if correlation:
        report.heading("Predicted probability vs listener share (Pearson r per emotion)")
        report.table(["emotion", "r"], [[k, _fmt(v)] for k, v in correlation.items()])


def crossval_report(result: dict, title: str) -> Report:
    report = Report(title)
    s = result["summary"]
    report.paragraph(
        f"Model `{result['model']}`, features `{result['features']['feature_set']}` "
        f"({result['features']['segments']} segments per track), {result['protocol']}; "
        f"SMOTE on training tracks only: {result['smote']}. Every value is the mean ± std "
        "over folds; a track's prediction is the mean of its segments' probabilities."
    )
    report.heading("Headline (track level)")
    report.table(
        ["metric", "mean ± std"],
        [
            ["track accuracy", _fmt(s["track_accuracy"])],
            ["track balanced accuracy", _fmt(s["track_balanced_accuracy"])],
            ["track macro-F1", _fmt(s["track_macro_f1"])],
            ["segment accuracy", _fmt(s["segment_accuracy"])],
            ["mean emotion correlation (r)", _fmt(s["emotion_correlation_mean"])],
        ],
    )
    report.heading("Per fold")
    report.table(
        ["fold", "tracks", "accuracy", "balanced acc.", "macro-F1", "mean r", "epochs", "train s"],
        [
            [
                f["fold"],
                f["n_tracks"],
                _fmt(f["track_accuracy"]),
                _fmt(f["track_balanced_accuracy"]),
                _fmt(f["track_macro_f1"]),
                _fmt(f["emotion_correlation_mean"]),
                f["epochs"],
                f"{f['train_seconds']:.1f}",
            ]
            for f in result["folds"]
        ],
    )
    _per_class(report, s["per_class"], "Per class (track level)")
    if s["per_genre"]:
        report.heading("Per genre")
        report.table(
            ["genre", "track accuracy", "track macro-F1"],
            [
                [g, _fmt(v["track_accuracy"]), _fmt(v["track_macro_f1"])]
                for g, v in s["per_genre"].items()
            ],
        )
    _correlation(report, s.get("emotion_correlation"))
    report.figure(
        plot_confusion_matrix(
            np.asarray(s["confusion_matrix"]), result["labels"], title="tracks, all folds"
        ),
        "confusion",
        "Confusion matrix of the out-of-fold track predictions",
    )
    return report


def write_crossval(result: dict, out_dir: str | Path, title: str) -> Path:
    out_dir = Path(out_dir)
    serializable = {k: v for k, v in result.items() if k != "out_of_fold"}
    write_json(out_dir / "metrics.json", serializable)
    oof = result["out_of_fold"]
    oof.index.name = "track_id"
    write_text_atomic(out_dir / "out_of_fold.csv", oof.to_csv())
    crossval_report(result, title).write(out_dir)
    return out_dir


def evaluation_report(metrics: dict, title: str, description: str) -> Report:
    report = Report(title)
    report.paragraph(description)
    report.table(
        ["metric", "value"],
        [
            ["tracks", metrics["n_tracks"]],
            ["track accuracy", _fmt(metrics["track_accuracy"])],
            ["track balanced accuracy", _fmt(metrics["track_balanced_accuracy"])],
            ["track macro-F1", _fmt(metrics["track_macro_f1"])],
            ["segment accuracy", _fmt(metrics["segment_accuracy"])],
            ["mean emotion correlation (r)", _fmt(metrics.get("emotion_correlation_mean"))],
        ],
    )
    _per_class(report, metrics["per_class"], "Per class")
    if metrics["per_genre"]:
        report.heading("Per genre")
        report.table(
            ["genre", "tracks", "track accuracy", "track macro-F1"],
            [
                [g, v["n_tracks"], _fmt(v["track_accuracy"]), _fmt(v["track_macro_f1"])]
                for g, v in metrics["per_genre"].items()
            ],
        )
    _correlation(report, metrics.get("emotion_correlation"))
    report.figure(
        plot_confusion_matrix(np.asarray(metrics["confusion_matrix"]), metrics["labels"]),
        "confusion",
        "Confusion matrix (tracks)",
    )
    return report
