"""The ``moodscope`` command: a thin layer over the Python API.

Every user error (a :class:`~moodscope.errors.MoodscopeError`) becomes one ``error: ...``
line on stderr and exit code 1, in one place (:func:`main`).
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from moodscope.errors import MoodscopeError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Recognise the emotion music induces (GEMS-9), reproduce and evaluate the models.",
)
console = Console(stderr=True)
out = Console()

DataOpt = typer.Option(
    None,
    "--data",
    help="Emotify-layout folder (data.csv + emotifymusic/); default $MOODSCOPE_EMOTIFY_DIR.",
)
LabelsOpt = typer.Option(
    None, "--labels", help="CSV 'path,label' selecting a folder dataset under --data instead."
)


def _data_dir(data: Optional[Path]) -> Path:
    if data is not None:
        return data
    env = os.environ.get("MOODSCOPE_EMOTIFY_DIR")
    if env:
        return Path(env)
    raise MoodscopeError("no dataset given: pass --data DIR or set MOODSCOPE_EMOTIFY_DIR")


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


WorkersOpt = typer.Option(
    default_workers(), "--workers", help="Local worker processes (1: in this process)."
)
SchedulerOpt = typer.Option(
    None,
    "--scheduler",
    envvar="MOODSCOPE_SCHEDULER",
    help="Run on a Dask cluster: tcp://HOST:8786, or local:N to start N local workers. "
    "Workers read the files from the same paths.",
)


@contextmanager
def progress_bar(description: str, total: int, *, show: bool = True):
    """A rich progress bar on stderr; yields ``update(done, total, text=None)`` (``text``
    replaces the description; a no-op when not ``show``)."""
    if not show:
        yield lambda done, _total=None, *, text=None: None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total)

        def update(done, _total=None, *, text: str | None = None):
            bar.update(task, completed=done, **({"description": text} if text else {}))

        yield update


def report_failures(failures: list[tuple[str, str]], total: int) -> None:
    for _path, error in failures:
        console.print(f"[red]failed[/red] {error}", highlight=False, soft_wrap=True)
    if failures:
        console.print(f"{len(failures)} of {total} file(s) failed", highlight=False)


@app.command()
def features(
    data: Optional[Path] = DataOpt,
    out_path: Path = typer.Option(..., "--out", help="Feature table to write (.parquet)."),
    segments: int = typer.Option(20, "--segments", help="Equal segments per track (paper: 10/20)."),
    feature_set: str = typer.Option("paper", "--features", help="Feature set name."),
    labels: Optional[Path] = LabelsOpt,
    workers: int = WorkersOpt,
    scheduler: Optional[str] = SchedulerOpt,
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute, ignoring the cache."),
) -> None:
    """Extract per-segment features of a dataset into a Parquet table."""
    from moodscope.datasets import load_dataset
    from moodscope.features import FeatureConfig, extract_features, write_table

    dataset = load_dataset(_data_dir(data), labels)
    config = FeatureConfig(feature_set=feature_set, segments=segments)
    with progress_bar("features", len(dataset)) as update:
        table, failures = extract_features(
            dataset,
            config,
            workers=workers,
            scheduler=scheduler,
            use_cache=not no_cache,
            progress=update,
        )
    write_table(table, out_path)
    n_tracks = table["track_id"].nunique() if len(table) else 0
    out.print(
        f"wrote {out_path}: {len(table)} segments of {n_tracks} tracks",
        highlight=False,
        soft_wrap=True,
    )
    report_failures(failures, len(dataset))
    if failures:
        raise typer.Exit(1)


@app.command()
def validate(
    data: Optional[Path] = DataOpt,
    labels: Optional[Path] = LabelsOpt,
    checksums: bool = typer.Option(
        False, "--checksums", help="Also compare files with the original release's MD5."
    ),
) -> None:
    """Check that every track of a dataset has a readable audio file."""
    from moodscope.datasets import EmotifyDataset, load_dataset

    dataset = load_dataset(_data_dir(data), labels)
    if isinstance(dataset, EmotifyDataset):
        report = dataset.validate(checksums=checksums)
    else:
        report = dataset.validate()
    for path in report.missing:
        out.print(f"missing     {path}", highlight=False, soft_wrap=True)
    for path, problem in report.unreadable:
        out.print(f"unreadable  {path}: {problem}", highlight=False, soft_wrap=True)
    for path in report.bad_checksum:
        out.print(f"checksum    {path}", highlight=False, soft_wrap=True)
    counts = dataset.class_counts()
    out.print(
        f"{dataset.name}: {report.n_tracks} tracks, {len(report.missing)} missing, "
        f"{len(report.unreadable)} unreadable"
        + (f", {len(report.bad_checksum)} differ from the release" if checksums else "")
        + "; labels: "
        + ", ".join(f"{k} {v}" for k, v in counts.items()),
        highlight=False,
    )
    if not report.ok:
        raise typer.Exit(1)


@app.command()
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
    out.print(f"wrote {out_path}", highlight=False, soft_wrap=True)


@app.command("plot-classes")
def plot_classes(
    data: Optional[Path] = DataOpt,
    labels: Optional[Path] = LabelsOpt,
    out_path: Path = typer.Option(..., "--out", help="PNG file to write."),
) -> None:
    """Bar chart of tracks per class (the paper's Fig. 7)."""
    from moodscope.datasets import load_dataset
    from moodscope.research.plots import plot_class_counts, save_figure

    dataset = load_dataset(_data_dir(data), labels)
    counts = dataset.class_counts()
    save_figure(plot_class_counts(counts, title=f"{dataset.name}: tracks per class"), out_path)
    table = Table("class", "tracks")
    for label, n in counts.items():
        table.add_row(label, str(n))
    out.print(table)
    out.print(f"wrote {out_path}", highlight=False, soft_wrap=True)


def _epoch_bar(bar: Progress, description: str):
    """A progress task for training epochs showing loss and accuracy; returns the callback."""
    task = bar.add_task(description, total=None)

    def update(epoch: int, total: int, m: dict) -> None:
        bar.update(
            task,
            total=total,
            completed=epoch,
            description=f"{description} loss {m['train_loss']:.3f} acc {m['train_accuracy']:.3f}"
            f" | val loss {m['val_loss']:.3f} acc {m['val_accuracy']:.3f}",
        )

    return update


def _bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def _train_config(config_file: Optional[Path], **overrides):
    """TrainConfig from defaults <- YAML file (its `train:` section) <- CLI flags."""
    import yaml

    from moodscope.errors import ConfigError
    from moodscope.models.training import TrainConfig

    values: dict = {}
    model_kwargs: dict = {}
    if config_file is not None:
        try:
            loaded = yaml.safe_load(config_file.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{config_file}: not a readable YAML config ({exc})") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{config_file}: expected a mapping at the top level")
        values.update(loaded.get("train") or {})
        model_kwargs = dict(loaded.get("model_kwargs") or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrainConfig.from_dict(values), model_kwargs
    except TypeError as exc:
        raise ConfigError(f"bad training config: {exc}") from exc


AggregateOpt = typer.Option(
    "segment", "--aggregate", help="Model input: segment rows, or one mean/std row per track."
)
SoftOpt = typer.Option(False, "--soft", help="Train on listener shares (soft labels).")


def _dataset_table(data, labels, feature_set: str, segments: int, workers: int):
    """Load a dataset and its feature table (progress bar, failures reported) for a run."""
    from moodscope.datasets import load_dataset
    from moodscope.features import FeatureConfig, extract_features

    dataset = load_dataset(_data_dir(data), labels)
    feature_config = FeatureConfig(feature_set=feature_set, segments=segments)
    with progress_bar("features", len(dataset)) as update:
        table, failures = extract_features(
            dataset, feature_config, workers=workers, progress=update
        )
    report_failures(failures, len(dataset))
    return dataset, feature_config, table


def _kwargs_for(model_kwargs: dict, name: str) -> dict:
    """A YAML `model_kwargs:` is either the model's arguments or a mapping name -> arguments."""
    if isinstance(model_kwargs.get(name), dict):
        return dict(model_kwargs[name])
    if model_kwargs and all(isinstance(v, dict) for v in model_kwargs.values()):
        return {}  # arguments for other models only
    return dict(model_kwargs)


def _soft_shares(dataset, soft: bool):
    """Per-track shares for soft-label training (Emotify), or None."""
    if not soft:
        return None
    from moodscope.errors import ConfigError

    shares = dataset.share_table()
    if shares is None:
        raise ConfigError("--soft needs listener shares per track (an Emotify dataset)")
    return shares


EpochsOpt = typer.Option(None, "--epochs", help="Most epochs (default 60; early stopping).")
SeedOpt = typer.Option(None, "--seed", help="Random seed (default 0).")
ConfigOpt = typer.Option(None, "--config", help="YAML with `train:` and `model_kwargs:`.")
# How a model trains (TrainConfig); each overrides the YAML's `train:` section.
SmoteOpt = typer.Option(
    None, "--smote/--no-smote", help="Balance training rows with SMOTE (default: the model's)."
)
ClassWeightOpt = typer.Option(
    False, "--class-weight", help="Balance by weighting the loss by inverse class frequency."
)
SelectOpt = typer.Option(
    None, "--select", help="Keep the epoch with the best val_loss (default) or val_macro_f1."
)
BnReestimateOpt = typer.Option(
    None,
    "--bn-reestimate/--no-bn-reestimate",
    help="After training, recompute BatchNorm statistics on the training rows.",
)
StopOnOpt = typer.Option(
    None, "--stop-on", help="Early stopping watches the `select` criterion or `both`."
)
VariantsOpt = typer.Option(
    None,
    "--variants",
    help="Comma-separated balances (smote,class_weight,none; reproduce: all three by "
    "default): neural models train once per balance per fold and report each checkpoint "
    "rule with and without re-estimated BatchNorm statistics.",
)


def _training_options(
    smote: Optional[bool],
    class_weight: bool,
    select: Optional[str],
    bn_reestimate: Optional[bool],
    stop_on: Optional[str],
) -> dict:
    """TrainConfig overrides from the shared training flags (None: not given)."""
    from moodscope.errors import ConfigError

    if class_weight and smote:
        raise ConfigError("--smote and --class-weight are two ways to balance; pick one")
    balance = "class_weight" if class_weight else {True: "smote", False: "none"}.get(smote)
    return {
        "balance": balance,
        "select": select,
        "bn_reestimate": bn_reestimate,
        "stop_on": stop_on,
    }


def _variant_list(variants: Optional[str]) -> Optional[list[str]]:
    if variants is None:
        return None
    from moodscope.research.variants import variants_of

    names = [v.strip() for v in variants.split(",") if v.strip()]
    variants_of(names)  # fail fast on a typo
    return names


@app.command()
def train(
    data: Optional[Path] = DataOpt,
    model: str = typer.Option("paper_cnn_lstm", "--model", help="A registered model name."),
    out_dir: Path = typer.Option(..., "--out", help="Run folder: model.ckpt, metrics.json, ..."),
    segments: int = typer.Option(20, "--segments", help="Equal segments per track."),
    protocol: str = typer.Option(
        "track", "--protocol", help="track (honest holdout), paper, or all (final model)."
    ),
    labels: Optional[Path] = LabelsOpt,
    feature_set: str = typer.Option("paper", "--features", help="Feature set name."),
    aggregate: str = AggregateOpt,
    soft: bool = SoftOpt,
    smote: Optional[bool] = SmoteOpt,
    class_weight: bool = ClassWeightOpt,
    select: Optional[str] = SelectOpt,
    bn_reestimate: Optional[bool] = BnReestimateOpt,
    stop_on: Optional[str] = StopOnOpt,
    epochs: Optional[int] = EpochsOpt,
    seed: Optional[int] = SeedOpt,
    config_file: Optional[Path] = ConfigOpt,
    workers: int = WorkersOpt,
) -> None:
    """Train a model on a dataset, test it on held-out data, save a checkpoint."""
    import yaml

    from moodscope.inference.checkpoint import EXTENSION, save_checkpoint
    from moodscope.research.experiment import train_and_test
    from moodscope.research.report import write_json, write_text_atomic

    train_config, model_kwargs = _train_config(
        config_file,
        epochs=epochs,
        seed=seed,
        **_training_options(smote, class_weight, select, bn_reestimate, stop_on),
    )
    model_kwargs = _kwargs_for(model_kwargs, model)
    dataset, feature_config, table = _dataset_table(data, labels, feature_set, segments, workers)
    with _bar() as bar:
        result = train_and_test(
            table,
            model=model,
            protocol=protocol,
            feature_config=feature_config,
            train_config=train_config,
            model_kwargs=model_kwargs,
            labels=list(dataset.labels) if protocol != "paper" else None,
            aggregate=aggregate,
            shares=_soft_shares(dataset, soft),
            progress=_epoch_bar(bar, model),
        )
    ckpt = save_checkpoint(result.model, out_dir / f"model{EXTENSION}")
    write_json(out_dir / "metrics.json", {**result.metrics, "history": result.history})
    resolved = {
        "command": "train",
        "data": str(dataset.root),
        "labels": str(labels) if labels else None,
        "model": model,
        "model_kwargs": model_kwargs,
        "protocol": protocol,
        "aggregate": aggregate,
        "soft_labels": soft,
        "features": feature_config.to_dict(),
        "train": result.model.train_config.to_dict(),  # the balance resolved
    }
    write_text_atomic(out_dir / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
    headline = (
        f"track accuracy {result.metrics['track_accuracy']:.3f}, "
        if "track_accuracy" in result.metrics
        else ""
    )
    out.print(
        f"{model} ({protocol} protocol): {headline}segment accuracy "
        f"{result.metrics['segment_accuracy']:.3f}, leak {result.metrics['leak_fraction']:.0%}; "
        f"wrote {ckpt}",
        highlight=False,
    )


@app.command()
def reproduce(
    data: Optional[Path] = DataOpt,
    out_dir: Path = typer.Option(..., "--out", help="Report folder."),
    segments: list[int] = typer.Option(
        None, "--segments", help="Segments per track; repeatable, or `--segments 10 20`."
    ),
    extra: Optional[list[str]] = typer.Argument(None, hidden=True),
    epochs: Optional[int] = EpochsOpt,
    seed: Optional[int] = SeedOpt,
    config_file: Optional[Path] = ConfigOpt,
    workers: int = WorkersOpt,
    honest_folds: int = typer.Option(
        5, "--honest-folds", help="Track-disjoint CV folds shown beside paper mode (0: none)."
    ),
    variants: Optional[str] = VariantsOpt,
) -> None:
    """Reproduce the paper's Tables 4-5 and Figs. 4-12 (paper mode, with its leak), beside
    the same model trained without the leak."""
    from moodscope.errors import ConfigError
    from moodscope.research.reproduce import ReproduceConfig, run_reproduce

    counts = list(segments or [])
    for value in extra or []:
        if not value.isdigit():
            raise ConfigError(f"unexpected argument {value!r}")
        counts.append(int(value))
    train_config, _ = _train_config(config_file, epochs=epochs, seed=seed)
    config = ReproduceConfig(
        segmentations=counts or [10, 20],
        train=train_config,
        workers=workers,
        honest_folds=honest_folds,
        **({"variants": _variant_list(variants)} if variants is not None else {}),
    )
    with _bar() as bar:

        def on_features(n):
            task = bar.add_task(f"features ({n} segments)", total=None)
            return lambda done, total: bar.update(task, completed=done, total=total)

        metrics = run_reproduce(
            _data_dir(data),
            out_dir,
            config,
            on_features=on_features,
            on_epoch=lambda n: _epoch_bar(bar, f"{n} seg"),
            on_fold=lambda name, k, total: _epoch_bar(bar, f"{name} fold {k + 1}/{total}"),
        )
    for n, m in metrics["segmentations"].items():
        paper = m.get("paper_accuracy")
        out.print(
            f"{n} segments: accuracy {m['segment_accuracy']:.1%}"
            + (f" (paper {paper:.1%})" if paper else "")
            + f", leak {m['leak_fraction']:.0%} of test segments",
            highlight=False,
        )
        honest = m.get("honest")
        if honest:
            chosen = honest["variants"][honest["chosen"]]
            out.print(
                f"   trained without the leak ({chosen['variant']['label']}; "
                f"{honest_folds}-fold by track): segment accuracy "
                f"{chosen['summary']['segment_accuracy']['mean']:.1%}, track accuracy "
                f"{chosen['summary']['track_accuracy']['mean']:.1%}",
                highlight=False,
            )
            for name in config.baselines:
                out.print(
                    f"   {name}: track accuracy "
                    f"{honest[name]['summary']['track_accuracy']['mean']:.1%}",
                    highlight=False,
                )
    out.print(
        f"wrote {out_dir}/report.md, report.html, metrics.json", highlight=False, soft_wrap=True
    )


@app.command()
def crossval(
    data: Optional[Path] = DataOpt,
    model: str = typer.Option("random_forest", "--model", help="A registered model name."),
    out_dir: Path = typer.Option(..., "--out", help="Report folder."),
    folds: int = typer.Option(5, "--folds", help="Track-disjoint folds."),
    segments: int = typer.Option(20, "--segments", help="Equal segments per track."),
    labels: Optional[Path] = LabelsOpt,
    feature_set: str = typer.Option("paper", "--features", help="Feature set name."),
    aggregate: str = AggregateOpt,
    soft: bool = SoftOpt,
    smote: Optional[bool] = SmoteOpt,
    class_weight: bool = ClassWeightOpt,
    select: Optional[str] = SelectOpt,
    bn_reestimate: Optional[bool] = BnReestimateOpt,
    stop_on: Optional[str] = StopOnOpt,
    epochs: Optional[int] = EpochsOpt,
    seed: Optional[int] = SeedOpt,
    config_file: Optional[Path] = ConfigOpt,
    workers: int = WorkersOpt,
) -> None:
    """Track-disjoint stratified K-fold cross-validation of a model (the honest number)."""
    import yaml

    from moodscope.research.evaluation import crossval as run_crossval
    from moodscope.research.evaluation_report import write_crossval
    from moodscope.research.report import write_text_atomic

    train_config, model_kwargs = _train_config(
        config_file,
        epochs=epochs,
        seed=seed,
        **_training_options(smote, class_weight, select, bn_reestimate, stop_on),
    )
    model_kwargs = _kwargs_for(model_kwargs, model)
    dataset, feature_config, table = _dataset_table(data, labels, feature_set, segments, workers)
    tracks, shares = dataset.by_track(), dataset.share_table()
    with _bar() as bar:
        result = run_crossval(
            table,
            tracks,
            model=model,
            feature_config=feature_config,
            labels=list(dataset.labels),
            folds=folds,
            train_config=train_config,
            model_kwargs=model_kwargs,
            shares=shares,
            aggregate=aggregate,
            soft=soft,
            on_fold=lambda k, n: _epoch_bar(bar, f"fold {k + 1}/{n}"),
        )
    write_crossval(result, out_dir, f"{model}: {folds}-fold track-disjoint cross-validation")
    resolved = {
        "command": "crossval",
        "data": str(dataset.root),
        "model": model,
        "model_kwargs": model_kwargs,
        "folds": folds,
        "smote": result["smote"],
        "aggregate": aggregate,
        "soft_labels": soft,
        "features": feature_config.to_dict(),
        "train": result["train"],  # the balance resolved
    }
    write_text_atomic(out_dir / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
    s = result["summary"]
    corr = s["emotion_correlation_mean"]
    out.print(
        f"{model}: track accuracy {s['track_accuracy']['mean']:.3f} ± "
        f"{s['track_accuracy']['std']:.3f}, macro-F1 {s['track_macro_f1']['mean']:.3f} ± "
        f"{s['track_macro_f1']['std']:.3f}, balanced accuracy "
        f"{s['track_balanced_accuracy']['mean']:.3f}"
        + (f", mean emotion r {corr['mean']:.3f}" if corr else "")
        + f"; wrote {out_dir}/report.md",
        highlight=False,
    )


@app.command()
def compare(
    data: Optional[Path] = DataOpt,
    models: str = typer.Option(
        "majority,logistic_regression,random_forest,gradient_boosting,paper_cnn_lstm",
        "--models",
        help="Comma-separated registered model names.",
    ),
    out_dir: Path = typer.Option(..., "--out", help="Folder: comparison.md/json + one per model."),
    folds: int = typer.Option(5, "--folds", help="Track-disjoint folds."),
    segments: int = typer.Option(20, "--segments", help="Equal segments per track."),
    labels: Optional[Path] = LabelsOpt,
    feature_set: str = typer.Option("paper", "--features", help="Feature set name."),
    aggregate: str = AggregateOpt,
    soft: bool = SoftOpt,
    smote: Optional[bool] = SmoteOpt,
    class_weight: bool = ClassWeightOpt,
    select: Optional[str] = SelectOpt,
    bn_reestimate: Optional[bool] = BnReestimateOpt,
    stop_on: Optional[str] = StopOnOpt,
    variants: Optional[str] = VariantsOpt,
    epochs: Optional[int] = EpochsOpt,
    seed: Optional[int] = SeedOpt,
    config_file: Optional[Path] = ConfigOpt,
    workers: int = WorkersOpt,
) -> None:
    """Cross-validate several models on the same folds and tabulate them side by side."""
    from moodscope.research.comparison import compare_models

    balances = _variant_list(variants)
    train_config, model_kwargs = _train_config(
        config_file,
        epochs=epochs,
        seed=seed,
        **_training_options(smote, class_weight, select, bn_reestimate, stop_on),
    )
    dataset, feature_config, table = _dataset_table(data, labels, feature_set, segments, workers)
    names = [m.strip() for m in models.split(",") if m.strip()]
    model_kwargs = {name: _kwargs_for(model_kwargs, name) for name in names}
    with _bar() as bar:
        markdown = compare_models(
            dataset,
            table,
            names,
            feature_config=feature_config,
            folds=folds,
            train_config=train_config,
            out_dir=out_dir,
            aggregate=aggregate,
            soft=soft,
            model_kwargs=model_kwargs,
            variants=balances,
            on_fold=lambda name, k, n: _epoch_bar(bar, f"{name} fold {k + 1}/{n}"),
        )
    out.print(markdown, highlight=False)


@app.command()
def evaluate(
    checkpoint: Path = typer.Argument(..., help="A trained model (.ckpt)."),
    data: Optional[Path] = DataOpt,
    labels: Optional[Path] = LabelsOpt,
    out_dir: Path = typer.Option(..., "--out", help="Report folder."),
    workers: int = WorkersOpt,
) -> None:
    """Evaluate a trained model on every track of a labelled dataset it has not seen."""
    from moodscope.datasets import load_dataset
    from moodscope.inference.checkpoint import load_checkpoint
    from moodscope.research.evaluation import evaluate_model
    from moodscope.research.evaluation_report import evaluation_report
    from moodscope.research.report import write_json

    model = load_checkpoint(checkpoint)
    dataset = load_dataset(_data_dir(data), labels)
    with progress_bar("features", len(dataset)) as update:
        metrics, failures = evaluate_model(model, dataset, workers=workers, progress=update)
    report_failures(failures, len(dataset))
    write_json(
        out_dir / "metrics.json",
        {
            **metrics,
            "checkpoint": str(checkpoint),
            "data": str(dataset.root),
            "failed": [p for p, _ in failures],
        },
    )
    evaluation_report(
        metrics,
        f"Evaluation of {checkpoint.name}",
        f"Checkpoint `{checkpoint}` ({model.classifier.name}) on `{dataset.root}`: "
        f"{metrics['n_tracks']} tracks, {len(failures)} failed to decode.",
    ).write(out_dir)
    out.print(
        f"track accuracy {metrics['track_accuracy']:.3f}, macro-F1 "
        f"{metrics['track_macro_f1']:.3f}, balanced accuracy "
        f"{metrics['track_balanced_accuracy']:.3f} on {metrics['n_tracks']} tracks; "
        f"wrote {out_dir}/report.md",
        highlight=False,
    )
    if failures:
        raise typer.Exit(1)


def _short(path: str) -> str:
    """The path relative to the working folder when under it, else its last two parts."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(Path(*p.parts[-2:]))


def _prediction_table(results) -> Table:
    table = Table("file", "top emotion", "distribution (top 3)", "duration")
    for r in results:
        if not r.ok:
            table.add_row(_short(r.path), "[red]error[/red]", r.error, "")
            continue
        top3 = sorted(r.emotions.items(), key=lambda kv: -kv[1])[:3]
        table.add_row(
            _short(r.path),
            r.top_emotion + (" (silent)" if r.silent else ""),
            ", ".join(f"{k} {v:.0%}" for k, v in top3),
            f"{r.duration:.1f} s",
        )
    return table


@app.command()
def predict(
    paths: list[Path] = typer.Argument(..., help="Audio files or folders (searched recursively)."),
    model: Optional[Path] = typer.Option(None, "--model", help="Checkpoint (default: shipped)."),
    fmt: str = typer.Option("table", "--format", help="table | json | jsonl | csv"),
    output: Optional[Path] = typer.Option(None, "--output", help="Write here, not to stdout."),
    timeline: bool = typer.Option(False, "--timeline", help="Include per-segment emotions."),
    workers: int = WorkersOpt,
    scheduler: Optional[str] = SchedulerOpt,
    resume: bool = typer.Option(
        False, "--resume", help="Keep what an unfinished run left in OUTPUT.partial."
    ),
) -> None:
    """Predict the emotions of audio files: distribution, top emotion, timeline."""
    import json

    from moodscope.backends import BackendLost
    from moodscope.errors import ConfigError
    from moodscope.inference.outputs import PredictionFile, check_format, render
    from moodscope.inference.predictor import find_audio, load_model, predict_iter

    check_format(fmt)
    if resume and output is None:
        raise ConfigError("--resume needs --output (the file an earlier run was writing)")
    files = [str(f) for f in find_audio(paths)]
    if not files:
        raise ConfigError(f"no audio files found in {', '.join(map(str, paths))}")
    trained = load_model(model)
    sink = PredictionFile(output, fmt, timeline=timeline, resume=resume) if output else None
    todo = files if sink is None else [f for f in files if f not in sink.done]
    if sink is not None and sink.resumed:
        console.print(
            f"resuming: {sink.resumed} file(s) already done in {sink.partial}",
            highlight=False,
            soft_wrap=True,
        )
    results, failed = [], []
    try:
        with progress_bar("predict", len(todo), show=len(todo) > 1) as update:
            for r in predict_iter(
                todo, trained, workers=workers, scheduler=scheduler, progress=update
            ):
                if not r.ok:
                    failed.append(r)
                if sink is not None:
                    sink.add(r)
                elif fmt == "jsonl":  # as each finishes: a pipe sees results at once
                    sys.stdout.write(json.dumps(r.to_dict(timeline=timeline)) + "\n")
                    sys.stdout.flush()
                else:
                    results.append(r)
    except BackendLost as exc:
        if sink is None:
            raise
        raise BackendLost(
            f"{exc}; {len(sink.done)} of {len(files)} file(s) are saved in {sink.partial}: "
            "run the same command with --resume to finish"
        ) from exc
    finally:
        if sink is not None:
            sink.close()
    if sink is not None:
        sink.finish(order=files)
        out.print(f"wrote {output}", highlight=False, soft_wrap=True)
    elif fmt != "jsonl":
        rank = {path: i for i, path in enumerate(files)}
        results.sort(key=lambda r: rank[r.path])
        if fmt == "table":
            out.print(_prediction_table(results))
        else:
            sys.stdout.write(render(results, fmt, timeline=timeline))
    for r in failed:
        console.print(f"[red]failed[/red] {r.error}", highlight=False, soft_wrap=True)
    console.print(
        f"{len(todo)} file(s), {len(todo) - len(failed)} predicted, {len(failed)} failed"
        + (f"; {sink.resumed} done before" if sink is not None and sink.resumed else ""),
        highlight=False,
    )
    if failed:
        raise typer.Exit(1)


# -- your music library: tag, untag, find -------------------------------------------------

DbOpt = typer.Option(
    None,
    "--db",
    help="Library index (SQLite); default $MOODSCOPE_DATA_DIR/library.sqlite, else "
    "$XDG_DATA_HOME/moodscope/library.sqlite or ~/.local/share/moodscope/library.sqlite.",
)
ModelOpt = typer.Option(None, "--model", help="Checkpoint (default: the shipped model).")
AudioPathsArg = typer.Argument(..., help="Audio files or folders (searched recursively).")


def _library_files(paths: list[Path]) -> list[str]:
    from moodscope.errors import ConfigError
    from moodscope.library.index import library_files

    files = library_files(paths)
    if not files:
        raise ConfigError(f"no audio files found in {', '.join(map(str, paths))}")
    return files


@app.command()
def tag(
    paths: list[Path] = AudioPathsArg,
    model: Optional[Path] = ModelOpt,
    db: Optional[Path] = DbOpt,
    workers: int = WorkersOpt,
    scheduler: Optional[str] = SchedulerOpt,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Predict and show the moods; write neither tags nor index."
    ),
    force: bool = typer.Option(False, "--force", help="Redo files already done and unchanged."),
) -> None:
    """Write mood tags into audio files and record them in the library index (resumable)."""
    from collections import Counter

    from moodscope.library.index import (
        FAILED,
        SKIPPED,
        TAGGED,
        WOULD_TAG,
        default_db_path,
        tag_files,
    )

    files = _library_files(paths)
    done = WOULD_TAG if dry_run else TAGGED
    counts: Counter = Counter()
    failed_before, planned = 0, []

    def text() -> str:
        return f"tag: {counts[done]} {done}, {counts[SKIPPED]} skipped, {counts[FAILED]} failed"

    outcomes = tag_files(
        files, model, db=db, workers=workers, scheduler=scheduler, dry_run=dry_run, force=force
    )
    with progress_bar(text(), len(files)) as update:
        for n, outcome in enumerate(outcomes, start=1):
            counts[outcome.status] += 1
            if outcome.status == FAILED:
                console.print(f"[red]failed[/red] {outcome.error}", highlight=False, soft_wrap=True)
            elif outcome.status == SKIPPED and outcome.error:
                failed_before += 1
            elif outcome.status == WOULD_TAG:
                planned.append(outcome.prediction)
            update(n, text=text())
    if dry_run:
        out.print(_prediction_table(planned))
    skipped = f"{counts[SKIPPED]} skipped (unchanged)"
    if failed_before:
        skipped += f", {failed_before} of them failed before (--force retries them)"
    console.print(
        f"{len(files)} file(s): {counts[done]} {'would be tagged' if dry_run else 'tagged'}, "
        f"{skipped}, {counts[FAILED]} failed; "
        + ("nothing written (dry run)" if dry_run else f"index {db or default_db_path()}"),
        highlight=False,
    )
    if counts[FAILED]:
        raise typer.Exit(1)


@app.command()
def untag(paths: list[Path] = AudioPathsArg, db: Optional[Path] = DbOpt) -> None:
    """Remove exactly the tags moodscope wrote (a mood the file had before comes back)."""
    from collections import Counter

    from moodscope.library.index import FAILED, SKIPPED, UNTAGGED, untag_files

    files = _library_files(paths)
    counts: Counter = Counter()
    for outcome in untag_files(files, db=db):
        counts[outcome.status] += 1
        if outcome.status == FAILED:
            console.print(f"[red]failed[/red] {outcome.error}", highlight=False, soft_wrap=True)
    console.print(
        f"{len(files)} file(s): {counts[UNTAGGED]} untagged, {counts[SKIPPED]} had no moodscope "
        f"tags, {counts[FAILED]} failed",
        highlight=False,
    )
    if counts[FAILED]:
        raise typer.Exit(1)


FIND_FORMATS = ("table", "json", "m3u8")


@app.command()
def find(
    mood: Optional[str] = typer.Option(None, "--mood", help="Tracks with most of this emotion."),
    min_share: Optional[float] = typer.Option(
        None, "--min", help="With --mood: every track whose share is at least this (0-1)."
    ),
    like: Optional[Path] = typer.Option(
        None, "--like", help="Tracks whose mood is nearest this file's ('more like this')."
    ),
    limit: Optional[int] = typer.Option(
        None, "--limit", help="At most N tracks (default 20; all with --min)."
    ),
    fmt: str = typer.Option("table", "--format", help="table | json | m3u8 (a playlist)"),
    output: Optional[Path] = typer.Option(None, "--output", help="Write here, not to stdout."),
    db: Optional[Path] = DbOpt,
    model: Optional[Path] = typer.Option(
        None, "--model", help="With --like of a file not in the index: the model to predict it."
    ),
) -> None:
    """Find tracks in the library index by mood, or like a given track, as a table, JSON or
    an M3U8 playlist."""
    import json

    from moodscope.errors import ConfigError
    from moodscope.library.index import default_db_path, find_by_mood, find_like, playlist_m3u8
    from moodscope.research.report import write_text_atomic

    if fmt not in FIND_FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FIND_FORMATS)}")
    if (mood is None) == (like is None):
        raise ConfigError("give one of --mood EMOTION or --like FILE")
    if min_share is not None and mood is None:
        raise ConfigError("--min goes with --mood")
    path = db or default_db_path()
    if not path.exists():
        raise ConfigError(f"no library index at {path}: run `moodscope tag FOLDER` first")
    if mood is not None:
        matches = find_by_mood(mood, min_share=min_share, limit=limit, db=path)
    else:
        matches = find_like(like, limit=limit, db=path, model=model)
    if fmt == "table" and output is None:
        table = Table("#", mood or "distance", "top emotion", "file")
        for i, m in enumerate(matches, start=1):
            score = m.share if m.share is not None else m.distance
            table.add_row(str(i), f"{score:.3f}", m.top_emotion, _short(m.path))
        out.print(table)
    else:
        if fmt == "m3u8":
            text = playlist_m3u8(matches)
        else:
            text = json.dumps([m.to_dict() for m in matches], indent=2) + "\n"
        if output is not None:
            write_text_atomic(output, text)
        else:
            sys.stdout.write(text)
    console.print(f"{len(matches)} track(s) found in {path}", highlight=False, soft_wrap=True)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (default: local only)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    model: Optional[Path] = typer.Option(None, "--model", help="Checkpoint (default: shipped)."),
    workers: int = WorkersOpt,
    max_upload_mb: float = typer.Option(100.0, "--max-upload-mb", help="Largest upload, MiB."),
    token: Optional[str] = typer.Option(
        None, "--token", envvar="MOODSCOPE_TOKEN", help="Require 'Authorization: Bearer TOKEN'."
    ),
    queue: int = typer.Option(32, "--queue", help="Requests waiting for a worker (more: 503)."),
    upload_timeout: float = typer.Option(
        30.0, "--upload-timeout", help="Seconds an upload may stall before it gets 408."
    ),
) -> None:
    """Serve the HTTP API (/v1, docs at /docs) and the web page (/) with uvicorn."""
    try:
        from moodscope.service.app import serve as run_service
    except ImportError as exc:
        raise MoodscopeError(
            f"serve needs the service extra ({exc.name} is missing): pip install 'moodscope[serve]'"
        ) from None

    run_service(
        host=host,
        port=port,
        model=model,
        workers=workers,
        max_upload_mb=max_upload_mb,
        token=token,
        queue=queue,
        upload_timeout=upload_timeout,
    )


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("demo-output"), "--out", help="Folder for the demo's files."),
) -> None:
    """Synthesise a few contrasting pieces and analyse them (no data or network needed)."""
    from moodscope.demo.run import run_demo

    run_demo(out_dir, console=out)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning moodscope's errors into one line and exit code 1."""
    import logging

    from moodscope.backends import cluster

    # dask.distributed logs a lost connection as a traceback; the CLI says it in one line.
    cluster.LOG_LEVEL = logging.CRITICAL
    try:
        code = app(args=argv, prog_name="moodscope", standalone_mode=False)
    except MoodscopeError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        console.print("aborted")
        sys.exit(130)
    except Exception as exc:
        # Usage errors of the click that typer bundles (typer >= 0.24 vendors it, so the
        # class is not importable by a stable name): they know how to show themselves.
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    # Outside standalone mode click returns typer.Exit's code instead of exiting.
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
