"""Every format a music library holds: one short synthetic track encoded by ffmpeg into every
audio codec and container it can write here, and odd files built by hand (wrong rates, empty
data chunks, compressed WAV formats, zero channels, cut headers, piped and chained streams,
bytes that are not audio). Each is found by the folder scan and gets a prediction or a
one-line error naming the file in words, the same through the API and the CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from moodscope.audio.decode import AUDIO_EXTENSIONS, load_audio
from moodscope.demo.synth import synthesize_piece
from moodscope.errors import AudioError, NotAudioError

pytestmark = pytest.mark.slow

RATE = 44100
SECONDS = 4.0

# (file name, ffmpeg output options): one per codec and container ffmpeg writes here.
ENCODED = [
    ("lame.mp3", "-c:a libmp3lame -b:a 128k"),
    ("lame-vbr.mp3", "-c:a libmp3lame -q:a 5"),
    ("lame-no-xing.mp3", "-c:a libmp3lame -b:a 96k -write_xing 0"),
    ("shine.mp3", "-c:a libshine"),
    ("layer2.mp2", "-c:a mp2"),
    ("twolame.mp2", "-c:a libtwolame"),
    ("layer2.mpa", "-c:a mp2 -f mp2"),
    ("adts.aac", "-c:a aac -f adts"),
    ("aac.m4a", "-c:a aac"),
    ("audiobook.m4b", "-c:a aac -f ipod"),
    ("aac.mp4", "-c:a aac"),
    ("aac.3gp", "-c:a aac -ar 16000 -ac 1"),
    ("mp3-in.mp4", "-c:a libmp3lame"),
    ("alac.m4a", "-c:a alac"),
    ("alac.caf", "-c:a alac"),
    ("flac.flac", "-c:a flac"),
    ("flac-in-ogg.oga", "-c:a flac -f ogg"),
    ("vorbis.ogg", "-c:a libvorbis"),
    ("opus.opus", "-c:a libopus"),
    ("opus-in.ogg", "-c:a libopus -f ogg"),
    ("speex.spx", "-c:a libspeex -ar 16000 -ac 1 -f ogg"),
    ("s16.wav", "-c:a pcm_s16le"),
    ("s24.wav", "-c:a pcm_s24le"),
    ("s32.wav", "-c:a pcm_s32le"),
    ("f32.wav", "-c:a pcm_f32le"),
    ("f64.wav", "-c:a pcm_f64le"),
    ("u8.wav", "-c:a pcm_u8"),
    ("alaw.wav", "-c:a pcm_alaw -ar 8000 -ac 1"),
    ("mulaw.wav", "-c:a pcm_mulaw -ar 8000 -ac 1"),
    ("adpcm-ms.wav", "-c:a adpcm_ms"),
    ("adpcm-ima.wav", "-c:a adpcm_ima_wav"),
    ("gsm.wav", "-c:a libgsm_ms -ar 8000 -ac 1"),
    ("g722.wav", "-c:a g722 -ar 16000 -ac 1"),
    ("g726.wav", "-c:a g726 -ar 8000 -ac 1"),
    ("mp3-in.wav", "-c:a libmp3lame -f wav"),
    ("rf64.wav", "-c:a pcm_s16le -rf64 always"),
    ("wave64.w64", "-c:a pcm_s16le -f w64"),
    ("s16.aiff", "-c:a pcm_s16be"),
    ("s24.aif", "-c:a pcm_s24be -f aiff"),
    ("alaw.aifc", "-c:a pcm_alaw -ar 8000 -ac 1 -f aiff"),
    ("ima.aifc", "-c:a adpcm_ima_qt -f aiff"),
    ("pcm.caf", "-c:a pcm_s16le"),
    ("ima.caf", "-c:a adpcm_ima_qt"),
    ("s16.au", "-c:a pcm_s16be"),
    ("mulaw.snd", "-c:a pcm_mulaw -ar 8000 -ac 1 -f au"),
    ("wmav1.wma", "-c:a wmav1"),
    ("wmav2.wma", "-c:a wmav2"),
    ("wmav2.asf", "-c:a wmav2"),
    ("wavpack.wv", "-c:a wavpack"),
    ("tta.tta", "-c:a tta"),
    ("ac3.ac3", "-c:a ac3"),
    ("eac3.eac3", "-c:a eac3"),
    ("dts.dts", "-c:a dca -strict -2 -ar 48000"),
    ("flac.mka", "-c:a flac"),
    ("pcm.mka", "-c:a pcm_s16le"),
    ("opus.webm", "-c:a libopus"),
    ("vorbis.weba", "-c:a libvorbis -f webm"),
]

# Named directly (not library extensions): ffmpeg's other audio codecs, raw and contained.
ODD_CODECS = [
    ("raw.gsm", "-c:a libgsm -ar 8000 -ac 1 -f gsm"),
    ("creative.voc", "-c:a pcm_u8 -ac 1"),
    ("real144.ra", "-c:a real_144 -ar 8000 -ac 1 -f rm"),
    ("nelly.flv", "-c:a nellymoser -ac 1"),
    ("truehd.mka", "-c:a truehd -strict -2 -ar 48000"),
    ("mlp.mka", "-c:a mlp -strict -2 -ar 48000"),
    ("g723.wav", "-c:a g723_1 -ar 8000 -ac 1 -b:a 6300"),
    ("codec2.mka", "-c:a libcodec2 -ar 8000 -ac 1"),
    ("adx.adx", "-c:a adpcm_adx"),
    ("sbc.sbc", "-c:a sbc -ar 48000"),
]


def _ffmpeg() -> str:
    found = shutil.which("ffmpeg")
    if found is None:
        from conftest import _required

        _required("needs ffmpeg: apt-get install ffmpeg")
    return found


def _encode(src: Path, out: Path, options: str, *, pipe: bool = False) -> Path:
    args = [_ffmpeg(), "-v", "error", "-nostdin", "-y", "-i", str(src), *options.split()]
    if pipe:  # written to a pipe: no seeking back to fill in lengths
        data = subprocess.run([*args, "pipe:1"], check=True, capture_output=True, timeout=60)
        out.write_bytes(data.stdout)
    else:
        subprocess.run([*args, str(out)], check=True, capture_output=True, timeout=60)
    return out


def _wav_header(fmt_tag: int, channels: int, rate: int, bits: int, data: bytes) -> bytes:
    align = max(1, channels * bits // 8)
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, (rate * align) & 0xFFFFFFFF, align, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _aiff_declaring(rate_exponent: int, pcm: bytes) -> bytes:
    """An AIFF whose 80-bit sample rate has the biased exponent ``rate_exponent``."""
    frames = len(pcm) // 2
    comm = struct.pack(">hIh", 1, frames, 16) + struct.pack(">HQ", rate_exponent, 1 << 63)
    ssnd = struct.pack(">II", 0, 0) + pcm
    body = b"AIFF" + b"COMM" + struct.pack(">I", len(comm)) + comm
    body += b"SSND" + struct.pack(">I", len(ssnd)) + ssnd
    return b"FORM" + struct.pack(">I", len(body)) + body


def _dsd_bits(seconds: float, rate: int = 2_822_400) -> np.ndarray:
    """One channel of 1-bit DSD of a 440 Hz tone: a first-order sigma-delta, whose bits are
    the steps of the running sum of the signal (shifted to [0, 1]) past each integer."""
    n = int(seconds * rate) // 8 * 8
    bits, carry = np.empty(n, np.uint8), 0.0
    for at in range(0, n, 1 << 20):
        t = np.arange(at, min(n, at + (1 << 20))) / rate
        level = carry + np.cumsum(0.5 + 0.25 * np.sin(2 * np.pi * 440 * t))
        steps = np.floor(level)
        bits[at : at + len(t)] = np.diff(steps, prepend=np.floor(carry)).astype(np.uint8)
        carry = level[-1] - steps[-1]
    return bits


def _dsf(bits: np.ndarray, rate: int = 2_822_400) -> bytes:
    block = 4096
    data = np.packbits(bits, bitorder="little").tobytes()
    data += bytes(-len(data) % block)
    fmt = b"fmt " + struct.pack("<QIIIIIIQII", 52, 1, 0, 1, 1, rate, 1, len(bits), block, 0)
    chunk = b"data" + struct.pack("<Q", 12 + len(data)) + data
    total = 28 + len(fmt) + len(chunk)
    return b"DSD " + struct.pack("<QQQ", 28, total, 0) + fmt + chunk


def _dff(bits: np.ndarray, rate: int = 2_822_400) -> bytes:
    data = np.packbits(bits, bitorder="big").tobytes()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return kind + struct.pack(">Q", len(body)) + body + bytes(len(body) & 1)

    prop = b"SND " + chunk(b"FS  ", struct.pack(">I", rate))
    prop += chunk(b"CHNL", struct.pack(">H", 1) + b"C   ") + chunk(b"CMPR", b"DSD \x00")
    body = b"DSD " + chunk(b"FVER", struct.pack(">I", 0x01050000))
    body += chunk(b"PROP", prop) + chunk(b"DSD ", data)
    return b"FRM8" + struct.pack(">Q", len(body)) + body


def build_corpus(folder: Path, work: Path) -> dict[str, str]:
    """Write the corpus into ``folder``; return what each file must give: ``"ok"``, or
    ``"error"``, or ``"not audio"`` (an error of the not-audio kind)."""
    y = synthesize_piece("bright_arpeggio", duration=SECONDS, sr=RATE)
    stereo = np.stack([y, 0.8 * y], axis=1)
    src = work / "track.wav"
    sf.write(src, stereo, RATE, subtype="PCM_16")
    expected: dict[str, str] = {}
    for name, options in ENCODED + ODD_CODECS:
        try:
            _encode(src, folder / name, options)
        except subprocess.CalledProcessError:  # an encoder this ffmpeg lacks
            (folder / name).unlink(missing_ok=True)
            continue
        expected[name] = "ok"
    # Streams written to a pipe: lengths left unknown (RIFF size 0xFFFFFFFF, no FLAC total).
    _encode(src, folder / "piped.wav", "-c:a pcm_s16le -f wav", pipe=True)
    _encode(src, folder / "piped.flac", "-c:a flac -f flac", pipe=True)
    _encode(src, folder / "piped.wv", "-c:a wavpack -f wv", pipe=True)
    # Two Ogg files joined (a stream recording, cat a.ogg b.ogg).
    one = _encode(src, work / "one.ogg", "-c:a libvorbis")
    two = _encode(src, work / "two.ogg", "-c:a libvorbis -ar 22050 -ac 1")
    (folder / "chained.ogg").write_bytes(one.read_bytes() + two.read_bytes())
    three = _encode(src, work / "three.opus", "-c:a libopus")
    (folder / "chained.opus").write_bytes(three.read_bytes() + three.read_bytes())
    # An ID3 tag in front of a FLAC (what some taggers do).
    flac = (folder / "flac.flac").read_bytes()
    tag = b"ID3\x04\x00\x00\x00\x00\x00\x0a" + b"\x00" * 10
    (folder / "id3-in-front.flac").write_bytes(tag + flac)
    # DSD, built by hand (ffmpeg has no DSD encoder).
    bits = _dsd_bits(SECONDS)
    (folder / "dsd.dsf").write_bytes(_dsf(bits))
    (folder / "dsd.dff").write_bytes(_dff(bits))
    expected.update({n: "ok" for n in ("piped.wav", "piped.flac", "piped.wv", "chained.ogg",
                                         "chained.opus", "id3-in-front.flac", "dsd.dsf",
                                         "dsd.dff")})  # fmt: skip
    pcm = (np.clip(y, -1, 1) * 20000).astype("<i2").tobytes()
    hand = {
        # Wrong rates.
        "8hz.wav": (_wav_header(1, 1, 8, 16, pcm), "error"),
        "4ghz.wav": (_wav_header(1, 1, 0xFFFFFFFF, 16, pcm), "error"),
        "zero-rate.wav": (_wav_header(1, 1, 0, 16, pcm), "error"),
        "absurd-rate.aiff": (_aiff_declaring(0x7FFE, pcm), "error"),
        "tiny-rate.aiff": (_aiff_declaring(1, pcm), "error"),
        # Empty data chunks, compressed formats with and without data.
        "empty-data.wav": (_wav_header(1, 2, RATE, 16, b""), "error"),
        "gsm-empty.wav": (_wav_header(0x31, 1, 8000, 0, b""), "error"),
        "adpcm-empty.wav": (_wav_header(0x02, 1, RATE, 4, b""), "error"),
        "unknown-codec.wav": (_wav_header(0x7777, 1, RATE, 16, pcm), "error"),
        "zero-channels.wav": (_wav_header(1, 0, RATE, 16, pcm), "error"),
        "zero-bits.wav": (_wav_header(1, 1, RATE, 0, pcm), "error"),
        # Cut headers.
        "cut-header.wav": (_wav_header(1, 1, RATE, 16, pcm)[:30], "error"),
        "cut-header.flac": (flac[:40], "error"),
        "cut-header.ogg": ((folder / "vorbis.ogg").read_bytes()[:50], "error"),
        "cut-header.m4a": ((folder / "aac.m4a").read_bytes()[:60], "error"),
        "cut-header.wma": ((folder / "wmav2.wma").read_bytes()[:100], "error"),
        "cut-header.wv": ((folder / "wavpack.wv").read_bytes()[:20], "error"),
        "cut-header.dsf": (_dsf(bits)[:60], "error"),
        # Bytes that are not audio, whatever their name.
        "raw-pcm.mp3": (pcm, "not audio"),
        "raw-pcm.wav": (pcm, "not audio"),
        "program.mp3": (Path(sys.executable).read_bytes()[:200_000], "not audio"),
        "zeros.flac": (bytes(100_000), "not audio"),
        "notes.ogg": (b"these are my notes, not a song\n" * 40, "not audio"),
        "song.mid.mp3": (b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x00\x60" + bytes(500), "not audio"),
        "fake.ofr": (b"OFR " + bytes(2000), "error"),
    }
    for name, (data, outcome) in hand.items():
        (folder / name).write_bytes(data)
        expected[name] = outcome
    if ("aac.mp4" in expected) and shutil.which("ffmpeg"):
        subprocess.run(
            [_ffmpeg(), "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
             "testsrc=size=64x48:rate=5:duration=4", "-c:v", "mpeg4", "-f", "mp4",
             str(folder / "video-only.mp3")],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        expected["video-only.mp3"] = "not audio"
    return expected


CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception)\b|Traceback|errno|Errno")


def _check_message(name: str, message: str) -> None:
    """One line, naming the file, in words: no exception class name, no decoder jargon."""
    assert "\n" not in message, message
    assert name in message, message
    assert not CLASS_NAME.search(message), message
    for misleading in ("possibly a pipe", "frames must be specified", "Numerical result",
                       "Unspecified internal error", "struct"):  # fmt: skip
        assert misleading not in message, message


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("formats")
    work = tmp_path_factory.mktemp("formats-work")
    return folder, build_corpus(folder, work)


def test_the_corpus_holds_every_library_format(corpus):
    folder, expected = corpus
    made = {Path(n).suffix for n in expected}
    # What ffmpeg here cannot write (APE, TAK, Musepack, OptimFROG encoders) is not asked.
    for ext in (".mp3", ".mp2", ".aac", ".m4a", ".m4b", ".mp4", ".3gp", ".flac", ".ogg", ".oga",
                ".opus", ".spx", ".wav", ".w64", ".aiff", ".aifc", ".caf", ".au", ".snd",
                ".wma", ".asf", ".wv", ".tta", ".dsf", ".dff", ".ac3", ".eac3", ".mka",
                ".webm"):  # fmt: skip
        assert ext in made, ext
        assert ext in AUDIO_EXTENSIONS, ext


@pytest.fixture(scope="module")
def outcomes(corpus) -> dict[str, tuple[str, str | None]]:
    """Each file's outcome through ``load_audio``: ("ok", None) or (kind, message)."""
    folder, expected = corpus
    out = {}
    for name in expected:
        try:
            y = load_audio(folder / name)
        except NotAudioError as exc:
            out[name] = ("not audio", str(exc))
        except AudioError as exc:
            out[name] = ("error", str(exc))
        else:
            assert y.dtype == np.float32 and np.isfinite(y).all()
            out[name] = ("ok", f"{len(y) / 22050:.2f}")
    return out


