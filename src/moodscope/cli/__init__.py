"""The ``moodscope`` command line: parses options and calls the Python API, nothing more."""

from moodscope.cli.commands import app, main

__all__ = ["app", "main"]
