"""Research commands: features, validate, plot, plot-classes, train, crossval, compare,
evaluate, reproduce. Each parses its options and calls :mod:`moodscope.research`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from moodscope.cli.console import (
    bars,
    cell,
    epoch_bar,
    out,
    progress_bar,
    report_failures,
    say,
)
from moodscope.cli.options import (
    DataOptions,
    ExperimentOptions,
    FeatureRunOptions,
    ParallelOptions,
    RunConfigOptions,
    with_options,
)

OutDir = typer.Option(..., "--out", help="Report folder.")


NEEDS_EXTRA = (
    "features",
    "validate",
    "plot-classes",
    "train",
    "reproduce",
    "crossval",
    "compare",
    "evaluate",
)
"""Commands that need the research extra (PyTorch, scikit-learn, pandas): datasets, feature
tables, training and evaluation. ``plot`` needs only what predicting installs."""


def require_extra(args: list[str]) -> None:
    """One line naming the extra when ``args`` run a command of :data:`NEEDS_EXTRA` without it
    (checked before the options are parsed, so ``--help`` says it too)."""
    from moodscope.extras import require_research

    command = next((a for a in args if not a.startswith("-")), None)
    if command in NEEDS_EXTRA:
        require_research(f"moodscope {command}")


def _experiment(run: ExperimentOptions, models: str | list[str]) -> dict:
    """The keyword arguments train, crossval and compare pass on alike: the dataset and its
    feature table, the feature and training configs, and each model's arguments."""
    from moodscope.research.runs import kwargs_for

    train_config, model_kwargs = run.train_config(run)
    dataset, feature_config, table, _ = _dataset_table(run)
    if isinstance(models, str):
        chosen = {"model": models, "model_kwargs": kwargs_for(model_kwargs, models)}
    else:
        per_model = {m: kwargs_for(model_kwargs, m) for m in models}
        chosen = {"models": models, "model_kwargs": per_model}
    return dict(
        dataset=dataset,
        table=table,
        feature_config=feature_config,
        train_config=train_config,
        aggregate=run.aggregate,
        soft=run.soft,
        **chosen,
    )


def _dataset_table(run: FeatureRunOptions, *, use_cache: bool = True):
    """``(dataset, feature config, table, failures)``, failures reported as they are."""
    from moodscope.research import runs

    config = run.config()
    with progress_bar("features", None) as update:
        dataset, table, failures = runs.dataset_table(
            run.root(),
            run.labels,
            config,
            workers=run.workers,
            scheduler=run.scheduler,
            use_cache=use_cache,
            progress=update,
        )
    if failures:
        report_failures(failures, len(dataset))
    return dataset, config, table, failures


@with_options
def features(
    run: FeatureRunOptions,
    out_path: Path = typer.Option(..., "--out", help="Feature table to write (.parquet)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute, ignoring the cache."),
) -> None:
    """Extract per-segment features of a dataset into a Parquet table."""
    from moodscope.features import write_table

    _, _, table, failures = _dataset_table(run, use_cache=not no_cache)
    write_table(table, out_path)
    n_tracks = table["track_id"].nunique() if len(table) else 0
    say(f"wrote {out_path}: {len(table)} segments of {n_tracks} tracks", err=False)
    if failures:
        raise typer.Exit(1)


@with_options
def validate(
    data: DataOptions,
    checksums: bool = typer.Option(
        False, "--checksums", help="Also compare files with the original release's MD5."
    ),
) -> None:
    """Check that every track of a dataset has a readable audio file."""
    from moodscope.datasets import EmotifyDataset, load_dataset

    dataset = load_dataset(data.root(), data.labels)
    if isinstance(dataset, EmotifyDataset):
        report = dataset.validate(checksums=checksums)
    else:
        report = dataset.validate()
    for path in report.missing:
        say(f"missing     {path}", err=False)
    for path, problem in report.unreadable:
        say(f"unreadable  {path}: {problem}", err=False)
    for path in report.bad_checksum:
        say(f"checksum    {path}", err=False)
    counts = dataset.class_counts()
    say(
        f"{dataset.name}: {report.n_tracks} tracks, {len(report.missing)} missing, "
        f"{len(report.unreadable)} unreadable"
        + (f", {len(report.bad_checksum)} differ from the release" if checksums else "")
        + "; labels: "
        + ", ".join(f"{k} {v}" for k, v in counts.items()),
        err=False,
    )
    if not report.ok:
        raise typer.Exit(1)


