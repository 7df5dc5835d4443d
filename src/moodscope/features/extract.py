"""Features for a whole track or dataset: parallel workers, a progress bar, an on-disk cache.

The cache is keyed by the audio file's content (SHA-1) and the feature config, so renaming
a file keeps its entry and editing it does not; a second run over the same data only reads.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from moodscope.atomic import atomic_path, atomic_write, file_digest
from moodscope.audio.decode import load_audio, stream_audio
from moodscope.backends import Backend, ProcessBackend, failure_message, stream, using_backend
from moodscope.errors import AudioError, FeatureError
from moodscope.features.segments import Segment
from moodscope.features.sets import FeatureConfig, get_feature_set

if TYPE_CHECKING:
    import pandas as pd

META_COLUMNS = ("track_id", "segment", "start", "end", "genre", "label")


def default_cache_dir() -> Path:
    """``$MOODSCOPE_CACHE_DIR``, else ``$XDG_CACHE_HOME/moodscope``, else ``~/.cache/moodscope``."""
    if os.environ.get("MOODSCOPE_CACHE_DIR"):
        return Path(os.environ["MOODSCOPE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "moodscope"


@dataclass
class TrackFeatures:
    """One track's feature matrix and the segments its rows belong to."""

    features: np.ndarray  # [n_segments, n_features]
    starts: np.ndarray  # [n_segments] seconds
    ends: np.ndarray  # [n_segments] seconds
    peak: float = 1.0  # largest absolute sample: 0 for digital silence
    duration: float = 0.0  # seconds of audio decoded
    precision: str = "float32"  # the network's number format ("bfloat16": musicnn.fast)


def _atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    # A cache entry lost to a power cut is only recomputed: no fsync.
    with atomic_write(path, "wb", fsync=False) as f:
        np.savez(f, **arrays)


def track_features(
    path: str | Path,
    config: FeatureConfig | None = None,
    *,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    precision: str = "float32",
) -> TrackFeatures:
    """Decode ``path``, cut it into ``config``'s segments and compute one row per segment.

    ``precision``: the number format to compute in where the feature set has it
    (``"bfloat16"``: musicnn's fast path), else float32; the result says which ran, and
    each format has cache entries of its own.

    Raises
    ------
    AudioError
        The file cannot be used (the message names it and the problem).
    """
    config = config or FeatureConfig()
    path = Path(path)
    if len(config.parts) > 1:
        parts = [
            track_features(path, c, cache_dir=cache_dir, use_cache=use_cache, precision=precision)
            for c in config.parts
        ]
        if len({len(p.features) for p in parts}) != 1:
            raise FeatureError(f"{path}: the joined feature sets cut different segments")
        first = parts[0]
        return TrackFeatures(
            np.hstack([p.features for p in parts]),
            first.starts,
            first.ends,
            first.peak,
            first.duration,
            next((p.precision for p in parts if p.precision != "float32"), "float32"),
        )
    precision = config.precision(precision)
    entry = None
    if use_cache and path.is_file():
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        entry = cache / "features" / config.key(precision) / f"{file_digest(path)}.npz"
        if entry.is_file():
            try:
                with np.load(entry) as z:
                    return TrackFeatures(
                        z["features"],
                        z["starts"],
                        z["ends"],
                        float(z["peak"]),
                        float(z["duration"]),
                        precision,
                    )
            except (OSError, ValueError, KeyError):
                entry.unlink(missing_ok=True)  # a damaged entry is recomputed, not trusted
    compute = get_feature_set(config.feature_set).compute
    if precision != "float32":
        compute = functools.partial(compute, precision=precision)
    if config.segments is None:
        result = _windowed_features(path, config, compute)
    else:
        y = load_audio(path, sr=config.sr, min_duration=config.min_duration)
        segments = config.segment(y)
        result = TrackFeatures(
            compute(y, segments),
            np.array([s.start for s in segments]),
            np.array([s.end for s in segments]),
            float(np.abs(y).max()),
            len(y) / config.sr,
        )
    result.precision = precision
    if not np.all(np.isfinite(result.features)):
        raise FeatureError(f"{path}: features are not finite (NaN or inf)")
    if entry is not None:
        _atomic_save_npz(
            entry,
            features=result.features,
            starts=result.starts,
            ends=result.ends,
            peak=np.float64(result.peak),
            duration=np.float64(result.duration),
        )
    return result


def _windowed_features(path: Path, config: FeatureConfig, compute: Callable) -> TrackFeatures:
    """Fixed windows computed block by block as the file is decoded: memory stays bounded
    by one block (about a minute of audio) whatever the file's length."""
    sr = config.sr
    win = int(round(config.window * sr))
    hop = max(1, int(round((config.hop or config.window) * sr)))
    buffer, offset, next_start = np.zeros(0, np.float32), 0, 0
    rows, starts, peak, total = [], [], 0.0, 0
    for block in stream_audio(path, sr=sr, block_seconds=max(60.0, 4 * config.window)):
        peak = max(peak, float(np.abs(block).max()))
        total += len(block)
        buffer = np.concatenate([buffer, block])
        segments = []
        while next_start + win <= offset + len(buffer):
            a = next_start - offset
            segments.append(Segment(len(starts) + len(segments), a, a + win, sr))
            next_start += hop
        if segments:
            rows.append(compute(buffer, segments))
            starts += [offset + s.start_sample for s in segments]
        cut = min(next_start - offset, len(buffer))
        buffer, offset = buffer[cut:], offset + cut
    if not starts:
        raise AudioError(
            path, f"is {total / sr:.2f} s long; at least {config.window:.2f} s is needed"
        )
    starts_s = np.asarray(starts) / sr
    return TrackFeatures(np.vstack(rows), starts_s, starts_s + win / sr, peak, total / sr)


