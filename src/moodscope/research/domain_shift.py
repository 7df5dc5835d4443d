"""Confidence under a shift this data can measure: leave one genre out.

In domain, out-of-fold tracks come from the genres the model trained on; music people own is
mostly not like Emotify. Holding out one of Emotify's four genres at a time (training the
head and fitting its confidence map on the other three) is the honest proxy: it shows
whether the confidence still means what it says, and whether the track's novelty (how far
its embedding lies from the training tracks) lets the map say so. Also here: the aggression
rule's effect on the out-of-fold predictions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from moodscope.emotions import aggression, aggression_shift, arousal_valence
from moodscope.features import FeatureConfig
from moodscope.inference.calibration import Calibration, fit_calibration
from moodscope.inference.predictor import tagger_tags
from moodscope.research.evaluation import crossval
from moodscope.research.yardstick import confidence_metrics

BEFORE = {"method": "platt", "data": "in_domain"}
"""The confidence map before: a logistic curve in the margin, fitted on the in-domain
out-of-fold predictions."""
NOW = {"method": "logistic", "data": "pooled"}
"""The map now: a logistic curve in the margin and the novelty, fitted on the in-domain and
the leave-one-genre-out out-of-fold predictions together (so it sees novel tracks)."""


def track_tags(table: pd.DataFrame, feature_config: FeatureConfig) -> pd.DataFrame | None:
    """musicnn's MSD tags of each track (mean over its segments; track id -> tag), or None
    when the feature set has no tagger outputs."""
    columns = list(feature_config.columns)
    probe = tagger_tags(columns, np.zeros((1, len(columns))))
    if probe is None:
        return None
    means = table.groupby(table["track_id"].astype(str), sort=False)[columns].mean()
    return pd.DataFrame(tagger_tags(columns, means.to_numpy()), index=means.index)


def with_aggression_rule(proba: pd.DataFrame, tags: pd.DataFrame | None) -> pd.DataFrame:
    """Track distributions (track id -> label) through the aggression rule, as prediction
    applies it (:func:`moodscope.inference.predictor.track_reading`)."""
    if tags is None:
        return proba
    rows = [
        aggression_shift(dict(row), tags.loc[str(t)].to_dict())
        for t, row in zip(proba.index, proba.to_dict("records"))
    ]
    return pd.DataFrame(rows, index=proba.index)[list(proba.columns)]


def rule_effect(
    raw: pd.DataFrame, ruled: pd.DataFrame, tracks: pd.DataFrame, tags: pd.DataFrame | None
) -> dict | None:
    """What the aggression rule changes on out-of-fold predictions: accuracy without and
    with it, tracks whose top emotion changes, tracks with more than 0.01 share moved, and
    the tagger's most aggressive tracks with their valence (and its rank, 1 = lowest)."""
    if tags is None:
        return None
    truth = tracks.loc[raw.index.astype(str), "label"].to_numpy()
    top_raw = raw.columns[raw.to_numpy().argmax(axis=1)]
    top_ruled = ruled.columns[ruled.to_numpy().argmax(axis=1)]
    moved = np.abs(ruled.to_numpy() - raw.to_numpy()).sum(axis=1) / 2
    ruled = ruled.set_axis(ruled.index.astype(str))
    score = pd.Series({str(t): aggression(tags.loc[str(t)].to_dict()) for t in raw.index})
    valence = pd.Series(
        {t: arousal_valence(dict(row), tags.loc[t].to_dict())[1] for t, row in ruled.iterrows()}
    )
    most = score.sort_values(ascending=False).head(3)
    return {
        "accuracy_without": float(np.mean(top_raw == truth)),
        "accuracy_with": float(np.mean(top_ruled == truth)),
        "top_changed": int(np.sum(top_raw != top_ruled)),
        "moved_over_1pct": int(np.sum(moved > 0.01)),
        "largest_move": float(moved.max()),
        "n_tracks": len(raw),
        "most_aggressive": [
            {
                "track_id": t,
                "genre": str(tracks.loc[t, "genre"]),
                "aggression": float(a),
                "tags": {k: float(tags.loc[t, k]) for k in ("metal", "punk", "hard rock")},
                "top_emotion": str(ruled.loc[t].idxmax()),
                "valence": arousal_valence(dict(ruled.loc[t]), tags.loc[t].to_dict())[1],
                "valence_rank": int((valence < valence[t]).sum()) + 1,
            }
            for t, a in most.items()
        ],
    }


def _inputs(cv: dict, tracks: pd.DataFrame, tags: pd.DataFrame | None) -> pd.DataFrame:
    """One row per out-of-fold prediction: its distribution (through the rule), whether the
    top emotion was right, its novelty and its fold."""
    proba = with_aggression_rule(cv["out_of_fold"], tags)
    truth = tracks.loc[proba.index.astype(str), "label"].to_numpy()
    folds = np.repeat(np.arange(len(cv["folds"])), [f["n_tracks"] for f in cv["folds"]])
    out = proba.copy()
    out["correct"] = proba.columns[proba.to_numpy().argmax(axis=1)] == truth
    out["novelty"] = cv["novelty"].reindex(proba.index).to_numpy()
    out["fold"] = folds
    return out


def _fit(rows: pd.DataFrame, labels: list[str], spec: dict, score: str) -> Calibration:
    return fit_calibration(
        rows[labels].to_numpy(),
        rows["correct"].to_numpy(),
        score=score,
        method=spec["method"],
        novelty=rows["novelty"].to_numpy() if spec["method"] == "logistic" else None,
    )