def plot(
    audio: Path = typer.Argument(..., help="Audio file."),
    kind: str = typer.Option(
        "mel", "--kind", help="waveform | spectrum | spectrogram | mel | mfcc"
    ),
    out_path: Path = typer.Option(..., "--out", help="PNG file to write."),
) -> None:
    """Plot one audio file (the paper's Figs. 4-6)."""
    from moodscope.audio.decode import SAMPLE_RATE, load_audio
    from moodscope.research.plots import plot_audio, save_figure

    y = load_audio(audio, sr=SAMPLE_RATE)
    save_figure(plot_audio(y, SAMPLE_RATE, kind=kind, title=audio.name), out_path)
    say(f"wrote {out_path}", err=False)


@with_options
def plot_classes(
    data: DataOptions,
    out_path: Path = typer.Option(..., "--out", help="PNG file to write."),
) -> None:
    """Bar chart of tracks per class (the paper's Fig. 7)."""
    from moodscope.datasets import load_dataset
    from moodscope.research.plots import plot_class_counts, save_figure

    dataset = load_dataset(data.root(), data.labels)
    counts = dataset.class_counts()
    save_figure(plot_class_counts(counts, title=f"{dataset.name}: tracks per class"), out_path)
    table = Table("class", "tracks")
    for label, n in counts.items():
        table.add_row(cell(label), str(n))
    out.print(table)
    say(f"wrote {out_path}", err=False)


@with_options
def train(
    run: ExperimentOptions,
    model: str = typer.Option("paper_cnn_lstm", "--model", help="A registered model name."),
    out_dir: Path = typer.Option(..., "--out", help="Run folder: model.ckpt, metrics.json, ..."),
    protocol: str = typer.Option(
        "track", "--protocol", help="track (honest holdout), paper, or all (final model)."
    ),
) -> None:
    """Train a model on a dataset, test it on held-out data, save a checkpoint."""
    from moodscope.research.runs import train_run

    options = _experiment(run, model)
    with bars() as bar:
        progress = epoch_bar(bar, model)
        result = train_run(
            out_dir=out_dir, protocol=protocol, labels_csv=run.labels, progress=progress, **options
        )
    m = result.metrics
    headline = f"track accuracy {m['track_accuracy']:.3f}, " if "track_accuracy" in m else ""
    say(
        f"{model} ({protocol} protocol): {headline}segment accuracy "
        f"{m['segment_accuracy']:.3f}, leak {m['leak_fraction']:.0%}; wrote {result.checkpoint}",
        err=False,
    )


@with_options
def reproduce(
    data: DataOptions,
    run: RunConfigOptions,
    parallel: ParallelOptions,
    out_dir: Path = OutDir,
    segments: list[int] = typer.Option(
        None, "--segments", help="Segments per track; repeatable, or `--segments 10 20`."
    ),
    extra: Optional[list[str]] = typer.Argument(None, hidden=True),
    honest_folds: int = typer.Option(
        5,
        "--honest-folds",
        min=0,
        help="Track-disjoint CV folds shown beside paper mode (0: none).",
    ),
    variants: Optional[str] = typer.Option(
        None,
        "--variants",
        help="Comma-separated balances (smote,class_weight,none; all three by default): "
        "neural models train once per balance per fold and report each checkpoint rule "
        "with and without re-estimated BatchNorm statistics.",
    ),
) -> None:
    """Reproduce the paper's Tables 4-5 and Figs. 4-12 (paper mode, with its leak), beside
    the same model trained without the leak."""
    from moodscope.errors import ConfigError
    from moodscope.research.reproduce import ReproduceConfig, run_reproduce
    from moodscope.research.runs import load_train_config, parse_variants

    counts = list(segments or [])
    for value in extra or []:
        if not value.isdigit():
            raise ConfigError(f"unexpected argument {value!r}")
        counts.append(int(value))
    train_config, _ = load_train_config(run.config_file, epochs=run.epochs, seed=run.seed)
    config = ReproduceConfig(
        segmentations=counts or [10, 20],
        train=train_config,
        workers=parallel.workers,
        honest_folds=honest_folds,
        **({"variants": parse_variants(variants)} if variants is not None else {}),
    )
    with bars() as bar:

        def on_features(n):
            task = bar.add_task(f"features ({n} segments)", total=None)
            return lambda done, total: bar.update(task, completed=done, total=total)

        metrics = run_reproduce(
            data.root(),
            out_dir,
            config,
            on_features=on_features,
            on_epoch=lambda n: epoch_bar(bar, f"{n} seg"),
            on_fold=lambda name, k, total: epoch_bar(bar, f"{name} fold {k + 1}/{total}"),
        )
    for n, m in metrics["segmentations"].items():
        paper = m.get("paper_accuracy")
        say(
            f"{n} segments: accuracy {m['segment_accuracy']:.1%}"
            + (f" (paper {paper:.1%})" if paper else "")
            + f", leak {m['leak_fraction']:.0%} of test segments",
            err=False,
        )
        honest = m.get("honest")
        if honest:
            chosen = honest["variants"][honest["chosen"]]
            say(
                f"   trained without the leak ({chosen['variant']['label']}; "
                f"{honest_folds}-fold by track): segment accuracy "
                f"{chosen['summary']['segment_accuracy']['mean']:.1%}, track accuracy "
                f"{chosen['summary']['track_accuracy']['mean']:.1%}",
                err=False,
            )
            for name in config.baselines:
                track = honest[name]["summary"]["track_accuracy"]["mean"]
                say(f"   {name}: track accuracy {track:.1%}", err=False)
    say(f"wrote {out_dir}/report.md, report.html, metrics.json", err=False)