_WARM: set[str] = set()


def warm_up(config: FeatureConfig) -> None:
    """Compute ``config``'s features once on a second of noise in this process, for the
    feature sets that compile numba kernels on first use (librosa's).

    Those kernels are cached on disk; workers that compile them at the same moment on a
    fresh install race on that cache and can crash. Compiling once here, before any worker
    starts, leaves them only cached code to load.
    """
    for part in config.parts:
        feature_set = get_feature_set(part.feature_set)
        if part.feature_set in _WARM or not feature_set.compiles:
            continue
        rng = np.random.default_rng(0)
        y = (0.1 * rng.standard_normal(part.sr)).astype(np.float32)
        feature_set.compute(y, [Segment(0, 0, len(y), part.sr)])
        _WARM.add(part.feature_set)


@dataclass(frozen=True)
class FeatureJob:
    """What every worker needs to compute features: sent to each worker once."""

    config: FeatureConfig
    cache_dir: str | None = None
    use_cache: bool = True


def features_task(
    item: tuple[int, str], job: FeatureJob
) -> tuple[int, TrackFeatures | None, str | None]:
    """One file's features on a worker: ``(index, features, None)`` or ``(index, None,
    error)``; never raises for a bad file."""
    index, path = item
    try:
        result = track_features(path, job.config, cache_dir=job.cache_dir, use_cache=job.use_cache)
        return index, result, None
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch
        return index, None, failure_message(path, exc)


def map_tracks(
    paths: list[str],
    config: FeatureConfig,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    backend: Backend | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[TrackFeatures | None], list[tuple[str, str]]]:
    """Features of every path (``None`` where it failed) and the failures ``(path, error)``.

    Runs on ``backend``, else on ``workers`` local processes or a Dask ``scheduler`` (see
    :func:`moodscope.backends.open_backend`).
    """
    job = FeatureJob(config, None if cache_dir is None else str(cache_dir), use_cache)
    results: list[TrackFeatures | None] = [None] * len(paths)
    failures: list[tuple[str, str]] = []
    with using_backend(backend, workers=workers, scheduler=scheduler, items=len(paths)) as runner:
        if isinstance(runner, ProcessBackend):
            warm_up(config)
        runner.start(job)
        items = enumerate(paths)
        for done, ((i, path), out) in enumerate(stream(runner, features_task, items), start=1):
            if isinstance(out, BaseException):
                out = (i, None, failure_message(path, out))
            _, results[i], error = out
            if error is not None:
                failures.append((path, error))
            if progress is not None:
                progress(done, len(paths))
    failures.sort()
    return results, failures


def extract_features(
    dataset,
    config: FeatureConfig | None = None,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    backend: Backend | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """The feature table of a dataset: one row per segment, and the tracks that failed.

    Returns
    -------
    table : pd.DataFrame
        Columns ``track_id, segment, start, end, genre, label`` then the feature set's columns.
    failures : list of (path, error message)
    """
    import pandas as pd

    config = config or FeatureConfig()
    tracks = dataset.tracks
    results, failures = map_tracks(
        list(tracks["path"]),
        config,
        workers=workers,
        scheduler=scheduler,
        backend=backend,
        cache_dir=cache_dir,
        use_cache=use_cache,
        progress=progress,
    )
    parts = []
    for row, result in zip(tracks.itertuples(index=False), results):
        if result is None:
            continue
        n = len(result.features)
        meta = pd.DataFrame(
            {
                "track_id": [str(row.track_id)] * n,
                "segment": np.arange(n),
                "start": result.starts,
                "end": result.ends,
                "genre": [row.genre] * n,
                "label": [row.label] * n,
            }
        )
        parts.append(
            pd.concat([meta, pd.DataFrame(result.features, columns=config.columns)], axis=1)
        )
    if not parts:
        table = pd.DataFrame(columns=[*META_COLUMNS, *config.columns])
    else:
        table = pd.concat(parts, ignore_index=True)
    table.attrs["feature_config"] = config.to_dict()
    return table, failures


def write_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a feature table to Parquet atomically (a crash never leaves a half file)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)
    return path


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a feature table written by :func:`write_table`, checking its columns."""
    path = Path(path)
    if not path.is_file():
        raise FeatureError(f"{path}: no such feature table")
    import pandas as pd

    try:
        table = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise FeatureError(f"{path}: not a readable Parquet feature table ({exc})") from exc
    missing = [c for c in META_COLUMNS if c not in table.columns]
    if missing:
        raise FeatureError(f"{path}: missing column(s) {', '.join(missing)}")
    return table


__all__ = [
    "AudioError",
    "META_COLUMNS",
    "TrackFeatures",
    "default_cache_dir",
    "extract_features",
    "map_tracks",
    "read_table",
    "track_features",
    "write_table",
]
