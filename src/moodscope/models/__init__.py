"""Models by name: the paper's CNN-LSTM and the baselines, all through one registry."""

from . import baselines, paper_cnn_lstm, temporal  # noqa: F401  (importing registers them)
from ._registry import ModelEntry, create_model, list_models, model_entry, register_model

__all__ = ["ModelEntry", "create_model", "list_models", "model_entry", "register_model"]
