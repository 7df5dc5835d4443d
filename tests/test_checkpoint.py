"""Checkpoints: one self-contained file of numbers and plain values, loaded without running
any code; bad, foreign and hostile files give a one-line ModelError."""

from __future__ import annotations

import copy
import io
import json
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import chord_signal
from moodscope import ModelError
from moodscope.features import FeatureConfig
from moodscope.inference.checkpoint import (
    HEADER,
    _pack,
    _payload,
    load_checkpoint,
    save_checkpoint,
)
from moodscope.inference.identity import default_model_path
from moodscope.inference.predictor import load_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained():
    pytest.importorskip("torch")
    from moodscope.research.experiment import train_and_test
    from test_training import FAST, tiny_table

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
    assert list(loaded.classifier.model_kwargs["filters"]) == [8, 8, 8]
    assert not list(tmp_path.glob("*.tmp"))


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def test_a_checkpoint_is_json_and_arrays(trained, tmp_path):
    """Every member is the JSON header or a .npy array of numbers that numpy reads with
    pickles refused: nothing in the file can hold code."""
    members = _members(save_checkpoint(trained, tmp_path / "m.ckpt"))
    header = json.loads(members.pop(HEADER))
    assert header["format"] == "moodscope-checkpoint" and header["version"] == 2
    assert members and all(n.startswith("arrays/") and n.endswith(".npy") for n in members)
    for data in members.values():
        assert np.load(io.BytesIO(data), allow_pickle=False).dtype.kind in "fiub"


def test_linear_head_keeps_extra_arrays_and_values(tmp_path):
    """The shipped (linear) model round-trips with arrays and values added to ``info``, the
    way model helpers store reference embeddings; the head holds no pickled estimator."""
    model = copy.copy(load_model())
    refs = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    model.info = {**model.info, "references": {"embeddings": refs, "names": ["a", "b"]}}
    path = save_checkpoint(model, tmp_path / "m.ckpt")
    loaded = load_checkpoint(path)
    np.testing.assert_array_equal(loaded.info["references"]["embeddings"], refs)
    assert loaded.info["references"]["names"] == ["a", "b"]
    X = np.random.default_rng(0).standard_normal((4, len(model.scaler.mean)))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert not any("skops" in name for name in _members(path))


def test_shipped_model_is_in_the_current_format():
    header = json.loads(_members(default_model_path())[HEADER])
    assert header["version"] == 2 and "linear" in header["classifier"]


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


def test_truncated_checkpoint(tmp_path):
    path = save_checkpoint(load_model(), tmp_path / "m.ckpt")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelError, match="m.ckpt"):
        load_checkpoint(path)


def test_foreign_zip_and_torch_file(tmp_path):
    other = tmp_path / "other.ckpt"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(ModelError, match="not a moodscope checkpoint"):
        load_checkpoint(other)
    torch = pytest.importorskip("torch")
    pt = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, pt)
    with pytest.raises(ModelError, match="not a moodscope checkpoint"):
        load_checkpoint(pt)


def test_old_torch_checkpoint_converts(tmp_path):
    """A moodscope 0.1 checkpoint (torch.save of tensors and plain values) loads through
    torch.load(weights_only=True) and converts to the same predictions."""
    torch = pytest.importorskip("torch")
    model = load_model()
    def tensors(value):  # every array as the tensor moodscope 0.1 saved
        if isinstance(value, dict):
            return {k: tensors(v) for k, v in value.items()}
        return torch.as_tensor(value) if isinstance(value, np.ndarray) else value

    payload = tensors(_payload(model))
    payload["version"] = 1
    old = tmp_path / "old.ckpt"
    torch.save(payload, old)
    new = tmp_path / "new.ckpt"
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "convert_checkpoint.py"), str(old), str(new)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    X = np.random.default_rng(0).standard_normal((4, len(model.scaler.mean)))
    np.testing.assert_array_equal(load_checkpoint(new).predict_proba(X), model.predict_proba(X))
    assert json.loads(_members(new)[HEADER])["version"] == 2


class _Evil:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_arbitrary_pickle_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.ckpt"
    with open(path, "wb") as f:
        pickle.dump({"format": "moodscope-checkpoint", "x": _Evil(marker)}, f)
    with pytest.raises(ModelError):
        load_checkpoint(path)
    assert not marker.exists()


def test_pickled_array_in_the_new_format_is_refused(tmp_path):
    """A checkpoint whose .npy member is an object array (a pickle inside): refused in one
    line, the object never built."""
    marker = tmp_path / "ran"
    good = _members(save_checkpoint(load_model(), tmp_path / "good.ckpt"))
    evil = io.BytesIO()
    np.save(evil, np.array([_Evil(marker)], dtype=object), allow_pickle=True)
    path = tmp_path / "evil.ckpt"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in good.items():
            zf.writestr(name, evil.getvalue() if name.endswith("scaler/mean.npy") else data)
    with pytest.raises(ModelError, match="holds Python objects") as info:
        load_checkpoint(path)
    assert "evil.ckpt" in str(info.value) and len(str(info.value).splitlines()) == 1
    assert not marker.exists()


