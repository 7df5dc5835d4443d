"""A generated set of sounds that are not music, and how moodscope judges them.

Silence, DC offsets, near-silence, steady tones and sweeps, white/pink/brown noise, clicks and
impulses (numpy, seeded) and speech (espeak-ng, flite and Festival voices where installed,
each engine's first file also noisy, reverberant and band-limited): the files ``moodscope``
must answer "not music" for, with no mood. :func:`nonmusic_table` runs them through
:func:`moodscope.predict` (the path every front end takes) and gives each kind's flagged
share; :func:`dev_flags` lists the Emotify dev tracks (all music) that would be flagged.

    python -m moodscope.research.nonmusic --out nonmusic/   # write the set, print the table
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from moodscope.atomic import atomic_path
from moodscope.demo.synth import DEMO_PIECES, synthesize_piece

__all__ = [
    "KINDS",
    "SPEECH_TEXTS",
    "demo_flags",
    "dev_flags",
    "folder_flags",
    "nonmusic_markdown",
    "nonmusic_table",
    "synthesize",
    "write_nonmusic",
]

SR = 22050
SECONDS = 20.0

SPEECH_TEXTS = (
    "The weather today will be cloudy with a chance of rain in the afternoon. Temperatures "
    "stay mild, and the wind turns to the north in the evening. Tomorrow looks brighter.",
    "Please listen carefully, as our menu options have changed. For account balances, press "
    "one. To speak with an advisor, press two. To hear these options again, stay on the line.",
    "In the beginning of the chapter, the author describes a small town by the sea, where "
    "fishermen return each morning and the market opens before the sun is fully up.",
)
"""What the speech files say (espeak-ng voices read them)."""


def _t(n: int) -> np.ndarray:
    return np.arange(n) / SR


def _coloured(n: int, exponent: float, seed: int) -> np.ndarray:
    """Gaussian noise with power falling as 1 / f**exponent (0 white, 1 pink, 2 brown)."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    f[0] = f[1]
    y = np.fft.irfft(spectrum / f ** (exponent / 2), n)
    return 0.25 * y / np.abs(y).max()


def _sweep(n: int, lo: float, hi: float, square: bool = False) -> np.ndarray:
    t = _t(n)
    duration = n / SR
    k = np.log(hi / lo)
    phase = 2 * np.pi * lo * duration / k * (np.exp(t / duration * k) - 1)
    y = np.sin(phase)
    return 0.3 * (np.sign(y) if square else y)


