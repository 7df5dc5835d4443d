"""Options shared by several commands, declared once: each group is a dataclass whose fields
carry their typer options, and :func:`with_options` puts a group's fields into a command's
signature and hands the command one filled-in dataclass.

Values are checked while parsing (``--workers 0`` or a scheduler that is no address is a
usage error, exit 2, before any work starts).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional, get_type_hints

import typer

from moodscope.errors import MoodscopeError

_SCHEDULER = re.compile(r"^(?:(?:tcp|tls|ws|wss|ucx)://\S+:\d+|local(?::[1-9]\d*)?)$")


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def audio_path(value: str) -> Path:
    """An audio file or folder argument; ``""`` (an unset shell variable) is refused, not
    read as ``.``, the whole working folder."""
    if value == "":
        raise typer.BadParameter("an empty path (an unset variable?); name a file or a folder")
    return Path(value)


def check_scheduler(value: Optional[str]) -> Optional[str]:
    if value is None or value == "" or _SCHEDULER.match(value):
        return value or None
    raise typer.BadParameter(
        f"{value!r} is neither a Dask scheduler address (tcp://HOST:PORT) nor local:N (N >= 1)"
    )


Workers = Annotated[
    int,
    typer.Option(
        "--workers", min=1, metavar="N", help="Local worker processes (1: in this process)."
    ),
]
ModelPath = Annotated[
    Optional[Path],
    typer.Option("--model", metavar="FILE", help="Checkpoint (default: the shipped model)."),
]
MinConfidence = Annotated[
    Optional[float],
    typer.Option(
        "--min-confidence",
        metavar="C",
        min=0.0,
        max=1.0,
        help="Only where the confidence (the chance that the top emotion is the listeners' "
        "dominant one, 0-1) reaches this; the model card says which value keeps how many "
        "tracks at what accuracy.",
    ),
]


@dataclass
class DataOptions:
    """Which labelled dataset a research command reads."""

    data: Annotated[
        Optional[Path],
        typer.Option(
            "--data",
            metavar="DIR",
            help="Emotify-layout folder (data.csv + emotifymusic/); default "
            "$MOODSCOPE_EMOTIFY_DIR.",
        ),
    ] = None
    labels: Annotated[
        Optional[Path],
        typer.Option(
            "--labels",
            metavar="FILE",
            help="CSV 'path,label' selecting a folder dataset under --data.",
        ),
    ] = None

    def root(self) -> Path:
        if self.data is not None:
            return self.data
        env = os.environ.get("MOODSCOPE_EMOTIFY_DIR")
        if env:
            return Path(env)
        raise MoodscopeError("no dataset given: pass --data DIR or set MOODSCOPE_EMOTIFY_DIR")


@dataclass
class FeatureOptions:
    """Which features of each track a model sees."""

    segments: Annotated[
        int,
        typer.Option(
            "--segments", min=1, metavar="N", help="Equal segments per track (paper: 10/20)."
        ),
    ] = 20
    feature_set: Annotated[
        str, typer.Option("--features", metavar="NAME", help="Feature set name.")
    ] = "paper"

    def config(self):
        from moodscope.features import FeatureConfig

        return FeatureConfig(feature_set=self.feature_set, segments=self.segments)


@dataclass
class ParallelOptions:
    """Where per-file work runs."""

    workers: Workers = dataclasses.field(default_factory=default_workers)
    scheduler: Annotated[
        Optional[str],
        typer.Option(
            "--scheduler",
            metavar="ADDRESS",
            envvar="MOODSCOPE_SCHEDULER",
            callback=check_scheduler,
            help="Run on a Dask cluster: tcp://HOST:8786, or local:N to start N local workers. "
            "Workers read the files from the same paths.",
        ),
    ] = None


@dataclass
class DecodeOptions:
    """What one file may cost to decode (``predict``, ``tag``)."""

    # moodscope.audio.decode.MAX_DURATION (not imported: the CLI starts without the
    # audio stack; a test keeps the two equal).
    max_duration: Annotated[
        float,
        typer.Option(
            "--max-duration",
            metavar="SECONDS",
            min=1.0,
            help="Longest audio in seconds a file may declare or decode to; longer files fail "
            "before they are decoded.",
        ),
    ] = 86_400.0


@dataclass
class InferenceOptions:
    """How the network computes a prediction."""

    exact: Annotated[
        bool,
        typer.Option(
            "--exact",
            help="Run the network in float32 everywhere (default: this CPU's fast path, "
            "bfloat16 on AMX, where it has one).",
        ),
    ] = False


@dataclass
class RunConfigOptions:
    """The training run's seed, length and YAML config."""

    epochs: Annotated[
        Optional[int],
        typer.Option("--epochs", min=1, metavar="N", help="Most epochs (default 60)."),
    ] = None
    seed: Annotated[
        Optional[int], typer.Option("--seed", metavar="N", help="Random seed (default 0).")
    ] = None
    config_file: Annotated[
        Optional[Path],
        typer.Option("--config", metavar="FILE", help="YAML with `train:` and `model_kwargs:`."),
    ] = None


