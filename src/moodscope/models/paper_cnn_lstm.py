"""The paper's CNN-LSTM (Yakovyna & Korniienko 2023, Table 3), layer for layer in PyTorch.

The 28 features enter as a length-28 sequence with one channel. Three blocks of
[Conv1D(k=4, 'same', ReLU) x 2, BatchNorm, MaxPool(2), Dropout] with 128 | 256 | 512
filters take the length 28 -> 14 -> 7 -> 3; two LSTMs (128 units) read those 3 positions
(not time: the "sequence" is convolved feature positions); then Dense(64, ReLU), Dropout,
BatchNorm, Dense(classes). Keras counts 2,507,466 parameters for 10 classes (2,432 of them
BatchNorm running statistics); PyTorch's nn.LSTM keeps two bias vectors where Keras keeps
one, so each LSTM here has 4 x 128 = 512 more parameters: 2,508,490 in all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from moodscope.models._registry import register_model

# Keras BatchNormalization defaults: momentum 0.99 (PyTorch counts 1 - 0.99), epsilon 1e-3.
BN_KW = {"eps": 1e-3, "momentum": 0.01}


@dataclass
class PaperCNNLSTMConfig:
    n_features: int = 28  # input length (the paper's 28 features)
    n_classes: int = 9  # Table 3 prints 10; Emotify's GEMS scale has 9
    filters: tuple[int, int, int] = (128, 256, 512)  # per conv block (Table 3)
    kernel_size: int = 4  # Table 3: 128 * 4 * 128 + 128 = 65,664 parameters
    lstm_units: int = 128  # both LSTMs (Table 3)
    dense_units: int = 64  # Table 3
    # Not in the paper: Keras tutorials of the time used 0.2-0.5; 0.3 is our choice.
    dropout: float = 0.3

    def to_dict(self) -> dict:
        return {**asdict(self), "filters": list(self.filters)}


class _SameConv1d(nn.Conv1d):
    """Conv1d with Keras's 'same' padding for an even kernel: 1 zero left, 2 right (k=4).

    Padding explicitly avoids the copy (and warning) PyTorch's padding='same' makes.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = self.kernel_size[0] - 1
        return super().forward(nn.functional.pad(x, (total // 2, total - total // 2)))


class _ChannelsLastBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the last axis of [batch, time, features], as Keras applies it."""

    channels_last = True  # read by training.reestimate_batchnorm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class PaperCNNLSTM(nn.Module):
    """Table 3 of the paper. ``forward(x [batch, n_features]) -> logits [batch, n_classes]``."""

    def __init__(self, config: PaperCNNLSTMConfig):
        super().__init__()
        self.config = config
        blocks, in_channels = [], 1
        for out_channels in config.filters:
            blocks += [
                _SameConv1d(in_channels, out_channels, config.kernel_size),
                nn.ReLU(),
                _SameConv1d(out_channels, out_channels, config.kernel_size),
                nn.ReLU(),
                nn.BatchNorm1d(out_channels, **BN_KW),
                nn.MaxPool1d(2),
                nn.Dropout(config.dropout),
            ]
            in_channels = out_channels
        self.conv = nn.Sequential(*blocks)
        units = config.lstm_units
        self.lstm1 = nn.LSTM(in_channels, units, batch_first=True)
        self.norm1 = _ChannelsLastBatchNorm(units, **BN_KW)
        self.lstm2 = nn.LSTM(units, units, batch_first=True)
        self.norm2 = nn.BatchNorm1d(units, **BN_KW)
        self.head = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(units, config.dense_units),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.BatchNorm1d(config.dense_units, **BN_KW),
            nn.Linear(config.dense_units, config.n_classes),
        )
        self.dropout = nn.Dropout(config.dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Keras's initialisers: Glorot-uniform kernels, orthogonal recurrent kernels, zero
        biases except the LSTM forget gate (1), so training starts where Keras's did."""
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LSTM):
                units = module.hidden_size
                # Keras's kernel is one (input, 4 * units) matrix: Glorot over that shape.
                nn.init.xavier_uniform_(module.weight_ih_l0)
                for gate in range(4):  # Keras: one orthogonal (units, units) block per gate
                    nn.init.orthogonal_(module.weight_hh_l0.data[gate * units : (gate + 1) * units])
                nn.init.zeros_(module.bias_ih_l0)
                nn.init.zeros_(module.bias_hh_l0)
                module.bias_ih_l0.data[units : 2 * units] = 1.0  # gate order i, f, g, o

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x.unsqueeze(1))  # [B, 1, 28] -> [B, 512, 3]
        h, _ = self.lstm1(h.transpose(1, 2))  # [B, 3, 128], every position returned
        h = self.dropout(self.norm1(h))
        _, (last, _) = self.lstm2(h)  # final state only: [1, B, 128]
        h = self.norm2(last[0])
        return self.head(h)


@register_model
def paper_cnn_lstm(**kwargs) -> PaperCNNLSTM:
    """The paper's CNN-LSTM over the 28 features of one segment (Table 3)."""
    return PaperCNNLSTM(PaperCNNLSTMConfig(**kwargs))
