"""A temporal model worth the name: it reads a track's segments in time order.

The paper's "LSTM" runs over three convolved feature positions, not over time. This one
takes the sequence of a track's segment embeddings (e.g. musicnn's, one per 3 s), runs a
small bidirectional GRU over it, scores every step and pools the steps' class logits with
attention weights. ``forward`` gives the track's logits; ``step_logits`` each step's, which
is the prediction timeline.
"""

from __future__ import annotations

import torch
from torch import nn

from moodscope.models._registry import register_model


class AttentionGRU(nn.Module):
    """``forward(x [batch, time, n_features]) -> logits [batch, n_classes]``."""

    def __init__(self, n_features: int, n_classes: int, hidden: int = 64, dropout: float = 0.3):
        super().__init__()
        self.frame = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(n_features, hidden), nn.ReLU(), nn.Dropout(dropout)
        )
        self.gru = nn.GRU(hidden, hidden // 2, batch_first=True, bidirectional=True)
        self.score = nn.Linear(hidden, 1)
        self.classify = nn.Linear(hidden, n_classes)

    def step_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-step class logits [B, T, C] and attention scores [B, T, 1]."""
        h, _ = self.gru(self.frame(x))
        return self.classify(h), self.score(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits, scores = self.step_logits(x)
        weights = torch.softmax(scores, dim=1)
        return (weights * logits).sum(dim=1)


@register_model(input="sequence", smote=False)
def attention_gru(n_features: int, n_classes: int, **kwargs) -> AttentionGRU:
    """GRU over a track's segments in time order, attention-pooled (timeline per segment)."""
    return AttentionGRU(n_features, n_classes, **kwargs)
