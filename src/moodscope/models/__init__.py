"""Models by name: the paper's CNN-LSTM and the baselines, all through one registry
(``_registry``), with the estimators that fit and apply them (``estimators``, ``training``).

The registry fills on first use, so that inference, which needs ``training`` and
``estimators`` but no registered model, never imports scikit-learn for it.
"""

from __future__ import annotations

import importlib

_WHERE = {
    name: "moodscope.models._registry"
    for name in ("ModelEntry", "create_model", "list_models", "model_entry", "register_model")
}
_BUILTIN = (
    "moodscope.models.baselines",
    "moodscope.models.paper_cnn_lstm",
    "moodscope.models.temporal",
)


def __getattr__(name: str):
    if name in _WHERE:
        for module in _BUILTIN:  # importing them registers them
            importlib.import_module(module)
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_WHERE)
