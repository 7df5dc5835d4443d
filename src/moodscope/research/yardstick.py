"""Held-out yardsticks beside accuracy: how accuracy grows as the model answers only where it
is confident (risk-coverage), whether its confidence is the chance of being right
(calibration), the three GEMS factors, and what the model is worth in listeners.

Everything takes track-level distributions of tracks the model did not train on
(out-of-fold predictions, or a model on a dataset it has not seen).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from moodscope.emotions import EMOTIONS, FACTORS, circumplex, factor_shares, top_factor
from moodscope.inference.calibration import Calibration, confidence_score, crossfit_confidence
from moodscope.research.metrics import (
    COVERAGES,
    calibration_error,
    classification_metrics,
    risk_coverage,
    threshold_table,
)

TARGET_LISTENERS = 6
"""Listeners of each track held out as the target the model and the panels are scored on."""
PANEL_REPEATS = 20
"""Random draws of target and panel listeners per track, averaged."""
WIDE_PANEL = 10
"""The largest panel of the second comparison, on the tracks with enough listeners for it."""


def topk_hits(proba: np.ndarray, truth: np.ndarray, ks: Sequence[int] = (2, 3)) -> dict:
    """``{k: bool [n]}``: whether the true column ``truth [n]`` is among each row's top k."""
    ranks = np.argsort(-np.asarray(proba), axis=1, kind="stable")
    return {k: (ranks[:, :k] == np.asarray(truth)[:, None]).any(axis=1) for k in ks}


