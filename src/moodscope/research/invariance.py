"""Does the answer survive what happens to a file on its way to a listener?

An excerpt of a track (the first 30 s by default, written as a 44.1 kHz WAV: the reference)
turned down or up (a quieter master, a gain, ReplayGain: -12, -6, -3 and a
limited +3 dB), upmixed to stereo, resampled (22.05 and 48 kHz WAV) or re-encoded (MP3
128 kbps, Opus 64 kbps) through ffmpeg, predicted with :func:`moodscope.predict` like any
file: how often the top emotion stays the original's, and how far the confidence moves.

    python -m moodscope.research.invariance --data $MOODSCOPE_EMOTIFY_DIR --tracks 8 \\
        [--model path.ckpt ...] [--seconds 30]
    python -m moodscope.research.invariance --data $MOODSCOPE_EMOTIFY_DIR --loudness

(the second prints the dev tracks' median loudness:
:data:`moodscope.features.sets.EMOTIFY_LOUDNESS`).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["VARIANTS", "invariance_markdown", "invariance_table", "make_variant", "pick_tracks"]

VARIANTS: dict[str, tuple[str, list[str]]] = {
    "-12 dB": ("wav", ["-af", "volume=-12dB", "-c:a", "pcm_s16le"]),
    "-6 dB": ("wav", ["-af", "volume=-6dB", "-c:a", "pcm_s16le"]),
    "-3 dB": ("wav", ["-af", "volume=-3dB", "-c:a", "pcm_s16le"]),
    "+3 dB, limited": (
        "wav",
        ["-af", "volume=3dB,alimiter=limit=0.95:level=false", "-c:a", "pcm_s16le"],
    ),
    "stereo upmix": ("wav", ["-ac", "2", "-c:a", "pcm_s16le"]),
    "22.05 kHz WAV": ("wav", ["-ar", "22050", "-c:a", "pcm_s16le"]),
    "48 kHz WAV": ("wav", ["-ar", "48000", "-c:a", "pcm_s16le"]),
    "MP3 128 kbps": ("mp3", ["-c:a", "libmp3lame", "-b:a", "128k"]),
    "Opus 64 kbps": ("opus", ["-c:a", "libopus", "-b:a", "64k"]),
}
"""name -> (extension, ffmpeg output options) of each variant of the reference."""

EXCERPT_SECONDS = 30.0

AGREEMENT_GOAL = 0.97  # the top emotion matches the original's at least this often
CONFIDENCE_GOAL = 0.03  # the confidence moves at most this much on average


def make_reference(source: str | Path, out_dir: str | Path, seconds: float) -> Path:
    """The first ``seconds`` of ``source`` as a 44.1 kHz 16-bit WAV under ``out_dir``."""
    return _ffmpeg(source, out_dir, "reference", "wav",
                   ["-t", f"{seconds:g}", "-ar", "44100", "-c:a", "pcm_s16le"])  # fmt: skip


def make_variant(source: str | Path, variant: str, out_dir: str | Path) -> Path:
    """``source`` through ffmpeg as :data:`VARIANTS` ``[variant]``, written under ``out_dir``."""
    ext, options = VARIANTS[variant]
    return _ffmpeg(source, out_dir, variant, ext, options)


def _ffmpeg(source, out_dir, variant: str, ext: str, options: list[str]) -> Path:
    slug = "".join(c if c.isalnum() else "_" for c in variant).strip("_")
    out = Path(out_dir) / f"{Path(source).stem}.{slug}.{ext}"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(source), *options, str(out)],
        check=True,
        capture_output=True,
    )
    return out


def pick_tracks(tracks, n: int, seed: int = 0) -> list[str]:
    """``n`` track paths, spread evenly over the genres (seeded); all with ``n`` None."""
    if n is None or n >= len(tracks):
        return list(tracks["path"])
    rng = np.random.default_rng(seed)
    genres = sorted(tracks["genre"].unique())
    picked = []
    for i, genre in enumerate(genres):
        rows = tracks[tracks["genre"] == genre]
        k = n // len(genres) + (i < n % len(genres))
        picked += list(rows["path"].iloc[np.sort(rng.choice(len(rows), k, replace=False))])
    return picked


def invariance_table(
    paths: list[str],
    models: dict[str, object],
    variants=tuple(VARIANTS),
    *,
    seconds: float = EXCERPT_SECONDS,
    workers: int = 1,
) -> dict[str, dict[str, dict]]:
    """model name -> variant -> ``{"tracks", "same_top", "agreement", "mean_shift",
    "max_shift"}``, each variant against the reference excerpt of the same track; every
    model predicts the same files (made once)."""
    from moodscope import predict

    with tempfile.TemporaryDirectory(prefix="moodscope-invariance-") as tmp:
        folders = [Path(tmp) / str(i) for i in range(len(paths))]  # ids repeat across genres
        for folder in folders:
            folder.mkdir()
        references = [make_reference(p, d, seconds) for p, d in zip(paths, folders)]
        files = {v: [make_variant(p, v, d) for p, d in zip(references, folders)] for v in variants}
        out = {}
        for name, model in models.items():
            original = predict(references, model, use_cache=False, workers=workers)
            out[name] = {}
            for variant in variants:
                changed = predict(files[variant], model, use_cache=False, workers=workers)
                pairs = [(a, b) for a, b in zip(original, changed) if a.ok and b.ok and a.music]
                same = sum(a.top_emotion == b.top_emotion for a, b in pairs)
                shifts = [
                    abs(a.confidence - b.confidence)
                    for a, b in pairs
                    if a.confidence is not None and b.confidence is not None
                ]
                out[name][variant] = {
                    "tracks": len(pairs),
                    "same_top": same,
                    "agreement": same / len(pairs) if pairs else None,
                    "mean_shift": float(np.mean(shifts)) if shifts else None,
                    "max_shift": float(np.max(shifts)) if shifts else None,
                }
    return out


def invariance_markdown(table: dict[str, dict[str, dict]]) -> str:
    """The table as Markdown: one row per variant, a column pair per model."""
    names = list(table)
    head = "| variant | " + " | ".join(
        f"{n}: same top emotion | {n}: confidence shift, mean (max)" for n in names
    )
    lines = [head + " |", "|---|" + "---|---|" * len(names)]
    for variant in next(iter(table.values())):
        cells = []
        for n in names:
            r = table[n][variant]
            cells.append(f"{r['same_top']}/{r['tracks']} ({r['agreement']:.0%})")
            cells.append(
                "n/a"
                if r["mean_shift"] is None
                else f"{r['mean_shift']:.3f} ({r['max_shift']:.3f})"
            )
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    for n in names:
        rows = table[n].values()
        same = sum(r["same_top"] for r in rows)
        total = sum(r["tracks"] for r in rows)
        shifts = [r["mean_shift"] for r in rows if r["mean_shift"] is not None]
        lines.append(
            f"\n{n}, all variants: the top emotion stays for {same}/{total} "
            f"({same / max(total, 1):.1%}; goal >= {AGREEMENT_GOAL:.0%}), the confidence moves "
            f"{np.mean(shifts) if shifts else float('nan'):.3f} on average (goal <= "
            f"{CONFIDENCE_GOAL})."
        )
    return "\n".join(lines)


def dataset_loudness(data: str | Path) -> np.ndarray:
    """The integrated loudness (LUFS) of every dev track as the musicnn features read it."""
    from moodscope.audio.decode import load_audio
    from moodscope.audio.loudness import integrated_loudness
    from moodscope.datasets import EmotifyDataset
    from moodscope.musicnn.model import SAMPLE_RATE

    paths = EmotifyDataset(data).tracks["path"]
    return np.array(
        [integrated_loudness(load_audio(p, sr=SAMPLE_RATE), SAMPLE_RATE) for p in paths]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--tracks", type=int, default=8, help="0: all")
    parser.add_argument("--model", action="append", help="checkpoint(s); default: shipped")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=EXCERPT_SECONDS)
    parser.add_argument("--loudness", action="store_true", help="print the median loudness")
    args = parser.parse_args(argv)
    if args.loudness:
        levels = dataset_loudness(args.data)
        lo, hi = np.percentile(levels, [5, 95])
        print(f"median {np.median(levels):.1f} LUFS over {len(levels)} tracks "
              f"(5-95 %: {lo:.1f} to {hi:.1f})")  # fmt: skip
        return 0
    from moodscope.datasets import EmotifyDataset

    paths = pick_tracks(EmotifyDataset(args.data).tracks, args.tracks or None)
    models = {Path(m).stem: m for m in args.model} if args.model else {"default": None}
    print(
        invariance_markdown(
            invariance_table(paths, models, seconds=args.seconds, workers=args.workers)
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
