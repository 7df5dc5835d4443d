"""The ``moodscope`` app: every command registered in one place, and :func:`main`, which
turns what can go wrong into an exit code.

Exit codes: 0 done; 1 a run that failed (a :class:`~moodscope.errors.MoodscopeError`, one
``error: ...`` line on stderr, never a traceback; or some files failed); 2 a usage error
(click's); 130 interrupted. A reader that closes the pipe (``| head``) ends the run quietly
with 0.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Optional

import typer

from moodscope.cli import library, predicting, research, serving
from moodscope.cli.console import say
from moodscope.errors import MoodscopeError

_METAVARS = {"db": "FILE", "like": "FILE", "limit": "N", "model": "FILE", "output": "FILE"}


def _plain_metavars(params):
    """Help that names what an option takes (``--workers N``, ``--model FILE``), not its
    Python type (``<int range>``, ``<list[Path]>``): an option declared without a metavar
    gets one from its name (``--port PORT``, ``--output FILE``), a flag none, an argument
    its name in capitals."""
    for param in params:
        if param.metavar is None and getattr(param, "is_flag", False):
            param.metavar = ""
        elif param.metavar is None:
            name = max(param.opts, key=len).lstrip("-")
            param.metavar = _METAVARS.get(name, name.upper().replace("-", "_"))
        if param.param_type_name == "argument":
            # typer >= 0.2x shows an argument's type beside its name: the name says it.
            param.display_type_rich = lambda ctx: None
    return params


class _Command(typer.core.TyperCommand):
    def get_params(self, ctx):
        return _plain_metavars(super().get_params(ctx))


class _Group(typer.core.TyperGroup):
    def get_params(self, ctx):
        return _plain_metavars(super().get_params(ctx))


app = typer.Typer(
    cls=_Group,
    add_completion=False,
    no_args_is_help=True,
    help="Recognise the emotion music induces (GEMS-9), reproduce and evaluate the models.",
)


class _ReaderGone(Exception):
    """stdout's reader closed the pipe (``moodscope predict ... | head -2``). Not an
    ``OSError``: click would turn that into exit 1 before :func:`main` sees it."""


def _pipe_safe(command):
    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except BrokenPipeError as exc:
            raise _ReaderGone() from exc

    return run


# The everyday commands first, then those that train and evaluate models (each in a panel
# of its own in --help).
EVERYDAY = (
    predicting.predict,
    library.tag,
    library.untag,
    library.find,
    serving.serve,
    serving.demo,
)
RESEARCH = (
    research.features,
    research.validate,
    research.plot,
    research.plot_classes,
    research.train,
    research.reproduce,
    research.crossval,
    research.compare,
    research.evaluate,
)
for panel, commands in (("Commands", EVERYDAY), ("Research and evaluation", RESEARCH)):
    for command in commands:
        name = command.__name__.replace("_", "-")
        app.command(name, cls=_Command, rich_help_panel=panel)(_pipe_safe(command))


def _version(value: bool) -> None:
    if value:
        from moodscope import __version__

        typer.echo(f"moodscope {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Recognise the emotion music induces (GEMS-9), reproduce and evaluate the models."""


def _quiet_after_broken_pipe() -> None:
    # The reader is gone: send what is still buffered nowhere, so the interpreter's own
    # flush at exit cannot fail again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning moodscope's errors into one line and exit code 1."""
    import logging

    from moodscope.backends import cluster, reuse_freed_memory

    # dask.distributed logs a lost connection as a traceback; the CLI says it in one line.
    cluster.LOG_LEVEL = logging.CRITICAL
    reuse_freed_memory()  # this process's own predictions (--workers 1) reuse their buffers
    try:
        research.require_extra(sys.argv[1:] if argv is None else argv)
        code = app(args=argv, prog_name="moodscope", standalone_mode=False)
        sys.stdout.flush()
    except (BrokenPipeError, _ReaderGone):
        _quiet_after_broken_pipe()
        sys.exit(0)
    except MoodscopeError as exc:
        say(exc, prefix="error:")
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        say("aborted")
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
