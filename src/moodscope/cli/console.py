"""What the command line shows: one console for results (stdout), one for messages
(stderr), progress bars, and the prediction table.

Text is text: a path or a message is never read as console markup, and control characters
in it (a newline or an ANSI escape in a file name) are shown escaped, so what reaches the
terminal is one line that names the file exactly.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

console = Console(stderr=True)
out = Console()

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(value) -> str:
    """``value`` as one printable line: control characters as escapes (``\\n``,
    ``\\x1b``), bytes that are not UTF-8 (a file name from another system) as ``\\udcff``."""
    text = str(value).encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def say(message, *, err: bool = True, style: str | None = None, prefix: str = "") -> None:
    """Print ``message`` as plain text (never markup), optionally after a styled ``prefix``
    such as ``failed`` or ``error:``."""
    text = Text()
    if prefix:
        text.append(prefix, style=style or "red")
        text.append(" ")
    text.append(printable(message))
    (console if err else out).print(text, highlight=False, soft_wrap=True)


@contextmanager
def progress_bar(description: str, total: int | None, *, show: bool = True):
    """A progress bar on stderr; yields ``update(done, total=None, text=None)`` (``text``
    replaces the description; a no-op when not ``show``)."""
    if not show:
        yield lambda done, _total=None, *, text=None: None
        return
    with bars() as bar:
        task = bar.add_task(description, total=total)

        def update(done, total=None, *, text: str | None = None):
            extra = {"total": total} if total is not None else {}
            bar.update(task, completed=done, **extra, **({"description": text} if text else {}))

        yield update


def bars() -> Progress:
    """A progress display on stderr for one or more tasks (features, epochs, folds)."""
    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def epoch_bar(bar: Progress, description: str):
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


def report_failures(failures: list[tuple[str, str]], total: int) -> None:
    for _path, error in failures:
        say(error, prefix="failed")
    if failures:
        say(f"{len(failures)} of {total} file(s) failed")


def short_path(path: str) -> str:
    """The path relative to the working folder when under it, else its last two parts."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd()))
    except (ValueError, OSError):
        return str(Path(*p.parts[-2:]))


def cell(value) -> Text:
    """A table cell holding ``value`` as plain text."""
    return Text(printable(value))


def sureness(confidence: float | None) -> str:
    """A confidence as the page says it: ``fairly sure 54 %`` (or ``not calibrated``)."""
    from moodscope.inference.calibration import confidence_words

    words = confidence_words(confidence)
    return words if confidence is None else f"{words} {confidence:.0%}"


def prediction_table(results) -> Table:
    table = Table("file", "top emotion", "how sure", "distribution (top 3)", "duration")
    for r in results:
        if not r.ok:
            table.add_row(
                cell(short_path(r.path)), Text("error", style="red"), "", cell(r.error), ""
            )
            continue
        if not r.music:
            table.add_row(
                cell(short_path(r.path)),
                cell(f"not music ({r.not_music})"),
                "",
                "",
                cell(f"{r.duration:.1f} s"),
            )
            continue
        top3 = sorted(r.emotions.items(), key=lambda kv: -kv[1])[:3]
        table.add_row(
            cell(short_path(r.path)),
            cell(
                r.top_emotion
                + (" (silent)" if r.silent else "")
                + (" (truncated)" if r.truncated else "")
            ),
            cell(sureness(r.confidence)),
            cell(", ".join(f"{k} {v:.0%}" for k, v in top3)),
            cell(f"{r.duration:.1f} s"),
        )
    return table
