"""The model registry, in the style of timm: ``@register_model``, ``create_model``, ``list_models``.

An entry is a factory function; its name is the model's name. Neural entries return a
``torch.nn.Module`` whose forward maps features to logits; scikit-learn entries return an
estimator with ``predict_proba``. The training harness wraps either kind the same way.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

from moodscope.errors import ModelError

VAL_FRACTION = 0.15 / 0.85
"""Share of the training tracks carved out for early stopping (the paper's 70/15/15)."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    factory: Callable
    kind: str  # "torch" or "sklearn"
    input: str  # "segment": one feature row at a time; "sequence": a track's rows in order
    description: str
    smote: bool = True  # balance training rows with SMOTE (False: train on the classes as seen)

    @property
    def early_stopping(self) -> bool:
        """Whether training watches validation tracks (the neural models); the others
        train on every training track."""
        return self.kind == "torch"

    @property
    def val_fraction(self) -> float:
        """Share of the training tracks to carve out as validation tracks for this model."""
        return VAL_FRACTION if self.early_stopping else 0.0


_MODELS: dict[str, ModelEntry] = {}


def register_model(
    fn: Callable | None = None, *, kind: str = "torch", input: str = "segment", smote: bool = True
):
    """Register a factory under its function name (usable bare or with arguments)."""

    def register(factory: Callable) -> Callable:
        doc = (factory.__doc__ or "").strip().splitlines()
        _MODELS[factory.__name__] = ModelEntry(
            factory.__name__, factory, kind, input, doc[0] if doc else "", smote
        )
        return factory

    return register(fn) if fn is not None else register


def model_entry(name: str) -> ModelEntry:
    if name not in _MODELS:
        raise ModelError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    return _MODELS[name]


def create_model(name: str, **kwargs):
    """Build the registered model ``name`` with the factory's keyword arguments."""
    return model_entry(name).factory(**kwargs)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``, sorted."""
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))