@dataclass
class FileRunOptions(InferenceOptions, DecodeOptions, ParallelOptions):
    """Everything predict and tag share: where the work runs, what a file may cost to
    decode, how the network computes."""


_TRAINING_METAVARS = {
    "aggregate": "segment|track",
    "select": "val_loss|val_macro_f1",
    "stop_on": "select|both",
}
_TRAINING_HELP = {
    "aggregate": "Model input: segment rows, or one mean/std row per track.",
    "soft": "Train on listener shares (soft labels).",
    "smote": "Balance training rows with SMOTE (default: the model's).",
    "class_weight": "Balance by weighting the loss by inverse class frequency.",
    "select": "Keep the epoch with the best val_loss (default) or val_macro_f1.",
    "bn_reestimate": "After training, recompute BatchNorm statistics on the training rows.",
    "stop_on": "Early stopping watches the `select` criterion or `both`.",
}


def _training(*decls: str):
    name = decls[0].split("/")[0].lstrip("-").replace("-", "_")
    return typer.Option(*decls, metavar=_TRAINING_METAVARS.get(name), help=_TRAINING_HELP[name])


@dataclass
class TrainingOptions:
    """How a model trains (each overrides the YAML's ``train:`` section)."""

    aggregate: Annotated[str, _training("--aggregate")] = "segment"
    soft: Annotated[bool, _training("--soft")] = False
    smote: Annotated[Optional[bool], _training("--smote/--no-smote")] = None
    class_weight: Annotated[bool, _training("--class-weight")] = False
    select: Annotated[Optional[str], _training("--select")] = None
    bn_reestimate: Annotated[Optional[bool], _training("--bn-reestimate/--no-bn-reestimate")] = None
    stop_on: Annotated[Optional[str], _training("--stop-on")] = None

    def train_config(self, run: RunConfigOptions):
        """``(TrainConfig, model_kwargs)``: defaults <- YAML <- these flags."""
        from moodscope.research.runs import balance_overrides, load_train_config

        return load_train_config(
            run.config_file,
            epochs=run.epochs,
            seed=run.seed,
            **balance_overrides(
                smote=self.smote,
                class_weight=self.class_weight,
                select=self.select,
                bn_reestimate=self.bn_reestimate,
                stop_on=self.stop_on,
            ),
        )


@dataclass
class FeatureRunOptions(ParallelOptions, FeatureOptions, DataOptions):
    """A dataset, the features of its tracks, and where extracting them runs."""


@dataclass
class ExperimentOptions(RunConfigOptions, TrainingOptions, FeatureRunOptions):
    """Everything train, crossval and compare share: the data, its features, how the model
    trains, the run's seed and config, and where feature extraction runs."""


def with_options(fn):
    """Replace each parameter of ``fn`` annotated with an option group (a dataclass above) by
    the group's fields, and call ``fn`` with the group built from them."""
    hints = get_type_hints(fn, include_extras=True)
    signature = inspect.signature(fn)
    own, groups = [], {}
    for param in signature.parameters.values():
        annotation = hints.get(param.name, param.annotation)
        if dataclasses.is_dataclass(annotation):
            groups[param.name] = annotation
        else:
            own.append(param.replace(annotation=annotation))
    added = []
    for cls in groups.values():
        field_hints = get_type_hints(cls, include_extras=True)
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            added.append(
                inspect.Parameter(
                    f.name,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=default,
                    annotation=field_hints[f.name],
                )
            )

    @functools.wraps(fn)
    def command(**kwargs):
        for name, cls in groups.items():
            kwargs[name] = cls(**{f.name: kwargs.pop(f.name) for f in dataclasses.fields(cls)})
        return fn(**kwargs)

    command.__signature__ = signature.replace(parameters=own + added)
    command.__annotations__ = {}
    return command
