"""How a recipe's cross-validated scores grow with the number of training tracks.

    python tools/learning_curve.py --data $MOODSCOPE_EMOTIFY_DIR --features musicnn_msd_full \
        --aggregate track --soft --model logistic_regression --model-kwargs '{"C": 0.01}' \
        [--fractions 0.4,0.6,0.8,1.0] [--repeats 3] [--out runs/learning_curve.md]

It runs :func:`moodscope.research.evaluation.crossval` (5-fold, stratified, grouped by track, seed
0) with ``train_fraction``: each fold's test tracks stay the same while its training
tracks are subsampled (a random ``fraction`` of them, ``repeats`` draws per fraction).
The result says whether the dev copy's size, rather than the model, limits the scores: a
curve still rising at 1.0 gains from more tracks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from moodscope.datasets import EmotifyDataset
from moodscope.features import FeatureConfig, extract_features
from moodscope.models.training import TrainConfig
from moodscope.research.evaluation import crossval
from moodscope.research.report import write_text_atomic

METRICS = ("track_accuracy", "track_macro_f1", "emotion_correlation_mean")


def learning_curve(args) -> list[dict]:
    dataset = EmotifyDataset(args.data)
    config = FeatureConfig(feature_set=args.features, segments=args.segments)
    table, failures = extract_features(dataset, config, workers=args.workers)
    if failures:
        print(f"{len(failures)} tracks failed: {failures[:3]}", file=sys.stderr)
    tracks, labels = dataset.by_track(), list(dataset.labels)
    rows = []
    for fraction in args.fractions:
        folds = []
        for draw in range(1 if fraction >= 1 else args.repeats):
            cv = crossval(
                table,
                tracks,
                model=args.model,
                feature_config=config,
                labels=labels,
                folds=args.folds,
                train_config=TrainConfig(seed=args.seed),
                model_kwargs=args.model_kwargs,
                shares=tracks[labels],
                aggregate=args.aggregate,
                soft=args.soft,
                train_fraction=fraction,
                subsample_seed=draw,
            )
            folds += cv["folds"]
        row = {
            "fraction": fraction,
            "train_tracks": float(np.mean([f["n_train_tracks"] for f in folds])),
        }
        for m in METRICS:
            values = [f[m] for f in folds]
            row[m] = (float(np.mean(values)), float(np.std(values)))
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