def confidence_metrics(
    proba: np.ndarray, truth: np.ndarray, confidence: np.ndarray | None, *, score: str = "margin"
) -> dict:
    """Risk-coverage (accuracy, top-2, top-3 of the most confident 25/50/75/100 %) and, when
    there is a confidence, its calibration. Without one the tracks are ranked by the raw
    ``score`` and no calibration is reported.

    ``proba [n, n_labels]``, ``truth [n]`` the true column of each row.
    """
    raw = confidence_score(proba, score)
    truth = np.asarray(truth)
    correct = np.asarray(proba).argmax(axis=1) == truth
    ranking = confidence if confidence is not None else raw
    out = {
        "ranked_by": "confidence" if confidence is not None else score,
        "risk_coverage": risk_coverage(
            ranking, correct, topk_correct=topk_hits(proba, truth), tiebreak=raw
        ),
        "calibration": None,
    }
    if confidence is not None:
        out["calibration"] = calibration_error(confidence, correct)
        out["thresholds"] = threshold_table(confidence, correct)
        half = np.zeros(len(correct), dtype=bool)
        from moodscope.research.metrics import ranked_by_confidence

        half[ranked_by_confidence(confidence, raw)[: len(correct) // 2]] = True
        out["confident_half_accuracy"] = float(correct[half].mean())
        out["other_half_accuracy"] = float(correct[~half].mean())
    return out


def factor_metrics(proba: np.ndarray, labels: Sequence[str], shares: pd.DataFrame) -> dict | None:
    """The top factor of each predicted distribution against the factor with the largest
    summed listener share: accuracy, balanced accuracy, and the majority factor's accuracy.
    None when the labels are not the GEMS emotions or there are no shares."""
    if shares is None or not set(labels) <= set(EMOTIONS):
        return None
    names = list(FACTORS)
    pred = [top_factor(factor_shares(dict(zip(labels, row)))) for row in np.asarray(proba)]
    truth = [
        top_factor(factor_shares(dict(row))) for row in shares[list(labels)].to_dict("records")
    ]
    index = {f: i for i, f in enumerate(names)}
    m = classification_metrics(
        np.array([index[t] for t in truth]), np.array([index[p] for p in pred]), names
    )
    counts = pd.Series(truth).value_counts()
    return {
        "accuracy": m["accuracy"],
        "balanced_accuracy": m["balanced_accuracy"],
        "majority": str(counts.index[0]),
        "majority_accuracy": float(counts.iloc[0] / len(truth)),
        "per_factor": m["per_class"],
        "confusion_matrix": m["confusion_matrix"],
        "factors": names,
        "n_tracks": len(truth),
    }


def _tied_top(counts: np.ndarray) -> np.ndarray:
    return counts == counts.max()


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    """The chance that two tie-broken-at-random choices from the tied sets ``a`` and ``b``
    (bool masks) are the same emotion."""
    return float((a & b).sum() / (a.sum() * b.sum()))


def listener_panels(
    annotations: pd.DataFrame,
    predicted: pd.Series,
    *,
    target_listeners: int = TARGET_LISTENERS,
    max_panel: int | None = None,
    repeats: int = PANEL_REPEATS,
    seed: int = 0,
) -> dict | None:
    """The model against panels of people, scored on the same held-out listeners.

    For each track, ``target_listeners`` of its listeners are drawn as the target: their
    most-ticked emotion is what counts as right. The model's top emotion (``predicted``:
    track id -> emotion) and the most-ticked emotion of ``n`` *other* listeners of the track
    (n = 1, 2, ...) are scored against it; ties on either side count as a choice at random
    among the tied emotions. Averaged over ``repeats`` draws and the tracks.

    Parameters
    ----------
    annotations : pd.DataFrame
        One row per listener and track: ``track_id`` and the nine 0/1 emotion columns.
    max_panel : int, optional
        The largest panel; tracks with fewer than ``target_listeners + max_panel``
        listeners are left out. Default: as many as every track allows.

    Returns
    -------
    dict or None
        ``panels`` (agreement per panel size), ``model`` (its agreement), ``worth`` (the
        panel size whose agreement the model matches, interpolated; ``beyond`` when it beats
        the largest panel). None when no track has enough listeners.
    """
    labels = [e for e in EMOTIONS if e in annotations.columns]
    groups = {
        str(t): rows[labels].to_numpy(dtype=float)
        for t, rows in annotations.groupby("track_id", sort=False)
        if str(t) in predicted.index
    }
    fewest = target_listeners + (max_panel or 1)
    groups = {t: r for t, r in groups.items() if len(r) >= fewest}
    if not groups:
        return None
    most = min(len(r) for r in groups.values()) - target_listeners
    largest = most if max_panel is None else max_panel
    column = {label: i for i, label in enumerate(labels)}
    model_scores, panel_scores = [], np.zeros((largest,))
    cells = 0
    for t, rows in groups.items():
        choice = np.zeros(len(labels), dtype=bool)
        choice[column[predicted[t]]] = True
        for r in range(repeats):
            rng = np.random.default_rng([seed, r, zlib.crc32(t.encode())])
            order = rng.permutation(len(rows))
            target = _tied_top(rows[order[:target_listeners]].sum(axis=0))
            others = rows[order[target_listeners:]]
            model_scores.append(_agreement(choice, target))
            for n in range(1, largest + 1):
                panel_scores[n - 1] += _agreement(_tied_top(others[:n].sum(axis=0)), target)
            cells += 1
    panels = [
        {"listeners": n, "agreement": float(panel_scores[n - 1] / cells)}
        for n in range(1, largest + 1)
    ]
    model = float(np.mean(model_scores))
    return {
        "target_listeners": target_listeners,
        "repeats": repeats,
        "n_tracks": len(groups),
        "panels": panels,
        "model": model,
        **panel_worth(panels, model),
    }


def panel_worth(panels: list[dict], model: float) -> dict:
    """The panel size whose agreement equals ``model``'s, interpolated linearly between the
    sizes measured (0 listeners: agreement 0); ``beyond`` when it beats every panel."""
    sizes = [0] + [p["listeners"] for p in panels]
    scores = [0.0] + [p["agreement"] for p in panels]
    if model >= scores[-1]:
        return {"worth": float(sizes[-1]), "beyond": model > scores[-1]}
    for (n0, s0), (n1, s1) in zip(zip(sizes, scores), zip(sizes[1:], scores[1:])):
        if s0 <= model <= s1 and s1 > s0:
            return {"worth": float(n0 + (model - s0) / (s1 - s0) * (n1 - n0)), "beyond": False}
    return {"worth": None, "beyond": False}  # panels not increasing: no honest answer


def worth_words(listeners: dict | None) -> str:
    """The panel comparison as a sentence (the page and the model card say it so)."""
    if not listeners or listeners.get("worth") is None:
        return ""
    target, model = listeners["target_listeners"], listeners["model"]
    head = (
        f"on tracks it had not heard, its top emotion matches what {target} held-out "
        f"listeners ticked most {model:.0%} of the time"
    )
    if listeners["beyond"]:
        largest = listeners["panels"][-1]
        words = (
            f"{head}, more often than the majority of {largest['listeners']} other listeners "
            f"({largest['agreement']:.0%})"
        )
    else:
        words = f"{head}, as often as the majority of {listeners['worth']:.1f} other listeners"
    wide = listeners.get("wide")
    if wide and wide.get("worth") is not None and not wide["beyond"]:
        fewest = wide["target_listeners"] + wide["panels"][-1]["listeners"]
        words += (
            f"; on the {wide['n_tracks']} tracks with {fewest} or more listeners it is worth "
            f"a panel of {wide['worth']:.1f}"
        )
    return words


def held_out_report(
    proba: np.ndarray,
    track_ids: Sequence[str],
    labels: Sequence[str],
    tracks: pd.DataFrame,
    *,
    confidence: np.ndarray | None,
    score: str = "margin",
    shares: pd.DataFrame | None = None,
    annotations: pd.DataFrame | None = None,
) -> dict:
    """Every yardstick of held-out track distributions ``proba [n, n_labels]`` (columns in
    ``labels`` order) against ``tracks`` (indexed by track id, column ``label``)."""
    track_ids = [str(t) for t in track_ids]
    index = {label: i for i, label in enumerate(labels)}
    truth = tracks.loc[track_ids, "label"].map(index).to_numpy()
    out = confidence_metrics(proba, truth, confidence, score=score)
    out["factors"] = factor_metrics(
        proba, labels, None if shares is None else shares.loc[track_ids]
    )
    out["listeners"] = None
    if annotations is not None:
        top = pd.Series([labels[i] for i in np.asarray(proba).argmax(axis=1)], index=track_ids)
        out["listeners"] = listener_panels(annotations, top)
        if out["listeners"] is not None:
            out["listeners"]["wide"] = listener_panels(annotations, top, max_panel=WIDE_PANEL)
    return out


def by_genre(
    proba: np.ndarray,
    track_ids: Sequence[str],
    labels: Sequence[str],
    tracks: pd.DataFrame,
    *,
    confidence: np.ndarray | None,
    novelty: np.ndarray | None = None,
) -> dict:
    """Per genre of a labelled dataset: accuracy, and with a confidence its calibration,
    its confident half against the rest, and the tracks' median novelty."""
    ids = np.asarray([str(t) for t in track_ids])
    genre = tracks.loc[ids, "genre"].astype(str).to_numpy()
    truth = tracks.loc[ids, "label"].map({x: i for i, x in enumerate(labels)}).to_numpy()
    out = {}
    for g in sorted(set(genre) - {""}):
        rows = genre == g
        right = np.asarray(proba)[rows].argmax(axis=1) == truth[rows]
        entry: dict = {"n_tracks": int(rows.sum()), "accuracy": float(right.mean())}
        if confidence is not None and rows.sum() >= 2:
            m = confidence_metrics(np.asarray(proba)[rows], truth[rows], confidence[rows])
            entry.update(
                ece=m["calibration"]["ece"],
                mean_confidence=m["calibration"]["mean_confidence"],
                confident_half_accuracy=m["confident_half_accuracy"],
                other_half_accuracy=m["other_half_accuracy"],
            )
        if novelty is not None:
            entry["novelty_median"] = float(np.median(novelty[rows]))
        out[g] = entry
    return out


def circumplex_summary(
    position: np.ndarray,
    track_ids: Sequence[str],
    tracks: pd.DataFrame,
    shares: pd.DataFrame | None,
) -> dict | None:
    """Consistency checks of predicted ``position [n, 2]`` (arousal, valence) on a dataset
    without valence labels: the mean per genre, and Pearson r against the same circumplex
    reading of the listeners' own emotion shares (what the mapping would say of them)."""
    position = np.asarray(position, dtype=np.float64)
    if position.size == 0 or np.isnan(position).all():
        return None
    ids = [str(t) for t in track_ids]
    genre = tracks.loc[ids, "genre"].astype(str).to_numpy()
    out: dict = {
        "per_genre": {
            g: {
                "arousal": float(np.nanmean(position[genre == g, 0])),
                "valence": float(np.nanmean(position[genre == g, 1])),
                "n_tracks": int((genre == g).sum()),
            }
            for g in sorted(set(genre) - {""})
        }
    }
    if shares is not None and set(EMOTIONS) <= set(shares.columns):
        listeners = np.array([circumplex(dict(r)) for r in shares.loc[ids].to_dict("records")])
        for i, name in enumerate(("arousal", "valence")):
            ok = ~np.isnan(position[:, i])
            out[f"{name}_r_listeners"] = float(np.corrcoef(position[ok, i], listeners[ok, i])[0, 1])
    return out


def crossval_yardstick(
    cv: dict,
    dataset,
    *,
    score: str = "margin",
    method: str = "isotonic",
) -> tuple[dict, Calibration]:
    """The yardsticks of a cross-validation's out-of-fold predictions, with confidences
    cross-fitted (each fold's through a map fitted on the other folds), and the map fitted
    on all of them (the one a checkpoint ships; a ``logistic`` one still needs its model's
    reference tracks, ``calibration.novelty``, before it is stored)."""
    from moodscope.inference.calibration import fit_calibration

    oof = cv["out_of_fold"]
    labels = list(oof.columns)
    proba = oof.to_numpy(dtype=float)
    tracks = dataset.by_track()
    truth = tracks.loc[oof.index.astype(str), "label"].map({x: i for i, x in enumerate(labels)})
    correct = proba.argmax(axis=1) == truth.to_numpy()
    folds = np.repeat(np.arange(len(cv["folds"])), [f["n_tracks"] for f in cv["folds"]])
    novelty = None
    if method == "logistic":  # each track's novelty against its fold's training tracks
        novelty = cv["novelty"].reindex(oof.index).to_numpy()
    confidence = crossfit_confidence(
        proba, correct, folds, score=score, method=method, novelty=novelty
    )
    report = held_out_report(
        proba,
        oof.index,
        labels,
        tracks,
        confidence=confidence,
        score=score,
        shares=dataset.share_table(labels),
        annotations=getattr(dataset, "annotations", None),
    )
    report["calibration_method"] = {"score": score, "method": method, "crossfit": True}
    fitted = fit_calibration(proba, correct, score=score, method=method, novelty=novelty)
    return report, fitted


__all__ = [
    "COVERAGES",
    "PANEL_REPEATS",
    "TARGET_LISTENERS",
    "by_genre",
    "circumplex_summary",
    "confidence_metrics",
    "crossval_yardstick",
    "factor_metrics",
    "held_out_report",
    "listener_panels",
    "panel_worth",
    "topk_hits",
    "worth_words",
]
