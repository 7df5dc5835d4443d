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


COVERAGES = (0.25, 0.5, 0.75, 1.0)
"""The shares of tracks, most confident first, at which accuracy is reported."""


def ranked_by_confidence(confidence: np.ndarray, tiebreak: np.ndarray | None = None) -> np.ndarray:
    """Indices, most confident first; equal confidences (an isotonic map's steps) ordered by
    ``tiebreak`` (the raw score), then by index."""
    confidence = np.asarray(confidence, dtype=np.float64)
    keys = [np.arange(len(confidence))]
    if tiebreak is not None:
        keys.append(-np.asarray(tiebreak, dtype=np.float64))
    keys.append(-confidence)
    return np.lexsort(keys)


def risk_coverage(
    confidence: np.ndarray,
    correct: np.ndarray,
    *,
    topk_correct: dict[int, np.ndarray] | None = None,
    tiebreak: np.ndarray | None = None,
    coverages: Sequence[float] = COVERAGES,
) -> dict:
    """Accuracy of the most confident tracks against the share of tracks kept.

    Parameters
    ----------
    confidence, correct : np.ndarray [shape=(n,)]
        Each track's confidence and whether its top emotion was right.
    topk_correct : dict, optional
        ``{k: bool array [n]}``: whether the truth was among the top k (top-2, top-3 rows).

    Returns
    -------
    dict
        ``table``: per coverage the tracks kept, the lowest confidence kept (the threshold a
        ``--min-confidence`` at that coverage would use), the accuracy (and top-k accuracies)
        of those tracks and the mean confidence; ``curve``: accuracy after each track kept.
    """
    correct = np.asarray(correct, dtype=bool)
    n = len(correct)
    order = ranked_by_confidence(confidence, tiebreak)
    conf = np.asarray(confidence, dtype=np.float64)[order]
    hits = correct[order]
    table = []
    for c in coverages:
        kept = max(1, int(round(c * n)))
        row = {
            "coverage": float(c),
            "n_tracks": kept,
            "min_confidence": float(conf[kept - 1]),
            "mean_confidence": float(conf[:kept].mean()),
            "accuracy": float(hits[:kept].mean()),
        }
        for k, topk in sorted((topk_correct or {}).items()):
            row[f"top{k}_accuracy"] = float(np.asarray(topk, dtype=bool)[order][:kept].mean())
        table.append(row)
    curve = np.cumsum(hits) / np.arange(1, n + 1)
    return {"table": table, "curve": curve.tolist(), "n_tracks": n}


THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
"""``--min-confidence`` values whose coverage and accuracy are reported."""


def threshold_table(
    confidence: np.ndarray, correct: np.ndarray, thresholds: Sequence[float] = THRESHOLDS
) -> list[dict]:
    """For each threshold C: the share of tracks whose confidence reaches C (what
    ``tag --min-confidence C`` writes a mood for) and the accuracy of those tracks (None
    when none reach it)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    rows = []
    for c in thresholds:
        kept = confidence >= c
        rows.append(
            {
                "min_confidence": float(c),
                "coverage": float(kept.mean()),
                "n_tracks": int(kept.sum()),
                "accuracy": float(correct[kept].mean()) if kept.any() else None,
            }
        )
    return rows


def calibration_error(confidence: np.ndarray, correct: np.ndarray, *, bins: int = 10) -> dict:
    """Expected calibration error (the tracks' share-weighted mean gap between confidence and
    accuracy over ``bins`` equal-width confidence bins) and the reliability diagram's bins."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=False), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        inside = which == b
        if not inside.any():
            continue
        mean_conf, acc = float(confidence[inside].mean()), float(correct[inside].mean())
        ece += inside.mean() * abs(mean_conf - acc)
        rows.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "n_tracks": int(inside.sum()),
                "mean_confidence": mean_conf,
                "accuracy": acc,
            }
        )
    return {
        "ece": float(ece),
        "mean_confidence": float(confidence.mean()),
        "accuracy": float(correct.mean()),
        "bins": rows,
    }
