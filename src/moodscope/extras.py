"""The optional extras: what needs them, and the one line that says how to install one.

Predicting needs no extra. Training, cross-validation, the paper's model and the feature
sets computed through PyTorch need ``research`` (PyTorch, scikit-learn, SMOTE, skops).
"""

from __future__ import annotations

import importlib.util

from moodscope.errors import MoodscopeError

RESEARCH_INSTALL = "pip install '.[research]'"
"""From a clone of the repository (moodscope is not on a package registry)."""


class MissingExtraError(MoodscopeError):
    """A command or a model file needs an extra that is not installed."""


def has_module(name: str) -> bool:
    """Whether ``name`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken install, or an import hook that refuses it
        return False


def has_research() -> bool:
    """Whether the research extra (PyTorch first of all) is installed."""
    return has_module("torch")


def require_research(what: str) -> None:
    """Raise :class:`MissingExtraError` naming ``what`` unless the research extra is there."""
    if not has_research():
        raise MissingExtraError(f"{what} needs the research extra: {RESEARCH_INSTALL}")
