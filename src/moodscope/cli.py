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

from .errors import MoodscopeError

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


@contextmanager
def progress_bar(description: str, total: int):
    """A rich progress bar on stderr; yields ``update(done, total)``."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done, _total=None: bar.update(task, completed=done)


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
    workers: int = typer.Option(default_workers(), "--workers", help="Worker processes."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute, ignoring the cache."),
) -> None:
    """Extract per-segment features of a dataset into a Parquet table."""
    from .datasets import load_dataset
    from .features import FeatureConfig, extract_features, write_table

    dataset = load_dataset(_data_dir(data), labels)
    config = FeatureConfig(feature_set=feature_set, segments=segments)
    with progress_bar("features", len(dataset)) as update:
        table, failures = extract_features(
            dataset, config, workers=workers, use_cache=not no_cache, progress=update
        )
    write_table(table, out_path)
    n_tracks = table["track_id"].nunique() if len(table) else 0
    out.print(f"wrote {out_path}: {len(table)} segments of {n_tracks} tracks", highlight=False)
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
    from .datasets import EmotifyDataset, load_dataset

    dataset = load_dataset(_data_dir(data), labels)
    if isinstance(dataset, EmotifyDataset):
        report = dataset.validate(checksums=checksums)
    else:
        report = dataset.validate()
    for path in report.missing:
        out.print(f"missing     {path}", highlight=False)
    for path, problem in report.unreadable:
        out.print(f"unreadable  {path}: {problem}", highlight=False)
    for path in report.bad_checksum:
        out.print(f"checksum    {path}", highlight=False)
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
    from .audio import SAMPLE_RATE, load_audio
    from .plots import plot_audio, save_figure

    y = load_audio(audio, sr=SAMPLE_RATE)
    save_figure(plot_audio(y, SAMPLE_RATE, kind=kind, title=audio.name), out_path)
    out.print(f"wrote {out_path}", highlight=False)


@app.command("plot-classes")
def plot_classes(
    data: Optional[Path] = DataOpt,
    labels: Optional[Path] = LabelsOpt,
    out_path: Path = typer.Option(..., "--out", help="PNG file to write."),
) -> None:
    """Bar chart of tracks per class (the paper's Fig. 7)."""
    from .datasets import load_dataset
    from .plots import plot_class_counts, save_figure

    dataset = load_dataset(_data_dir(data), labels)
    counts = dataset.class_counts()
    save_figure(plot_class_counts(counts, title=f"{dataset.name}: tracks per class"), out_path)
    table = Table("class", "tracks")
    for label, n in counts.items():
        table.add_row(label, str(n))
    out.print(table)
    out.print(f"wrote {out_path}", highlight=False)


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("demo-output"), "--out", help="Folder for the demo's files."),
) -> None:
    """Synthesise a few contrasting pieces and analyse them (no data or network needed)."""
    from .demo import run_demo

    run_demo(out_dir, console=out)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning moodscope's errors into one line and exit code 1."""
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
    except Exception as exc:  # click's usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    # Outside standalone mode click returns typer.Exit's code instead of exiting.
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