def test_every_file_decodes_or_says_why_in_words(corpus, outcomes):
    folder, expected = corpus
    wrong = {}
    for name, want in expected.items():
        got, message = outcomes[name]
        if got != "ok":
            _check_message(name, message)
        if got != want:
            wrong[name] = (want, got, message)
    assert wrong == {}


def test_what_decodes_is_the_track(corpus, outcomes):
    """Every codec gives about the track's length (DSD: the hand-built 4 s; a chained file:
    both parts)."""
    folder, expected = corpus
    for name, (got, seconds) in outcomes.items():
        if got != "ok":
            continue
        want = 2 * SECONDS if name.startswith("chained") else SECONDS
        assert abs(float(seconds) - want) < 0.35, (name, seconds)


@pytest.mark.slow
def test_the_api_and_the_cli_agree_file_by_file(corpus, outcomes, tmp_path):
    """The folder scan finds every library file; ``predict`` gives each a prediction or one
    line naming it; the CLI says the same, line for line."""
    from moodscope.inference.predictor import predict

    folder, expected = corpus
    scanned = predict(folder, use_cache=False)
    library = {n for n in expected if Path(n).suffix.lower() in AUDIO_EXTENSIONS}
    assert {Path(r.path).name for r in scanned} == library
    others = [folder / n for n in expected if n not in library]
    results = {Path(r.path).name: r for r in [*scanned, *predict(others, use_cache=False)]}
    for name, r in results.items():
        want = expected[name]
        if want == "ok":
            assert r.ok, r.error
        else:
            assert not r.ok, name
            _check_message(name, r.error)
            assert r.error_kind == ("not_audio" if want == "not audio" else "unusable"), r.error
    out = tmp_path / "out.jsonl"
    cli = subprocess.run(
        [sys.executable, "-m", "moodscope", "predict", str(folder), *map(str, others),
         "--format", "jsonl", "--output", str(out)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "MOODSCOPE_CACHE_DIR": str(tmp_path / "cache")},
    )  # fmt: skip
    assert cli.returncode == 1, cli.stderr
    assert "Traceback" not in cli.stderr
    for line in cli.stderr.splitlines():
        assert not CLASS_NAME.search(line), line
    rows = {Path(d["path"]).name: d for d in map(json.loads, out.read_text().splitlines())}
    assert rows.keys() == results.keys()
    for name, d in rows.items():
        assert ("error" in d) == (not results[name].ok), name
        if "error" in d:
            assert d["error"].split(": ", 1)[1] == results[name].error.split(": ", 1)[1]


