"""One answer per file: a corpus of bad and odd files, made here with moodscope's synthesiser
and ffmpeg, goes through the Python API, the ``predict`` CLI, the HTTP service, ``tag`` and
the beets plugin, and every front end gives the same outcome (ok / flagged / error, the same
error in the same words) and, where it predicts, the same numbers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from moodscope.demo import synth
from moodscope.demo.synth import synthesize_piece
from test_damaged import _flac_declaring_rate, cut, encode

pytestmark = pytest.mark.slow

SR = 22050


def _piece(name: str, seconds: float, seed: int = 0) -> np.ndarray:
    return synthesize_piece(name, duration=seconds, sr=SR, seed=seed)


def _id3_with_padding(path: Path, nbytes: int) -> None:
    """An ID3v2.4 tag of ``nbytes`` (a cover-sized padding) in front of ``path``'s audio."""
    size = nbytes - 10
    syncsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    path.write_bytes(b"ID3\x04\x00\x00" + syncsafe + bytes(size) + path.read_bytes())


def _video(path: Path, y: np.ndarray) -> Path:
    wav = path.with_suffix(".src.wav")
    sf.write(wav, y, SR)
    subprocess.run(
        [shutil.which("ffmpeg"), "-v", "error", "-nostdin", "-y",
         "-f", "lavfi", "-i", f"testsrc=size=160x120:rate=10:duration={len(y) / SR}",
         "-i", str(wav), "-c:v", "mpeg4", "-c:a", "aac", "-shortest", str(path)],
        check=True, timeout=120,
    )  # fmt: skip
    wav.unlink()
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The files, and what each must give: ``ok``, ``flagged`` (predicted, truncated) or
    ``error``. Names end in audio extensions so a folder scan picks every one up."""
    if shutil.which("ffmpeg") is None:
        from conftest import _required

        _required("needs ffmpeg: apt-get install ffmpeg")
    folder = tmp_path_factory.mktemp("corpus")
    src = tmp_path_factory.mktemp("sources")
    song = _piece("bright_arpeggio", 20.0)
    # Whole files in odd shapes.
    encode(folder / "whole.mp3", _piece("calm_pads", 9.0, 1))
    sf.write(folder / "silent.wav", synth.silence(6.0, sr=SR), SR)
    big = encode(folder / "big-header.mp3", _piece("distorted_riff", 9.0, 2))
    _id3_with_padding(big, 2 * 2**20)  # 2 MB of tag before 9 s of audio
    _video(folder / "video-with-audio.mp4", _piece("slow_minor_line", 9.0, 3))
    # Cut short: each container still declares 20 s.
    for ext, args in ((".mp3", ()), (".flac", ()), (".ogg", ()), (".wav", ()), (".aiff", ()),
                      (".m4a", ("-movflags", "+faststart"))):  # fmt: skip
        whole = encode(src / f"song{ext}", song, SR, *args)
        cut(whole, 0.45, f"truncated{ext}").replace(folder / f"truncated{ext}")
    moov_last = encode(src / "index-last.m4a", song)  # ffmpeg's default: the index at the end
    cut(moov_last, 0.5, "truncated-index.m4a").replace(folder / "truncated-index.m4a")
    lame = encode(src / "download.mp3", _piece("calm_pads", 60.0))
    cut(lame, 20_000, "partial-download.mp3").replace(folder / "partial-download.mp3")
    # Not audio, or audio that cannot be used.
    (folder / "empty.mp3").write_bytes(b"")
    (folder / "text.mp3").write_text("these are my notes, not a song\n" * 30)
    (folder / "random.flac").write_bytes(np.random.default_rng(7).bytes(200_000))
    sf.write(folder / "short.wav", _piece("calm_pads", 1.0), SR)
    nan = _piece("calm_pads", 5.0)
    nan[1000] = np.nan
    sf.write(folder / "nan.wav", nan, SR, subtype="FLOAT")
    (folder / "midi.aiff").write_bytes(b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x00\x60" * 50)
    sf.write(src / "8hz.wav", synth.noise(50_000 / SR, sr=SR, amplitude=0.1), 8)
    shutil.copy(src / "8hz.wav", folder / "8hz.wav")
    sf.write(src / "x.flac", song, SR)
    shutil.copy(_flac_declaring_rate(src / "x.flac", 1), folder / "1hz.flac")
    return folder


EXPECTED = {
    "whole.mp3": "ok", "silent.wav": "ok", "big-header.mp3": "ok", "video-with-audio.mp4": "ok",
    "truncated.mp3": "flagged", "truncated.flac": "flagged", "truncated.ogg": "flagged",
    "truncated.wav": "flagged", "truncated.aiff": "flagged", "truncated.m4a": "flagged",
    "truncated-index.m4a": "error", "partial-download.mp3": "error", "empty.mp3": "error",
    "text.mp3": "error", "random.flac": "error", "short.wav": "error", "nan.wav": "error",
    "midi.aiff": "error", "8hz.wav": "error", "1hz.flac": "error",
}  # fmt: skip


def _problem(name: str, message: str) -> str:
    """A one-line error without the path it starts with (front ends name files their way)."""
    assert "\n" not in message and "Traceback" not in message
    head, sep, rest = message.partition(": ")
    assert sep and head.endswith(name), message
    return rest


def _outcome(name: str, d: dict) -> tuple:
    """``(kind, error kind or problem, silent)`` of one output dict, and its shares."""
    if "error" in d:
        return ("error", _problem(name, d["error"]), None), None
    kind = "flagged" if d["truncated"] else "ok"
    return (kind, None, d["silent"]), d["emotions"]


def _same_shares(a: dict, b: dict, tol: float) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == pytest.approx(b[key], abs=tol), key


@pytest.fixture(scope="module")
def api(corpus):
    from moodscope.inference.predictor import predict

    results = predict(corpus, use_cache=False)
    assert sorted(Path(r.path).name for r in results) == sorted(EXPECTED)
    out = {}
    for r in results:
        name = Path(r.path).name
        d = r.to_dict()
        out[name] = (*_outcome(name, d), r.error_kind)
    return out


def test_the_api_gives_what_each_file_is(api):
    got = {name: outcome[0] for name, (outcome, _, _) in api.items()}
    assert got == EXPECTED
    assert api["silent.wav"][0][2] is True
    kinds = {name: kind for name, (_, _, kind) in api.items() if kind is not None}
    assert kinds["text.mp3"] == kinds["random.flac"] == kinds["midi.aiff"] == "not_audio"
    for name in ("empty.mp3", "short.wav", "nan.wav", "8hz.wav", "1hz.flac",
                 "partial-download.mp3", "truncated-index.m4a"):  # fmt: skip
        assert kinds[name] == "unusable", name
    assert "truncated" in api["partial-download.mp3"][0][1]
    assert "'moov' box" in api["truncated-index.m4a"][0][1]


def test_the_predict_cli_agrees(api, corpus, tmp_path, capsys):
    from test_cli import run

    out = tmp_path / "out.jsonl"
    code, _, err = run(["predict", corpus, "--format", "jsonl", "--output", out], capsys)
    assert code == 1 and "Traceback" not in err
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == len(EXPECTED)
    for d in lines:
        name = Path(d["path"]).name
        outcome, shares = _outcome(name, d)
        assert outcome == api[name][0], name
        if shares is not None:
            _same_shares(shares, api[name][1], 1e-5)


def test_the_service_agrees(api, corpus, tmp_path):
    from fastapi.testclient import TestClient

    from moodscope.service.app import create_app

    status = {"not_audio": 415, "unusable": 422}
    app = create_app(workers=1, queue=4, upload_dir=str(tmp_path))
    with TestClient(app, base_url="http://127.0.0.1") as client:  # an allowed host
        for name, (outcome, shares, kind) in api.items():
            data = (corpus / name).read_bytes()
            response = client.post("/v1/predict", files={"file": (name, data)})
            if outcome[0] == "error":
                assert response.status_code == status[kind], (name, response.text)
                assert _problem(name, response.json()["detail"]) == outcome[1]
                continue
            assert response.status_code == 200, (name, response.text)
            got, got_shares = _outcome(name, response.json())
            assert got == outcome, name
            _same_shares(got_shares, shares, 1e-5)


def test_tag_agrees_and_leaves_flagged_files_alone(api, corpus, tmp_path):
    from moodscope.library.index import FAILED, SKIPPED, TAGGED, tag_files
    from moodscope.library.tags import read_tags

    copy = tmp_path / "music"
    shutil.copytree(corpus, copy)
    outcomes = {Path(o.path).name: o for o in tag_files(copy, db=tmp_path / "index.sqlite")}
    assert sorted(outcomes) == sorted(EXPECTED)
    for name, (outcome, shares, _) in api.items():
        o = outcomes[name]
        p = o.prediction
        if outcome[0] == "error":
            assert o.status == FAILED and not p.ok
            assert _problem(name, o.error) == outcome[1]
            continue
        got, got_shares = _outcome(name, p.to_dict())
        assert got == outcome, name
        _same_shares(got_shares, shares, 1e-9)
        if outcome[0] == "flagged":  # predicted, flagged, and not written into the file
            assert o.status == FAILED and "is truncated" in o.error, name
            assert not read_tags(copy / name).tagged
            assert o.row.truncated and o.row.tagged_at is None
        elif not p.music:  # silence: no mood, nothing written, and the reason said
            assert o.status == SKIPPED and o.reason.startswith("not music ("), name
            assert not read_tags(copy / name).tagged
        else:
            assert o.status == TAGGED, (name, o.error)
    # allow_damaged: the truncated files' moods go in, from the index, without predicting.
    again = {
        Path(o.path).name: o
        for o in tag_files(copy, db=tmp_path / "index.sqlite", allow_damaged=True)
    }
    for name, expected in EXPECTED.items():
        if name in ("truncated.wav", "truncated.aiff"):  # a tag after a cut data chunk: audio
            assert again[name].status == FAILED and "inside its data chunk" in again[name].error
            assert not read_tags(copy / name).tagged
        elif expected == "flagged":
            assert again[name].status == TAGGED, (name, again[name].error)
            shares = api[name][1]
            assert read_tags(copy / name).mood == max(shares, key=shares.get), name


BEETS_CONFIG = """\
directory: {root}/lib
library: {root}/library.db
plugins: moodscope
import:
    copy: no
    write: no
    autotag: no
    quiet: yes
    log: {root}/import.log
