"""The model registry and the paper's CNN-LSTM (Table 3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moodscope import ModelError
from moodscope.models import create_model, list_models, model_entry


def _count(module: torch.nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    # Keras counts BatchNorm's moving mean and variance as (non-trainable) parameters.
    running = sum(b.numel() for n, b in module.named_buffers() if "running_" in n)
    return trainable, running


def test_paper_parameter_count_matches_table_3():
    model = create_model("paper_cnn_lstm", n_features=28, n_classes=10)
    trainable, running = _count(model)
    assert running == 2_432  # the paper's non-trainable parameters, exactly
    # nn.LSTM keeps two bias vectors (b_ih, b_hh) where Keras keeps one: 4 * 128 extra
    # per LSTM, two LSTMs. Everything else matches Keras parameter for parameter.
    lstm_extra = 2 * 4 * 128
    assert trainable == 2_505_034 + lstm_extra
    assert trainable + running - lstm_extra == 2_507_466  # the paper's total


def test_paper_layer_shapes():
    model = create_model("paper_cnn_lstm", n_features=28, n_classes=10).eval()
    x = torch.randn(5, 1, 28)
    shapes = []
    for layer in model.conv:
        x = layer(x)
        if isinstance(layer, torch.nn.MaxPool1d):
            shapes.append(tuple(x.shape[1:]))
    assert shapes == [(128, 14), (256, 7), (512, 3)]  # Table 3, channels first
    assert model(torch.randn(5, 28)).shape == (5, 10)
    convs = [m for m in model.conv if isinstance(m, torch.nn.Conv1d)]
    # Table 3's per-layer counts (the sixth prints as "104908", a truncated 1,049,088).
    assert [sum(p.numel() for p in c.parameters()) for c in convs] == [
        640,
        65_664,
        131_328,
        262_400,
        524_800,
        1_049_088,
    ]


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_maps_rows_to_class_scores(name):
    rng = np.random.default_rng(0)
    n_features, n_classes = 28, 4
    X = rng.standard_normal((60, n_features)).astype(np.float32)
    y = np.arange(60) % n_classes
    entry = model_entry(name)
    if entry.kind == "torch" and entry.input == "sequence":
        # A track is a time-ordered sequence of segment rows: 6 tracks x 10 segments.
        model = create_model(name, n_features=n_features, n_classes=n_classes).eval()
        with torch.no_grad():
            out = model(torch.as_tensor(X).reshape(6, 10, n_features))
            steps, _ = model.step_logits(torch.as_tensor(X).reshape(6, 10, n_features))
        assert out.shape == (6, n_classes) and torch.isfinite(out).all()
        assert steps.shape == (6, 10, n_classes)
    elif entry.kind == "torch":
        model = create_model(name, n_features=n_features, n_classes=n_classes).eval()
        with torch.no_grad():
            out = model(torch.as_tensor(X))
        assert out.shape == (60, n_classes) and torch.isfinite(out).all()
    else:
        model = create_model(name, seed=0).fit(X, y)
        proba = model.predict_proba(X)
        assert proba.shape == (60, n_classes)
        np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-6)


def test_unknown_model():
    with pytest.raises(ModelError, match="unknown model 'resnet9000'.*paper_cnn_lstm"):
        create_model("resnet9000")


def test_list_models_pattern():
    assert "paper_cnn_lstm" in list_models("paper_*")
    assert list_models("no_such_*") == []


def test_class_weight_reaches_scikit_learn_models_as_balanced_weights():
    from sklearn.linear_model import LogisticRegression

    from moodscope.models.estimators import Classifier
    from moodscope.models.training import TrainConfig

    rng = np.random.default_rng(0)
    y = np.array([0] * 30 + [1] * 10 + [2] * 5)
    X = rng.normal(size=(len(y), 4)) + y[:, None]
    weighted = Classifier("logistic_regression", 4, 3, {}, TrainConfig(balance="class_weight"))
    weighted.fit(X, y, X[:0], y[:0])
    balanced = LogisticRegression(class_weight="balanced", random_state=0).fit(X, y)
    np.testing.assert_allclose(weighted.model.coef_, balanced.coef_, rtol=1e-4, atol=1e-6)
    plain = Classifier("logistic_regression", 4, 3, {}, TrainConfig(balance="none"))
    plain.fit(X, y, X[:0], y[:0])
    assert not np.allclose(plain.model.coef_, weighted.model.coef_, atol=1e-3)