def _code_head(marker: Path) -> bytes:
    """The red team's head: a pipeline of FunctionTransformers whose last step is numpy's
    ``runstring`` (``exec``), fed a string the first two steps make out of any input."""
    skops_io = pytest.importorskip("skops.io")
    from numpy.testing._private.utils import runstring
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    code = f"import pathlib; pathlib.Path({str(marker)!r}).touch()"
    pipe = make_pipeline(
        FunctionTransformer(np.full_like, kw_args={"fill_value": code, "dtype": "O"}),
        FunctionTransformer(np.min),
        FunctionTransformer(runstring, kw_args={"dict": {}}),
    )
    return skops_io.dumps(pipe)


def test_the_code_head_does_run_code_when_its_types_are_trusted(tmp_path):
    """The control: trusted by module prefix (numpy., sklearn.), as moodscope 0.1 did, the
    head runs its command on the first transform. So the refusal below is a real one."""
    skops_io = pytest.importorskip("skops.io")
    marker = tmp_path / "ran"
    data = _code_head(marker)
    types = skops_io.get_untrusted_types(data=data)
    assert all(t.startswith(("numpy.", "sklearn.")) for t in types)
    skops_io.loads(data, trusted=types).transform(np.zeros((2, 3)))
    assert marker.exists()


def test_code_head_is_refused(tmp_path, capsys, write_audio):
    """The same head in a checkpoint: refused in one line through load_checkpoint and
    ``moodscope predict --model``; the command never runs."""
    from moodscope.cli import main

    marker = tmp_path / "ran"
    payload = _payload(load_model())
    n_features = payload["classifier"]["n_features"]
    payload["classifier"] = {
        "name": "random_forest",
        "kind": "sklearn",
        "n_features": n_features,
        "n_classes": 9,
        "model_kwargs": {},
        "skops": _code_head(marker),
    }
    path = tmp_path / "evil.ckpt"
    path.write_bytes(_pack(payload))
    with pytest.raises(ModelError, match="never code") as info:
        load_checkpoint(path)
    assert "evil.ckpt" in str(info.value) and "runstring" in str(info.value)
    song = write_audio("song.wav", chord_signal(6.0))
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(song), "--model", str(path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and "evil.ckpt" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not marker.exists()


def test_missing_checkpoint(tmp_path):
    with pytest.raises(ModelError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.ckpt")


def test_tampered_state_is_a_model_error(tmp_path):
    path = save_checkpoint(load_model(), tmp_path / "m.ckpt")
    members = _members(path)
    header = json.loads(members[HEADER])
    del header["classifier"]["linear"]["coef"]
    members[HEADER] = json.dumps(header).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(ModelError, match="damaged checkpoint"):
        load_checkpoint(path)


# -- features that vary only by float32 rounding ----------------------------------------------


def test_a_dead_filters_spread_within_a_track_is_rounding_and_held_at_zero():
    from sklearn.preprocessing import StandardScaler

    from moodscope.inference.checkpoint import Scaler, freeze_rounding, rounding_columns

    rng = np.random.default_rng(0)
    n = 40
    live = rng.normal(1.0, 0.3, n)
    dead_mean = np.full(n, -2.2e-6) + rng.normal(0, 1e-13, n)  # a constant, to rounding
    dead_std = np.abs(rng.normal(0, 1e-15, n))  # its spread over the track's windows
    X = np.column_stack([live, np.abs(rng.normal(0.3, 0.1, n)), dead_mean, dead_std])
    columns = ["a@mean", "a@std", "dead@mean", "dead@std"]
    scaler = StandardScaler().fit(X)
    assert rounding_columns(columns, scaler.mean_, scaler.scale_).tolist() == [
        False, False, True, True,
    ]  # fmt: skip
    # unfrozen, a rounding difference of 2e-13 in the dead @std is many scaled units...
    a, b = X[:1].copy(), X[:1].copy()
    b[0, 3] += 2e-13
    assert abs(scaler.transform(b)[0, 3] - scaler.transform(a)[0, 3]) > 10
    # ...frozen, training and the stored scaler read 0 there, and the live columns as before
    frozen = freeze_rounding(scaler, columns)
    stored = Scaler.from_sklearn(frozen)
    for s in (frozen.transform, stored.transform):
        assert np.all(s(np.vstack([a, b]))[:, 2:] == 0)
    assert np.allclose(stored.transform(a)[0, :2], (a[0, :2] - X.mean(0)[:2]) / X.std(0)[:2],
                       rtol=1e-5)  # fmt: skip


def test_an_infinite_scale_survives_the_checkpoint(trained, tmp_path):
    from moodscope.inference.checkpoint import Scaler

    model = copy.deepcopy(trained)
    scale = model.scaler.scale.copy()
    scale[0] = np.inf
    model.scaler = Scaler(model.scaler.mean, scale)
    save_checkpoint(model, tmp_path / "m.ckpt")
    loaded = load_checkpoint(tmp_path / "m.ckpt")
    assert np.isinf(loaded.scaler.scale[0]) and loaded.scaler.constant[0]
    row = np.ones((1, len(scale)))
    assert loaded.scaler.transform(row)[0, 0] == 0
