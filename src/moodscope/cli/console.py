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

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.measure import Measurement
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


def output_format(fmt: str | None, output: Path | None, by_extension: dict[str, str]) -> str:
    """The format a command writes: ``--format`` where given, else the one ``--output``'s
    extension names in ``by_extension`` (``moods.csv``: CSV), else a table on the terminal
    and the first format of ``by_extension`` in a file named without an extension. A
    ``--format`` that the extension contradicts, or an extension that names no format
    without ``--format``, is a usage error (exit 2) in one line: JSON in ``moods.xlsx`` or
    ``calm.m3u8`` is a surprise found later."""
    import typer

    named = by_extension.get(output.suffix.lower()) if output is not None else None
    in_file = next(iter(by_extension.values()))
    if fmt is None and output is not None and output.suffix and named is None:
        *others, last = by_extension
        choices = f"{', '.join(others)} or {last}" if others else last
        say(
            f"--output {output}: a {output.suffix} name says no format moodscope writes; name "
            f"the file {choices}, or give --format",
            prefix="error:",
        )
        raise typer.Exit(2)
    if fmt is None:
        return named or ("table" if output is None else in_file)
    if named is not None and fmt != named:
        wanted = in_file if fmt == "table" else fmt
        ext = next((e for e, f in by_extension.items() if f == wanted), f".{wanted}")
        say(
            f"--format {fmt} does not match --output {output} (a {output.suffix} name): "
            f"drop --format, or name the file {ext}",
            prefix="error:",
        )
        raise typer.Exit(2)
    return fmt


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
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a symlink loop (3.11)
        return str(Path(*p.parts[-2:]))


def cell(value) -> Text:
    """A table cell holding ``value`` as plain text."""
    return Text(printable(value))


def sureness(confidence: float | None) -> str:
    """A confidence as the page says it: ``fairly sure 54 %`` (or ``not calibrated``)."""
    from moodscope.inference.calibration import confidence_words

    words = confidence_words(confidence)
    return words if confidence is None else f"{words} {confidence:.0%}"


_TABLE_HEADERS = ("file", "top emotion", "how sure", "distribution (top 3)", "duration")


def _prediction_row(r) -> tuple[Text, ...]:
    if not r.ok:
        return (cell(short_path(r.path)), Text("error", style="red"), cell(""), cell(r.error),
                cell(""))  # fmt: skip
    if not r.music:  # no mood, and the reason instead
        reason = r.not_music
        return (cell(short_path(r.path)), cell("not music" + (f" ({reason})" if reason else "")),
                cell(""), cell(""), cell(f"{r.duration:.1f} s" if r.duration else ""))  # fmt: skip
    top3 = sorted(r.emotions.items(), key=lambda kv: -kv[1])[:3]
    top = (
        r.top_emotion + (" (silent)" if r.silent else "") + (" (truncated)" if r.truncated else "")
    )
    return (
        cell(short_path(r.path)),
        cell(top),
        cell(sureness(r.confidence)),
        cell(", ".join(f"{k} {v:.0%}" for k, v in top3)),
        cell(f"{r.duration:.1f} s"),
    )


def _column_widths(rows: list[tuple[Text, ...]], width: int) -> list[int] | None:
    """Column widths that fit ``width`` and cut no emotion's name: the emotion columns at
    least as wide as the longest name, the others at least as wide as their longest word (a
    path at least 20 characters, folded where it must); the room left goes to how sure and
    the top emotion, then the file, then the distribution. None when the table fits as it
    is, or cannot fit at all."""
    from moodscope.emotions import EMOTIONS

    columns = list(zip(*rows))
    natural = [max(t.cell_len for t in column) for column in columns]
    room = width - (3 * len(columns) - 3)  # a rule and two spaces between two columns
    if sum(natural) <= room:
        return None
    floors = [max((cell_len(w) for t in column for w in t.plain.split()), default=1)
              for column in columns]  # fmt: skip
    floors[0] = min(natural[0], 20)
    floors[1] = floors[3] = max(map(len, EMOTIONS))
    spare = room - sum(floors)
    if spare < 0:
        return None
    widths = list(floors)
    for index in (2, 1, 0, 3):  # how sure, top emotion, file, distribution
        more = max(0, min(spare, natural[index] - widths[index]))
        widths[index] += more
        spare -= more
    return widths


def prediction_table(results, *, width: int | None = None) -> Table:
    """The results as a table, fitted to ``width`` (a terminal's) without cutting a word.

    A path folds onto the next line where the table must be narrower than its rows (never
    ``music/classic…`` for three files that differ only at the end), and an emotion's name
    is never cut (``joyful_activation``, not ``joyful_activa…``).
    """
    rows = [_prediction_row(r) for r in results]
    headers = tuple(Text(h) for h in _TABLE_HEADERS)
    widths = _column_widths([headers, *rows], width) if width is not None and rows else None
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for index, header in enumerate(_TABLE_HEADERS):
        table.add_column(header, overflow="fold", width=widths[index] if widths else None)
    for row in rows:
        table.add_row(*row)
    return table


def show_predictions(results) -> None:
    """Print the prediction table on stdout. On a terminal it fits the terminal's width,
    folding long cells onto more lines; into a pipe or a file it is printed at its full
    width, one line per file, so that nothing is cut and ``grep`` finds a file's whole row."""
    if out.is_terminal:
        out.print(prediction_table(results, width=out.width))
        return
    table = prediction_table(results)
    full = Measurement.get(out, out.options.update(width=1_000_000), table).maximum
    # A console of its own: Console.print never renders wider than its console.
    Console(file=out.file, width=max(out.width, full), highlight=False).print(table)