def calibration_inputs(
    table: pd.DataFrame,
    tracks: pd.DataFrame,
    tags: pd.DataFrame | None,
    *,
    cv: dict | None = None,
    **crossval_args,
) -> dict[str, pd.DataFrame]:
    """The out-of-fold predictions a confidence map is fitted on: ``in_domain`` (K-fold by
    track; ``cv`` when it was run already) and ``genre_out`` (each genre held out in turn),
    each a table of :func:`_inputs`; ``pooled`` both together."""
    cv = cv or crossval(table, tracks, **crossval_args)
    in_domain = _inputs(cv, tracks, tags)
    genre_out = _inputs(crossval(table, tracks, **crossval_args, held_out_by="genre"), tracks, tags)
    return {
        "in_domain": in_domain,
        "genre_out": genre_out,
        "pooled": pd.concat([in_domain, genre_out]),
    }


def fit_map(inputs: dict[str, pd.DataFrame], spec: dict, score: str) -> Calibration:
    labels = [c for c in inputs["in_domain"].columns if c not in ("correct", "novelty", "fold")]
    return _fit(inputs[spec["data"]], labels, spec, score)


def crossfit_in_domain(inputs: dict[str, pd.DataFrame], spec: dict, score: str) -> np.ndarray:
    """Held-out confidences of the in-domain out-of-fold predictions: each fold's tracks go
    through a map (``spec``: :data:`BEFORE`, :data:`NOW`) fitted without any of them."""
    in_domain = inputs["in_domain"]
    labels = [c for c in in_domain.columns if c not in ("correct", "novelty", "fold")]
    source = inputs[spec["data"]]
    confidence = np.empty(len(in_domain))
    for k in np.unique(in_domain["fold"]):
        test = (in_domain["fold"] == k).to_numpy()
        held = set(in_domain.index[test].astype(str))
        cal = _fit(source[~source.index.astype(str).isin(held)], labels, spec, score)
        rows = in_domain[test]
        confidence[test] = cal.at(rows[labels].to_numpy(), rows["novelty"].to_numpy())
    return confidence


def _metrics(rows: pd.DataFrame, labels: list[str], confidence: np.ndarray, score: str) -> dict:
    proba = rows[labels].to_numpy()
    truth = np.where(rows["correct"], proba.argmax(axis=1), -1)  # only right/wrong matters
    out = confidence_metrics(proba, truth, confidence, score=score)
    return {
        "ece": out["calibration"]["ece"],
        "mean_confidence": out["calibration"]["mean_confidence"],
        "accuracy": out["calibration"]["accuracy"],
        "confident_half_accuracy": out["confident_half_accuracy"],
        "other_half_accuracy": out["other_half_accuracy"],
        "risk_coverage": [
            {k: r[k] for k in ("coverage", "n_tracks", "min_confidence", "accuracy")}
            for r in out["risk_coverage"]["table"]
        ],
    }


def shift_study(
    table: pd.DataFrame,
    tracks: pd.DataFrame,
    *,
    feature_config: FeatureConfig,
    score: str = "margin",
    inputs: dict[str, pd.DataFrame] | None = None,
    **crossval_args,
) -> dict:
    """The confidence map before (:data:`BEFORE`) and now (:data:`NOW`), in domain and with
    each genre held out, every figure on tracks neither the model nor its map saw.

    In domain: each fold's tracks go through maps fitted on the other folds' tracks only.
    Genre held out: the head trains on three genres, both maps are fitted on out-of-fold
    predictions of those three alone (``calibration_inputs`` of them), and the fourth
    genre's tracks are scored, their novelty measured against the three genres' tracks.
    ``crossval_args`` are :func:`moodscope.research.evaluation.crossval`'s.
    """
    tags = track_tags(table, feature_config)
    args = {**crossval_args, "feature_config": feature_config}
    inputs = inputs or calibration_inputs(table, tracks, tags, **args)
    in_domain = inputs["in_domain"]
    labels = [c for c in in_domain.columns if c not in ("correct", "novelty", "fold")]
    out: dict = {"score": score, "in_domain": {}, "genres": {}}
    for name, spec in (("before", BEFORE), ("now", NOW)):
        confidence = crossfit_in_domain(inputs, spec, score)
        out["in_domain"][name] = _metrics(in_domain, labels, confidence, score)
    out["in_domain"]["novelty_median"] = float(in_domain["novelty"].median())
    genre_of = tracks["genre"].astype(str)
    genre_out = inputs["genre_out"]
    for genre in sorted(set(genre_of.loc[table["track_id"].astype(str).unique()])):
        keep = table["track_id"].astype(str).map(genre_of) != genre
        inner = calibration_inputs(table[keep], tracks, tags, **args)
        test = genre_out[genre_of.loc[genre_out.index.astype(str)].to_numpy() == genre]
        per = {"n_tracks": len(test), "novelty_median": float(test["novelty"].median())}
        for name, spec in (("before", BEFORE), ("now", NOW)):
            cal = fit_map(inner, spec, score)
            confidence = cal.at(test[labels].to_numpy(), test["novelty"].to_numpy())
            per[name] = _metrics(test, labels, confidence, score)
        out["genres"][genre] = per
    return out


__all__ = [
    "BEFORE",
    "NOW",
    "calibration_inputs",
    "crossfit_in_domain",
    "fit_map",
    "rule_effect",
    "shift_study",
    "track_tags",
    "with_aggression_rule",
]
