"""The distribution: a wheel built as a user builds it carries the licences (the code's MIT,
musicnn's ISC, the shipped model's non-commercial terms) and says so in its metadata."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
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


@pytest.mark.slow
def test_predicting_needs_no_torch_and_research_is_an_extra(wheel):
    """``pip install .`` brings no PyTorch: torch (and training's libraries) only in the
    ``research`` extra; the ONNX network that predicting runs is in the wheel."""
    requires = _metadata(wheel).get_all("Requires-Dist")
    core = [r for r in requires if "extra ==" not in r]
    research = [r for r in requires if "extra == \"research\"" in r]
    assert any(r.startswith("onnxruntime") for r in core)
    for name in ("torch", "scikit-learn", "imbalanced-learn", "skops", "pandas"):
        assert not any(r.startswith(name) for r in core), name
        assert any(r.startswith(name) for r in research), name
    names = wheel.namelist()
    for model in ("MSD_musicnn", "MTT_musicnn"):
        assert f"moodscope/musicnn/weights/{model}.onnx" in names


# A process in which `import torch` fails, as where the research extra is not installed.
_NO_TORCH = """
import sys

class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"No module named {name!r} (blocked by the test)")
        return None

sys.meta_path.insert(0, _NoTorch())
"""


def _run_without_torch(code: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _NO_TORCH + code, *args],
        capture_output=True, text=True, timeout=300, cwd=cwd,
    )  # fmt: skip


def test_predict_runs_without_torch(tmp_path):
    """The API and the CLI predict a synthetic clip where `import torch` fails, and torch is
    never imported by a prediction."""
    import soundfile as sf

    from moodscope.demo.synth import DEMO_PIECES, SAMPLE_RATE, synthesize_piece

    y = synthesize_piece(next(iter(DEMO_PIECES)), duration=12.0)  # music, not a steady tone
    clip = tmp_path / "clip.wav"
    sf.write(clip, y.astype(np.float32), SAMPLE_RATE)
    api = _run_without_torch(
        """
import moodscope
(p,) = moodscope.predict(sys.argv[1], use_cache=False)
assert p.error is None and p.top_emotion in p.emotions, p
print(p.top_emotion, p.precision, "torch" in sys.modules)
""",
        str(clip),
        cwd=tmp_path,
    )
    assert api.returncode == 0, api.stderr
    top, precision, torch_loaded = api.stdout.split()
    assert precision == "float32" and torch_loaded == "False"
    cli = _run_without_torch(
        """
from moodscope.cli import main
try:
    main(["predict", sys.argv[1], "--format", "json"])
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
assert "torch" not in sys.modules
""",
        str(clip),
        cwd=tmp_path,
    )
    assert cli.returncode == 0, cli.stderr
    assert f'"{top}"' in cli.stdout


def test_research_commands_name_the_extra_without_torch(tmp_path):
    done = _run_without_torch(
        """
from moodscope.cli import main
main(["train", "--data", ".", "--out", "run"])
""",
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: moodscope train needs the research extra: pip install '.[research]'"
    )
