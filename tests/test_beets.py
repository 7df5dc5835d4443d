"""The beets plugin against a real beets library in a temporary folder, driven through the
real ``beet`` command: ``beet import`` of files made here with ``moodscope.synth`` stores the
moods, ``beet ls`` queries them, ``beet write`` (and ``modify``) put them into the files
whenever they differ from the files', as beets does for its own fields; ``beet moodscope``
has beets' option names, one info line per item, errors as one ``error:`` line, and loads no
model when nothing is to do. No network: autotagging is off."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from library_audio import encode, set_metadata
from moodscope.demo import synth
from moodscope.inference.predictor import predict
from moodscope.library.tags import read_tags

pytest.importorskip("beets")

SR = 22050

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
    auto: {auto}
"""

PIECES = {  # title -> (demo piece, container)
    "Arpeggio": ("bright_arpeggio", "mp3"),
    "Pads": ("calm_pads", "flac"),
    "Riff": ("distorted_riff", "m4a"),
}


def _beet(root: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "BEETSDIR": str(root), "HOME": str(root)}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("beet")), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if ok:
        assert done.returncode == 0, done.stderr
    return done


def _library(
    tmp_path: Path, titles=tuple(PIECES), *, auto: bool = True, user_mood=None, model=None,
    ok: bool = True, autotag: bool = False,
):  # fmt: skip
    """A beets library (``import -A`` of synthesized files) -> (root, {title: source file},
    the import's output). The files carry the tags beets would otherwise write on the first
    `beet write` (album artist), so that a write happens only for what the plugin changed."""
    from mediafile import MediaFile

    root, incoming = tmp_path / "beets", tmp_path / "incoming"
    root.mkdir(parents=True)
    incoming.mkdir()
    config = CONFIG.format(root=root, auto="yes" if auto else "no")
    if autotag:  # singletons, found by tests/beets_catalogue
        config = config.replace("autotag: no", "autotag: yes\n    singletons: yes")
        config = config.replace(
            "plugins: moodscope",
            f"plugins: moodscope catalogue\n"
            f"pluginpath: {Path(__file__).with_name('beets_catalogue')}",
        )
    (root / "config.yaml").write_text(config)
    if model is not None:
        _use_model(root, model)
    sources = {}
    for title in titles:
        piece, ext = PIECES[title]
        y = synth.synthesize_piece(piece, duration=4.0, sr=SR)
        path = encode(incoming / f"{piece}.{ext}", y, SR)
        set_metadata(path, title=title, artist="Synth", mood=(user_mood or {}).get(title))
        media = MediaFile(str(path))
        media.albumartist = "Synth"
        media.save()
        sources[title] = path
    imported = _beet(root, "import", *([] if autotag else ["-A"]), str(incoming), ok=ok)
    _no_traceback(imported)
    return root, sources, imported.stdout + imported.stderr


@pytest.mark.slow
def test_an_import_that_writes_writes_the_moods(tmp_path):
    """An import that applies metadata (here from a stand-in for MusicBrainz) with
    ``import.write`` writes the moods with beets' own tags."""
    root, _, _ = _library(tmp_path, ("Arpeggio", "Riff"), autotag=True)
    for title, path in _paths(root).items():
        assert path.is_relative_to(root / "lib" / "Non-Album")  # applied, not as-is
        tags = read_tags(path)
        assert tags.mood == _attributes(root)[title]["mood"] and tags.tagged
    assert _beet(root, "write", "-p").stdout == ""


def _paths(root: Path) -> dict[str, Path]:
    out = _beet(root, "ls", "-f", "$title\t$path").stdout
    return {t: Path(p) for t, p in (line.split("\t") for line in out.splitlines())}


def _attributes(root: Path, query: str = "") -> dict[str, dict[str, str]]:
    names = ["mood", "moodscope_model", "moodscope_previous_mood"]
    fmt = "\t".join(["$title"] + [f"${n}" for n in names])
    out = _beet(root, "ls", "-f", fmt, *([query] if query else [])).stdout
    return {t: dict(zip(names, rest)) for t, *rest in (ln.split("\t") for ln in out.splitlines())}


