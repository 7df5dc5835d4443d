"""Paper mode: the protocol of Yakovyna & Korniienko (2023), run end to end, with its leak.

For each segmentation: the paper's 28 features -> SMOTE over all segments -> StandardScaler
-> random 70/15/15 split of segments -> the CNN-LSTM of Table 3 -> test. The report sets
the measured numbers beside the paper's Tables 4-5 and states the share of test segments
whose track also has segments (or SMOTE points made from them) in training. Beside them,
the same model trained without the leak: track-disjoint CV of its training variants
(:mod:`~moodscope.research.variants`), one chosen on validation tracks carved from the
training folds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from moodscope.audio.decode import SAMPLE_RATE, load_audio
from moodscope.datasets import EmotifyDataset
from moodscope.errors import ConfigError
from moodscope.features import FeatureConfig, extract_features
from moodscope.inference.checkpoint import save_checkpoint
from moodscope.models.training import BALANCES, TrainConfig
from moodscope.research.experiment import HoldoutResult, train_and_test
from moodscope.research.plots import (
    plot_audio,
    plot_class_counts,
    plot_confusion_matrix,
    plot_history,
)
from moodscope.research.report import Report, write_json, write_text_atomic
from moodscope.research.variants import CHOOSE_BY, PAPER_VARIANT, choose_variant, crossval_variants

PAPER_ACCURACY = {10: 0.748, 20: 0.947}
"""Table 4 of the paper: test accuracy by number of segments per track."""

PAPER_TABLE5 = {  # class: (precision, recall, f1) for 10 segments, then for 20 segments
    "amazement": ((0.80, 0.67, 0.73), (1.00, 1.00, 1.00)),
    "calmness": ((0.76, 0.77, 0.77), (0.89, 0.84, 0.86)),
    "joyful_activation": ((0.78, 0.82, 0.80), (0.95, 0.90, 0.92)),
    "nostalgia": ((0.73, 0.70, 0.71), (0.92, 0.89, 0.91)),
    "power": ((0.82, 0.74, 0.78), (0.95, 0.98, 0.96)),
    "sadness": ((0.59, 0.61, 0.60), (0.92, 0.99, 0.96)),
    "solemnity": ((0.72, 0.72, 0.72), (0.98, 1.00, 0.99)),
    "tenderness": ((0.67, 0.59, 0.62), (0.98, 1.00, 0.99)),
    "tension": ((0.71, 0.71, 0.71), (0.94, 0.95, 0.95)),
}


@dataclass
class ReproduceConfig:
    segmentations: list[int] = field(default_factory=lambda: [10, 20])  # the paper's two
    model: str = "paper_cnn_lstm"
    train: TrainConfig = field(default_factory=TrainConfig)
    workers: int = 2  # feature-extraction processes
    save_models: bool = True  # model-<n>seg.ckpt beside the report
    honest_folds: int = 5  # track-disjoint CV beside paper mode; 0 leaves it out
    # The floor (majority) and the best model on the paper's 28 features (track accuracy,
    # docs/results.md section 2), cross-validated on the same folds.
    baselines: list[str] = field(default_factory=lambda: ["majority", "gradient_boosting"])
    variants: list[str] = field(default_factory=lambda: list(BALANCES))  # balances to train
    choose_by: str = "track_accuracy"  # on the validation tracks, mean over folds

    def __post_init__(self) -> None:
        if self.choose_by not in CHOOSE_BY:
            raise ConfigError(f"choose_by must be one of {', '.join(CHOOSE_BY)}")
        if self.honest_folds and not self.variants:
            raise ConfigError("the track-disjoint columns need at least one balance to train")

    def to_dict(self) -> dict:
        return {
            "segmentations": list(self.segmentations),
            "model": self.model,
            "train": self.train.to_dict(),
            "workers": self.workers,
            "save_models": self.save_models,
            "honest_folds": self.honest_folds,
            "baselines": list(self.baselines),
            "variants": list(self.variants),
            "choose_by": self.choose_by,
        }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def run_reproduce(
    data_dir: str | Path,
    out_dir: str | Path,
    config: ReproduceConfig | None = None,
    *,
    on_features: Callable[[int], Callable[[int, int], None] | None] | None = None,
    on_epoch: Callable[[int], Callable[[int, int, dict], None] | None] | None = None,
    on_fold: Callable[[str, int, int], Callable | None] | None = None,
) -> dict:
    """Run paper mode for each segmentation; write metrics.json, report.md/html, config.yaml.

    Returns the metrics dict written to ``metrics.json``.
    """
    config = config or ReproduceConfig()
    out_dir = Path(out_dir)
    dataset = EmotifyDataset(data_dir)
    started = time.perf_counter()
    results: dict[int, HoldoutResult] = {}
    metrics: dict = {
        "protocol": "paper",
        "dataset": str(dataset.root),
        "n_tracks": len(dataset),
        "segmentations": {},
    }
    for n in config.segmentations:
        feature_config = FeatureConfig(segments=n)
        table, failures = extract_features(
            dataset,
            feature_config,
            workers=config.workers,
            progress=on_features(n) if on_features else None,
        )
        result = train_and_test(
            table,
            model=config.model,
            protocol="paper",
            feature_config=feature_config,
            train_config=config.train,
            progress=on_epoch(n) if on_epoch else None,
        )
        results[n] = result
        entry = {
            **result.metrics,
            "paper_accuracy": PAPER_ACCURACY.get(n),
            "counts_before_smote": result.split.counts_before,
            "counts_after_smote": result.split.counts_after,
            "failed_tracks": [p for p, _ in failures],
            "history": {k: v for k, v in result.history.items() if not k.startswith("best_epoch")},
        }
        if config.honest_folds:
            entry["honest"] = _honest(dataset, table, feature_config, config, n, on_fold)
        metrics["segmentations"][str(n)] = entry
        if config.save_models:
            save_checkpoint(result.model, out_dir / f"model-{n}seg.ckpt")
    metrics["wall_seconds"] = time.perf_counter() - started
    report = _paper_report(dataset, results, metrics, config)
    write_json(out_dir / "metrics.json", metrics)
    write_text_atomic(
        out_dir / "config.yaml",
        yaml.safe_dump(
            {"command": "reproduce", "data": str(dataset.root), **config.to_dict()}, sort_keys=False
        ),
    )
    report.write(out_dir)
    return metrics


FOLD_KEYS = (
    "fold",
    "track_accuracy",
    "track_macro_f1",
    "track_balanced_accuracy",
    "emotion_correlation_mean",
    "segment_accuracy",
    "epochs",
    "best_epoch",
    "train_seconds",
    "train_cpu_seconds",
)


def _compact(result: dict) -> dict:
    """A cross-validation result without its per-track predictions, folds in brief."""
    out = {k: v for k, v in result.items() if k not in ("out_of_fold", "folds")}
    out["folds"] = [{k: f.get(k) for k in FOLD_KEYS} for f in result["folds"]]
    return out


def _honest(dataset, table, feature_config, config: ReproduceConfig, n: int, on_fold) -> dict:
    """The same model under track-disjoint CV: every training variant, the one the
    validation tracks choose, and the baselines on the same folds."""
    from moodscope.research.evaluation import crossval

    tracks, shares = dataset.by_track(), dataset.share_table()
    labels = list(dataset.labels)
    variants = crossval_variants(
        table,
        tracks,
        model=config.model,
        feature_config=feature_config,
        labels=labels,
        balances=config.variants,
        folds=config.honest_folds,
        train_config=config.train,
        shares=shares,
        on_fold=(lambda name, k, total: on_fold(f"{name} {n}seg", k, total)) if on_fold else None,
    )
    chosen = choose_variant(variants, config.choose_by)
    out: dict = {
        "variants": {key: _compact(r) for key, r in variants.items()},
        "chosen": chosen,
        "choose_by": f"validation {config.choose_by}",
    }
    if PAPER_VARIANT.key in variants:  # trained as the paper trained it
        out[config.model] = out["variants"][PAPER_VARIANT.key]
    for name in config.baselines:
        result = crossval(
            table,
            tracks,
            model=name,
            feature_config=feature_config,
            labels=labels,
            folds=config.honest_folds,
            train_config=config.train,
            shares=shares,
            on_fold=(lambda k, total, name=name: on_fold(f"{name} {n}seg", k, total))
            if on_fold
            else None,
        )
        out[name] = _compact(result)
    return out


def _stat(d: dict | None, key: str) -> str:
    value = (d or {}).get("summary", {}).get(key)
    return "n/a" if value is None else f"{100 * value['mean']:.1f} ± {100 * value['std']:.1f} %"


def _num(stat: dict | None) -> str:
    return "n/a" if stat is None else f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def _variants_table(report: Report, results, metrics, config: ReproduceConfig) -> None:
    report.heading("The paper's model without the leak: every training variant, by track")
    report.paragraph(
        f"{config.honest_folds}-fold CV by track (stratified, grouped; the scaler and SMOTE "
        "fitted on the training tracks only; a track's prediction is the mean of its "
        "segments'), mean ± std over folds. One training per fold and balance serves four "
        "rows: the epoch with the lowest validation loss and the one with the highest "
        "validation macro-F1 are both kept (training stops once neither has improved for "
        f"{config.train.patience} epochs), each evaluated with its BatchNorm statistics as "
        "trained and re-estimated on the training rows. The chosen variant has the best "
        f"mean {config.choose_by.replace('_', ' ')} on the validation tracks carved from the "
        "training folds; the test folds play no part in the choice. Seconds: the balance's "
        "training over all folds (plus the re-estimation where it applies)."
    )
    for n in results:
        honest = metrics["segmentations"][str(n)].get("honest")
        if not honest:
            continue
        rows = []
        for key, r in honest["variants"].items():
            s, v = r["summary"], r["validation"]
            seconds = sum(f["train_seconds"] for f in r["folds"])
            seconds += config.honest_folds * r.get("bn_seconds", 0.0)
            mark = " **(chosen)**" if key == honest["chosen"] else ""
            rows.append(
                [
                    f"{config.model}: {r['variant']['label']}{mark}",
                    _num(s["track_accuracy"]),
                    _num(s["track_macro_f1"]),
                    _num(s["track_balanced_accuracy"]),
                    _num(s["emotion_correlation_mean"]),
                    _num(s["segment_accuracy"]),
                    _num(v[config.choose_by]),
                    f"{seconds:.0f}",
                ]
            )
        for name in config.baselines:
            r = honest[name]
            s = r["summary"]
            rows.append(
                [
                    name,
                    _num(s["track_accuracy"]),
                    _num(s["track_macro_f1"]),
                    _num(s["track_balanced_accuracy"]),
                    _num(s["emotion_correlation_mean"]),
                    _num(s["segment_accuracy"]),
                    "-",
                    f"{r['wall_seconds']:.0f}",
                ]
            )
        report.heading(f"{n} segments", 3)
        report.table(
            [
                "model",
                "track accuracy",
                "track macro-F1",
                "track balanced acc.",
                "mean emotion r",
                "segment accuracy",
                f"validation {config.choose_by.replace('_', ' ')}",
                "seconds",
            ],
            rows,
        )


def _paper_report(
    dataset: EmotifyDataset,
    results: dict[int, HoldoutResult],
    metrics: dict,
    config: ReproduceConfig,
) -> Report:
    report = Report("Reproducing Yakovyna & Korniienko (2023) on Emotify")
    report.paragraph(
        f"Data: `{dataset.root}`, {len(dataset)} tracks. Protocol (paper mode): the paper's 28 "
        "features per segment -> SMOTE over all segments -> StandardScaler -> random 70/15/15 "
        f"split of segments -> `{config.model}` (Table 3) trained with RMSprop (lr "
        f"{config.train.lr}, rho {config.train.rho}), ReduceLROnPlateau, early stopping "
        f"(patience {config.train.patience}), seed {config.train.seed}."
    )
    report.heading("Table 4: test accuracy")
    rows = []
    for n in results:
        m = metrics["segmentations"][str(n)]
        honest = m.get("honest") or {}
        chosen = honest.get("variants", {}).get(honest.get("chosen"))
        rows.append(
            [
                f"{n} segments (~{60 / n:.0f} s)",
                _pct(PAPER_ACCURACY.get(n)),
                _pct(m["segment_accuracy"]),
                _pct(m["leak_fraction"]),
                _stat(chosen, "segment_accuracy"),
                _stat(chosen, "track_accuracy"),
                chosen["variant"]["label"] if chosen else "-",
                m["epochs"],
                f"{m['train_seconds']:.0f}",
            ]
        )
    report.table(
        [
            "segmentation",
            "the paper's number",
            "paper mode, measured",
            "leak",
            "the paper's model, trained without the leak: segments",
            "… tracks",
            "… variant (chosen on validation tracks)",
            "epochs (paper mode)",
            "train s (paper mode)",
        ],
        rows,
    )
    leaks = ", ".join(
        f"{_pct(metrics['segmentations'][str(n)]['leak_fraction'])} ({n} segments)" for n in results
    )
    report.paragraph(
        f"**The leak:** of the test segments, {leaks} come from a track that also has segments "
        "(or SMOTE points interpolated from them) in training. The model is tested on tracks "
        "it has already heard, so this accuracy measures recognising tracks, not emotions. "
        "The columns trained without the leak are "
        f"{config.honest_folds}-fold CV by track (mean ± std over folds) of the same model "
        "and features, in the training variant that scored best on validation tracks carved "
        "from the training folds (the test folds play no part in that choice); every "
        "variant is in the next table.",
        note=True,
    )
    if any("honest" in metrics["segmentations"][str(n)] for n in results):
        _variants_table(report, results, metrics, config)
    report.heading("Table 5: per-class precision, recall and F1")
    header = ["class"]
    for n in results:
        header += [f"P ({n})", f"R ({n})", f"F1 ({n})"]
    header += ["F1 paper (10)", "F1 paper (20)"]
    labels = next(iter(results.values())).split.labels
    table_rows = []
    for label in labels:
        row = [label]
        for n in results:
            c = metrics["segmentations"][str(n)]["per_class"][label]
            row += [f"{c['precision']:.2f}", f"{c['recall']:.2f}", f"{c['f1']:.2f}"]
        paper = PAPER_TABLE5.get(label)
        row += [f"{paper[0][2]:.2f}", f"{paper[1][2]:.2f}"] if paper else ["-", "-"]
        table_rows.append(row)
    report.table(header, table_rows)
    for n, r in results.items():
        report.heading(f"{n} segments: training curves and confusion matrix (Figs. 10-12)", 3)
        report.figure(
            plot_history(r.history, metric="accuracy"),
            f"accuracy-{n}seg",
            f"Training and validation accuracy, {n} segments (Fig. 10)",
        )
        report.figure(
            plot_history(r.history, metric="loss"),
            f"loss-{n}seg",
            f"Training and validation loss, {n} segments (Fig. 11)",
        )
        cm = np.asarray(metrics["segmentations"][str(n)]["confusion_matrix"])
        report.figure(
            plot_confusion_matrix(cm, labels, title=f"{n} segments"),
            f"confusion-{n}seg",
            "Confusion matrix on the test segments (Fig. 12)",
        )
    last = list(results)[-1]
    split = results[last].split
    report.heading("Class counts before and after SMOTE (Fig. 7)", 3)
    report.figure(
        plot_class_counts(
            split.counts_before,
            after=split.counts_after,
            title=f"Segments per class, {last} segments per track",
        ),
        "class-counts",
        "Segments per class before and after SMOTE",
    )
    example = dataset.tracks.iloc[0]
    y = load_audio(example["path"], sr=SAMPLE_RATE)
    report.heading(
        f"Figs. 4-6 for one track ({Path(example['path']).name}, "
        f"{example['genre']}, {example['label']})",
        3,
    )
    for kind in ("waveform", "spectrum", "spectrogram", "mel", "mfcc"):
        report.figure(plot_audio(y, SAMPLE_RATE, kind=kind), f"example-{kind}", kind)
    report.paragraph(f"Wall time of the whole run: {metrics['wall_seconds']:.0f} s.")
    return report