def _impulses(n: int, every: float, width: int = 1, seed: int | None = None) -> np.ndarray:
    y = np.zeros(n)
    step = int(every * SR)
    starts = np.arange(step // 2, n - width, step)
    if seed is not None:  # irregular: each impulse moved by up to a third of the spacing
        rng = np.random.default_rng(seed)
        starts = np.clip(starts + rng.integers(-step // 3, step // 3, len(starts)), 0, n - width)
    for s in starts:
        y[s : s + width] = 0.8
    return y


KINDS: dict[str, dict[str, Callable[[int], np.ndarray]]] = {
    "silence": {
        "digital_silence": lambda n: np.zeros(n),
        "dc_offset": lambda n: np.full(n, 0.3),
        "negative_dc_offset": lambda n: np.full(n, -0.05),
        "near_silent_noise": lambda n: 1e-4 * _coloured(n, 0, 1) / 0.25,
        "dither": lambda n: np.random.default_rng(2).integers(-1, 2, n) / 32768.0,
    },
    "tone": {
        "sine_440": lambda n: 0.5 * np.sin(2 * np.pi * 440 * _t(n)),
        "sine_1k_quiet": lambda n: 0.01 * np.sin(2 * np.pi * 1000 * _t(n)),
        "sine_60_with_dc": lambda n: 0.2 + 0.3 * np.sin(2 * np.pi * 60 * _t(n)),
        "square_220": lambda n: 0.3 * np.sign(np.sin(2 * np.pi * 220 * _t(n))),
        "sawtooth_110": lambda n: 0.3 * (2 * ((110 * _t(n)) % 1) - 1),
        "sine_sweep": lambda n: _sweep(n, 50, 8000),
        "sine_sweep_down": lambda n: _sweep(n, 5000, 100),
        "square_sweep": lambda n: _sweep(n, 100, 2000, square=True),
    },
    "noise": {
        "white": lambda n: _coloured(n, 0, 3),
        "pink": lambda n: _coloured(n, 1, 4),
        "brown": lambda n: _coloured(n, 2, 5),
        "white_quiet": lambda n: 0.01 * _coloured(n, 0, 6) / 0.25,
        "uniform_white": lambda n: np.random.default_rng(7).uniform(-0.5, 0.5, n),
    },
    "clicks": {
        "impulse_every_second": lambda n: _impulses(n, 1.0),
        "click_train_10hz": lambda n: _impulses(n, 0.1, width=8),
        "irregular_clicks": lambda n: _impulses(n, 0.7, width=4, seed=8),
        "single_impulse": lambda n: _impulses(n, n / SR),
    },
}
"""kind -> name -> ``f(n_samples)``: the numpy-made part of the set (floats at :data:`SR`)."""

SPEECH_VOICES = (
    ("en-us", 160), ("en", 190), ("en-us+f3", 140), ("en+m3", 180), ("de", 150),
    ("fr", 170), ("es", 140),
)  # fmt: skip
"""espeak-ng (voice, words per minute) of the speech files; voice i reads text i mod 3."""

FLITE_VOICES = ("kal", "awb", "rms", "slt")
"""flite's voices (where flite is installed), each reading one text."""

SPEECH_VARIANTS = ("noisy", "reverberant", "telephone")
"""What the first file of each engine is also heard as: pink noise 20 dB below it, a room
(an exponentially decaying noise tail as loud as the direct sound, 0.5 s to -60 dB), and
a 300-3400 Hz band."""


def synthesize(kind: str, name: str, seconds: float = SECONDS) -> np.ndarray:
    """One numpy-made sound of :data:`KINDS` as float32 at :data:`SR`."""
    return KINDS[kind][name](int(seconds * SR)).astype(np.float32)


def _spoken(command: list[str], raw: Path) -> np.ndarray:
    """What a text-to-speech ``command`` wrote to ``raw``, mono float32 at :data:`SR`."""
    import soxr

    subprocess.run(command, check=True, capture_output=True, timeout=120)
    y, sr = sf.read(raw, dtype="float32", always_2d=True)
    raw.unlink()
    y = y.mean(axis=1)
    return soxr.resample(y, sr, SR).astype(np.float32) if sr != SR else y


def _speech_variant(y: np.ndarray, variant: str) -> np.ndarray:
    """``y`` heard as one of :data:`SPEECH_VARIANTS` (seeded, numpy only)."""
    if variant == "noisy":
        noise = _coloured(len(y), 1, 12)
        out = y + noise * np.sqrt(np.mean(y**2) / np.mean(noise**2)) * 10 ** (-20 / 20)
    elif variant == "reverberant":
        t = _t(int(0.5 * SR))
        tail = np.random.default_rng(11).standard_normal(len(t)) * 10 ** (-3 * t / 0.5)
        tail *= 1 / np.sqrt(np.sum(tail[1:] ** 2))  # as loud as the direct sound
        tail[0] = 1.0  # the direct sound, then the room's tail (-60 dB at 0.5 s)
        n = len(y) + len(tail)
        out = np.fft.irfft(np.fft.rfft(y, n) * np.fft.rfft(tail, n), n)[: len(y)]
    elif variant == "telephone":
        f = np.fft.rfftfreq(len(y), 1 / SR)
        out = np.fft.irfft(np.fft.rfft(y) * ((f >= 300) & (f <= 3400)), len(y))
    else:
        raise ValueError(f"unknown speech variant {variant!r}")
    return (0.5 * out / (np.abs(out).max() + 1e-12)).astype(np.float32)


def _speech_sources(tmp: Path) -> dict[str, np.ndarray]:
    """name -> speech from every text-to-speech program installed here (espeak-ng, flite,
    Festival's text2wave), each text read by several voices, and the variants."""
    out: dict[str, np.ndarray] = {}
    raw = tmp / "raw.wav"
    if shutil.which("espeak-ng"):
        for i, (voice, wpm) in enumerate(SPEECH_VOICES):
            text = SPEECH_TEXTS[i % len(SPEECH_TEXTS)]
            command = ["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(raw), text]
            out[f"espeak_{voice.replace('+', '_')}"] = _spoken(command, raw)
    if shutil.which("flite"):
        for i, voice in enumerate(FLITE_VOICES):
            command = ["flite", "-voice", voice, "-t", SPEECH_TEXTS[i % 3], "-o", str(raw)]
            out[f"flite_{voice}"] = _spoken(command, raw)
    if shutil.which("text2wave"):
        text_file = tmp / "text.txt"
        text_file.write_text(SPEECH_TEXTS[1])
        out["festival"] = _spoken(["text2wave", "-o", str(raw), str(text_file)], raw)
        text_file.unlink()
    for engine in ("espeak", "flite", "festival"):
        first = next((name for name in out if name.startswith(engine)), None)
        if first is not None:
            for variant in SPEECH_VARIANTS:
                out[f"{first}_{variant}"] = _speech_variant(out[first], variant)
    return out


def write_nonmusic(out: str | Path, seconds: float = SECONDS) -> dict[str, list[Path]]:
    """Write the set under ``out/<kind>/<name>.wav``; kind -> files. Speech needs a
    text-to-speech program (espeak-ng, flite, Festival); without one the kind is left out,
    and the table says so."""
    out = Path(out)
    files: dict[str, list[Path]] = {}
    for kind, makers in KINDS.items():
        (out / kind).mkdir(parents=True, exist_ok=True)
        for name in makers:
            path = out / kind / f"{name}.wav"
            with atomic_path(path) as tmp:
                sf.write(tmp, synthesize(kind, name, seconds), SR, format="WAV", subtype="PCM_16")
            files.setdefault(kind, []).append(path)
    (out / "speech").mkdir(parents=True, exist_ok=True)
    n = int(seconds * SR)
    for name, y in _speech_sources(out / "speech").items():
        path = out / "speech" / f"{name}.wav"
        with atomic_path(path) as tmp:  # repeated to ``seconds``, as the others last
            sf.write(tmp, np.tile(y, -(-n // len(y)))[:n], SR, format="WAV", subtype="PCM_16")
        files.setdefault("speech", []).append(path)
    return files


def demo_flags(out: str | Path, model=None) -> dict[str, str | None]:
    """moodscope's demo pieces (all music): piece -> the not-music reason (None: music)."""
    from moodscope import predict

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in DEMO_PIECES:
        path = out / f"{name}.wav"
        sf.write(path, synthesize_piece(name), 22050)
        paths.append(path)
    return {p.stem: r.not_music for p, r in zip(paths, predict(paths, model, use_cache=False))}


def nonmusic_table(files: dict[str, list[Path]], model=None) -> dict[str, dict]:
    """kind -> ``{"files", "flagged", "share", "reasons"}`` through :func:`moodscope.predict`;
    a file that fails (an error, not a judgement) counts as not flagged."""
    from moodscope import predict

    table = {}
    for kind, paths in files.items():
        results = predict(paths, model, use_cache=False)
        flagged = [r for r in results if r.ok and not r.music]
        table[kind] = {
            "files": len(paths),
            "flagged": len(flagged),
            "share": len(flagged) / len(paths),
            "reasons": {Path(r.path).stem: r.not_music for r in results},
        }
    return table


def nonmusic_markdown(table: dict[str, dict]) -> str:
    """Rows ``| kind | flagged/files | reasons |`` of :func:`nonmusic_table`; a kind of more
    than 8 files gives each reason once with its count, and names the files judged music."""
    rows = []
    for kind, row in table.items():
        named = row["reasons"]
        if len(named) <= 8:
            reasons = "; ".join(f"{name}: {why or 'judged music'}" for name, why in named.items())
        else:
            counts: dict[str, int] = {}
            for why in named.values():
                counts[why or "judged music"] = counts.get(why or "judged music", 0) + 1
            reasons = "; ".join(f"{why}: {n}" for why, n in counts.items())
            missed = [name for name, why in named.items() if why is None]
            reasons += f" ({', '.join(missed)})" if missed else ""
        rows.append(f"| {kind} | {row['flagged']}/{row['files']} | {reasons} |")
    return "\n".join(rows)


def dev_flags(dataset, config) -> dict:
    """Every track of ``dataset`` judged with the measures its features (``config``) hold:
    ``{"tracks": n, "flagged": {relative path: reason}}``."""
    from moodscope.audio.content import not_music
    from moodscope.features.extract import track_features

    flagged = {}
    for path in dataset.tracks["path"]:
        reason = not_music(track_features(path, config).content)
        if reason is not None:
            flagged[str(Path(path).relative_to(dataset.root))] = reason
    return {"tracks": len(dataset.tracks), "flagged": flagged}


def folder_flags(root: str | Path, config) -> dict:
    """Every audio file under ``root`` (music from elsewhere: nothing of it should be
    flagged) judged as :func:`dev_flags` judges the dev tracks: ``{"root", "tracks": n
    judged, "flagged": {relative path: reason}, "errors": {relative path: error}}`` (a file
    that cannot be judged, e.g. one shorter than the features need, is an error)."""
    from moodscope.audio.content import not_music
    from moodscope.audio.files import find_audio
    from moodscope.errors import MoodscopeError
    from moodscope.features.extract import track_features

    root = Path(root)
    flagged, errors, judged = {}, {}, 0
    for path in find_audio(root):
        name = str(Path(path).relative_to(root))
        try:
            reason = not_music(track_features(path, config).content)
        except MoodscopeError as exc:
            errors[name] = str(exc).removeprefix(f"{path}: ")
            continue
        judged += 1
        if reason is not None:
            flagged[name] = reason
    return {"root": str(root), "tracks": judged, "flagged": flagged, "errors": errors}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default=None)
    args = parser.parse_args(argv)
    table = nonmusic_table(write_nonmusic(args.out), args.model)
    for kind, row in table.items():
        print(f"{kind:8} {row['flagged']}/{row['files']} flagged: {row['reasons']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
