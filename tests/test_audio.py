"""Decoding: formats, rates, channels, and one clear error per kind of bad input."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import SR, chord_signal
from moodscope import AudioError, MoodscopeError, load_audio
from moodscope.audio.decode import audio_info, stream_audio
from moodscope.demo import synth


@pytest.mark.parametrize("ext", [".wav", ".flac", ".ogg", ".mp3"])
@pytest.mark.parametrize("sr", [8000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_formats_rates_channels(write_audio, ext, sr, channels):
    y = chord_signal(2.0, sr)
    path = write_audio(f"x{ext}", y, sr, channels)
    out = load_audio(path)
    assert out.dtype == np.float32 and out.ndim == 1
    # MP3 encoders add priming samples; every format must keep the duration within 0.1 s.
    assert abs(len(out) / SR - 2.0) < 0.1
    assert 0.05 < np.sqrt(np.mean(out**2)) < 0.5


def test_downmix_is_channel_mean(tmp_path):
    left = chord_signal(1.0)
    right = np.zeros_like(left)
    path = tmp_path / "lr.wav"
    sf.write(path, np.stack([left, right], axis=1), SR, subtype="FLOAT")
    mono = load_audio(path)
    np.testing.assert_allclose(mono, left / 2, atol=1e-6)
    stereo = load_audio(path, mono=False)
    assert stereo.shape == (2, len(left))


def test_resample_keeps_pitch(write_audio):
    path = write_audio("a440.wav", synth.tone(440.0, 1.0, sr=48000), 48000)
    y = load_audio(path, sr=SR)
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) * SR / len(y) - 440) < 2


def test_silent_audio_is_valid(write_audio):
    path = write_audio("silence.wav", np.zeros(SR * 2, np.float32))
    y = load_audio(path)
    assert len(y) == 2 * SR and not y.any()


def _assert_names_file(exc_info, path):
    assert isinstance(exc_info.value, MoodscopeError)
    assert str(path) in str(exc_info.value)
    assert "\n" not in str(exc_info.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.mp3"
    with pytest.raises(AudioError, match="no such file") as info:
        load_audio(path)
    _assert_names_file(info, path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mp3"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match="empty") as info:
        load_audio(path)
    _assert_names_file(info, path)


@pytest.mark.parametrize("name", ["notes.wav", "notes.mp3", "notes.m4a"])
def test_text_file_named_audio(tmp_path, name):
    path = tmp_path / name
    path.write_text("this is not audio\n" * 20)
    with pytest.raises(AudioError, match=r"is not an audio file \(it holds text\)") as info:
        load_audio(path)
    _assert_names_file(info, path)


def test_unrecognised_binary(tmp_path):
    path = tmp_path / "blob.mp3"
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(AudioError, match="not an audio file|corrupt") as info:
        load_audio(path)
    _assert_names_file(info, path)


def test_decoder_noise_stays_off_stderr(write_audio, capfd):
    """A truncated or garbled MP3 makes mpg123 print "Note: Illegal Audio-MPEG-Header"
    on stderr by itself; moodscope's one-line error is the only report."""
    path = write_audio("whole.mp3", chord_signal(4.0))
    data = bytearray(path.read_bytes())
    data[2000:6000] = bytes(range(256)) * 15 + bytes(range(160))
    path.write_bytes(bytes(data))
    for read in (load_audio, lambda p: list(stream_audio(p))):
        try:
            read(path)
        except AudioError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
    assert capfd.readouterr().err == ""


def test_m4a_decodes_through_pyav(tmp_path):
    av = pytest.importorskip("av")
    sr, y = 44100, chord_signal(3.0, 44100)
    path = tmp_path / "x.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=sr, layout="stereo")
        frame = av.AudioFrame.from_ndarray(
            np.stack([y, y]).astype(np.float32), format="fltp", layout="stereo"
        )
        frame.sample_rate = sr
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    out = load_audio(path)
    assert abs(len(out) / SR - 3.0) < 0.1
    # AAC adds encoder delay, so compare level and spectrum rather than samples.
    ref = load_audio_like(y, sr)
    assert np.sqrt(np.mean(out**2)) == pytest.approx(np.sqrt(np.mean(ref**2)), rel=0.1)
    spectrum, ref_spectrum = (np.abs(np.fft.rfft(a[: 2 * SR])) for a in (out, ref))
    assert np.corrcoef(spectrum, ref_spectrum)[0, 1] > 0.95
    blocks = np.concatenate(list(stream_audio(path, block_seconds=0.5)))
    assert abs(len(blocks) - len(out)) < SR // 10


def load_audio_like(y, sr):
    import soxr

    return soxr.resample(y, sr, SR).astype(np.float32)