def _no_traceback(done: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout


@pytest.mark.slow
def test_import_ls_and_write(tmp_path):
    root, sources, imported = _library(tmp_path, user_mood={"Arpeggio": "Happy"})
    expected = dict(zip(sources, predict(list(sources.values()))))

    # One info line per item at the default log level, though beets runs import stages at
    # WARNING.
    for title, want in expected.items():
        assert re.search(rf"^moodscope: .*{title}: .*{want.top_emotion} \(", imported, re.M)

    emotions = list(expected["Arpeggio"].emotions)
    fields = "$title\t$path\t$mood\t$moodscope_model\t$moodscope_previous_mood\t" + "\t".join(
        f"$mood_{e}" for e in emotions
    )
    items = {}
    for line in _beet(root, "ls", "-f", fields).stdout.splitlines():
        title, path, mood, model, previous, *shares = line.split("\t")
        items[title] = (Path(path), mood, model, previous, [float(s) for s in shares])
    assert set(items) == set(sources)
    for title, (path, mood, model, previous, shares) in items.items():
        want = expected[title]
        assert path.is_relative_to(root / "lib")
        assert mood == want.top_emotion and model == want.model
        assert shares == [round(v, 3) for v in want.emotions.values()]
        assert previous == ("Happy" if title == "Arpeggio" else "")

    def titles(*query: str) -> set[str]:
        return set(_beet(root, "ls", "-f", "$title", *query).stdout.split())

    for mood in {w.top_emotion for w in expected.values()}:
        assert titles(f"mood:{mood}") == {t for t, w in expected.items() if w.top_emotion == mood}

    # An as-is import leaves the files' tags alone (beets' rule); `beet write` then sees that
    # the items' moods differ from the files' and writes them, as for beets' own fields.
    assert not any(read_tags(path).tagged for path, *_ in items.values())
    pretend = _beet(root, "write", "-p").stdout
    for title in sources:
        assert re.search(rf"- {title}\n(  .*\n)*  mood: .*->", pretend), pretend
    _beet(root, "write")
    for title, (path, mood, model, _, shares) in items.items():
        tags = read_tags(path)
        assert tags.mood == mood and tags.model == model
        assert tags.emotions == dict(zip(emotions, shares))
        assert tags.previous_mood == (["Happy"] if title == "Arpeggio" else [])
    assert _beet(root, "write", "-p").stdout == ""  # the files now hold what the items do


@pytest.mark.slow
def test_modify_without_write_then_write(tmp_path):
    root, sources, _ = _library(tmp_path, ("Pads", "Riff"))
    _beet(root, "write")
    paths = _paths(root)
    assert {read_tags(p).mood for p in paths.values()} != {None}
    _beet(root, "modify", "-y", "-W", "mood=tension", "title:Pads")
    assert read_tags(paths["Pads"]).mood != "tension"  # -W: the file is left alone
    assert "mood:" in _beet(root, "write", "-p").stdout
    _beet(root, "write")
    assert read_tags(paths["Pads"]).mood == "tension"
    assert read_tags(paths["Riff"]).mood == _attributes(root)["Riff"]["mood"]
    assert _beet(root, "write", "-p").stdout == ""


@pytest.mark.slow
def test_command_options_pretend_quiet_write_nowrite(tmp_path):
    root, _, imported = _library(tmp_path, ("Pads",), auto=False)
    assert "moodscope" not in imported  # auto: no
    path = _paths(root)["Pads"]

    pretend = _beet(root, "moodscope", "-p")
    assert re.search(
        r"^moodscope: would set .*Pads: \w+ \([a-z ]+, 0\.\d\d\)$", pretend.stderr, re.M
    )
    assert _attributes(root)["Pads"]["mood"] == "" and not read_tags(path).tagged

    quiet = _beet(root, "moodscope", "-q", "-W", "-j", "1")
    assert quiet.stdout == quiet.stderr == ""
    mood = _attributes(root)["Pads"]["mood"]
    assert mood and not read_tags(path).tagged  # stored, not written (-W)

    again = _beet(root, "moodscope", "-w")  # done with this model: skipped, nothing written
    assert again.stderr == "" and not read_tags(path).tagged
    forced = _beet(root, "moodscope", "-f", "-w")
    assert re.search(rf"^moodscope: .*Pads: {mood} \(", forced.stderr, re.M)
    assert read_tags(path).mood == mood

    bad = _beet(root, "moodscope", "-j", "0", ok=False)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [
        "error: moodscope: --jobs must be at least 1, got 0"
    ]


def _use_model(root: Path, model: Path) -> None:
    config = root / "config.yaml"
    config.write_text(config.read_text() + f"    model: {model}\n")


@pytest.mark.slow
def test_a_missing_model_is_one_error_line(tmp_path):
    root, _, _ = _library(tmp_path, ("Pads",), auto=False)
    missing = tmp_path / "missing.ckpt"
    _use_model(root, missing)
    done = _beet(root, "moodscope", ok=False)
    _no_traceback(done)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1
    assert lines[0].startswith(f"error: moodscope: {missing}: no such checkpoint")


@pytest.mark.slow
def test_no_model_is_loaded_when_nothing_is_to_do(tmp_path):
    """A checkpoint that cannot be loaded: fine while there is nothing to predict, because
    nothing is loaded then; one error line once there is."""
    root, _, _ = _library(tmp_path, ("Pads",), auto=False)
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint" * 64)
    _use_model(root, broken)
    nothing = _beet(root, "moodscope", "-f", "title:nothing-is-called-this")
    assert nothing.stdout == nothing.stderr == ""
    done = _beet(root, "moodscope", "-f", ok=False)
    _no_traceback(done)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1
    assert lines[0].startswith(f"error: moodscope: {broken}: ")
    assert _attributes(root)["Pads"]["mood"] == ""


@pytest.mark.slow
def test_import_with_a_bad_model(tmp_path):
    """A model that is not there stops the import before it adds anything; one that does
    not load lets the import go on without moods. One error line each."""
    missing = tmp_path / "missing.ckpt"
    root, _, out = _library(tmp_path / "a", ("Pads",), model=missing, ok=False)
    assert re.findall(r"^error: .*$", out, re.M) == [
        f"error: moodscope: {missing}: no such checkpoint (No such file or directory)"
    ]
    assert _beet(root, "ls").stdout == ""

    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint" * 64)
    root, _, out = _library(tmp_path / "b", ("Pads", "Riff"), model=broken)
    errors = [line for line in out.splitlines() if str(broken) in line]
    assert len(errors) == 1 and errors[0].startswith(f"moodscope: {broken}: ")
    assert errors[0].endswith("; importing without moods")
    assert {t: a["mood"] for t, a in _attributes(root).items()} == {"Pads": "", "Riff": ""}
    assert all(p.is_relative_to(root / "lib") for p in _paths(root).values())


@pytest.mark.slow
def test_min_confidence_sets_the_mood_only_where_earned(tmp_path):
    root, _, _ = _library(tmp_path, auto=False, user_mood={"Pads": "Happy"})
    paths = _paths(root)
    predicted = dict(zip(paths, predict(list(paths.values()))))
    ranked = sorted(p.confidence for p in predicted.values())
    assert ranked[-2] < ranked[-1]
    threshold = f"{(ranked[-2] + ranked[-1]) / 2:.6f}"  # only the most confident earns one
    done = _beet(root, "moodscope", "-w", "--min-confidence", threshold)
    _no_traceback(done)
    assert done.stderr.count(f"no mood: confidence under {float(threshold)}") == 2
    out = _beet(root, "ls", "-f", "$title\t$mood\t$moodscope_confidence").stdout
    shown = {t: (m, c) for t, m, c in (line.split("\t") for line in out.splitlines())}
    for title, want in predicted.items():
        mood, confidence = shown[title]
        assert float(confidence) == pytest.approx(want.confidence, abs=5e-4)
        tags = read_tags(paths[title])
        assert tags.confidence == pytest.approx(want.confidence, abs=5e-4)
        if want.confidence >= float(threshold):
            assert mood == tags.mood == want.top_emotion
        else:  # not earned: the user's own mood, or none
            assert mood == (tags.mood or "") == ("Happy" if title == "Pads" else "")
    bad = _beet(root, "moodscope", "-f", "--min-confidence", "2", ok=False)
    assert bad.returncode == 1 and "--min-confidence is between 0 and 1, got 2" in bad.stderr


BEETS_FORMATS = ("wma", "wv", "mpc", "aifc", "dsf", "mp2", "m4b", "alac.m4a")
"""The formats beyond PIECES' that beets imports (tests/tag_formats.py makes them)."""


@pytest.mark.slow
def test_every_format_beets_imports_reads_and_writes_the_mood(tmp_path):
    """``beet import -A`` reads the mood ``moodscope tag`` wrote in each format (``beet ls -f
    '$mood'``), and ``beet modify`` writes a new one where moodscope reads it."""
    from mediafile import MediaFile

    import tag_formats
    from moodscope import EMOTIONS
    from moodscope.inference.predictor import Prediction
    from moodscope.library.tags import write_tags

    root, incoming = tmp_path / "beets", tmp_path / "incoming"
    root.mkdir()
    incoming.mkdir()
    (root / "config.yaml").write_text(CONFIG.format(root=root, auto="no"))
    written = {}
    for i, ext in enumerate(BEETS_FORMATS):
        path = tag_formats.make(incoming, ext, name=f"song{i}")
        tag_formats.set_user_metadata(path)
        media = MediaFile(str(path))
        media.title, media.artist, media.albumartist = ext, "Synth", "Synth"
        media.save()
        top = EMOTIONS[i % len(EMOTIONS)]
        emotions = {e: 0.3 if e == top else 0.7 / (len(EMOTIONS) - 1) for e in EMOTIONS}
        write_tags(path, Prediction(str(path), emotions=emotions, top_emotion=top, model="m@1"))
        written[ext] = top
    _no_traceback(_beet(root, "import", "-A", str(incoming)))
    assert _attributes(root) == {
        ext: {"mood": mood, "moodscope_model": "m@1", "moodscope_previous_mood": ""}
        for ext, mood in written.items()
    }
    _beet(root, "modify", "-y", "mood=power", "artist:Synth")
    paths = _paths(root)
    assert set(paths) == set(BEETS_FORMATS)
    assert {ext: read_tags(path).mood for ext, path in paths.items()} == dict.fromkeys(
        BEETS_FORMATS, "power"
    )


class _Item(dict):
    """The parts of a beets Item the plugin uses."""

    def __init__(self, path):
        super().__init__()
        self.filepath, self.written, self.stored = path, False, False

    def try_write(self):
        self.written = True

    def store(self):
        self.stored = True


def test_a_not_music_item_gets_no_mood(monkeypatch, tmp_path):
    """A prediction that says "not music" sets and writes nothing, in one info line."""
    import beets

    import moodscope.inference.predictor as predictor
    from beetsplug.moodscope import MoodscopePlugin

    beets.config.read(user=False, defaults=True)
    plugin = MoodscopePlugin()
    item = _Item(tmp_path / "hum.flac")
    silence = predictor.Prediction(
        str(item.filepath), emotions={}, model="m@1", music=False, not_music="digital silence"
    )
    monkeypatch.setattr(predictor, "load_model", lambda model: None)
    monkeypatch.setattr(predictor, "predict_iter", lambda paths, *a, **k: iter([silence]))
    lines = []
    monkeypatch.setattr(plugin._log, "info", lambda fmt, *args: lines.append(fmt.format(*args)))
    plugin.predict_items([item], write=True)
    assert dict(item) == {} and not item.written and not item.stored
    assert lines == [f"{item}: skipped: not music (digital silence)"]


def test_an_item_line_reads_like_beets_and_leads_with_the_confidence():
    from beets.library import Item

    from beetsplug.moodscope import item_line
    from moodscope.inference.predictor import Prediction

    calm = Prediction(path="/m/01.mp3", emotions={"calmness": 0.32, "tension": 0.1},
                      top_emotion="calmness", confidence=0.74)  # fmt: skip
    titled = Item(artist="Artist", album="Album", title="Title", path=b"/m/01.mp3")
    assert item_line(titled, calm) == "Artist - Album - Title: calmness (sure, 0.74)"
    untitled = Item(path=b"/m/untitled/01.mp3")  # its path, never " -  - : calmness"
    assert item_line(untitled, calm, pretend=True, before="Happy") == (
        "would set /m/untitled/01.mp3: Happy -> calmness (sure, 0.74)"
    )
    calm.confidence = None
    assert item_line(titled, calm).endswith(": calmness (not calibrated)")
