"""The training configuration, on its own so that a checkpoint can carry and rebuild it
without importing PyTorch (which only training itself needs)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from moodscope.errors import ConfigError

BALANCES = ("smote", "class_weight", "none")
SELECTS = ("val_loss", "val_macro_f1")


def _choice(name: str, value, choices: tuple) -> None:
    if value not in choices:
        names = ", ".join(str(c) for c in choices if c is not None)
        raise ConfigError(f"{name} must be one of {names}; got {value!r}")


@dataclass
class TrainConfig:
    epochs: int = 60  # upper bound; early stopping usually ends training sooner
    batch_size: int = 64  # Keras's default is 32; 64 trains ~1.6x faster on 2 CPU cores
    lr: float = 1e-3  # paper: RMSprop with Hinton's default rate
    rho: float = 0.9  # paper: RMSprop's decay of the squared-gradient average
    eps: float = 1e-7  # Keras RMSprop's epsilon
    # ReduceLROnPlateau on validation loss: the paper names it without settings.
    lr_factor: float = 0.5  # multiply the rate by this ...
    lr_patience: int = 3  # ... after this many epochs without improvement
    min_lr: float = 1e-5
    patience: int = 8  # early stopping: epochs without a better validation loss
    weight_decay: float = 0.0  # none in the paper
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA when available), "cpu" or "cuda"
    # Class balance: "smote" (the paper: synthetic rows until every class is as large as the
    # largest), "class_weight" (the loss weighted by inverse class frequency, Keras's
    # class_weight), "none"; None: the model's registry default (SMOTE for the paper's model).
    balance: str | None = None
    # Which epoch's weights training keeps: lowest validation loss (the paper's callbacks) or
    # highest validation macro-F1 (segment level).
    select: str = "val_loss"
    # Early stopping watches "select" (the criterion above) or "both" (validation loss and
    # macro-F1: stop once neither improved for `patience` epochs, so one run holds the best
    # weights by either rule).
    stop_on: str = "select"
    # After training, set every BatchNorm layer's running statistics to its input's mean and
    # variance over the training rows (Keras's momentum 0.99 leaves them far from converged
    # when the best epoch is an early one).
    bn_reestimate: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch_size must be >= 1")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        _choice("balance", self.balance, (None, *BALANCES))
        _choice("select", self.select, SELECTS)
        _choice("stop_on", self.stop_on, ("select", "both"))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
