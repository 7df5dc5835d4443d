"""The distribution: a wheel built as a user builds it carries the licences (the code's MIT,
musicnn's ISC, the shipped model's non-commercial terms) and says so in its metadata."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    # From a clean copy of the checkout (what git would clone), so the build writes nothing
    # into this tree and nothing stale from an earlier build/ gets in.
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(source)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    (built,) = out.glob("moodscope-*.whl")
    with zipfile.ZipFile(built) as z:
        yield z


def _metadata(wheel: zipfile.ZipFile) -> email.message.Message:
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return email.message_from_bytes(wheel.read(name))


def test_the_repository_has_the_mit_licence():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "non-commercial" in text


@pytest.mark.slow
def test_the_wheel_carries_every_licence_file(wheel):
    names = wheel.namelist()
    dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    licences = sorted(n for n in names if n.startswith(f"{dist_info}/licenses/"))
    assert licences == sorted(
        f"{dist_info}/licenses/{p}"
        for p in (
            "LICENSE",
            "src/moodscope/musicnn/LICENSE-musicnn.txt",
            "src/moodscope/models/default/MODEL_CARD.md",
        )
    )
    assert wheel.read(f"{dist_info}/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
    assert "moodscope/models/default/MODEL_CARD.md" in names


@pytest.mark.slow
def test_the_wheel_metadata_states_the_licence_and_the_model_terms(wheel):
    meta = _metadata(wheel)
    assert meta["License-Expression"] == "MIT AND ISC"  # moodscope, and musicnn's port
    assert not [c for c in meta.get_all("Classifier") if c.startswith("License ::")]
    assert "Topic :: Multimedia :: Sound/Audio :: Analysis" in meta.get_all("Classifier")
    assert meta.get_all("Project-URL")
    assert "non-commercial" in meta["Summary"]
    readme = meta.get_payload()
    assert "non-commercial" in readme and "CC BY-NC-SA" in readme
