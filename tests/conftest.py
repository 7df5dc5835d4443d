"""Shared fixtures: audio written in the test, and the Emotify dev copy for `data` tests.

`data` tests skip when no Emotify copy is configured, except under CI=true, where a
missing copy is a failure: CI must run them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

SR = 22050

# pytest-xdist runs two workers on two cores: one thread each, or OpenMP threads spin
# against each other and a tiny backward pass takes half a second. Without the research
# extra (no torch) the predicting tests still run.
try:
    import torch
except ImportError:
    torch = None
else:
    torch.set_num_threads(1)


def pytest_configure(config):
    """Compile librosa's numba kernels once, in the controller, before xdist workers start:
    on a fresh install, processes compiling them at once race on numba's disk cache."""
    if hasattr(config, "workerinput"):
        return
    from moodscope.features import FeatureConfig
    from moodscope.features.extract import warm_up

    warm_up(FeatureConfig())


def _emotify_root() -> Path | None:
    env = os.environ.get("MOODSCOPE_EMOTIFY_DIR")
    if env and (Path(env) / "data.csv").is_file():
        return Path(env)
    return None


@pytest.fixture(scope="session")
def emotify_dir() -> Path:
    """The Emotify dev copy (``$MOODSCOPE_EMOTIFY_DIR``)."""
    root = _emotify_root()
    if root is None:
        message = "needs the Emotify copy: set MOODSCOPE_EMOTIFY_DIR"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: data tests must run)")
        pytest.skip(message)
    return root


def _required(message: str) -> None:
    """Skip a test whose requirement is missing; fail it under CI=true, where it must run."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: it must run)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """``(browser, driver)``: Debian's headless-capable ``chromium`` and ``chromedriver``
    (`.ci/run` installs them when missing) and selenium to drive them."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        _required("needs chromium and chromedriver: apt-get install chromium chromium-driver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        _required("needs selenium: pip install -e '.[dev]'")
    return browser, driver


@pytest.fixture(scope="session")
def firefox() -> str:
    """Debian's ``firefox-esr`` (`.ci/run` installs it when missing), driven over WebDriver
    BiDi by ``tests/bidi.py``: no geckodriver, which Debian does not package."""
    browser = shutil.which("firefox-esr") or shutil.which("firefox")
    if browser is None:
        _required("needs firefox: apt-get install firefox-esr")
    try:
        import websocket  # noqa: F401 - websocket-client, which selenium brings
    except ImportError:
        _required("needs websocket-client: pip install -e '.[dev]'")
    return browser


def make_emotify_subset(root: Path, target: Path, track_ids: list[int]) -> Path:
    """An Emotify-layout folder holding only ``track_ids`` (audio symlinked, CSV trimmed)."""
    raw = pd.read_csv(root / "data.csv", skipinitialspace=True)
    raw = raw[raw["track id"].isin(track_ids)]
    target.mkdir(parents=True, exist_ok=True)
    raw.to_csv(target / "data.csv", index=False)
    for genre in raw["genre"].unique():
        (target / "emotifymusic" / genre).mkdir(parents=True, exist_ok=True)
    from moodscope.datasets import track_path

    for tid, genre in raw.groupby("track id")["genre"].first().items():
        src, dst = track_path(root, tid, genre), track_path(target, tid, genre)
        try:
            dst.symlink_to(src)
        except OSError:
            shutil.copy(src, dst)
    return target


# Two tracks per genre: enough for integration tests, small enough to stay fast.
SUBSET_IDS = [2, 3, 102, 103, 201, 202, 301, 302]


@pytest.fixture(scope="session")
def emotify_subset(emotify_dir: Path, tmp_path_factory) -> Path:
    return make_emotify_subset(emotify_dir, tmp_path_factory.mktemp("emotify8"), SUBSET_IDS)


def chord_signal(duration: float = 4.0, sr: int = SR, seed: int = 0) -> np.ndarray:
    """A C-major chord with a little noise and a pulse: a stand-in for music, made with the
    package's own synthesiser (moodscope.demo.synth)."""
    from moodscope.demo import synth

    y = synth.chord((261.63, 329.63, 392.0), duration, sr=sr, amplitude=0.6)
    pulse = synth.tone(2.0, duration, sr=sr, amplitude=1.0) > 0
    return (
        y * (0.6 + 0.4 * pulse) + synth.noise(duration, sr=sr, amplitude=0.02, seed=seed)
    ).astype(np.float32)


@pytest.fixture
def write_audio(tmp_path: Path):
    """write_audio(name, y, sr=22050, channels=1) -> Path; format from the extension."""

    def write(name: str, y: np.ndarray, sr: int = SR, channels: int = 1) -> Path:
        path = tmp_path / name
        data = np.stack([y] * channels, axis=1) if channels > 1 else y
        ext = path.suffix.lower()
        kwargs = {}
        if ext == ".mp3":
            kwargs = {"format": "MP3", "subtype": "MPEG_LAYER_III"}
        elif ext == ".ogg":
            kwargs = {"format": "OGG", "subtype": "VORBIS"}
        sf.write(path, data, sr, **kwargs)
        return path

    return write


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets a fresh feature cache and library index, never the user's."""
    monkeypatch.setenv("MOODSCOPE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("MOODSCOPE_DATA_DIR", str(tmp_path_factory.mktemp("data")))
