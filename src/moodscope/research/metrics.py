"""Classification metrics as plain dicts (JSON-ready): accuracy, balanced accuracy,
macro-F1, per-class precision/recall/F1/support, the confusion matrix."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict:
    """Metrics of integer predictions against integer truth; ``labels[i]`` names class i.

    Classes that never occur in ``y_true`` still get a row (support 0) so reports line up.
    """
    with warnings.catch_warnings():
        # A fold may predict a class its truth lacks; the metrics below handle that on purpose.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return _metrics(np.asarray(y_true), np.asarray(y_pred), labels)


def _metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict:
    classes = np.arange(len(labels))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0
    )
    present = np.unique(y_true)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred))
        if len(present) > 1
        else float(accuracy_score(y_true, y_pred)),
        # Macro over the classes present in the truth: an absent class has no F1 to average.
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)
        ),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=classes).tolist(),
        "labels": list(labels),
    }


def leak_fraction(test_groups: np.ndarray, train_groups: np.ndarray) -> float:
    """Share of test rows whose group (track) also has rows in training."""
    if len(test_groups) == 0:
        return 0.0
    return float(np.isin(test_groups, np.unique(train_groups)).mean())
