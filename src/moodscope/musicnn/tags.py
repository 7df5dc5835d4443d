"""The converted musicnn models: their names, where their files lie, their tag names."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from moodscope.errors import ModelError

__all__ = ["MODEL_NAMES", "WEIGHTS_DIR", "check_name", "musicnn_tags"]

MODEL_NAMES = ("MSD_musicnn", "MTT_musicnn")
"""Converted models. (The package's vgg baselines are not musicnn and are not converted.)"""

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@functools.cache
def _tag_table() -> dict[str, list[str]]:
    path = WEIGHTS_DIR / "tags.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"musicnn tag list {path} is missing or corrupt: {exc}") from exc


def check_name(name: str) -> None:
    if name not in MODEL_NAMES:
        raise ModelError(f"unknown musicnn model {name!r}; choose one of {', '.join(MODEL_NAMES)}")


def musicnn_tags(name: str = "MSD_musicnn") -> list[str]:
    """The tag names of model ``name``, in taggram column order."""
    check_name(name)
    return list(_tag_table()[name])
