"""Checkpoints: one self-contained file, loaded safely; bad files give a clear ModelError."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from moodscope import ModelError
from moodscope.features import FeatureConfig
from moodscope.inference.checkpoint import load_checkpoint, save_checkpoint
from moodscope.research.experiment import train_and_test
from test_training import FAST, tiny_table


@pytest.fixture(scope="module")
def trained():
    return train_and_test(
        tiny_table(),
        model="paper_cnn_lstm",
        protocol="paper",
        feature_config=FeatureConfig(segments=5),
        train_config=FAST,
        model_kwargs={"filters": (8, 8, 8), "lstm_units": 8, "dense_units": 8},
    ).model


def test_round_trip(trained, tmp_path):
    path = save_checkpoint(trained, tmp_path / "m.ckpt")
    loaded = load_checkpoint(path)
    X = np.random.default_rng(0).standard_normal((10, 28))
    np.testing.assert_allclose(loaded.predict_proba(X), trained.predict_proba(X), atol=1e-6)
    assert loaded.labels == trained.labels
    assert loaded.feature_config == trained.feature_config
    assert loaded.train_config == trained.train_config
    assert loaded.classifier.model_kwargs["filters"] == (8, 8, 8) or loaded.classifier.model_kwargs[
        "filters"
    ] == [8, 8, 8]
    assert not list(tmp_path.glob("*.tmp"))


def test_loads_without_pickle(trained, tmp_path):
    path = save_checkpoint(trained, tmp_path / "m.ckpt")
    torch.load(path, weights_only=True)  # raises if anything but tensors/plain values


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "not a readable"),
        (b"\x00\x01garbage" * 100, "not a readable"),
        (b"just some text\n", "not a readable"),
    ],
)
def test_corrupt_files(tmp_path, content, match):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(content)
    with pytest.raises(ModelError, match=match) as info:
        load_checkpoint(path)
    assert "bad.ckpt" in str(info.value)


def test_truncated_checkpoint(trained, tmp_path):
    path = save_checkpoint(trained, tmp_path / "m.ckpt")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelError, match="m.ckpt"):
        load_checkpoint(path)


def test_foreign_torch_file(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(ModelError, match="not a moodscope checkpoint"):
        load_checkpoint(path)


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_arbitrary_pickle_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.ckpt"
    with open(path, "wb") as f:
        pickle.dump({"format": "moodscope-checkpoint", "x": _Evil()}, f)
    with pytest.raises(ModelError):
        load_checkpoint(path)
    assert "code ran" not in capsys.readouterr().out


def test_missing_checkpoint(tmp_path):
    with pytest.raises(ModelError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.ckpt")


def test_tampered_state_is_a_model_error(trained, tmp_path):
    path = save_checkpoint(trained, tmp_path / "m.ckpt")
    payload = torch.load(path, weights_only=True)
    payload["classifier"]["state_dict"].pop(next(iter(payload["classifier"]["state_dict"])))
    torch.save(payload, path)
    with pytest.raises(ModelError, match="damaged checkpoint"):
        load_checkpoint(path)
