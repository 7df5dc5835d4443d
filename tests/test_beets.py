"""The beets plugin against a real beets library in a temporary folder: ``beet import`` of
files made here stores the moods, ``beet ls`` queries them, ``beet moodscope`` writes them
into the files in the fields ``moodscope tag`` writes. No network: autotagging is off."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SR, chord_signal
from library_audio import encode, set_metadata
from moodscope.inference.predictor import predict
from moodscope.library.tags import read_tags

pytest.importorskip("beets")

CONFIG = """\
directory: {root}/lib
library: {root}/library.db
plugins: moodscope
import:
    copy: yes
    write: yes
    autotag: no
    quiet: yes
    log: {root}/import.log
moodscope:
    auto: yes
"""


def _beet(root: Path, *args: str) -> str:
    env = {**os.environ, "BEETSDIR": str(root), "HOME": str(root)}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("beet")), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
def test_beets_import_ls_and_write(tmp_path):
    root = tmp_path / "beets"
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    root.mkdir()
    (root / "config.yaml").write_text(CONFIG.format(root=root))
    t = np.arange(int(4.0 * SR)) / SR
    sources = {
        "Chord": encode(incoming / "chord.mp3", chord_signal(4.0), SR),
        "Low": encode(incoming / "low.flac", (0.3 * np.sin(2 * np.pi * 110 * t)), SR),
        "Noise": encode(
            incoming / "noise.m4a",
            0.2 * np.random.default_rng(0).standard_normal(len(t)).astype(np.float32),
            SR,
        ),
    }
    for title, path in sources.items():
        set_metadata(path, title=title, artist="Synth", mood="Happy" if title == "Chord" else None)
    expected = {title: p for title, p in zip(sources, predict(list(sources.values())))}

    _beet(root, "import", "-A", str(incoming))
    fields = "$title\t$path\t$mood\t$moodscope_model\t$moodscope_previous_mood\t" + "\t".join(
        f"$mood_{e}" for e in expected["Chord"].emotions
    )
    items = {}
    for line in _beet(root, "ls", "-f", fields).splitlines():
        title, path, mood, model, previous, *shares = line.split("\t")
        items[title] = (path, mood, model, previous, [float(s) for s in shares])
    assert set(items) == set(sources)
    for title, (path, mood, model, previous, shares) in items.items():
        want = expected[title]
        assert Path(path).is_relative_to(root / "lib")
        assert mood == want.top_emotion and model == want.model
        assert shares == [round(v, 3) for v in want.emotions.values()]
        assert previous == ("Happy" if title == "Chord" else "")

    def titles(*query: str) -> set[str]:
        return set(_beet(root, "ls", "-f", "$title", *query).split())

    for mood in {w.top_emotion for w in expected.values()}:
        assert titles(f"mood:{mood}") == {t for t, w in expected.items() if w.top_emotion == mood}
    tension = sorted(round(w.emotions["tension"], 3) for w in expected.values())
    cut = (tension[0] + tension[1]) / 2
    assert titles(f"mood_tension:{cut}..") == {
        t for t, w in expected.items() if round(w.emotions["tension"], 3) >= cut
    }
    assert len(titles(f"mood_tension:{cut}..")) == 2

    # An as-is import leaves the files' tags alone (beets' rule); `beet moodscope` predicts
    # again and, as import.write says, writes them.
    assert not any(read_tags(path).tagged for path, *_ in items.values())
    _beet(root, "moodscope", "-f")
    for title, (path, mood, model, _, shares) in items.items():
        tags = read_tags(path)
        assert tags.mood == mood and tags.model == model
        assert list(tags.emotions.values()) and tags.emotions == {
            e: s for e, s in zip(expected[title].emotions, shares)
        }
        assert tags.previous_mood == (["Happy"] if title == "Chord" else [])
