"""Training variants of a neural model under track-disjoint cross-validation, and the choice
of one on validation tracks alone.

A variant is a class balance (SMOTE as the paper, class-weighted loss, none), a checkpoint
rule (the epoch with the lowest validation loss or the highest validation macro-F1) and the
BatchNorm statistics (as trained, or re-estimated on the training rows). Only the balance
needs a training of its own: each fold trains once per balance, keeping the best weights by
both rules (it stops once neither has improved for ``patience`` epochs), and each of those
is evaluated with its BatchNorm statistics as trained and re-estimated. Every variant's row
equals ``crossval`` with the same settings and ``stop_on="both"``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from moodscope.errors import ConfigError
from moodscope.features import FeatureConfig
from moodscope.models import model_entry
from moodscope.models.training import BALANCES, SELECTS, TrainConfig, reestimate_batchnorm
from moodscope.research.evaluation import (
    crossval_result,
    fold_metrics,
    track_level_metrics,
    trained_folds,
)
from moodscope.research.experiment import model_inputs, track_predictions

CHOOSE_BY = ("track_accuracy", "track_macro_f1", "track_balanced_accuracy")


@dataclass(frozen=True)
class Variant:
    balance: str  # "smote", "class_weight" or "none"
    select: str  # "val_loss" or "val_macro_f1"
    bn_reestimate: bool

    @property
    def key(self) -> str:
        bn = "bn-reestimated" if self.bn_reestimate else "bn-as-trained"
        return f"{self.balance}/{self.select}/{bn}"

    @property
    def label(self) -> str:
        select = {"val_loss": "val loss", "val_macro_f1": "val macro-F1"}[self.select]
        bn = "re-estimated" if self.bn_reestimate else "as trained"
        return f"{self.balance.replace('_', ' ')}, best {select}, BN {bn}"

    def train_config(self, base: TrainConfig) -> TrainConfig:
        """The settings under which ``crossval`` gives this variant's row on its own."""
        return replace(
            base,
            balance=self.balance,
            select=self.select,
            bn_reestimate=self.bn_reestimate,
            stop_on="both",
        )


PAPER_VARIANT = Variant("smote", "val_loss", False)
"""Trained as the paper trained it (SMOTE, Keras's callbacks on validation loss)."""


def variants_of(balances: list[str]) -> list[Variant]:
    """Every variant of the given balances, in a fixed order."""
    for balance in balances:
        if balance not in BALANCES:
            raise ConfigError(f"unknown balance {balance!r}; choose from {', '.join(BALANCES)}")
    return [Variant(b, s, bn) for b in balances for s in SELECTS for bn in (False, True)]


def crossval_variants(
    table: pd.DataFrame,
    tracks: pd.DataFrame,
    *,
    model: str,
    feature_config: FeatureConfig,
    labels: list[str],
    balances: tuple[str, ...] | list[str] = BALANCES,
    folds: int = 5,
    train_config: TrainConfig | None = None,
    model_kwargs: dict | None = None,
    shares: pd.DataFrame | None = None,
    on_fold: Callable[[str, int, int], Callable | None] | None = None,
) -> dict[str, dict]:
    """Cross-validate every variant of ``balances`` on the same folds as :func:`crossval`.

    Returns variant key -> a :func:`crossval` result, with ``variant`` (its settings),
    ``validation`` (mean ± std over folds of the track-level scores on the validation tracks
    carved from the training folds: what :func:`choose_variant` reads) and
    ``bn_seconds`` (re-estimating BatchNorm, per fold). The four variants of one balance
    share one training per fold; ``train_seconds`` per fold is that training's.
    """
    entry = model_entry(model)
    if entry.kind != "torch":
        raise ConfigError(f"variants are for neural models; {model!r} has no training epochs")
    base = train_config or TrainConfig()
    out: dict[str, dict] = {}
    for balance in balances:
        variants = variants_of([balance])
        started = time.perf_counter()
        test = {v: [] for v in variants}
        val = {v: [] for v in variants}
        bn_seconds: list[float] = []
        run = None
        for run in trained_folds(
            table,
            model=model,
            feature_config=feature_config,
            labels=labels,
            folds=folds,
            train_config=replace(base, balance=balance, stop_on="both", bn_reestimate=False),
            model_kwargs=model_kwargs,
            shares=shares,
            on_fold=(lambda k, n, b=balance: on_fold(f"{model} {b}", k, n)) if on_fold else None,
        ):
            inputs = model_inputs(run.split, entry)
            clf = run.result.model.classifier
            for variant in variants:
                clf.model.load_state_dict(run.checkpoints[variant.select])
                if variant.bn_reestimate:
                    start = time.perf_counter()
                    reestimate_batchnorm(clf.model, inputs.X_train)
                    bn_seconds.append(time.perf_counter() - start)
                proba = clf.predict_proba(inputs.X_test)
                metrics = fold_metrics(run, proba, inputs.test_tracks, tracks, shares)
                metrics["best_epoch"] = run.result.history[f"best_epoch_{variant.select}"][0]
                test[variant].append(metrics)
                val_ids, val_proba = track_predictions(
                    clf.predict_proba(inputs.X_val), inputs.val_tracks
                )
                val[variant].append(
                    track_level_metrics(val_ids, val_proba, tracks, run.split.labels, shares)
                )
        wall = time.perf_counter() - started
        for variant in variants:
            result = crossval_result(test[variant], run, tracks, wall_seconds=wall)
            result["train"] = variant.train_config(base).to_dict()
            result["variant"] = {
                "key": variant.key,
                "label": variant.label,
                "balance": variant.balance,
                "select": variant.select,
                "bn_reestimate": variant.bn_reestimate,
            }
            result["validation"] = {
                key: _mean_std([f[key] for f in val[variant]])
                for key in (*CHOOSE_BY, "emotion_correlation_mean")
            }
            result["bn_seconds"] = float(np.mean(bn_seconds)) if variant.bn_reestimate else 0.0
            out[variant.key] = result
    return out


def _mean_std(values: list) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def choose_variant(results: dict[str, dict], by: str = "track_accuracy") -> str:
    """The variant with the best mean ``by`` on the validation tracks (never the test folds);
    ties go to the earlier variant."""
    if by not in CHOOSE_BY:
        raise ConfigError(f"choose_by must be one of {', '.join(CHOOSE_BY)}; got {by!r}")
    if not results:
        raise ConfigError("no variants to choose from")
    scores = {key: (r["validation"][by] or {"mean": -1.0})["mean"] for key, r in results.items()}
    return max(scores, key=lambda key: (scores[key], -list(scores).index(key)))


def training_seconds(results: dict[str, dict]) -> dict[str, dict]:
    """Per balance: mean training seconds (wall and CPU) and epochs per fold, the wall total
    over folds, and the BatchNorm re-estimation's mean seconds per fold (one training serves
    four variants)."""
    out: dict[str, dict] = {}
    for result in results.values():
        balance = result["variant"]["balance"]
        folds = result["folds"]
        entry = out.setdefault(
            balance,
            {
                "train_seconds_per_fold": float(np.mean([f["train_seconds"] for f in folds])),
                "train_seconds_total": float(np.sum([f["train_seconds"] for f in folds])),
                "train_cpu_seconds_per_fold": float(
                    np.mean([f["train_cpu_seconds"] for f in folds])
                ),
                "epochs_per_fold": float(np.mean([f["epochs"] for f in folds])),
                "bn_seconds_per_fold": 0.0,
            },
        )
        entry["bn_seconds_per_fold"] = max(entry["bn_seconds_per_fold"], result["bn_seconds"])
    return out
