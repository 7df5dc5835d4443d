"""Confidence under a genre held out, and a track far from every training track."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import chord_signal
from moodscope.features import FEATURE_NAMES, FeatureConfig
from moodscope.inference.calibration import fit_calibration
from moodscope.inference.predictor import predict
from moodscope.library.tags import mood_earned
from moodscope.models.training import TrainConfig
from moodscope.research.domain_shift import rule_effect, shift_study, with_aggression_rule
from moodscope.research.evaluation import crossval, training_reference
from moodscope.research.evaluation_report import domain_shift_sections
from moodscope.research.experiment import train_and_test
from moodscope.research.report import Report

GENRES = ("classical", "rock", "electronic", "pop")
LABELS = ["calm", "power", "tension"]


def genre_table(n_tracks: int = 48, segments: int = 3, seed: int = 0) -> pd.DataFrame:
    """Paper-feature rows of three classes in four genres; "electronic" lies far from the
    others and its classes are shuffled, so a model trained elsewhere is wrong there."""
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(n_tracks):
        genre, label = GENRES[t % 4], LABELS[(t // 4) % 3]
        shift = LABELS.index(label) * 0.2
        offset = 0.0
        if genre == "electronic":
            shift, offset = rng.choice(3) * 0.2, 1.5
        for s in range(segments):
            rows.append(
                {"track_id": str(t), "segment": s, "start": 3.0 * s, "end": 3.0 * (s + 1),
                 "genre": genre, "label": label,
                 **{f: rng.normal(shift, 1.0) + offset for f in FEATURE_NAMES}}
            )  # fmt: skip
    return pd.DataFrame(rows)


ARGS = dict(
    model="logistic_regression",
    labels=LABELS,
    folds=4,
    train_config=TrainConfig(seed=0),
    aggregate="track",
)


def _tracks(table: pd.DataFrame) -> pd.DataFrame:
    return table.groupby("track_id")[["label", "genre"]].first()


def test_leave_one_genre_out_holds_each_genre_out():
    table = genre_table()
    cv = crossval(table, _tracks(table), feature_config=FeatureConfig(segments=3), **ARGS,
                  held_out_by="genre")  # fmt: skip
    assert len(cv["folds"]) == 4
    assert {tuple(f["per_genre"]) for f in cv["folds"]} == {(g,) for g in GENRES}
    far = cv["novelty"][[t for t in cv["novelty"].index if int(t) % 4 == 2]]
    near = cv["novelty"][[t for t in cv["novelty"].index if int(t) % 4 != 2]]
    assert far.median() > 1.4 * near.median()


@pytest.mark.slow
def test_shift_study_reports_both_maps_per_genre():
    table = genre_table()
    study = shift_study(table, _tracks(table), feature_config=FeatureConfig(segments=3), **ARGS)
    assert set(study["genres"]) == set(GENRES)
    for place in [study["in_domain"], *study["genres"].values()]:
        for name in ("before", "now"):
            m = place[name]
            assert 0 <= m["ece"] <= 1 and 0 <= m["mean_confidence"] <= 1
            assert [r["coverage"] for r in m["risk_coverage"]] == [0.25, 0.5, 0.75, 1.0]
    electronic = study["genres"]["electronic"]
    assert electronic["novelty_median"] > 1.4 * study["in_domain"]["novelty_median"]
    # The far genre, where the model is wrong: the map that reads novelty is less sure there.
    assert electronic["now"]["mean_confidence"] < electronic["before"]["mean_confidence"]
    report = Report("t")
    domain_shift_sections(report, study)
    text = report.markdown()
    assert "electronic held out (12 tracks)" in text and "median novelty" in text


def test_a_far_away_track_gets_a_low_confidence_and_no_mood(write_audio):
    """A model calibrated with novelty, on a track whose features lie far outside its
    training rows (real audio against standard-normal training features): it answers, but
    not sure, and a ``--min-confidence`` tag run leaves its mood alone."""
    table = genre_table(seed=1)
    table[list(FEATURE_NAMES)] = np.random.default_rng(1).standard_normal(
        (len(table), len(FEATURE_NAMES))
    )
    result = train_and_test(
        table, model="logistic_regression", protocol="all", labels=LABELS,
        feature_config=FeatureConfig(segments=20), aggregate="track",
    )  # fmt: skip
    model = result.model
    columns = [f"{c}@{s}" for s in ("mean", "std") for c in FEATURE_NAMES]
    reference = training_reference(result.split, columns)
    rng = np.random.default_rng(2)
    proba = rng.dirichlet(np.ones(3), size=600)
    novelty = rng.uniform(0.8, 3.0, size=600)
    correct = rng.random(600) < np.clip(0.9 - 0.3 * novelty, 0.05, 0.95)
    model.calibration = fit_calibration(
        proba, correct, method="logistic", novelty=novelty, reference=reference
    )
    assert model.calibration.coef[2] < 0
    path = write_audio("chord.wav", chord_signal(7.0))
    (prediction,) = predict(path, model, use_cache=False)
    assert prediction.ok, prediction.error
    shares = np.array([prediction.emotions[label] for label in model.labels])
    at_home = float(model.calibration.at(shares, np.array([1.0])))
    assert prediction.confidence < 0.5 * at_home
    threshold = (prediction.confidence + at_home) / 2
    assert not mood_earned(prediction, threshold)
    assert mood_earned(prediction, None)  # without a threshold the mood is written as before


def test_the_aggression_rule_effect_names_the_tracks_it_reads_as_aggressive():
    ids = [str(i) for i in range(6)]
    emotions = ["calmness", "power", "joyful_activation", "tension", "sadness"]
    raw = pd.DataFrame(
        [[0.1, 0.1, 0.5, 0.2, 0.1]]
        + [[0.1, 0.2, 0.5, 0.1, 0.1]] * 2
        + [[0.6, 0.1, 0.1, 0.1, 0.1]] * 3,
        index=ids,
        columns=emotions,
    )
    tags = pd.DataFrame(
        [{"metal": m, "punk": 0.0, "hard rock": 0.0, "heavy metal": 0.0, "happy": 0.1,
          "party": 0.0, "catchy": 0.0, "dance": 0.0, "sad": 0.0} for m in
         (0.9, 0.3, 0.0, 0.0, 0.0, 0.0)],
        index=ids,
    )  # fmt: skip
    tracks = pd.DataFrame(
        {"label": ["tension", "joyful_activation", "joyful_activation"] + ["calmness"] * 3,
         "genre": "rock"}, index=ids,
    )  # fmt: skip
    effect = rule_effect(raw, with_aggression_rule(raw, tags), tracks, tags)
    assert (effect["accuracy_without"], effect["accuracy_with"]) == (5 / 6, 1.0)
    assert effect["top_changed"] == 1 and effect["moved_over_1pct"] == 2
    first = effect["most_aggressive"][0]
    assert first["track_id"] == "0" and first["top_emotion"] == "tension"
    assert first["valence"] < 0 and first["valence_rank"] == 1
    assert rule_effect(raw, raw, tracks, None) is None


def test_the_novelty_map_survives_a_checkpoint(tmp_path):
    from moodscope.inference.checkpoint import load_checkpoint, save_checkpoint

    table = genre_table(seed=2)
    result = train_and_test(
        table, model="logistic_regression", protocol="all", labels=LABELS,
        feature_config=FeatureConfig(segments=3), aggregate="track",
    )  # fmt: skip
    columns = [f"{c}@{s}" for s in ("mean", "std") for c in FEATURE_NAMES]
    rng = np.random.default_rng(3)
    proba, novelty = rng.dirichlet(np.ones(3), size=300), rng.uniform(0.8, 3.0, size=300)
    result.model.calibration = fit_calibration(
        proba, rng.random(300) < 0.9 - 0.25 * novelty, method="logistic", novelty=novelty,
        reference=training_reference(result.split, columns),
    )  # fmt: skip
    loaded = load_checkpoint(save_checkpoint(result.model, tmp_path / "m.ckpt"))
    rows = rng.standard_normal((4, len(columns))) * 2
    np.testing.assert_allclose(
        loaded.calibration(proba[:4], rows), result.model.calibration(proba[:4], rows)
    )
    assert loaded.calibration.novelty.reference.shape == (48, len(columns))  # no embedding