def test_corrupt_header(write_audio):
    path = write_audio("corrupt.flac", chord_signal(1.0))
    data = bytearray(path.read_bytes())
    data[:64] = b"\x00" * 64
    path.write_bytes(bytes(data))
    with pytest.raises(AudioError) as info:
        load_audio(path)
    _assert_names_file(info, path)


def test_zero_samples(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, np.float32), SR)
    with pytest.raises(AudioError, match="no audio samples") as info:
        load_audio(path)
    _assert_names_file(info, path)


@pytest.mark.parametrize("frames, said", [(1, "0.062 ms"), (220, "10 ms")])
def test_a_few_milliseconds_are_too_short_not_empty(tmp_path, frames, said):
    """A resampled stream gives a file this short back only when flushed: it is audio, too
    short, and its length reads as more than "0.00 s"."""
    import moodscope

    path = tmp_path / "blip.wav"
    sf.write(path, chord_signal(1.0, 22050)[:frames], 22050)
    assert sum(b.size for b in stream_audio(path)) > 0
    (result,) = moodscope.predict([path])
    assert f"blip.wav: is {said} long; at least 3.00 s is needed" in str(result.error)


@pytest.mark.parametrize("rate, said", [(0, "at least 4000 Hz"), (4_000_000_000, "at most")])
def test_a_wav_whose_rate_no_decoder_opens_says_its_rate(tmp_path, rate, said):
    """libsndfile and FFmpeg refuse a WAV that states 0 Hz or 4 GHz: the message names the
    rate its fmt chunk states, not "does not decode"."""
    path = tmp_path / "rate.wav"
    sf.write(path, chord_signal(4.0), SR, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    at = data.index(b"fmt ") + 12
    data[at : at + 4] = rate.to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(AudioError, match=f"declares a sample rate of {rate} Hz; {said}") as info:
        load_audio(path)
    _assert_names_file(info, path)


def test_too_short(write_audio):
    path = write_audio("short.wav", chord_signal(0.5))
    with pytest.raises(AudioError, match="at least 10.00 s") as info:
        load_audio(path, min_duration=10.0)
    _assert_names_file(info, path)


def test_nan_samples(tmp_path):
    path = tmp_path / "nan.wav"
    y = chord_signal(1.0)
    y[100] = np.nan
    sf.write(path, y, SR, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or infinite") as info:
        load_audio(path)
    _assert_names_file(info, path)


def test_folder_is_not_audio(tmp_path):
    with pytest.raises(AudioError, match="folder"):
        load_audio(tmp_path)


def test_audio_info(write_audio):
    path = write_audio("info.wav", chord_signal(1.5, 44100), 44100, 2)
    duration, sr, channels = audio_info(path)
    assert (round(duration, 2), sr, channels) == (1.5, 44100, 2)


def test_stream_matches_load(write_audio):
    path = write_audio("long.wav", chord_signal(7.0, 44100), 44100)
    blocks = list(stream_audio(path, sr=SR, block_seconds=2.0))
    assert len(blocks) >= 3
    streamed = np.concatenate(blocks)
    whole = load_audio(path, sr=SR)
    assert abs(len(streamed) - len(whole)) <= 2
    n = min(len(streamed), len(whole))
    assert np.corrcoef(streamed[:n], whole[:n])[0, 1] > 0.999


def test_stream_decodes_in_cache_sized_chunks_with_the_same_samples(tmp_path, monkeypatch):
    # 44.1 kHz stereo MP3 to 16 kHz: decoded, downmixed and resampled CHUNK_FRAMES at a
    # time, joined into blocks of block_seconds; the samples are those of one chunk per
    # block, bit for bit, and every block but the last is as long as asked.
    from moodscope.audio import decode

    y = chord_signal(12.0, 44100)
    path = tmp_path / "c.mp3"
    sf.write(path, np.stack([y, 0.5 * y], axis=1), 44100, format="MP3", subtype="MPEG_LAYER_III")
    chunked = list(stream_audio(path, sr=16000, block_seconds=5.0))
    assert decode.CHUNK_FRAMES < 5 * 44100  # so the chunks are smaller than the blocks here
    assert [len(b) >= 5 * 16000 for b in chunked[:-1]] == [True] * (len(chunked) - 1)
    monkeypatch.setattr(decode, "CHUNK_FRAMES", 10**9)  # one chunk per block: the old way
    whole = list(stream_audio(path, sr=16000, block_seconds=5.0))
    np.testing.assert_array_equal(np.concatenate(chunked), np.concatenate(whole))


def _moodscope(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "moodscope", *args],
        capture_output=True, timeout=300, **kwargs,
    )  # fmt: skip


@pytest.mark.slow
def test_special_files_are_one_line_at_once_in_predict_and_tag(tmp_path, write_audio):
    """A FIFO would block for ever and /dev/zero (or a link to it) never ends: each is
    refused by its kind before a byte is read, and the batch goes on."""
    fifo = tmp_path / "fifo.mp3"
    os.mkfifo(fifo)
    link = tmp_path / "song.mp3"
    link.symlink_to("/dev/zero")
    sock_path = tmp_path / "sock.wav"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    good = write_audio("good.wav", chord_signal(4.0))
    specials = {str(fifo): "named pipe", str(sock_path): "socket", "/dev/zero": "device"}
    try:
        for command in (["predict"], ["tag", "--db", str(tmp_path / "index.db")]):
            run = _moodscope(*command, str(fifo), str(link), "/dev/zero", str(sock_path),
                             str(good), text=True)  # fmt: skip
            assert run.returncode == 1, run.stderr
            failed = [line for line in run.stderr.splitlines() if line.startswith("failed ")]
            for path, kind in specials.items():
                line = next(line for line in failed if f"failed {path}:" in line)
                assert f"is a {kind}" in line, line
                assert "not a regular file" in line
            assert not any(str(good) in line for line in failed)
    finally:
        sock.close()


@pytest.mark.slow
def test_dev_stdin_is_read_when_named(write_audio):
    mp3 = write_audio("piped.mp3", chord_signal(5.0))
    run = _moodscope("predict", "/dev/stdin", "--format", "json", input=mp3.read_bytes())
    assert run.returncode == 0, run.stderr
    (result,) = json.loads(run.stdout)
    assert "error" not in result and abs(result["duration"] - 5.0) < 0.2


def test_load_audio_refuses_special_files_by_kind(tmp_path):
    link = tmp_path / "song.mp3"
    link.symlink_to("/dev/zero")
    with pytest.raises(AudioError, match="is a device, not a regular file") as info:
        load_audio(link)
    _assert_names_file(info, link)


def test_the_folder_scan_takes_every_audio_extension_and_counts_the_rest(tmp_path):
    from moodscope.audio.files import describe_skipped, find_audio, skipped_by_kind

    audio = ["a.wma", "b.wv", "c.ape", "d.dsf", "e.ac3", "f.spx", "g.m4b", "h.mka", "i.tak"]
    others = ["cover.jpg", "back.png", "rip.cue", "rip.log", "info.nfo", ".DS_Store"]
    for name in audio + others:
        (tmp_path / name).write_bytes(b"x")
    assert sorted(p.name for p in find_audio(tmp_path)) == sorted(audio)
    counts = skipped_by_kind(tmp_path)
    assert counts == {"image": 2, "text": 2, "cue sheet": 1, "hidden": 1}
    assert describe_skipped(counts) == (
        "passed over 6 file(s) that are not audio: 2 image, 2 text, 1 cue sheet, 1 hidden"
    )
    assert skipped_by_kind(tmp_path / "cover.jpg") == {}  # named one by one: never passed over


def test_links_and_pipes_with_audio_names_are_reported_the_same_by_predict_and_tag(tmp_path):
    """A broken link, a link loop and a pipe named like songs, under a scanned folder: each
    is listed and gets one line saying what it is (a 3.11 symlink loop once crashed the
    table), the same words from predict and tag."""
    import moodscope
    from moodscope.audio.files import find_audio
    from moodscope.library import tag_files

    music = tmp_path / "music"
    music.mkdir()
    (music / "gone.flac").symlink_to(tmp_path / "moved" / "gone.flac")
    (music / "a.mp3").symlink_to(music / "b.mp3")
    (music / "b.mp3").symlink_to(music / "a.mp3")
    os.mkfifo(music / "p.wav")
    said = {
        "gone.flac": f"is a broken link (to {tmp_path / 'moved' / 'gone.flac'}, which does not",
        "a.mp3": "is a link that loops",
        "b.mp3": "is a link that loops",
        "p.wav": "is a named pipe (FIFO)",
    }
    assert sorted(p.name for p in find_audio(music)) == sorted(said)
    predicted = {Path(r.path).name: str(r.error) for r in moodscope.predict([music])}
    tagged = {
        Path(o.path).name: o.error
        for o in tag_files([music], db=tmp_path / "index.db")
    }
    for name, words in said.items():
        assert f"{name}: {words}" in predicted[name], predicted[name]
        assert f"{name}: {words}" in tagged[name], tagged[name]
    run = _moodscope("predict", str(music), text=True)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert all(f"{name}: {words}" in run.stdout + run.stderr for name, words in said.items())