moodscope:
    auto: yes
"""


def test_beets_agrees(api, corpus, tmp_path):
    pytest.importorskip("beets")
    from moodscope.emotions import EMOTIONS

    root, copy = tmp_path / "beets", tmp_path / "music"
    root.mkdir()
    shutil.copytree(corpus, copy)
    (root / "config.yaml").write_text(BEETS_CONFIG.format(root=root))
    env = {**os.environ, "BEETSDIR": str(root), "HOME": str(root)}
    beet = str(Path(sys.executable).with_name("beet"))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([beet, *args], env=env, capture_output=True, text=True, timeout=600)

    imported = run("import", "-A", str(copy))
    assert imported.returncode == 0, imported.stderr
    assert "Traceback" not in imported.stderr
    fields = "$path\t$mood\t" + "\t".join(f"$mood_{e}" for e in EMOTIONS)
    items = {}
    for line in run("ls", "-f", fields).stdout.splitlines():
        path, mood, *shares = line.split("\t")
        items[Path(path).name] = (mood, shares)
    logged = imported.stderr + imported.stdout
    flagged = {n for n, e in EXPECTED.items() if e == "flagged"}
    assert flagged <= set(items), sorted(flagged - set(items))  # beets reads them all
    for name, (outcome, shares, _) in api.items():
        if outcome[0] == "ok" and not shares:  # not music (the silent file): no mood
            assert name not in items or items[name][0] == "", name
            continue
        if outcome[0] == "ok":
            mood, got = items[name]
            assert mood == max(shares, key=shares.get), name
            _same_shares(dict(zip(EMOTIONS, map(float, got))), shares, 6e-4)
            continue
        # Flagged and failed files get no mood; the plugin's line says why, in the same
        # words (a file beets' own reader refuses is never handed to the plugin).
        assert name not in items or items[name][0] == "", name
        if name in items:
            problem = "is truncated" if outcome[0] == "flagged" else outcome[1]
            assert f"{copy / name}: {problem}" in logged, name
