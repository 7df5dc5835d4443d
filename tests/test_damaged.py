"""Damaged, partial and hostile files: what a container claims against what its bytes hold
(truncation flagged, never padded), headers that declare absurd rates or lengths (rejected
before decoding), bytes that are not audio, and the feature cache as an option."""

from __future__ import annotations

import logging
import resource
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import SR, chord_signal
from moodscope.audio.decode import MAX_BLOCK_SAMPLES, load_audio, stream_audio
from moodscope.audio.integrity import check_integrity
from moodscope.demo import synth
from moodscope.errors import AudioError, NotAudioError
from moodscope.inference.predictor import predict


def _ffmpeg() -> str:
    found = shutil.which("ffmpeg")
    if found is None:
        from conftest import _required

        _required("needs ffmpeg: apt-get install ffmpeg")
    return found


def encode(path: Path, y: np.ndarray, sr: int = SR, *args: str) -> Path:
    """``y`` written by ffmpeg in the container and codec its extension implies (MP3 by
    LAME with its Xing/Info frame, Ogg Vorbis, AAC in MP4 or raw ADTS); WAV, AIFF and FLAC
    by libsndfile. Extra ``args`` go to ffmpeg before the output name."""
    ext = path.suffix.lower()
    if ext in (".wav", ".flac", ".aiff"):
        sf.write(path, y, sr)
        return path
    wav = path.with_name(path.name + ".src.wav")
    sf.write(wav, y, sr)
    codec = {".mp3": ["-c:a", "libmp3lame", "-b:a", "128k"], ".ogg": ["-c:a", "libvorbis"],
             ".m4a": ["-c:a", "aac"], ".aac": ["-c:a", "aac", "-f", "adts"]}[ext]  # fmt: skip
    subprocess.run(
        [_ffmpeg(), "-v", "error", "-nostdin", "-y", "-i", str(wav), *codec, *args, str(path)],
        check=True,
        timeout=60,
    )
    wav.unlink()
    return path


def cut(path: Path, keep: float | int, name: str | None = None) -> Path:
    """The first ``keep`` of ``path`` (a fraction, or a byte count) as a new file."""
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep
    out = path.with_name(name or f"cut-{path.name}")
    out.write_bytes(data[:n])
    return out


def decoded_seconds(path: Path) -> float:
    return sum(len(b) for b in stream_audio(path)) / SR


CONTAINERS = [".mp3", ".flac", ".wav", ".aiff", ".ogg", ".m4a"]


@pytest.mark.parametrize("ext", CONTAINERS)
def test_whole_files_are_whole(tmp_path, ext):
    args = ("-movflags", "+faststart") if ext == ".m4a" else ()
    path = encode(tmp_path / f"whole{ext}", chord_signal(12.0), SR, *args)
    assert not check_integrity(path).truncated
    assert decoded_seconds(path) == pytest.approx(12.0, abs=0.1)


def test_whole_files_with_odd_but_legal_shapes_are_not_truncated(tmp_path):
    """What real files do that a naive check would call truncated: an MP3 encoder that
    counts its ID3 tag in the Xing byte count, trailing ID3v1 tags after FLAC and Ogg, and
    WAVs whose streaming writer left the data size as a placeholder."""
    y = chord_signal(8.0)
    mp3 = encode(tmp_path / "tag-counted.mp3", y)
    data = bytearray(mp3.read_bytes())
    at = data.find(b"Info") if b"Info" in data[:200] else data.find(b"Xing")
    assert at > 0 and data[at + 7] & 3 == 3  # frames and bytes fields present
    tag = 100_000
    bytes_field = int.from_bytes(data[at + 12 : at + 16], "big") + tag
    data[at + 12 : at + 16] = bytes_field.to_bytes(4, "big")
    size = tag - 10
    syncsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    mp3.write_bytes(b"ID3\x04\x00\x00" + syncsafe + bytes(size) + bytes(data))
    id3v1 = b"TAG" + b"title".ljust(125, b"\0")
    flac = tmp_path / "id3v1.flac"
    sf.write(flac, y, SR)
    flac.write_bytes(flac.read_bytes() + id3v1)
    ogg = encode(tmp_path / "id3v1.ogg", y)
    ogg.write_bytes(ogg.read_bytes() + id3v1)
    placeholders = []
    for value in (0, 0xFFFFFFFF):
        wav = tmp_path / f"stream-{value}.wav"
        sf.write(wav, y, SR, subtype="PCM_16")
        raw = bytearray(wav.read_bytes())
        data_at = raw.find(b"data")
        raw[data_at + 4 : data_at + 8] = value.to_bytes(4, "little")
        wav.write_bytes(bytes(raw))
        placeholders.append(wav)
    for path in (mp3, flac, ogg, *placeholders):
        assert not check_integrity(path).truncated, path
    for path in (mp3, flac, ogg):
        assert decoded_seconds(path) == pytest.approx(8.0, abs=0.1), path
    # A tag whose size field is wrong still leaves its MP3 audio found.
    bad_size = tmp_path / "bad-tag-size.mp3"
    audio = encode(tmp_path / "plain.mp3", y).read_bytes()
    bad_size.write_bytes(b"ID3\x04\x00\x00\x7f\x7f\x7f\x7f" + bytes(300) + audio)
    assert check_integrity(bad_size).audio_found


