"""Models compared on the same track-disjoint folds: one Markdown table (and JSON), with the
training variants of the neural models and the one their validation tracks choose."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from moodscope.errors import ConfigError
from moodscope.features import FeatureConfig
from moodscope.models import model_entry
from moodscope.models.training import TrainConfig
from moodscope.research.evaluation import crossval
from moodscope.research.evaluation_report import write_crossval
from moodscope.research.report import write_json, write_text_atomic
from moodscope.research.variants import choose_variant, crossval_variants, training_seconds


def _cell(stat: dict | None) -> str:
    return "n/a" if stat is None else f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def _row(name: str, result: dict, seconds: float) -> str:
    s = result["summary"]
    return (
        f"| {name} | {_cell(s['track_accuracy'])} | {_cell(s['track_macro_f1'])} | "
        f"{_cell(s['track_balanced_accuracy'])} | {_cell(s['emotion_correlation_mean'])} | "
        f"{_cell(s['segment_accuracy'])} | {seconds:.0f} |"
    )


def compare_models(
    dataset,
    table: pd.DataFrame,
    models: list[str],
    *,
    feature_config: FeatureConfig,
    folds: int = 5,
    train_config: TrainConfig | None = None,
    out_dir=None,
    on_fold: Callable[[str, int, int], Callable | None] | None = None,
    smote: bool | None = None,
    aggregate: str = "segment",
    soft: bool = False,
    model_kwargs: dict | None = None,
    variants: list[str] | None = None,
) -> str:
    """Cross-validate each model on the same folds; return (and write) a Markdown table.

    ``model_kwargs`` maps a model name to its keyword arguments (models not named get
    their registry defaults). ``variants`` (balances) expands each neural model into its
    training variants (:func:`moodscope.research.variants.crossval_variants`), one row each, with
    their training times and the variant the validation tracks choose.
    """
    tracks, labels, shares = dataset.by_track(), list(dataset.labels), dataset.share_table()
    rows, summaries, notes = [], {}, []
    for name in models:
        model_entry(name)  # fail fast on a typo, before hours of training
    for name in models:
        kwargs = dict(
            feature_config=feature_config,
            labels=labels,
            folds=folds,
            train_config=train_config,
            shares=shares,
            model_kwargs=(model_kwargs or {}).get(name),
        )
        if variants and model_entry(name).kind == "torch":
            if soft or aggregate != "segment":
                raise ConfigError("variants train on segment rows with hard labels")
            results = crossval_variants(
                table,
                tracks,
                model=name,
                balances=variants,
                on_fold=on_fold,
                **kwargs,
            )
            for key, result in results.items():
                seconds = sum(f["train_seconds"] for f in result["folds"])
                seconds += folds * result["bn_seconds"]
                rows.append(_row(f"{name} ({result['variant']['label']})", result, seconds))
                summaries[f"{name}[{key}]"] = {
                    k: v for k, v in result.items() if k not in ("out_of_fold",)
                }
                if out_dir is not None:
                    write_crossval(
                        result,
                        Path(out_dir) / f"{name}-{key.replace('/', '-')}",
                        f"{name} ({result['variant']['label']}): {folds}-fold CV by track",
                    )
            notes.append(_variant_notes(name, results, folds, choose_variant(results)))
            summaries[f"{name}[times]"] = training_seconds(results)
            continue
        result = crossval(
            table,
            tracks,
            model=name,
            smote=smote,
            aggregate=aggregate,
            soft=soft,
            on_fold=(lambda k, n, name=name: on_fold(name, k, n)) if on_fold else None,
            **kwargs,
        )
        summaries[name] = {k: v for k, v in result.items() if k not in ("out_of_fold",)}
        rows.append(_row(name, result, result["wall_seconds"]))
        if out_dir is not None:
            write_crossval(result, Path(out_dir) / name, f"{name}: {folds}-fold CV by track")
    header = (
        f"{folds}-fold track-disjoint CV, features `{feature_config.feature_set}`, "
        f"{feature_config.segments} segments per track, model input: {aggregate}s, "
        f"{'soft labels (listener shares)' if soft else 'hard labels'}, {len(tracks)} tracks; "
        "mean ± std over folds.\n\n"
        "| model | track accuracy | track macro-F1 | track balanced acc. | mean emotion r "
        "| segment accuracy | seconds |\n|---|---|---|---|---|---|---|\n"
    )
    markdown = header + "\n".join(rows) + "\n" + "".join(notes)
    if out_dir is not None:
        write_text_atomic(Path(out_dir) / "comparison.md", markdown)
        write_json(Path(out_dir) / "comparison.json", summaries)
    return markdown


def _variant_notes(model: str, results: dict[str, dict], folds: int, chosen: str) -> str:
    """Markdown under the table: training time per balance, validation scores, the choice."""
    times = training_seconds(results)
    lines = [
        f"\n`{model}`: one training per fold and balance serves four rows (best epoch by "
        "validation loss and by validation macro-F1, each with BatchNorm statistics as "
        "trained and re-estimated); a row's seconds are its balance's training over all "
        f"folds plus, for re-estimated rows, the re-estimation ({folds} folds). CPU "
        "seconds are the process's, unaffected by other jobs on shared cores.\n",
        "| balance | epochs per fold | training s per fold (wall) | CPU s per fold "
        "| training s, all folds (wall) | BN re-estimation s per fold |\n"
        "|---|---|---|---|---|---|",
    ]
    for balance, t in times.items():
        lines.append(
            f"| {balance} | {t['epochs_per_fold']:.1f} | {t['train_seconds_per_fold']:.0f} | "
            f"{t['train_cpu_seconds_per_fold']:.0f} | {t['train_seconds_total']:.0f} | "
            f"{t['bn_seconds_per_fold']:.1f} |"
        )
    lines += [
        "\nOn the validation tracks carved from the training folds (never the test folds), "
        "mean ± std over folds:\n",
        "| variant | validation track accuracy | validation track macro-F1 |\n|---|---|---|",
    ]
    for key, r in results.items():
        mark = " **(chosen)**" if key == chosen else ""
        v = r["validation"]
        lines.append(
            f"| {r['variant']['label']}{mark} | {_cell(v['track_accuracy'])} | "
            f"{_cell(v['track_macro_f1'])} |"
        )
    return "\n".join(lines) + "\n"