@pytest.mark.parametrize("name", ["wavpack.wv", "dsd.dsf", "dsd.dff", "wmav2.wma"])
def test_new_containers_cut_short_are_flagged_and_decode_what_they_hold(corpus, tmp_path, name):
    from moodscope.audio.integrity import check_integrity

    folder, _ = corpus
    whole = folder / name
    verdict = check_integrity(whole)
    assert not verdict.truncated and verdict.declared_seconds == pytest.approx(SECONDS, abs=0.1)
    cut = tmp_path / name
    cut.write_bytes(whole.read_bytes()[: int(0.45 * whole.stat().st_size)])
    verdict = check_integrity(cut)
    assert verdict.truncated and verdict.missing, verdict
    y = load_audio(cut)
    assert 0.5 < len(y) / 22050 < 0.8 * SECONDS


def test_a_declared_length_over_the_limit_is_refused_before_decoding(corpus):
    folder, _ = corpus
    for name in ("dsd.dsf", "wavpack.wv", "wmav2.wma"):
        with pytest.raises(AudioError, match="declares 4 s of audio; the limit is 2 s"):
            load_audio(folder / name, max_duration=2.0)


@pytest.mark.slow
def test_the_service_agrees(corpus, outcomes, tmp_path):
    """Each file uploaded: 200 where it decodes, 415 where it is not audio (every time:
    never a prediction, never cached as one), 422 where it is audio that cannot be used,
    with the same words as the API."""
    from fastapi.testclient import TestClient

    from moodscope.service.app import create_app

    folder, expected = corpus
    status = {"ok": 200, "not audio": 415, "error": 422}
    app = create_app(workers=1, queue=4, upload_dir=str(tmp_path))
    with TestClient(app, base_url="http://127.0.0.1") as client:  # an allowed host
        for name, want in expected.items():
            data = (folder / name).read_bytes()
            tries = 2 if want == "not audio" else 1
            for _ in range(tries):
                response = client.post("/v1/predict", files={"file": (name, data)})
                assert response.status_code == status[want], (name, response.text)
            if want != "ok":
                detail = response.json()["detail"]
                _check_message(name, detail)
                assert detail.split(": ", 1)[1] == outcomes[name][1].split(": ", 1)[1], name


@pytest.mark.slow
def test_tag_says_each_file_in_one_line(corpus, tmp_path):
    """``tag`` over a copy of the corpus: every file tagged, or a one-line failure naming
    it in words; what is not audio is never tagged."""
    folder, expected = corpus
    library = tmp_path / "library"
    shutil.copytree(folder, library)
    run = subprocess.run(
        [sys.executable, "-m", "moodscope", "tag", str(library), "--db", str(tmp_path / "i.db")],
        capture_output=True, text=True, timeout=900,
        env={**os.environ, "MOODSCOPE_CACHE_DIR": str(tmp_path / "cache")},
    )  # fmt: skip
    assert "Traceback" not in run.stderr
    failed = {}
    for line in run.stderr.splitlines():
        assert not CLASS_NAME.search(line), line
        if line.startswith("failed "):
            path, _, problem = line[len("failed ") :].partition(": ")
            failed[Path(path).name] = problem
    scanned = {n for n in expected if Path(n).suffix.lower() in AUDIO_EXTENSIONS}
    for name in scanned:
        if expected[name] != "ok":
            assert name in failed, name
    assert set(failed) <= scanned
