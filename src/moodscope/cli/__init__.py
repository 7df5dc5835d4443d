"""The ``moodscope`` command line: parses options and calls the Python API, nothing more.

``main`` holds the app and the exit codes, ``options`` the options several commands share
(declared once), ``console`` what reaches the terminal; ``research``, ``predicting``,
``library`` and ``serving`` hold the commands.
"""

from moodscope.cli.main import app, main

__all__ = ["app", "main"]
