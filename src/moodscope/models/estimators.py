"""One interface over every registered model: fit on feature rows, predict probabilities.

The evaluation harness, checkpoints and prediction only see :class:`Classifier`; whether a
PyTorch module or a scikit-learn estimator sits inside is the registry entry's business.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from moodscope.errors import ModelError
from moodscope.models import create_model, model_entry
from moodscope.models.training import (
    TrainConfig,
    class_weights,
    fit,
    predict_logits,
    seed_everything,
)


@dataclass
class Classifier:
    """A registered model plus what is needed to rebuild it: name, arguments, classes."""

    name: str
    n_features: int
    n_classes: int
    model_kwargs: dict = field(default_factory=dict)
    train_config: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        self.entry = model_entry(self.name)
        if self.entry.kind == "torch":
            seed_everything(self.train_config.seed)  # initial weights follow the seed too
            self.model = create_model(
                self.name,
                n_features=self.n_features,
                n_classes=self.n_classes,
                **self.model_kwargs,
            )
        else:
            self.model = create_model(self.name, seed=self.train_config.seed, **self.model_kwargs)

    @property
    def kind(self) -> str:
        return self.entry.kind

    @property
    def input(self) -> str:
        """ "segment" (one feature row at a time) or "sequence" (a track's rows in order)."""
        return self.entry.input

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        X_val: np.ndarray,
        y_val: np.ndarray,
        *,
        progress: Callable[[int, int, dict], None] | None = None,
        checkpoints: dict[str, dict] | None = None,
    ) -> dict[str, list[float]]:
        """Train on rows ``X`` with labels ``y`` (class indices, or target distributions
        for soft-label training); the validation rows drive early stopping.
        ``checkpoints`` (neural models) receives the best weights by each selection rule."""
        if self.kind == "torch":
            return fit(
                self.model,
                X,
                y,
                X_val,
                y_val,
                self.train_config,
                progress=progress,
                checkpoints=checkpoints,
            )
        weighted = self.train_config.balance == "class_weight"
        if y.ndim == 2 and hasattr(self.model, "fit_soft") and not weighted:
            self.model.fit_soft(X, y)
        elif y.ndim == 2:
            self._fit_weighted(X, y)
        elif weighted:
            self._fit_sample_weights(X, y, class_weights(y, self.n_classes)[y])
        else:
            self.model.fit(X, y)
        return {}

    def _fit_weighted(self, X: np.ndarray, Y: np.ndarray) -> None:
        """Soft targets for any estimator that takes sample weights: each row appears once
        per class, weighted by that class's share (the expected hard-label loss), times the
        class's weight when the loss is class-weighted."""
        n, k = Y.shape
        rows = np.repeat(np.arange(n), k)
        classes = np.tile(np.arange(k), n)
        weights = Y.ravel()
        if self.train_config.balance == "class_weight":
            weights = weights * np.tile(class_weights(Y, k), n)
        keep = weights > 0
        self._fit_sample_weights(X[rows[keep]], classes[keep], weights[keep])

    def _fit_sample_weights(self, X: np.ndarray, y: np.ndarray, weights: np.ndarray) -> None:
        try:
            self.model.fit(X, y, sample_weight=weights)
        except TypeError as exc:
            raise ModelError(f"model {self.name!r} cannot weight its rows ({exc})") from exc

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities [shape=(n, n_classes)], rows summing to 1."""
        X = np.asarray(X, dtype=np.float32)
        if self.kind == "torch":
            logits = torch.as_tensor(predict_logits(self.model, X))
            return torch.softmax(logits, dim=-1).numpy()
        if X.ndim != 2:
            raise ModelError(f"model {self.name!r} takes rows [n, features], got {X.shape}")
        proba = self.model.predict_proba(X)
        # A class absent from the training rows has no column in scikit-learn's output.
        out = np.zeros((len(X), self.n_classes))
        out[:, np.asarray(self.model.classes_, dtype=int)] = proba
        return out

    def step_proba(self, X: np.ndarray) -> np.ndarray:
        """Per-step probabilities [B, T, C] of a sequence model (its timeline)."""
        with torch.inference_mode():
            self.model.eval()
            x = torch.as_tensor(np.asarray(X, dtype=np.float32))
            logits, _ = self.model.step_logits(x.to(next(self.model.parameters()).device))
            return torch.softmax(logits.float().cpu(), dim=-1).numpy()

    # -- checkpoint state: tensors and plain values only, so loading needs no pickle --
    def state(self) -> dict:
        base = {
            "name": self.name,
            "kind": self.kind,
            "n_features": self.n_features,
            "n_classes": self.n_classes,
            "model_kwargs": dict(self.model_kwargs),
        }
        if self.kind == "torch":
            self.model.to("cpu")
            return {
                **base,
                "state_dict": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            }
        import zipfile

        import skops.io

        # Tree ensembles compress ~4x; the shipped model must stay small.
        data = skops.io.dumps(self.model, compression=zipfile.ZIP_DEFLATED, compresslevel=9)
        return {**base, "skops": data}

    @classmethod
    def from_state(cls, state: dict, train_config: TrainConfig | None = None) -> Classifier:
        clf = cls(
            state["name"],
            int(state["n_features"]),
            int(state["n_classes"]),
            dict(state.get("model_kwargs") or {}),
            train_config or TrainConfig(),
        )
        if clf.kind == "torch":
            clf.model.load_state_dict(state["state_dict"], strict=True)
            clf.model.eval()
        else:
            from moodscope.models.skops_heads import load_head

            clf.model = load_head(state["skops"])
        return clf