@pytest.mark.parametrize("ext", [".mp3", ".flac", ".wav", ".aiff", ".ogg", ".m4a"])
def test_a_file_cut_to_a_third_is_flagged_and_decodes_what_it_holds(tmp_path, ext):
    """The container still declares 30 s; the decoder gives the ~10 s that are there (no
    zeros up to the declared length) and the check from the bytes says it is truncated."""
    args = ("-movflags", "+faststart") if ext == ".m4a" else ()  # the index first
    whole = encode(tmp_path / f"whole{ext}", chord_signal(30.0), SR, *args)
    part = cut(whole, 1 / 3)
    integrity = check_integrity(part)
    assert integrity.truncated and integrity.missing
    seconds = decoded_seconds(part)
    assert 7.0 < seconds < 12.0, seconds
    y = load_audio(part, integrity=integrity)
    assert abs(len(y) / SR - seconds) < 0.1


def test_a_vbr_mp3_without_a_length_header_decodes_to_its_end(tmp_path):
    """No Xing/VBRI frame: libsndfile took the first frames' bit rate for the whole file
    and stopped at ~3 s of these 20 (loud first, quiet after, so the rate drops)."""
    y = np.concatenate([synth.noise(2.0, sr=SR, amplitude=0.5), chord_signal(18.0) * 0.01])
    path = encode(tmp_path / "vbr.mp3", y.astype(np.float32), SR, "-q:a", "0", "-write_xing", "0")
    head = path.read_bytes()[:4096]
    assert b"Xing" not in head and b"Info" not in head and b"VBRI" not in head
    assert decoded_seconds(path) == pytest.approx(20.0, abs=0.15)
    (result,) = predict(path)
    assert result.ok and result.duration == pytest.approx(20.0, abs=0.15)


def test_an_mp3_with_a_vbri_header(tmp_path):
    """Fraunhofer's VBRI frame (what some encoders write instead of Xing): its byte and
    frame counts are checked the same way."""
    from moodscope.audio.integrity import mpeg_frame

    path = encode(tmp_path / "cbr.mp3", chord_signal(20.0), SR, "-write_xing", "0")
    data = bytearray(path.read_bytes())
    start = 0
    if data.startswith(b"ID3"):  # ffmpeg's tag: skip it (its size is syncsafe)
        start = 10 + sum(data[6 + i] << (21 - 7 * i) for i in range(4))
    frame = mpeg_frame(bytes(data[start : start + 4]))
    frames = (len(data) - start) // frame.length
    vbri = b"VBRI" + struct.pack(">HHHII", 1, 0, 75, len(data) - start, frames)
    data[start + 36 : start + 36 + len(vbri)] = vbri
    path.write_bytes(bytes(data))
    whole = check_integrity(path)
    assert not whole.truncated and whole.declared_seconds == pytest.approx(20.0, abs=0.2)
    part = cut(path, 0.5)
    integrity = check_integrity(part)
    assert integrity.truncated and "VBRI" in integrity.missing
    assert 8.0 < decoded_seconds(part) < 12.0


