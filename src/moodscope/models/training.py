"""Training a neural model on feature rows: the paper's optimiser, a readable loop.

RMSprop (lr 1e-3, rho 0.9), ReduceLROnPlateau on validation loss, cross-entropy on integer
labels (Keras's sparse categorical cross-entropy), early stopping that restores the best
weights. Beyond the paper: the loss weighted by inverse class frequency, the best epoch
chosen by validation macro-F1, and BatchNorm statistics re-estimated on the training rows.
Seeded: the same seed on the same machine gives the same weights and metrics.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from moodscope.errors import ConfigError
from moodscope.models.config import BALANCES, SELECTS, TrainConfig  # noqa: F401 (re-exported)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") or (device == "cuda" and not torch.cuda.is_available()):
        raise ConfigError(f"device must be auto, cpu or an available cuda, got {device!r}")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a target distribution (rows sum to 1); equals the usual
    cross-entropy when the target is one-hot."""
    return -(target * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def _loss(
    logits: torch.Tensor, target: torch.Tensor, class_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy (hard or soft targets); with ``class_weight`` each row's loss is scaled
    by its class's weight and the batch mean taken over rows, as Keras's ``class_weight``
    does (PyTorch's ``weight=`` would divide by the summed weights instead)."""
    if class_weight is None:
        if target.dtype == torch.long:
            return nn.functional.cross_entropy(logits, target)
        return soft_cross_entropy(logits, target)
    if target.dtype == torch.long:
        rows = nn.functional.cross_entropy(logits, target, reduction="none")
        return (class_weight[target] * rows).mean()
    return -(class_weight * target * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse class frequency, scaled so that the training rows' mean weight is 1:
    ``n_rows / (n_classes_present * count_c)`` (scikit-learn's "balanced"); ``y`` holds
    class indices or target distributions (a class's count is then its column's sum).
    A class absent from ``y`` gets weight 0: no row carries it."""
    y = np.asarray(y)
    counts = (
        y.sum(axis=0) if y.ndim == 2 else np.bincount(y.astype(int), minlength=n_classes)
    ).astype(np.float64)[:n_classes]
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro-F1 over the classes that occur in truth or prediction (scikit-learn's default),
    in numpy so that training does not import scikit-learn."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    scores = []
    for c in np.union1d(y_true, y_pred):
        tp = np.sum((y_true == c) & (y_pred == c))
        denominator = np.sum(y_true == c) + np.sum(y_pred == c)
        scores.append(2 * tp / denominator)
    return float(np.mean(scores)) if scores else 0.0


def _batches(n: int, batch_size: int, generator: torch.Generator | None):
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


@torch.inference_mode()
def evaluate_loss(module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 1024):
    """Mean loss and accuracy of ``module`` (eval mode) on tensors already on its device."""
    loss, accuracy, _ = evaluate(module, X, y, batch_size)
    return loss, accuracy


@torch.inference_mode()
def evaluate(module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 1024):
    """Mean (unweighted) loss, accuracy and macro-F1 of ``module`` in eval mode."""
    module.eval()
    total_loss, predicted = 0.0, []
    for idx in _batches(len(X), batch_size, None):
        logits = module(X[idx])
        total_loss += float(_loss(logits, y[idx])) * len(idx)
        predicted.append(logits.argmax(dim=-1).cpu())
    hard = (y if y.dtype == torch.long else y.argmax(dim=-1)).cpu().numpy()
    predicted = torch.cat(predicted).numpy()
    return total_loss / len(X), float(np.mean(predicted == hard)), macro_f1(hard, predicted)


def fit(
    module: nn.Module,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    config: TrainConfig,
    *,
    progress: Callable[[int, int, dict], None] | None = None,
    checkpoints: dict[str, dict] | None = None,
) -> dict[str, list[float]]:
    """Train ``module`` in place and return its history (per-epoch losses, accuracies,
    macro-F1, lr; the best epoch by each selection rule).

    ``y`` holds class indices (int) or target distributions (float, rows summing to 1).
    The module ends with the weights of the best epoch by ``config.select`` (BatchNorm
    statistics re-estimated on ``X_train`` if ``config.bn_reestimate``). ``checkpoints``,
    when given, receives the best weights by every rule (``SELECTS``), as trained, so that
    one training can be evaluated under each.
    """
    seed_everything(config.seed)
    device = resolve_device(config.device)
    module.to(device)

    def tensor(a: np.ndarray) -> torch.Tensor:
        dtype = torch.long if np.issubdtype(a.dtype, np.integer) else torch.float32
        return torch.as_tensor(a, dtype=dtype, device=device)

    Xt, yt, Xv, yv = tensor(X_train), tensor(y_train), tensor(X_val), tensor(y_val)
    optimizer = torch.optim.RMSprop(
        module.parameters(),
        lr=config.lr,
        alpha=config.rho,
        eps=config.eps,
        weight_decay=config.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=config.lr_factor, patience=config.lr_patience, min_lr=config.min_lr
    )
    generator = torch.Generator().manual_seed(config.seed)
    weight = None
    if config.balance == "class_weight":
        weight = torch.as_tensor(
            class_weights(y_train, _n_outputs(module, Xt)), dtype=torch.float32, device=device
        )
    history: dict[str, list[float]] = {
        k: []
        for k in (
            "train_loss",
            "train_accuracy",
            "val_loss",
            "val_accuracy",
            "val_macro_f1",
            "lr",
            "seconds",
        )
    }
    # Per rule: the best score so far (higher is better), its weights, epochs since.
    best = {rule: [-float("inf"), None, 0] for rule in SELECTS}
    watched = SELECTS if config.stop_on == "both" else (config.select,)
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        module.train()
        seen, loss_sum, correct = 0, 0.0, 0
        for idx in _batches(len(Xt), config.batch_size, generator):
            if len(idx) < 2:  # BatchNorm cannot train on a batch of one
                continue
            logits = module(Xt[idx])
            loss = _loss(logits, yt[idx], weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            hard = yt[idx] if yt.dtype == torch.long else yt[idx].argmax(dim=-1)
            seen += len(idx)
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(dim=-1) == hard).sum())
        val_loss, val_acc, val_f1 = evaluate(module, Xv, yv)
        history["train_loss"].append(loss_sum / max(seen, 1))
        history["train_accuracy"].append(correct / max(seen, 1))
        history["val_loss"].append(val_loss)
        history["val_accuracy"].append(val_acc)
        history["val_macro_f1"].append(val_f1)
        history["lr"].append(optimizer.param_groups[0]["lr"])
        history["seconds"].append(time.perf_counter() - start)
        scheduler.step(val_loss)
        for rule, score in (("val_loss", -val_loss), ("val_macro_f1", val_f1)):
            if score > best[rule][0]:  # ties keep the earlier epoch
                best[rule] = [score, copy.deepcopy(module.state_dict()), 0]
            else:
                best[rule][2] += 1
        if progress is not None:
            progress(epoch, config.epochs, {k: v[-1] for k, v in history.items()})
        if all(best[rule][2] >= config.patience for rule in watched):
            break
    for rule in SELECTS:
        history[f"best_epoch_{rule}"] = [len(history["val_loss"]) - best[rule][2]]
        if checkpoints is not None and best[rule][1] is not None:
            checkpoints[rule] = best[rule][1]
    if best[config.select][1] is not None:
        module.load_state_dict(best[config.select][1])  # restore the chosen epoch's weights
    history["best_epoch"] = history[f"best_epoch_{config.select}"]
    if config.bn_reestimate:
        reestimate_batchnorm(module, X_train)
    module.eval()
    return history


def _n_outputs(module: nn.Module, X: torch.Tensor) -> int:
    """Number of classes the module predicts (one forward pass on two rows, eval mode)."""
    with torch.inference_mode():
        was_training = module.training
        module.eval()
        n = int(module(X[:2]).shape[-1])
        module.train(was_training)
    return n


class _StopForward(Exception):
    """Raised by a hook once the layer of interest has seen its input."""


@torch.no_grad()
def reestimate_batchnorm(module: nn.Module, X: np.ndarray, *, batch_size: int = 1024) -> int:
    """Set every BatchNorm layer's running mean and variance to those of its input over the
    rows ``X``, as the module computes that input at inference (dropout off, earlier
    BatchNorm layers already re-estimated). Returns the number of layers re-estimated.

    Layers are taken in the order the forward pass meets them; for each, one pass over
    ``X`` stops at that layer. A layer whose class sets ``channels_last = True`` normalises
    the last axis (Keras's layout); any other, axis 1 (PyTorch's).
    """
    layers = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not layers or len(X) == 0:
        return 0
    module.eval()
    device = next(module.parameters()).device
    Xt = torch.as_tensor(np.asarray(X, dtype=np.float32), device=device)
    order: list[nn.Module] = []
    hooks = [
        layer.register_forward_pre_hook(lambda m, _: order.append(m) if m not in order else None)
        for layer in layers
    ]
    try:
        module(Xt[:2])
    finally:
        for hook in hooks:
            hook.remove()
    for layer in order:
        total = {"n": 0, "sum": 0.0, "sq": 0.0}

        def collect(m, inputs, total=total):
            x = inputs[0].double()
            x = x.movedim(-1, 1) if getattr(m, "channels_last", False) else x
            x = x.movedim(1, -1).reshape(-1, x.shape[1])  # [rows x positions, channels]
            total["n"] += x.shape[0]
            total["sum"] = total["sum"] + x.sum(dim=0)
            total["sq"] = total["sq"] + (x * x).sum(dim=0)
            raise _StopForward

        hook = layer.register_forward_pre_hook(collect)
        try:
            for start in range(0, len(Xt), batch_size):
                try:
                    module(Xt[start : start + batch_size])
                except _StopForward:
                    pass
        finally:
            hook.remove()
        n = total["n"]
        mean = total["sum"] / n
        # Unbiased, as PyTorch's running_var is.
        var = (total["sq"] - n * mean * mean) / max(n - 1, 1)
        layer.running_mean.copy_(mean.to(layer.running_mean.dtype))
        layer.running_var.copy_(var.clamp_min(0).to(layer.running_var.dtype))
    return len(order)


@torch.inference_mode()
def predict_logits(module: nn.Module, X: np.ndarray, *, batch_size: int = 2048) -> np.ndarray:
    """Logits of ``module`` in eval mode for feature rows ``X [n, n_features]``."""
    module.eval()
    device = next(module.parameters()).device
    Xt = torch.as_tensor(np.asarray(X, dtype=np.float32), device=device)
    parts = [module(Xt[i : i + batch_size]).float().cpu() for i in range(0, len(Xt), batch_size)]
    return torch.cat(parts).numpy() if parts else np.zeros((0, 0), np.float32)
