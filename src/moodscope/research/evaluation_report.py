"""Write a cross-validation or evaluation run: metrics.json, report.md, report.html, figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moodscope.atomic import write_text_atomic
from moodscope.research.plots import (
    plot_confusion_matrix,
    plot_reliability,
    plot_risk_coverage,
)
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


def held_out_sections(report: Report, held: dict | None, *, figures: bool = True) -> None:
    """The yardsticks of :mod:`moodscope.yardstick` (risk-coverage, calibration, factors,
    listener panels) as headings, tables and figures."""
    if not held:
        return
    from moodscope.research.yardstick import worth_words

    rc = held["risk_coverage"]
    ranked = "confidence" if held["ranked_by"] == "confidence" else f"the raw {held['ranked_by']}"
    report.heading("Accuracy against coverage (held-out tracks)")
    report.paragraph(
        f"The {rc['n_tracks']} tracks ranked by {ranked}, most confident first; each row keeps "
        "that share of them. `min confidence` is the threshold (`--min-confidence`) that "
        "keeps them."
    )
    top = [k for k in ("top2_accuracy", "top3_accuracy") if k in rc["table"][0]]
    report.table(
        ["coverage", "tracks", "min confidence", "mean confidence", "accuracy"]
        + [k.replace("_accuracy", " accuracy").replace("top", "top-") for k in top],
        [
            [
                f"{r['coverage']:.0%}",
                r["n_tracks"],
                f"{r['min_confidence']:.3f}",
                f"{r['mean_confidence']:.3f}",
                f"{r['accuracy']:.3f}",
                *[f"{r[k]:.3f}" for k in top],
            ]
            for r in rc["table"]
        ],
    )
    if figures:
        report.figure(plot_risk_coverage(held), "risk_coverage", "Risk-coverage curve")
    cal = held.get("calibration")
    report.heading("Calibration (held-out tracks)")
    if cal is None:
        report.paragraph(
            "The model carries no calibration map, so its predictions have no confidence "
            "(the ranking above uses the raw score)."
        )
    else:
        report.paragraph(
            f"Expected calibration error {cal['ece']:.3f} (10 equal-width bins); mean "
            f"confidence {cal['mean_confidence']:.3f} against accuracy {cal['accuracy']:.3f}; "
            f"the more confident half is {held['confident_half_accuracy']:.3f} accurate, the "
            f"other half {held['other_half_accuracy']:.3f}."
        )
        report.table(
            ["confidence bin", "tracks", "mean confidence", "accuracy"],
            [
                [
                    f"{b['low']:.1f}-{b['high']:.1f}",
                    b["n_tracks"],
                    f"{b['mean_confidence']:.3f}",
                    f"{b['accuracy']:.3f}",
                ]
                for b in cal["bins"]
            ],
        )
        if figures:
            report.figure(plot_reliability(cal), "reliability", "Reliability diagram")
        report.heading("What a `--min-confidence` keeps (held-out tracks)")
        report.table(
            ["min confidence C", "tracks at or above C", "their accuracy"],
            [
                [
                    f"{t['min_confidence']:.2f}",
                    f"{t['coverage']:.0%} ({t['n_tracks']})",
                    "n/a" if t["accuracy"] is None else f"{t['accuracy']:.3f}",
                ]
                for t in held["thresholds"]
            ],
        )
    factors = held.get("factors")
    if factors:
        report.heading("The three GEMS factors (held-out tracks)")
        report.paragraph(
            "The predicted top factor (sublimity: amazement, solemnity, tenderness, nostalgia, "
            "calmness; vitality: power, joyful activation; unease: tension, sadness) against "
            "the factor with the largest summed listener share."
        )
        report.table(
            ["metric", "value"],
            [
                ["factor accuracy", f"{factors['accuracy']:.3f}"],
                ["factor balanced accuracy", f"{factors['balanced_accuracy']:.3f}"],
                [f"always {factors['majority']}", f"{factors['majority_accuracy']:.3f}"],
                *[
                    [f"{f} recall ({c['support']} tracks)", f"{c['recall']:.3f}"]
                    for f, c in factors["per_factor"].items()
                ],
            ],
        )
    listeners = held.get("listeners")
    if listeners:
        report.heading("The model against listener panels (held-out tracks)")
        report.paragraph(
            f"For each track {listeners['target_listeners']} of its listeners are held out as "
            "the target (their most-ticked emotion); the model's top emotion and the "
            "most-ticked emotion of n *other* listeners are scored against it, ties counted "
            f"as a choice at random; {listeners['repeats']} draws per track, "
            f"{listeners['n_tracks']} tracks. In words: {worth_words(listeners)}."
        )
        report.table(
            ["who answers", "agreement with the held-out listeners"],
            [
                [
                    f"majority of {p['listeners']} other listener{'s' * (p['listeners'] > 1)}",
                    f"{p['agreement']:.3f}",
                ]  # fmt: skip
                for p in listeners["panels"]
            ]
            + [["the model", f"{listeners['model']:.3f}"]],
        )
        wide = listeners.get("wide")
        if wide:
            fewest = wide["target_listeners"] + wide["panels"][-1]["listeners"]
            report.paragraph(
                f"The same on the {wide['n_tracks']} tracks with {fewest} or more listeners, "
                f"panels up to {wide['panels'][-1]['listeners']}: the model is worth "
                + (
                    f"more than {wide['panels'][-1]['listeners']}"
                    if wide["beyond"]
                    else "n/a"
                    if wide["worth"] is None
                    else f"{wide['worth']:.1f}"
                )
                + " listeners."
            )
            report.table(
                ["who answers", "agreement with the held-out listeners"],
                [[f"majority of {p['listeners']}", f"{p['agreement']:.3f}"] for p in wide["panels"]]
                + [["the model", f"{wide['model']:.3f}"]],
            )


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
    held_out_sections(report, metrics.get("held_out"))
    by_genre_sections(report, metrics.get("by_genre"))
    domain_shift_sections(
        report,
        metrics.get("domain_shift"),
        note="The model's own figures, measured when it was built, on its training data "
        "(not on the tracks evaluated here).",
    )
    circumplex_sections(report, metrics.get("circumplex"))
    return report


def _half(m: dict) -> str:
    return f"{m['confident_half_accuracy']:.3f} / {m['other_half_accuracy']:.3f}"


def _coverage(m: dict, coverage: float) -> str:
    row = next((r for r in m["risk_coverage"] if abs(r["coverage"] - coverage) < 1e-9), None)
    return "n/a" if row is None else f"{row['accuracy']:.3f}"


def domain_shift_sections(report: Report, shift: dict | None, *, note: str = "") -> None:
    """Confidence in domain and with each genre held out, the map before and now
    (:func:`moodscope.research.domain_shift.shift_study`), and the aggression rule's effect;
    ``note`` says where the figures come from when that is not evident."""
    if not shift:
        return
    report.heading("Confidence on a genre it never heard (leave one genre out)")
    if note:
        report.paragraph(note)
    report.paragraph(
        "In domain: out-of-fold tracks of the genres the model trained on (5-fold by track). "
        "Genre held out: the head trained on the other three genres and its confidence map "
        "fitted on out-of-fold predictions of those three alone; the held-out genre's tracks "
        "scored. *before*: a logistic curve in the margin fitted on in-domain predictions "
        "(the previous map); *now*: a logistic curve in the margin and the track's novelty "
        "(distance to the nearest training tracks over the training tracks' own median; "
        "about 1 in domain), fitted on in-domain and genre-held-out predictions together. "
        "ECE: expected calibration error (10 bins). Halves: accuracy of the more confident "
        "half / the rest. Top 25 %/50 %: accuracy of the most confident quarter/half "
        "(risk-coverage)."
    )
    rows = []
    places = [("in domain", shift["in_domain"])] + [
        (f"{g} held out ({v['n_tracks']} tracks)", v) for g, v in shift["genres"].items()
    ]
    for place, v in places:
        for name in ("before", "now"):
            m = v[name]
            rows.append(
                [
                    place if name == "before" else "",
                    f"{v['novelty_median']:.2f}" if name == "before" else "",
                    name,
                    f"{m['accuracy']:.3f}",
                    f"{m['mean_confidence']:.3f}",
                    f"{m['ece']:.3f}",
                    _half(m),
                    _coverage(m, 0.25),
                    _coverage(m, 0.5),
                ]
            )
    report.table(
        [
            "tracks",
            "median novelty",
            "map",
            "accuracy",
            "mean confidence",
            "ECE",
            "halves",
            "top 25 %",
            "top 50 %",
        ],
        rows,
    )
    rule = shift.get("aggression_rule")
    if rule:
        loud = ", ".join(
            f"{t['track_id']} ({t['genre']}, aggression {t['aggression']:.2f}: metal "
            f"{t['tags']['metal']:.2f}, punk {t['tags']['punk']:.2f}, hard rock "
            f"{t['tags']['hard rock']:.2f}; {t['top_emotion']}, valence {t['valence']:+.2f}, "
            f"rank {t['valence_rank']} of {rule['n_tracks']} from the lowest)"
            for t in rule["most_aggressive"]
        )
        report.heading("The aggression rule on Emotify (out-of-fold tracks)")
        report.paragraph(
            f"Track accuracy without the rule {rule['accuracy_without']:.3f}, with it "
            f"{rule['accuracy_with']:.3f}; it changes the top emotion of "
            f"{rule['top_changed']} of {rule['n_tracks']} tracks and moves more than 0.01 of "
            f"share on {rule['moved_over_1pct']} (at most {rule['largest_move']:.3f}). The "
            f"tagger's most aggressive Emotify tracks: {loud}."
        )


def circumplex_sections(report: Report, summary: dict | None) -> None:
    """What arousal and valence are (declared) and the consistency checks run here."""
    from moodscope.emotions import AGGRESSIVE_TAGS, BRIGHT_TAGS, CIRCUMPLEX, DARK_TAGS

    report.heading("Arousal and valence: the mapping (declared before it was measured)")
    report.paragraph(
        "Each GEMS category sits on Russell's circumplex (J. A. Russell, \"A circumplex model "
        'of affect", J. Pers. Soc. Psychol. 39(6), 1980: pleasure 0°, excitement 45°, '
        "arousal 90°, distress 135°, displeasure 180°, depression 225°, sleepiness 270°, "
        "relaxation 315°) at the octant its GEMS-9 adjectives name (Zentner, Grandjean & "
        "Scherer 2008), or halfway between two. A track's arousal is the share-weighted mean "
        "of sin(angle), its valence of cos(angle), each in [-1, 1]. Where the model reads "
        "musicnn's MSD tagger, valence is the mean of that and the tagger's reading: the "
        f"chance that any of {', '.join(BRIGHT_TAGS)} applies minus the chance that any of "
        f"{', '.join(DARK_TAGS)} does (tags taken as independent). Aggression rule: the "
        f"share of joyful activation equal to the chance that any of "
        f"{', '.join(AGGRESSIVE_TAGS)} applies moves half to power and half to tension, "
        "before the top emotion, confidence, arousal and valence are read. No constant here "
        "was fitted to data; none was chosen on labelled valence or angry music."
    )
    report.table(
        ["category", "angle", "arousal", "valence"],
        [
            [e, f"{a:g}°", f"{np.sin(np.radians(a)):+.2f}", f"{np.cos(np.radians(a)):+.2f}"]
            for e, a in CIRCUMPLEX.items()
        ],
    )
    if not summary:
        return
    report.heading("Arousal and valence: what was checked here")
    report.paragraph(
        "Not validated on labelled arousal or valence data: Emotify has none. Checked: the "
        "mean per genre, and Pearson r between the predicted values and the same circumplex "
        "reading of the listeners' own emotion shares (arousal r "
        f"{summary.get('arousal_r_listeners', float('nan')):.3f}, valence r "
        f"{summary.get('valence_r_listeners', float('nan')):.3f}); this tests the model "
        "against its listeners under the declared mapping, not the mapping itself."
    )
    report.table(
        ["genre", "tracks", "mean arousal", "mean valence"],
        [
            [g, v["n_tracks"], f"{v['arousal']:+.3f}", f"{v['valence']:+.3f}"]
            for g, v in summary["per_genre"].items()
        ],
    )


def by_genre_sections(report: Report, per_genre: dict | None) -> None:
    """The evaluated tracks' confidence per genre, and how far they lie from training."""
    if not per_genre:
        return
    report.heading("Confidence per genre (evaluated tracks)")
    report.paragraph(
        "Median novelty: how far the genre's tracks lie from the model's training tracks "
        "(about 1: as close as those lie to each other). Halves: accuracy of the more "
        "confident half / the rest."
    )
    report.table(
        ["genre", "tracks", "median novelty", "accuracy", "mean confidence", "ECE", "halves"],
        [
            [
                g,
                v["n_tracks"],
                f"{v['novelty_median']:.2f}" if "novelty_median" in v else "n/a",
                f"{v['accuracy']:.3f}",
                f"{v['mean_confidence']:.3f}" if "ece" in v else "n/a",
                f"{v['ece']:.3f}" if "ece" in v else "n/a",
                _half(v) if "ece" in v else "n/a",
            ]
            for g, v in per_genre.items()
        ],
    )