def test_an_mp4_whose_sample_table_runs_past_its_data(tmp_path):
    """The index first, and an 'mdat' that says "to the end of the file" (size 0), so no
    box overflows: the sample table still places audio past the last byte."""
    whole = encode(tmp_path / "whole.m4a", chord_signal(30.0), SR, "-movflags", "+faststart")
    data = bytearray(whole.read_bytes())
    at = data.find(b"mdat") - 4
    data[at : at + 4] = bytes(4)
    part = tmp_path / "cut.m4a"
    part.write_bytes(bytes(data[: len(data) // 3]))
    integrity = check_integrity(part)
    assert integrity.truncated and "sample table" in integrity.missing
    assert 5.0 < decoded_seconds(part) < 15.0


def test_an_mp4_cut_before_its_index_names_what_is_missing(tmp_path):
    whole = encode(tmp_path / "whole.m4a", chord_signal(10.0))  # ffmpeg: moov at the end
    part = cut(whole, 0.5)
    with pytest.raises(AudioError, match=r"truncated.*'moov' box") as info:
        load_audio(part)
    assert str(part) in str(info.value) and "\n" not in str(info.value)


def test_the_first_20_kb_of_a_lame_mp3_is_not_a_60_s_track(tmp_path):
    """The issue's partial download: before, 60.0 s (1.2 s of audio, then zeros)."""
    whole = encode(tmp_path / "song.mp3", chord_signal(60.0))
    part = cut(whole, 20_000, "partial.mp3")
    assert decoded_seconds(part) < 2.0
    (result,) = predict(part)  # 1.2 s: less than one 3-s window
    assert not result.ok and result.error_kind == "unusable"
    assert result.error.startswith(f"{part}: is truncated")
    assert "declares" in result.error and "at least 3.00 s is needed" in result.error


@pytest.mark.parametrize("ext", [".mp3", ".ogg", ".flac"])
def test_truncated_is_predicted_on_what_decodes_and_flagged(tmp_path, ext, capfd):
    whole = encode(tmp_path / f"song{ext}", chord_signal(30.0))
    part = cut(whole, 0.4)
    full, partial = predict([whole, part])
    assert full.ok and not full.truncated and full.duration == pytest.approx(30.0, abs=0.1)
    assert partial.ok and partial.truncated, partial.error
    assert 9.0 < partial.duration < 15.0
    assert partial.timeline[-1].end <= partial.duration
    assert partial.to_dict()["truncated"] is True and full.to_dict()["truncated"] is False
    # Decoder chatter (mpg123's "Xing stream size off", ffmpeg's "invalid frame") stays off.
    assert capfd.readouterr().err == ""


# -- work bounded by the bytes, not the header ----------------------------------------------


def _flac_declaring_rate(path: Path, rate: int) -> Path:
    """A real FLAC whose STREAMINFO is edited to declare ``rate`` Hz."""
    data = bytearray(path.read_bytes())
    at = 8 + 10  # "fLaC", the block header, then 10 bytes to the packed rate/channels/...
    packed = int.from_bytes(data[at : at + 8], "big")
    data[at : at + 8] = ((packed & ((1 << 44) - 1)) | (rate << 44)).to_bytes(8, "big")
    path.write_bytes(bytes(data))
    return path


def hostile_files(folder: Path) -> dict[str, Path]:
    """The issue's amplification files: a 400 kB WAV declaring 8 Hz (25,000 s) and a FLAC
    whose STREAMINFO says 1 Hz (tens of hours)."""
    noise = synth.noise(200_000 / SR, sr=SR, amplitude=0.1)  # 200,000 samples
    wav = folder / "8hz.wav"
    sf.write(wav, noise, 8, subtype="PCM_16")
    flac = folder / "1hz.flac"
    sf.write(flac, noise, 44100)
    return {"8": wav, "1": _flac_declaring_rate(flac, 1)}


def test_a_header_declaring_a_tiny_rate_is_rejected_before_decoding(tmp_path):
    for rate, path in hostile_files(tmp_path).items():
        with pytest.raises(AudioError, match=f"sample rate of {rate} Hz; at least 4000 Hz"):
            list(stream_audio(path))
        (result,) = predict(path)
        assert result.error == f"{path}: declares a sample rate of {rate} Hz; at least 4000 Hz " \
            "is needed"  # fmt: skip


@pytest.mark.slow
def test_hostile_headers_cost_less_than_small_real_files(tmp_path):
    """The CLI on the two hostile files against the CLI on two 4-s files, each in a process
    of its own: no more CPU time and no more memory (before: 125 s and 1.1 GB for the WAV).
    CPU time, not wall time: the machine may be shared."""
    files = hostile_files(tmp_path)
    reference = [tmp_path / "real-1.wav", tmp_path / "real-2.wav"]
    for i, path in enumerate(reference):
        sf.write(path, chord_signal(4.0, seed=i), SR)

    def run(paths) -> tuple[subprocess.CompletedProcess, float]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        code = "import sys; from moodscope.cli import main; main(sys.argv[1:])"
        done = subprocess.run(
            [sys.executable, "-c", code, "predict", "--workers", "1", *map(str, paths)],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return done, cpu

    ok, ok_cpu = run(reference)
    ok_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest child yet
    assert ok.returncode == 0, ok.stderr
    bad, bad_cpu = run(files.values())
    bad_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    assert bad.returncode == 1
    assert "Traceback" not in bad.stderr
    for rate, path in files.items():
        assert f"{path}: declares a sample rate of {rate} Hz" in bad.stderr
    assert bad_cpu < 1.5 * ok_cpu
    # RUSAGE_CHILDREN keeps the largest child's peak: the hostile run must not raise it.
    assert bad_rss < 1.25 * ok_rss


def test_max_duration_is_checked_before_decoding(tmp_path):
    """A FLAC declaring 30 s whose frames are garbage: with a 10-s limit the error is the
    limit, so nothing was decoded; without it, the corrupt data."""
    path = tmp_path / "long.flac"
    sf.write(path, chord_signal(30.0), SR)
    data = bytearray(path.read_bytes())
    data[8192:] = bytes(len(data) - 8192)
    path.write_bytes(bytes(data))
    with pytest.raises(AudioError, match=r"declares 30 s of audio; the limit is 10 s"):
        list(stream_audio(path, max_duration=10))
    (limited,) = predict(path, max_duration=10)
    assert limited.error == f"{path}: declares 30 s of audio; the limit is 10 s (max_duration)"
    with pytest.raises(AudioError) as info:
        list(stream_audio(path))
    assert "limit" not in str(info.value)


def test_max_duration_holds_for_cached_results(tmp_path):
    path = tmp_path / "twenty.wav"
    sf.write(path, chord_signal(20.0), SR)
    assert predict(path)[0].ok  # cached now
    (again,) = predict(path, max_duration=10)
    assert not again.ok and "max_duration" in again.error


def test_a_header_declaring_less_than_it_holds_is_still_bounded(tmp_path):
    """Raw ADTS declares no length: PyAV estimates one from the first frames' bit rate, so
    loud seconds then silence declare ~3 s for 20 s. The limit holds for what decodes."""
    y = np.concatenate([synth.noise(2.0, sr=SR, amplitude=0.5), synth.silence(18.0, sr=SR)])
    path = encode(tmp_path / "loud-then-quiet.aac", y.astype(np.float32))
    from moodscope.audio.decode import audio_info

    assert audio_info(path)[0] < 10
    with pytest.raises(AudioError, match=r"decodes to more than 10 s of audio \(max_duration\)"):
        list(stream_audio(path, max_duration=10, block_seconds=2))
    assert decoded_seconds(path) == pytest.approx(20.0, abs=0.2)


def test_memory_of_one_block_is_bounded_whatever_the_rate(tmp_path):
    """At 768 kHz stereo a 60-s block read at once would be 92 M samples; decoding reads at
    most MAX_BLOCK_SAMPLES (and a cache-sized chunk) at a time, so streaming 6 s of it
    allocates a small part of what the file decodes to (tracemalloc sees numpy's buffers)."""
    import tracemalloc

    rate = 768_000
    path = tmp_path / "hi.wav"
    y = chord_signal(6.0, rate)
    sf.write(path, np.stack([y, y], axis=1), rate, subtype="PCM_16")
    whole = 6 * rate * 2 * 4  # bytes of float32 the native samples take
    tracemalloc.start()
    try:
        seconds = sum(len(b) for b in stream_audio(path, block_seconds=60.0)) / SR
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds == pytest.approx(6.0, abs=0.01)
    assert peak < whole / 4, (peak, whole)
    assert MAX_BLOCK_SAMPLES * 4 <= 16 * 2**20


# -- not audio, and audio in odd containers -------------------------------------------------


@pytest.mark.parametrize("name", ["noise.flac", "noise.mp3", "noise.ogg", "noise.wav"])
def test_random_bytes_are_not_audio(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(1).bytes(100_000))
    with pytest.raises(NotAudioError, match="is not an audio file") as info:
        load_audio(path)
    assert str(info.value).startswith(f"{path}: ")
    (result,) = predict(path)
    assert result.error_kind == "not_audio"


def test_an_id3_tag_over_garbage_says_what_it_is(tmp_path):
    path = tmp_path / "tagged-garbage.mp3"
    tag = b"ID3\x04\x00\x00\x00\x00\x00\x10" + bytes(16)
    path.write_bytes(tag + bytes(range(7, 250)) * 200)
    with pytest.raises(NotAudioError, match=r"an ID3 tag with no MPEG audio after it"):
        load_audio(path)


def test_raw_adts_aac_decodes(tmp_path):
    path = encode(tmp_path / "raw.aac", chord_signal(6.0))
    assert path.read_bytes()[:2] in (b"\xff\xf1", b"\xff\xf9")
    assert decoded_seconds(path) == pytest.approx(6.0, abs=0.2)
    (result,) = predict(path)
    assert result.ok and not result.truncated


# -- the feature cache is optional and bounded -----------------------------------------------


def test_an_unwritable_cache_gives_one_warning_and_a_run_without_it(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MOODSCOPE_CACHE_DIR", str(blocker / "cache"))  # even root cannot
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.wav")
        sf.write(paths[-1], chord_signal(4.0, seed=i), SR)
    with caplog.at_level(logging.WARNING, logger="moodscope"):
        results = predict(paths, workers=1)
    assert all(r.ok for r in results), [r.error for r in results]
    warnings = [r.getMessage() for r in caplog.records if r.name == "moodscope"]
    assert len(warnings) == 1 and "running without it" in warnings[0]
    assert str(blocker / "cache") in warnings[0]


@pytest.mark.slow
def test_the_cli_with_an_unwritable_cache_prints_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"{i}.wav")
        sf.write(paths[-1], chord_signal(4.0, seed=i), SR)
    env = {k: v for k, v in __import__("os").environ.items()}
    env["MOODSCOPE_CACHE_DIR"] = str(blocker / "cache")
    code = "import sys; from moodscope.cli import main; main(sys.argv[1:])"
    done = subprocess.run(
        [sys.executable, "-c", code, "predict", "--workers", "2", *map(str, paths)],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "cache" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: feature cache"), done.stderr


def test_the_cache_is_bounded_least_recently_used_first(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MOODSCOPE_CACHE_DIR", str(cache))
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"{i}.wav")
        sf.write(paths[-1], chord_signal(4.0, seed=i), SR)

    def entries() -> list[Path]:
        return sorted((cache / "features").glob("*/*.npz"))

    predict(paths[0])
    (first,) = entries()
    size = first.stat().st_size
    # Room for three entries: the fifth write evicts to 80 % (two entries), oldest first.
    monkeypatch.setenv("MOODSCOPE_CACHE_MAX_MB", str(3.5 * size / 2**20))
    import moodscope.features.extract as extract

    monkeypatch.setattr(extract, "_BOUND", extract._CacheBound())
    for p in paths[1:3]:
        predict(p)
        time.sleep(0.01)  # distinct mtimes on coarse clocks
    predict(paths[0])  # a hit: 0 is now the most recently used
    time.sleep(0.01)
    before = set(entries())
    assert len(before) == 3
    predict(paths[3])
    kept = set(entries())
    assert sum(p.stat().st_size for p in kept) <= 3.5 * size
    assert first in kept  # used last but one: kept
    assert len(kept) == 2


# -- folders that cannot be read, names that are not UTF-8 ------------------------------------


def _without_root_powers() -> None:
    """In the child, before exec: drop the capabilities that let root read any folder
    (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) from the bounding set, so mode 000 means
    "cannot be read" for it too, as for any user."""
    import ctypes
    import os

    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _moodscope(*args, cwd: Path) -> subprocess.CompletedProcess:
    code = "import sys; from moodscope.cli import main; main(sys.argv[1:])"
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True, timeout=300, cwd=cwd, preexec_fn=_without_root_powers,
    )  # fmt: skip


@pytest.fixture
def odd_library(tmp_path):
    """A folder with one good file, a subfolder that cannot be entered (with a file in it),
    and a text file whose name is Latin-1, not UTF-8."""
    import os

    lib = tmp_path / "lib"
    (lib / "ok").mkdir(parents=True)
    (lib / "locked").mkdir()
    sf.write(lib / "ok" / "good.wav", chord_signal(4.0), SR)
    sf.write(lib / "locked" / "inside.wav", chord_signal(4.0), SR)
    latin1 = os.fsdecode(b"ok/caf\xe9.mp3")
    (lib / latin1).write_text("just text\n" * 20)
    (lib / "locked").chmod(0)
    yield lib
    (lib / "locked").chmod(0o755)


@pytest.mark.slow
def test_unreadable_folders_and_odd_names_are_one_line_each(odd_library, tmp_path):
    lib = odd_library
    done = _moodscope("predict", "lib", "lib/locked/inside.wav", "--format", "jsonl",
                      cwd=tmp_path)  # fmt: skip
    err = done.stderr.decode("utf-8", "backslashreplace")
    assert done.returncode == 1, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("failed ")]
    assert sorted(lines) == [  # in the order they finish
        "failed lib/locked/inside.wav: cannot be read (Permission denied)",
        "failed lib/locked: is a folder that cannot be read (Permission denied)",
        "failed lib/ok/caf\\udce9.mp3: is not an audio file (it holds text)",
    ]
    assert "4 file(s), 1 predicted, 3 failed" in err
    tagged = _moodscope("tag", "lib", "--db", tmp_path / "index.sqlite", cwd=tmp_path)
    err = tagged.stderr.decode("utf-8", "backslashreplace")
    assert tagged.returncode == 1 and "Traceback" not in err, err
    assert f"failed {lib}/locked: is a folder that cannot be read" in err
    assert "1 tagged" in err and "2 failed" in err


# -- the command line --------------------------------------------------------------------------


def test_cli_max_duration_and_allow_damaged(tmp_path, capsys):
    from moodscope.audio.decode import MAX_DURATION
    from moodscope.cli.options import DecodeOptions
    from moodscope.library.tags import read_tags
    from test_cli import run

    assert DecodeOptions().max_duration == MAX_DURATION
    long = tmp_path / "long.wav"
    sf.write(long, chord_signal(30.0), SR)
    code, _, err = run(["predict", long, "--max-duration", "10"], capsys)
    assert code == 1 and f"failed {long}: declares 30 s of audio; the limit is 10 s" in err
    code, _, err = run(["predict", long, "--max-duration", "0"], capsys)
    assert code == 2 and "--max-duration" in err

    part = cut(encode(tmp_path / "song.mp3", chord_signal(30.0)), 0.4, "part.mp3")
    code, out, _ = run(["predict", part], capsys)
    assert code == 0 and "(truncated)" in out
    db = tmp_path / "index.sqlite"
    code, _, err = run(["tag", part, "--db", db], capsys)
    assert code == 1 and "is truncated" in err and "--allow-damaged" in err
    assert not read_tags(part).tagged
    # Again: unchanged, so skipped as a file that failed before (nothing new failed: 0).
    code, _, err = run(["tag", part, "--db", db], capsys)
    assert code == 0 and "1 skipped" in err and "failed before" in err, err
    assert not read_tags(part).tagged
    code, _, err = run(["tag", part, "--db", db, "--allow-damaged"], capsys)
    assert code == 0, err
    assert read_tags(part).tagged


@pytest.mark.slow
def test_no_home_means_no_cache_and_one_warning(tmp_path):
    """A service account with no $HOME and no passwd entry (uid 12345 here, keeping root's
    file access so it can read the virtualenv): one warning line, a run without the cache,
    and no './~/.cache' folder made in the working directory."""
    import os

    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv (util-linux) to run as a user with no home")
    import tempfile

    # Where that user may look without capabilities (click checks the path with access()).
    shared = Path(tempfile.mkdtemp(prefix="moodscope-nohome-"))
    shared.chmod(0o755)
    song = shared / "song.wav"
    sf.write(song, chord_signal(4.0), SR)
    song.chmod(0o644)
    work = shared / "work"
    work.mkdir(mode=0o777)
    work.chmod(0o777)
    try:
        keep = ("PATH", "PYTHONPATH", "LANG", "NUMBA_CACHE_DIR")
        env = {k: v for k, v in os.environ.items() if k in keep}
        code = "import sys; from moodscope.cli import main; main(sys.argv[1:])"
        caps = "+dac_read_search,+dac_override"
        done = subprocess.run(
            [setpriv, "--reuid", "12345", "--regid", "12345", "--clear-groups",
             "--inh-caps", caps, "--ambient-caps", caps,
             sys.executable, "-c", code, "predict", "--workers", "1", str(song)],
            capture_output=True, text=True, timeout=300, env=env, cwd=work,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
        assert warnings == [
            "warning: no home folder for the feature cache (set MOODSCOPE_CACHE_DIR); running "
            "without it"
        ]
        assert list(work.iterdir()) == []
    finally:
        shutil.rmtree(shared)


def test_an_index_from_before_truncated_is_migrated(tmp_path):
    """Schema 1 (no ``truncated`` column): opened for writing, it gains the column, keeps
    its rows, and records truncated results."""
    import sqlite3

    from moodscope.inference.predictor import Prediction
    from moodscope.library.index import SCHEMA_VERSION, IndexRow, LibraryIndex
    from moodscope.library.tags import FileState

    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE tracks (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns "
            "INTEGER NOT NULL, sha1 TEXT, model TEXT NOT NULL, emotions TEXT, top_emotion "
            "TEXT, duration REAL, silent INTEGER NOT NULL DEFAULT 0, tagged_at TEXT, error "
            "TEXT, updated_at TEXT NOT NULL)"
        )
        conn.execute(
            "INSERT INTO tracks VALUES ('/m/a.mp3', 1, 2, NULL, 'm@1', '{\"calmness\": 1.0}', "
            "'calmness', 3.0, 0, NULL, NULL, 'then')"
        )
        conn.execute("PRAGMA user_version = 1")
    with LibraryIndex(db) as index:
        (old,) = index.rows()
        assert old.path == "/m/a.mp3" and not old.truncated and old.emotions == {"calmness": 1.0}
        flagged = Prediction("/m/b.mp3", {"calmness": 1.0}, "calmness", duration=4.0,
                             model="m@1", truncated=True)  # fmt: skip
        index.record(IndexRow.from_prediction(flagged, FileState(1, 2), tagged=False))
        assert index.get("/m/b.mp3").truncated
        assert index.get("/m/b.mp3").prediction().truncated
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_the_service_limit_reaches_the_decoder(tmp_path):
    """The service's own max_duration (1800 s by default) is checked on the header before
    decoding: 2000 s of silence (an 80-kB FLAC) gets 422 at once, naming the limit."""
    from fastapi.testclient import TestClient

    from moodscope.audio.decode import audio_info
    from moodscope.service.app import create_app

    path = tmp_path / "long-silence.flac"
    block = synth.silence(100.0, sr=8000)
    with sf.SoundFile(path, "w", 8000, 1, format="FLAC") as f:
        for _ in range(20):
            f.write(block)
    assert path.stat().st_size < 200_000 and audio_info(path)[0] == pytest.approx(2000.0)
    assert not check_integrity(path).truncated
    app = create_app(workers=1, upload_dir=str(tmp_path / "uploads"))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        data = path.read_bytes()
        response = client.post("/v1/predict", files={"file": ("long-silence.flac", data)})
    assert response.status_code == 422
    assert response.json()["detail"] == (
        "long-silence.flac: declares 2000 s of audio; the limit is 1800 s (max_duration)"
    )


@pytest.mark.slow
def test_a_day_of_silence_in_a_tiny_flac_is_not_a_memory_bomb(tmp_path):
    """90 kB of FLAC holding 24 h of digital silence at 4 kHz (under the 86,400 s limit):
    decoded block by block in bounded memory, and its 28,800 windows cost one window's
    features (a silent window's row is computed once and reused)."""
    import tracemalloc

    from moodscope.features.extract import _windowed_features
    from moodscope.features.sets import FeatureConfig

    bomb = tmp_path / "silence.flac"
    subprocess.run(
        [_ffmpeg(), "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
         "anullsrc=r=4000:cl=mono", "-t", "86400", "-c:a", "flac", "-sample_fmt", "s16",
         "-frame_size", "65535", str(bomb)],
        check=True, timeout=600,
    )  # fmt: skip
    assert bomb.stat().st_size < 200_000
    computed = []

    def compute(y: np.ndarray, segments) -> np.ndarray:
        computed.append(len(segments))
        return np.array([[float(np.abs(y[s.start_sample : s.end_sample]).max())] for s in segments])

    tracemalloc.start()
    try:
        result = _windowed_features(bomb, FeatureConfig(segments=None, window=3.0), compute)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 300 * 2**20, f"{peak / 2**20:.0f} MB"  # "a few hundred MB" (issue 26)
    assert result.features.shape == (28_800, 1) and not result.features.any()
    assert result.duration == pytest.approx(86_400, abs=1) and result.peak == 0
    assert sum(computed) == 1
