"""A research run from its options: the dataset and its feature table, the training config
from defaults <- YAML <- flags, and the run folder's files (checkpoint, metrics, report and the
resolved ``config.yaml`` that reproduces it). The CLI parses; this does the rest."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from moodscope.errors import ConfigError
from moodscope.features import FeatureConfig
from moodscope.models.training import TrainConfig


def load_train_config(config_file: Path | None, **overrides) -> tuple[TrainConfig, dict]:
    """``(TrainConfig, model_kwargs)`` from defaults <- the YAML's ``train:`` section <-
    ``overrides`` (a value of None is "not given")."""
    import yaml

    values: dict = {}
    model_kwargs: dict = {}
    if config_file is not None:
        try:
            loaded = yaml.safe_load(Path(config_file).read_text()) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
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


def balance_overrides(
    *,
    smote: bool | None = None,
    class_weight: bool = False,
    select: str | None = None,
    bn_reestimate: bool | None = None,
    stop_on: str | None = None,
) -> dict:
    """TrainConfig overrides from the training flags (None: not given)."""
    if class_weight and smote:
        raise ConfigError("--smote and --class-weight are two ways to balance; pick one")
    balance = "class_weight" if class_weight else {True: "smote", False: "none"}.get(smote)
    return {
        "balance": balance,
        "select": select,
        "bn_reestimate": bn_reestimate,
        "stop_on": stop_on,
    }


def kwargs_for(model_kwargs: dict, name: str) -> dict:
    """A YAML ``model_kwargs:`` is either the model's arguments or a mapping name -> arguments."""
    if isinstance(model_kwargs.get(name), dict):
        return dict(model_kwargs[name])
    if model_kwargs and all(isinstance(v, dict) for v in model_kwargs.values()):
        return {}  # arguments for other models only
    return dict(model_kwargs)


def soft_shares(dataset, soft: bool):
    """Per-track listener shares for soft-label training (Emotify), or None."""
    if not soft:
        return None
    shares = dataset.share_table()
    if shares is None:
        raise ConfigError("--soft needs listener shares per track (an Emotify dataset)")
    return shares


def parse_variants(text: str | None) -> list[str] | None:
    """``"smote,none"`` -> ``["smote", "none"]``, checked against the known balances."""
    if text is None:
        return None
    from moodscope.research.variants import variants_of

    names = [v.strip() for v in text.split(",") if v.strip()]
    variants_of(names)  # fail fast on a typo
    return names


def dataset_table(
    data: Path,
    labels: Path | None,
    feature_config: FeatureConfig,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    use_cache: bool = True,
    progress: Callable | None = None,
):
    """``(dataset, table, failures)``: a dataset and its feature table for a run."""
    from moodscope.datasets import load_dataset
    from moodscope.features import extract_features

    dataset = load_dataset(data, labels)
    table, failures = extract_features(
        dataset,
        feature_config,
        workers=workers,
        scheduler=scheduler,
        use_cache=use_cache,
        progress=progress,
    )
    return dataset, table, failures


def write_run_config(out_dir: Path, resolved: dict) -> Path:
    """The resolved options of a run as ``out_dir/config.yaml``, so that it can be rerun."""
    import yaml

    from moodscope.research.report import write_text_atomic

    return write_text_atomic(
        Path(out_dir) / "config.yaml", yaml.safe_dump(resolved, sort_keys=False)
    )


@dataclass
class TrainRun:
    """What :func:`train_run` wrote: the checkpoint and the held-out metrics."""

    checkpoint: Path
    metrics: dict


