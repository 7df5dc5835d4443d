"""Arousal and valence from the GEMS shares and musicnn's tagger, and the aggression rule."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pandas as pd
import pytest

from moodscope.emotions import (
    AGGRESSIVE_TAGS,
    CIRCUMPLEX,
    EMOTIONS,
    aggression,
    aggression_shift,
    any_tag,
    arousal_valence,
    circumplex,
    tagger_valence,
)
from moodscope.features import FeatureConfig
from moodscope.inference.outputs import render
from moodscope.inference.predictor import Prediction, tagger_tags, track_reading
from moodscope.research.experiment import train_and_test

CALM_TAGS = {"metal": 0.01, "punk": 0.01, "hard rock": 0.0, "heavy metal": 0.0}
METAL_TAGS = {"metal": 0.8, "punk": 0.5, "hard rock": 0.6, "heavy metal": 0.7}


def _only(emotion: str) -> dict[str, float]:
    return {e: float(e == emotion) for e in EMOTIONS}


def test_every_emotion_has_a_place_and_the_quadrants_follow_russell():
    assert set(CIRCUMPLEX) == set(EMOTIONS)
    quadrant = {e: circumplex(_only(e)) for e in EMOTIONS}
    assert quadrant["joyful_activation"][0] > 0 and quadrant["joyful_activation"][1] > 0
    assert quadrant["tension"][0] > 0 and quadrant["tension"][1] < 0
    assert quadrant["sadness"][0] < 0 and quadrant["sadness"][1] < 0
    assert quadrant["calmness"][0] < 0 and quadrant["calmness"][1] > 0
    assert quadrant["power"][0] == pytest.approx(math.sin(math.radians(67.5)))


def test_arousal_and_valence_stay_in_range():
    rng = np.random.default_rng(0)
    for _ in range(200):
        shares = dict(zip(EMOTIONS, rng.dirichlet(np.full(9, 0.3))))
        tags = {t: float(rng.random()) for t in ("happy", "party", "catchy", "dance", "sad")}
        tags |= {t: float(rng.random()) for t in AGGRESSIVE_TAGS}
        for a, v in (arousal_valence(shares), arousal_valence(shares, tags)):
            assert -1 <= a <= 1 and -1 <= v <= 1
    assert arousal_valence({}) == (None, None)
    assert arousal_valence({"calm": 1.0}) == (None, None)  # labels outside GEMS


def test_noisy_or_of_the_tags():
    assert any_tag({"metal": 0.5, "punk": 0.5}, ("metal", "punk")) == pytest.approx(0.75)
    assert any_tag({"rock": 0.9}, AGGRESSIVE_TAGS) is None
    assert aggression(CALM_TAGS) < 0.03
    assert aggression(METAL_TAGS) > 0.95
    assert tagger_valence({"happy": 0.9, "sad": 0.0}) == pytest.approx(0.9)


def test_aggression_moves_joy_to_power_and_tension_and_keeps_the_total():
    joyful = {e: 0.05 for e in EMOTIONS} | {"joyful_activation": 0.6}
    joyful = {e: v / sum(joyful.values()) for e, v in joyful.items()}
    calm = aggression_shift(joyful, CALM_TAGS)
    assert max(abs(calm[e] - joyful[e]) for e in EMOTIONS) < 0.02
    angry = aggression_shift(joyful, METAL_TAGS)
    assert sum(angry.values()) == pytest.approx(1.0)
    assert angry["joyful_activation"] < 0.05 * joyful["joyful_activation"] + 1e-9
    assert angry["power"] - joyful["power"] == pytest.approx(angry["tension"] - joyful["tension"])
    assert max(angry, key=angry.get) != "joyful_activation"
    assert aggression_shift(joyful, {}) == joyful
    # Angry music must not come out as pleasant: the same shares, heard as metal.
    assert arousal_valence(joyful, CALM_TAGS)[1] > 0.3
    assert arousal_valence(angry, METAL_TAGS)[1] < 0
    assert arousal_valence(angry, METAL_TAGS)[0] >= arousal_valence(joyful, CALM_TAGS)[0] > 0.3


def _tag_table(n_tracks: int = 27, segments: int = 4, seed: int = 0) -> pd.DataFrame:
    """Random musicnn_msd rows for tracks of the nine GEMS emotions, tags in [0, 0.2]."""
    rng = np.random.default_rng(seed)
    columns = list(FeatureConfig(feature_set="musicnn_msd", segments=segments).columns)
    rows = []
    for t in range(n_tracks):
        values = rng.uniform(0, 0.2, size=(segments, len(columns))) + (t % 9) * 0.01
        for s in range(segments):
            rows.append(
                {"track_id": str(t), "segment": s, "start": 3.0 * s, "end": 3.0 * (s + 1),
                 "genre": "rock", "label": EMOTIONS[t % 9], **dict(zip(columns, values[s]))}
            )  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def tag_model():
    return train_and_test(
        _tag_table(),
        model="logistic_regression",
        protocol="all",
        feature_config=FeatureConfig(feature_set="musicnn_msd", segments=4),
        labels=list(EMOTIONS),
        aggregate="track",
    ).model


def test_prediction_applies_the_rule_the_card_states(tag_model):
    columns = list(tag_model.feature_config.columns)
    features = _tag_table(n_tracks=1, seed=3)[columns].to_numpy().copy()
    for tag, p in METAL_TAGS.items():
        features[:, columns.index(f"musicnn_msd_tag_{tag.replace(' ', '_')}")] = p
    tags = tagger_tags(columns, features)
    assert tags[0]["heavy metal"] == pytest.approx(0.7) and len(tags) == len(features)
    reading = track_reading(tag_model, features)
    raw, _ = tag_model.predict_track(features)
    raw = dict(zip(tag_model.labels, raw / raw.sum()))
    expected = aggression_shift(raw, METAL_TAGS)
    np.testing.assert_allclose(reading.track, [expected[n] for n in reading.names], atol=1e-9)
    assert reading.track[reading.names.index("joyful_activation")] < 0.05
    a, v = arousal_valence(expected, {t: float(np.mean([w[t] for w in tags])) for t in tags[0]})
    assert (reading.arousal, reading.valence) == pytest.approx((a, v))
    assert reading.confidence is None  # the tiny model carries no map: it says so


def test_no_tagger_no_rule():
    assert tagger_tags(["centroid", "flux"], np.zeros((2, 2))) is None
    assert tagger_tags(["musicnn_mtt_tag_metal"], np.zeros((1, 1))) is None  # MSD's only


def test_arousal_and_valence_travel_in_every_output():
    p = Prediction(
        "a.wav", emotions=_only("tension"), top_emotion="tension", arousal=0.7071, valence=-0.25
    )
    d = p.to_dict()
    assert (d["arousal"], d["valence"]) == (0.7071, -0.25)
    assert Prediction.from_dict(d).valence == -0.25
    rows = list(csv.DictReader(io.StringIO(render([p], "csv"))))
    assert float(rows[0]["arousal"]) == pytest.approx(0.7071)
    assert float(rows[0]["valence"]) == pytest.approx(-0.25)
    assert '"valence": -0.25' in render([p], "jsonl")
    bare = Prediction("b.wav", emotions={"calm": 1.0}, top_emotion="calm")
    assert bare.to_dict()["valence"] is None
    assert list(csv.DictReader(io.StringIO(render([bare], "csv"))))[0]["valence"] == ""
