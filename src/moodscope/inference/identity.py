"""Which model made a result: ``name@version``, the checkpoint's file stem and the first 12
hex digits of its bytes' SHA-1, worked out here once and without torch, so that a library
rerun with nothing to do can compare ids without loading any model."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from moodscope.atomic import bytes_digest
from moodscope.errors import ModelError


def default_model_path() -> Path:
    """The checkpoint shipped inside the package."""
    # Through the top package: importing moodscope.models would load every registered
    # model's library (scikit-learn) just to find a file.
    return Path(str(resources.files("moodscope").joinpath("models", "default", "default.ckpt")))


def checkpoint_version(data: bytes) -> str:
    """The version part of a model id: the first 12 hex digits of the checkpoint's SHA-1."""
    return bytes_digest(data)[:12]


def model_id(model=None) -> str:
    """``name@version`` of ``model`` (None: the shipped one; a checkpoint path; anything
    with a ``model_id``, such as a TrainedModel) without loading it."""
    if hasattr(model, "model_id"):
        return model.model_id
    path = default_model_path() if model is None else Path(model)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: no such checkpoint ({exc.strerror})") from exc
    return f"{path.stem}@{checkpoint_version(data)}"


__all__ = ["checkpoint_version", "default_model_path", "model_id"]