def train_run(
    dataset,
    table,
    *,
    model: str,
    out_dir: Path,
    protocol: str,
    feature_config: FeatureConfig,
    train_config: TrainConfig,
    model_kwargs: dict,
    aggregate: str = "segment",
    soft: bool = False,
    labels_csv: Path | None = None,
    progress: Callable | None = None,
) -> TrainRun:
    """Train ``model``, test it on held-out data, and write ``model.ckpt``, ``metrics.json``
    and ``config.yaml`` into ``out_dir``."""
    from moodscope.inference.checkpoint import EXTENSION, save_checkpoint
    from moodscope.research.experiment import train_and_test
    from moodscope.research.report import write_json

    result = train_and_test(
        table,
        model=model,
        protocol=protocol,
        feature_config=feature_config,
        train_config=train_config,
        model_kwargs=model_kwargs,
        labels=list(dataset.labels) if protocol != "paper" else None,
        aggregate=aggregate,
        shares=soft_shares(dataset, soft),
        progress=progress,
    )
    ckpt = save_checkpoint(result.model, Path(out_dir) / f"model{EXTENSION}")
    write_json(Path(out_dir) / "metrics.json", {**result.metrics, "history": result.history})
    write_run_config(
        out_dir,
        {
            "command": "train",
            "data": str(dataset.root),
            "labels": str(labels_csv) if labels_csv else None,
            "model": model,
            "model_kwargs": model_kwargs,
            "protocol": protocol,
            "aggregate": aggregate,
            "soft_labels": soft,
            "features": feature_config.to_dict(),
            "train": result.model.train_config.to_dict(),  # the balance resolved
        },
    )
    return TrainRun(ckpt, result.metrics)


def crossval_run(
    dataset,
    table,
    *,
    model: str,
    out_dir: Path,
    folds: int,
    feature_config: FeatureConfig,
    train_config: TrainConfig,
    model_kwargs: dict,
    aggregate: str = "segment",
    soft: bool = False,
    on_fold: Callable | None = None,
) -> dict:
    """Track-disjoint cross-validation of ``model``; writes its report and ``config.yaml``
    into ``out_dir`` and returns the result."""
    from moodscope.research.evaluation import crossval
    from moodscope.research.evaluation_report import write_crossval

    result = crossval(
        table,
        dataset.by_track(),
        model=model,
        feature_config=feature_config,
        labels=list(dataset.labels),
        folds=folds,
        train_config=train_config,
        model_kwargs=model_kwargs,
        shares=dataset.share_table(),
        aggregate=aggregate,
        soft=soft,
        on_fold=on_fold,
    )
    write_crossval(result, out_dir, f"{model}: {folds}-fold track-disjoint cross-validation")
    write_run_config(
        out_dir,
        {
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
        },
    )
    return result


def evaluate_run(
    checkpoint: Path,
    data: Path,
    labels: Path | None,
    out_dir: Path,
    *,
    workers: int = 1,
    progress: Callable | None = None,
):
    """Evaluate a checkpoint on every track of a labelled dataset; write ``metrics.json`` and
    the report into ``out_dir``. Returns ``(metrics, failures)``."""
    from moodscope.datasets import load_dataset
    from moodscope.inference.checkpoint import load_checkpoint
    from moodscope.research.evaluation import evaluate_model
    from moodscope.research.evaluation_report import evaluation_report
    from moodscope.research.report import write_json

    model = load_checkpoint(checkpoint)
    dataset = load_dataset(data, labels)
    metrics, failures = evaluate_model(model, dataset, workers=workers, progress=progress)
    write_json(
        Path(out_dir) / "metrics.json",
        {
            **metrics,
            "checkpoint": str(checkpoint),
            "data": str(dataset.root),
            "failed": [p for p, _ in failures],
        },
    )
    evaluation_report(
        metrics,
        f"Evaluation of {Path(checkpoint).name}",
        f"Checkpoint `{checkpoint}` ({model.classifier.name}) on `{dataset.root}`: "
        f"{metrics['n_tracks']} tracks, {len(failures)} failed to decode.",
    ).write(out_dir)
    return metrics, failures


__all__ = [
    "TrainRun",
    "balance_overrides",
    "crossval_run",
    "dataset_table",
    "evaluate_run",
    "kwargs_for",
    "load_train_config",
    "parse_variants",
    "soft_shares",
    "train_run",
    "write_run_config",
]
