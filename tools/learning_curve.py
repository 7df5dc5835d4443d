"""How a recipe's cross-validated scores grow with the number of training tracks.

    python tools/learning_curve.py --data $MOODSCOPE_EMOTIFY_DIR --features musicnn_msd_full \
        --aggregate track --soft --model logistic_regression --model-kwargs '{"C": 0.01}' \
        [--fractions 0.4,0.6,0.8,1.0] [--repeats 3] [--out docs/learning_curve.md]

The folds are those of ``moodscope crossval`` (5-fold, stratified, grouped by track, seed
0); each fold's test tracks stay the same while its training tracks are subsampled (a
random ``fraction`` of them, ``repeats`` draws per fraction). Everything else is the
recipe as ``crossval`` runs it. The result says whether the dev copy's size, rather than
the model, limits the scores: a curve still rising at 1.0 gains from more tracks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from moodscope.datasets import EmotifyDataset
from moodscope.evaluation import track_level_metrics
from moodscope.experiment import model_table, track_predictions, train_and_test
from moodscope.features import FeatureConfig, extract_features
from moodscope.models import model_entry
from moodscope.protocols import encode_labels, share_targets, track_folds, track_split
from moodscope.report import write_text_atomic
from moodscope.training import TrainConfig

METRICS = ("track_accuracy", "track_macro_f1", "emotion_correlation_mean")


def learning_curve(args) -> list[dict]:
    dataset = EmotifyDataset(args.data)
    config = FeatureConfig(feature_set=args.features, segments=args.segments)
    table, failures = extract_features(dataset, config, workers=args.workers)
    if failures:
        print(f"{len(failures)} tracks failed: {failures[:3]}", file=sys.stderr)
    tracks, labels = dataset.by_track(), list(dataset.labels)
    shares = tracks[labels]
    entry = model_entry(args.model)
    table, columns = model_table(table, config, args.aggregate)
    _, classes = encode_labels(table, labels)
    targets = share_targets(table, shares, classes) if args.soft else None
    smote = False if args.soft else entry.smote
    track_of_row = table["track_id"].astype(str).to_numpy()
    rng = np.random.default_rng(args.seed)
    folds = track_folds(table, n_splits=args.folds, seed=args.seed, labels=labels)
    rows = []
    for fraction in args.fractions:
        scores = {m: [] for m in METRICS}
        n_train = []
        for _ in range(1 if fraction >= 1 else args.repeats):
            for k, (train_rows, test_rows) in enumerate(folds):
                ids = np.unique(track_of_row[train_rows])
                keep = rng.choice(ids, int(round(fraction * len(ids))), replace=False)
                sub = train_rows[np.isin(track_of_row[train_rows], keep)]
                split = track_split(
                    table,
                    columns,
                    sub,
                    test_rows,
                    seed=args.seed + k,
                    labels=labels,
                    smote=smote,
                    targets=targets,
                    val_fraction=entry.val_fraction,
                )
                result = train_and_test(
                    table,
                    model=args.model,
                    protocol="track",
                    feature_config=config,
                    train_config=TrainConfig(seed=args.seed),
                    model_kwargs=args.model_kwargs,
                    labels=labels,
                    split=split,
                    aggregate=args.aggregate,
                    columns=columns,
                )
                track_ids, proba = track_predictions(result.test_proba, result.test_tracks)
                metrics = track_level_metrics(track_ids, proba, tracks, split.labels, shares)
                for m in METRICS:
                    scores[m].append(metrics[m])
                n_train.append(len(keep))
        row = {"fraction": fraction, "train_tracks": float(np.mean(n_train))}
        row.update({m: (float(np.mean(v)), float(np.std(v))) for m, v in scores.items()})
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def to_markdown(args, rows: list[dict], seconds: float) -> str:
    command = " ".join(["python tools/learning_curve.py", *sys.argv[1:]])
    lines = [
        "# Learning curve",
        "",
        f"`{command}` ({seconds:.0f} s). Recipe: `{args.model}` {json.dumps(args.model_kwargs)} "
        f"on `{args.features}`, {args.segments} segments, input {args.aggregate}s, "
        f"{'soft' if args.soft else 'hard'} labels; {args.folds}-fold track-disjoint CV, each "
        f"fold's training tracks subsampled ({args.repeats} draws below 1.0). Mean ± std over "
        "folds and draws.",
        "",
        "| share of training tracks | training tracks | track accuracy | track macro-F1 "
        "| mean emotion r |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        cells = " | ".join(f"{r[m][0]:.3f} ± {r[m][1]:.3f}" for m in METRICS)
        lines.append(f"| {r['fraction']:.2f} | {r['train_tracks']:.0f} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--features", default="musicnn_msd_full")
    parser.add_argument("--segments", type=int, default=20)
    parser.add_argument("--aggregate", default="track", choices=["segment", "track"])
    parser.add_argument("--soft", action="store_true")
    parser.add_argument("--model", default="logistic_regression")
    parser.add_argument("--model-kwargs", type=json.loads, default={})
    parser.add_argument("--fractions", default="0.4,0.6,0.8,1.0")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="write the table here (Markdown)")
    args = parser.parse_args(argv)
    args.fractions = [float(f) for f in args.fractions.split(",")]
    if not all(0 < f <= 1 for f in args.fractions):
        parser.error("--fractions must lie in (0, 1]")
    started = time.perf_counter()
    rows = learning_curve(args)
    text = to_markdown(args, rows, time.perf_counter() - started)
    print(text)
    if args.out:
        write_text_atomic(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
