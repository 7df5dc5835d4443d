"""What makes the confidence better: accuracy at fixed coverage under the shipped recipe's CV.

    python tools/confidence_experiments.py --data $MOODSCOPE_EMOTIFY_DIR [--seeds 0,1,2] \
        [--out docs/confidence_experiments.md]

Every variant is scored on the same 5-fold track-disjoint splits (one per seed), its
confidence cross-fitted (each fold's tracks through a map fitted on the other folds'
out-of-fold predictions): accuracy of the most confident 25 % and 50 %, all tracks, and
the expected calibration error, mean over seeds. Variants: the score (margin, top share)
and map (isotonic, Platt); softmax temperature; the agreement of the timeline's windows
with the track's top emotion, alone and with the margin; the regularisation C; MSD and
MTT musicnn features together; an ensemble of models trained on the folds (nested).
Then the strongest contender, a smaller C, against the shipped C on ``--paired-splits``
more splits, split by split.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from moodscope.datasets import EmotifyDataset
from moodscope.features import FeatureConfig, extract_features
from moodscope.inference.calibration import confidence_score, crossfit_confidence
from moodscope.models.training import TrainConfig
from moodscope.research.evaluation import trained_folds
from moodscope.research.metrics import calibration_error, risk_coverage
from moodscope.research.report import write_text_atomic


def _platt_2d(features: np.ndarray, correct: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Cross-fitted logistic regression of being right on several scores."""
    from sklearn.linear_model import LogisticRegression

    out = np.empty(len(correct))
    for k in np.unique(folds):
        rest = folds != k
        fit = LogisticRegression(C=1e4).fit(features[rest], correct[rest].astype(int))
        out[~rest] = fit.predict_proba(features[~rest])[:, 1]
    return out


def _oof(dataset, table, config, *, seed, model_kwargs, ensemble=False):
    """Out-of-fold track distributions, window agreement, fold of each track, truth."""
    tracks, labels = dataset.by_track(), list(dataset.labels)
    common = dict(
        model="logistic_regression",
        feature_config=config,
        labels=labels,
        folds=5,
        train_config=TrainConfig(seed=seed),
        model_kwargs=model_kwargs,
        shares=tracks[labels],
        aggregate="track",
        soft=True,
    )
    columns = list(config.columns)
    ids, proba, agree, fold = [], [], [], []
    for run in trained_folds(table, **common):
        test_ids = list(dict.fromkeys(run.result.test_tracks.astype(str)))
        models = [run.result.model]
        if ensemble:  # nested: models trained on the folds of this fold's training tracks
            inner = table[~table["track_id"].astype(str).isin(test_ids)]
            models = [r.result.model for r in trained_folds(inner, **common)]
        for t in test_ids:
            rows = table[table["track_id"].astype(str) == t][columns].to_numpy()
            outs = [m.predict_track(rows) for m in models]
            p = np.mean([o[0] for o in outs], axis=0)
            timeline = np.mean([o[1] for o in outs], axis=0)
            ids.append(t)
            proba.append(p)
            agree.append(float(np.mean(timeline.argmax(axis=1) == p.argmax())))
            fold.append(run.k)
        order = run.split.labels
    truth = tracks.loc[ids, "label"].map({label: i for i, label in enumerate(order)}).to_numpy()
    return np.array(proba), np.array(agree), np.array(fold), truth


def _scores(proba, correct, fold, confidence) -> dict:
    rc = risk_coverage(confidence, correct, tiebreak=confidence_score(proba))["table"]
    return {
        "acc25": rc[0]["accuracy"],
        "acc50": rc[1]["accuracy"],
        "acc100": rc[3]["accuracy"],
        "ece": calibration_error(confidence, correct)["ece"],
    }


def _temper(proba: np.ndarray, t: float) -> np.ndarray:
    p = np.asarray(proba) ** (1.0 / t)  # softmax(z / t) from softmax(z)
    return p / p.sum(axis=1, keepdims=True)


def _paired(args, dataset, table_config) -> list[str]:
    """A smaller C against the shipped one on the same splits: mean difference and wins."""
    table, config = table_config
    keys = ("acc25", "acc50", "acc100", "ece")
    diffs = {k: [] for k in keys}
    for seed in range(args.paired_splits):
        scores = []
        for c in (args.paired_c, 0.01):
            p, _, f, tr = _oof(dataset, table, config, seed=seed, model_kwargs={"C": c})
            ok = p.argmax(axis=1) == tr
            scores.append(_scores(p, ok, f, crossfit_confidence(p, ok, f, method="platt")))
        for k in keys:
            diffs[k].append(scores[0][k] - scores[1][k])
    names = {"acc25": "acc. top 25 %", "acc50": "acc. top 50 %", "acc100": "acc. all", "ece": "ECE"}
    out = [
        "",
        f"C={args.paired_c} minus the shipped C=0.01 (margin, Platt) on splits "
        f"0-{args.paired_splits - 1}, split by split:\n",
        "| metric | mean difference | splits where C=" + f"{args.paired_c} is higher |",
        "|---|---|---|",
    ]
    for k in keys:
        d = np.array(diffs[k])
        out.append(f"| {names[k]} | {d.mean():+.3f} | {int((d > 0).sum())} of {len(d)} |")
    return out