@with_options
def crossval(
    run: ExperimentOptions,
    model: str = typer.Option("random_forest", "--model", help="A registered model name."),
    out_dir: Path = OutDir,
    folds: int = typer.Option(5, "--folds", min=2, help="Track-disjoint folds."),
) -> None:
    """Track-disjoint stratified K-fold cross-validation of a model (the honest number)."""
    from moodscope.research.runs import crossval_run

    options = _experiment(run, model)
    with bars() as bar:
        on_fold = lambda k, n: epoch_bar(bar, f"fold {k + 1}/{n}")  # noqa: E731
        result = crossval_run(out_dir=out_dir, folds=folds, on_fold=on_fold, **options)
    s = result["summary"]
    corr = s["emotion_correlation_mean"]
    say(
        f"{model}: track accuracy {s['track_accuracy']['mean']:.3f} ± "
        f"{s['track_accuracy']['std']:.3f}, macro-F1 {s['track_macro_f1']['mean']:.3f} ± "
        f"{s['track_macro_f1']['std']:.3f}, balanced accuracy "
        f"{s['track_balanced_accuracy']['mean']:.3f}"
        + (f", mean emotion r {corr['mean']:.3f}" if corr else "")
        + f"; wrote {out_dir}/report.md",
        err=False,
    )


@with_options
def compare(
    run: ExperimentOptions,
    models: str = typer.Option(
        "majority,logistic_regression,random_forest,gradient_boosting,paper_cnn_lstm",
        "--models",
        help="Comma-separated registered model names.",
    ),
    out_dir: Path = typer.Option(..., "--out", help="Folder: comparison.md/json + one per model."),
    folds: int = typer.Option(5, "--folds", min=2, help="Track-disjoint folds."),
    variants: Optional[str] = typer.Option(
        None,
        "--variants",
        help="Comma-separated balances (smote,class_weight,none): neural models train once "
        "per balance per fold and report each checkpoint rule.",
    ),
) -> None:
    """Cross-validate several models on the same folds and tabulate them side by side."""
    from moodscope.research import comparison
    from moodscope.research.runs import parse_variants

    balances = parse_variants(variants)
    options = _experiment(run, [m.strip() for m in models.split(",") if m.strip()])
    with bars() as bar:
        markdown = comparison.compare_models(
            folds=folds,
            out_dir=out_dir,
            variants=balances,
            on_fold=lambda name, k, n: epoch_bar(bar, f"{name} fold {k + 1}/{n}"),
            **options,
        )
    out.print(markdown, highlight=False, markup=False)


@with_options
def evaluate(
    data: DataOptions,
    parallel: ParallelOptions,
    checkpoint: Path = typer.Argument(..., help="A trained model (.ckpt)."),
    out_dir: Path = OutDir,
) -> None:
    """Evaluate a trained model on every track of a labelled dataset it has not seen."""
    from moodscope.research.runs import evaluate_run

    with progress_bar("features", None) as update:
        metrics, failures = evaluate_run(
            checkpoint,
            data.root(),
            data.labels,
            out_dir,
            workers=parallel.workers,
            progress=update,
        )
    report_failures(failures, metrics["n_tracks"] + len(failures))
    held = metrics["held_out"]
    quarter = held["risk_coverage"]["table"][0]
    sure = (
        "no calibration map"
        if held["calibration"] is None
        else f"calibration error {held['calibration']['ece']:.3f}"
    )
    say(
        f"track accuracy {metrics['track_accuracy']:.3f}, macro-F1 "
        f"{metrics['track_macro_f1']:.3f}, balanced accuracy "
        f"{metrics['track_balanced_accuracy']:.3f} on {metrics['n_tracks']} tracks; "
        f"most confident 25 %: {quarter['accuracy']:.3f}; {sure}; wrote {out_dir}/report.md",
        err=False,
    )
    if failures:
        raise typer.Exit(1)