def run(args) -> str:
    dataset = EmotifyDataset(args.data)
    tables = {}
    results: dict[str, list[dict]] = {}

    def table_for(features):
        if features not in tables:
            config = FeatureConfig(feature_set=features, segments=20)
            table, failures = extract_features(dataset, config, workers=args.workers)
            if failures:
                print(f"{len(failures)} tracks failed", file=sys.stderr)
            tables[features] = (table, config)
        return tables[features]

    def add(name, proba, correct, fold, confidence):
        results.setdefault(name, []).append(_scores(proba, correct, fold, confidence))

    for seed in args.seeds:
        started = time.perf_counter()
        table, config = table_for("musicnn_msd_full")
        proba, agree, fold, truth = _oof(
            dataset, table, config, seed=seed, model_kwargs={"C": 0.01}
        )
        correct = proba.argmax(axis=1) == truth
        for score in ("margin", "top_share"):
            for method in ("isotonic", "platt"):
                conf = crossfit_confidence(proba, correct, fold, score=score, method=method)
                add(f"shipped recipe; {score}, {method}", proba, correct, fold, conf)
        for t in (0.5, 2.0):
            tp = _temper(proba, t)
            conf = crossfit_confidence(tp, correct, fold, score="margin", method="platt")
            add(f"temperature {t}; margin, platt", tp, correct, fold, conf)
        margin = confidence_score(proba)
        add(
            "window agreement alone (platt)",
            proba, correct, fold, _platt_2d(agree[:, None], correct, fold),
        )  # fmt: skip
        add(
            "margin + window agreement (2-d platt)",
            proba, correct, fold, _platt_2d(np.c_[margin, agree], correct, fold),
        )  # fmt: skip
        for c in args.c_values:
            p, _, f, tr = _oof(dataset, table, config, seed=seed, model_kwargs={"C": c})
            ok = p.argmax(axis=1) == tr
            add(f"C={c}; margin, platt", p, ok, f, crossfit_confidence(p, ok, f, method="platt"))
        p, _, f, tr = _oof(
            dataset, table, config, seed=seed, model_kwargs={"C": 0.01}, ensemble=True
        )
        ok = p.argmax(axis=1) == tr
        add("ensemble of 4 nested fold models; margin, platt", p, ok, f,
            crossfit_confidence(p, ok, f, method="platt"))  # fmt: skip
        both, both_config = table_for("musicnn_msd_full+musicnn_mtt_full")
        for c in (0.005, 0.01):
            p, _, f, tr = _oof(dataset, both, both_config, seed=seed, model_kwargs={"C": c})
            ok = p.argmax(axis=1) == tr
            add(f"MSD+MTT, C={c}; margin, platt", p, ok, f,
                crossfit_confidence(p, ok, f, method="platt"))  # fmt: skip
        print(f"seed {seed}: {time.perf_counter() - started:.0f} s", file=sys.stderr)

    lines = [
        f"5-fold track-disjoint CV of logistic regression on track mean/std rows, soft labels, "
        f"{len(dataset)} tracks; seeds {', '.join(map(str, args.seeds))} (one split each); "
        "confidence cross-fitted; mean (min-max) over seeds. "
        "`python tools/confidence_experiments.py --data $MOODSCOPE_EMOTIFY_DIR`\n",
        "| variant | acc. top 25 % | acc. top 50 % | acc. all | ECE |",
        "|---|---|---|---|---|",
    ]
    for name, rows in results.items():
        cells = []
        for key in ("acc25", "acc50", "acc100", "ece"):
            v = [r[key] for r in rows]
            cells.append(f"{np.mean(v):.3f} ({min(v):.3f}-{max(v):.3f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += _paired(args, dataset, table_for("musicnn_msd_full"))
    markdown = "\n".join(lines) + "\n"
    if args.out:
        write_text_atomic(args.out, markdown)
    return markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--seeds", default="0,1,2", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument(
        "--c-values", default="0.003,0.03", type=lambda s: [float(x) for x in s.split(",")]
    )
    parser.add_argument("--paired-c", type=float, default=0.003)
    parser.add_argument("--paired-splits", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    print(run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
