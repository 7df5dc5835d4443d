"""Features for a whole track or dataset: parallel workers, a progress bar, an on-disk cache.

The cache is keyed by the audio file's content (SHA-1) and the feature config, so renaming
a file keeps its entry and editing it does not; a second run over the same data only reads.
It is optional: a folder that cannot be written (a read-only container, no home) gives one
warning line and a run without it; it is bounded (``$MOODSCOPE_CACHE_MAX_MB``, default
:data:`CACHE_MAX_MB`), the least recently used entries going first.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from moodscope.atomic import atomic_path, atomic_write, file_digest
from moodscope.audio.content import CONTENT_VERSION, ContentMeasures, ContentMeter
from moodscope.audio.decode import MAX_DURATION, duration_text, load_audio, stream_audio
from moodscope.audio.integrity import check_integrity
from moodscope.audio.loudness import gain_to
from moodscope.backends import Backend, ProcessBackend, failure_message, stream, using_backend
from moodscope.errors import AudioError, FeatureError, OutputError
from moodscope.features.segments import Segment
from moodscope.features.sets import FeatureConfig, get_feature_set

if TYPE_CHECKING:
    import pandas as pd

META_COLUMNS = ("track_id", "segment", "start", "end", "genre", "label")

CACHE_MAX_MB = 2048
"""Default bound of the feature cache in MB (``$MOODSCOPE_CACHE_MAX_MB`` overrides it)."""

log = logging.getLogger("moodscope")


def default_cache_dir() -> Path | None:
    """``$MOODSCOPE_CACHE_DIR``, else ``$XDG_CACHE_HOME/moodscope``, else
    ``~/.cache/moodscope``; None when there is no home to put it in."""
    if os.environ.get("MOODSCOPE_CACHE_DIR"):
        return Path(os.environ["MOODSCOPE_CACHE_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "moodscope"
    home = os.path.expanduser("~")
    if home.startswith("~"):  # no $HOME and no passwd entry (a bare container user)
        return None
    return Path(home) / ".cache" / "moodscope"


def cache_max_bytes() -> int:
    """The cache's bound: ``$MOODSCOPE_CACHE_MAX_MB`` (MB), else :data:`CACHE_MAX_MB`."""
    raw = os.environ.get("MOODSCOPE_CACHE_MAX_MB", "")
    try:
        mb = float(raw) if raw.strip() else CACHE_MAX_MB
    except ValueError:
        from moodscope.errors import ConfigError

        raise ConfigError(
            f"MOODSCOPE_CACHE_MAX_MB must be a number of megabytes, got {raw!r}"
        ) from None
    return max(0, int(mb * 2**20))


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning("warning: %s", message)


def usable_cache_dir(cache_dir: str | Path | None = None) -> Path | None:
    """The feature cache's folder, created and checked writable; None (after one warning
    line in this process) when it cannot be used, so the run goes on without it."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if root in _USABLE:  # checked once per process and folder, not once per file
        return _USABLE[root]
    _USABLE[root] = _check_cache_dir(root)
    return _USABLE[root]


_USABLE: dict[Path | None, Path | None] = {}


def _check_cache_dir(root: Path | None) -> Path | None:
    if root is None:
        _warn_once("no home folder for the feature cache (set MOODSCOPE_CACHE_DIR); "
                   "running without it")  # fmt: skip
        return None
    try:
        folder = root / "features"
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        _warn_once(f"feature cache {root} cannot be written ({exc.strerror or exc}); "
                   "running without it")  # fmt: skip
        return None
    return root


class _CacheBound:
    """Keeps the cache under its bound: entries' mtimes are their last use (a hit touches
    its entry); after writes add up past the bound, the oldest go until 80 % is left."""

    def __init__(self) -> None:
        self.estimate: dict[Path, int] = {}

    def used(self, entry: Path) -> None:
        try:
            os.utime(entry)
        except OSError:
            pass

    def wrote(self, root: Path, nbytes: int) -> None:
        limit = cache_max_bytes()
        if root not in self.estimate:
            self.estimate[root] = self._scan(root, limit)
        self.estimate[root] += nbytes
        if self.estimate[root] > limit:
            self.estimate[root] = self._scan(root, limit)

    @staticmethod
    def _scan(root: Path, limit: int) -> int:
        entries = []
        for f in (root / "features").glob("*/*.npz"):
            try:
                st = f.stat()
            except OSError:  # another process evicted it
                continue
            entries.append((st.st_mtime_ns, st.st_size, f))
        total = sum(size for _, size, _ in entries)
        if total <= limit:
            return total
        entries.sort()
        for _, size, f in entries:
            if total <= 0.8 * limit:
                break
            f.unlink(missing_ok=True)
            total -= size
        return total


_BOUND = _CacheBound()


@dataclass
class TrackFeatures:
    """One track's feature matrix and the segments its rows belong to."""

    features: np.ndarray  # [n_segments, n_features]
    starts: np.ndarray  # [n_segments] seconds
    ends: np.ndarray  # [n_segments] seconds
    peak: float = 1.0  # largest absolute sample: 0 for digital silence
    duration: float = 0.0  # seconds of audio decoded
    precision: str = "float32"  # the network's number format ("bfloat16": musicnn.fast)
    truncated: bool = False  # the container declares more than the file holds
    content: ContentMeasures | None = None  # loudness and the measures of what it is


def _atomic_save_npz(path: Path, **arrays: np.ndarray) -> int:
    """Write ``arrays`` to ``path`` through a temporary file; the bytes written."""
    # A cache entry lost to a power cut is only recomputed: no fsync.
    with atomic_write(path, "wb", fsync=False) as f:
        np.savez(f, **arrays)
        size = f.tell()
    return size


def track_features(
    path: str | Path,
    config: FeatureConfig | None = None,
    *,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    precision: str = "float32",
    max_duration: float | None = MAX_DURATION,
    judge: Callable[[ContentMeasures], str | None] | None = None,
) -> TrackFeatures:
    """Decode ``path``, cut it into ``config``'s segments and compute one row per segment.

    ``precision``: the number format to compute in where the feature set has it
    (``"bfloat16"``: musicnn's fast path), else float32; the result says which ran, and
    each format has cache entries of its own. A file cut short (see
    :mod:`moodscope.audio.integrity`) gives features of what decodes, flagged ``truncated``.
    ``max_duration`` as in :func:`moodscope.audio.decode.load_audio`. ``judge``: where the
    track's content measures are known before the network runs (a config that normalises
    loudness measures first) and ``judge(measures)`` gives a reason (it is not music, see
    :func:`moodscope.audio.content.not_music`), the result has no rows and is not cached.

    Raises
    ------
    AudioError
        The file cannot be used (the message names it and the problem).
    """
    config = config or FeatureConfig()
    path = Path(path)
    if len(config.parts) > 1:
        parts = [
            track_features(
                path,
                c,
                cache_dir=cache_dir,
                use_cache=use_cache,
                precision=precision,
                max_duration=max_duration,
                judge=judge,
            )
            for c in config.parts
        ]
        if any(not len(p.features) for p in parts):  # judged not music: no rows anywhere
            parts = [replace(p, features=np.zeros((0, len(c.columns)))) for p, c in
                     zip(parts, config.parts)]  # fmt: skip
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
            first.truncated,
            first.content,
        )
    precision = config.precision(precision)
    entry = root = None
    if use_cache and os.path.isfile(path):  # False, not an error, in a folder it cannot enter
        root = usable_cache_dir(cache_dir)
    if root is not None:
        entry = root / "features" / config.key(precision) / f"{file_digest(path)}.npz"
        cached = _read_entry(entry, precision)
        if cached is not None:
            if max_duration is not None and cached.duration > max_duration:
                raise AudioError(
                    path, f"decodes to more than {max_duration:.0f} s of audio (max_duration)"
                )
            if cached.content is None:  # measured by an older moodscope: measure again
                cached.content = _measure(path, config, max_duration, check_integrity(path))
                _save_entry(entry, root, cached)
            _BOUND.used(entry)
            return cached
    compute = get_feature_set(config.feature_set).compute
    if precision != "float32":
        compute = functools.partial(compute, precision=precision)
    integrity = check_integrity(path)
    if config.segments is None:
        result = _windowed_features(path, config, compute, integrity, max_duration, judge)
        if not len(result.features):
            return result
    else:
        y = load_audio(path, sr=config.sr, max_duration=max_duration, integrity=integrity)
        if len(y) < config.min_duration * config.sr:
            raise _too_short(path, len(y) / config.sr, config.min_duration, integrity)
        meter = ContentMeter(config.sr)
        meter.add(y)
        content = meter.measures()
        if judge is not None and judge(content) is not None:
            return _judged(config, content, len(y) / config.sr, integrity)
        segments = config.segment(y)
        result = TrackFeatures(
            compute((y * _gain(config, content)).astype(np.float32), segments),
            np.array([s.start for s in segments]),
            np.array([s.end for s in segments]),
            content.peak,
            len(y) / config.sr,
            content=content,
        )
    result.precision = precision
    result.truncated = integrity.truncated
    if not np.all(np.isfinite(result.features)):
        raise FeatureError(f"{path}: features are not finite (NaN or inf)")
    if entry is not None:
        _save_entry(entry, root, result)
    return result


def _judged(
    config: FeatureConfig, content: ContentMeasures, seconds: float, integrity
) -> TrackFeatures:
    """The result for a track judged not music: its measures, no rows."""
    empty = np.zeros(0)
    result = TrackFeatures(np.zeros((0, len(config.columns))), empty, empty, content.peak, seconds)
    result.content, result.truncated = content, integrity.truncated
    return result


def _gain(config: FeatureConfig, content: ContentMeasures) -> float:
    """The amplitude gain that brings the track to ``config.loudness`` (1: none asked)."""
    return 1.0 if config.loudness is None else gain_to(config.loudness, content.loudness)


def _measure(
    path: Path, config: FeatureConfig, max_duration: float | None, integrity
) -> ContentMeasures:
    """The track's loudness and content measures: one pass over the decoded blocks."""
    meter = ContentMeter(config.sr)
    for block in _blocks(path, config, max_duration, integrity):
        meter.add(block)
    return meter.measures()


def _blocks(path: Path, config: FeatureConfig, max_duration: float | None, integrity):
    return stream_audio(
        path,
        sr=config.sr,
        block_seconds=max(60.0, 4 * config.window),
        max_duration=max_duration,
        integrity=integrity,
    )


def _save_entry(entry: Path, root: Path, result: TrackFeatures) -> None:
    content = result.content.to_dict() if result.content is not None else {}
    try:
        nbytes = _atomic_save_npz(
            entry,
            features=result.features,
            starts=result.starts,
            ends=result.ends,
            peak=np.float64(result.peak),
            duration=np.float64(result.duration),
            truncated=np.bool_(result.truncated),
            content_version=np.int64(CONTENT_VERSION),
            **{f"content_{k}": np.float64(v) for k, v in content.items()},
        )
        _BOUND.wrote(root, nbytes)
    except (OSError, OutputError) as exc:  # a full disk, a folder gone read-only
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        _warn_once(f"feature cache {root} cannot be written ({why}); results are not "
                   "cached")  # fmt: skip


def _read_entry(entry: Path, precision: str) -> TrackFeatures | None:
    """The cached features; ``content`` None where the measures are missing or older."""
    if not entry.is_file():
        return None
    try:
        with np.load(entry) as z:
            content = None
            if "content_version" in z and int(z["content_version"]) == CONTENT_VERSION:
                content = ContentMeasures.from_dict(
                    {k[len("content_") :]: z[k] for k in z.files if k.startswith("content_")}
                )
            return TrackFeatures(
                z["features"],
                z["starts"],
                z["ends"],
                float(z["peak"]),
                float(z["duration"]),
                precision,
                bool(z["truncated"]),
                content,
            )
    except (OSError, ValueError, KeyError, EOFError, TypeError):
        try:
            entry.unlink(missing_ok=True)  # a damaged or older entry is recomputed, not trusted
        except OSError:
            pass
        return None


def _too_short(path: Path, decoded: float, needed: float, integrity) -> AudioError:
    if integrity.truncated:
        return AudioError(
            path, f"is truncated: it {integrity.missing}; only {duration_text(decoded)} decodes, "
            f"at least {needed:.2f} s is needed",
        )  # fmt: skip
    return AudioError(path, f"is {duration_text(decoded)} long; at least {needed:.2f} s is needed")


KEEP_DECODED_S = 600.0
"""Seconds of decoded audio the loudness pass keeps for the feature pass (see
:func:`_windowed_features`)."""


def _windowed_features(
    path: Path,
    config: FeatureConfig,
    compute: Callable,
    integrity=None,
    max_duration: float | None = MAX_DURATION,
    judge: Callable[[ContentMeasures], str | None] | None = None,
) -> TrackFeatures:
    """Fixed windows computed block by block as the file is decoded: memory stays bounded
    by one block (about a minute of audio) whatever the file's length.

    A config that normalises loudness reads the file twice: once to measure it, once to
    compute the features at the gain the measure gives. The first pass keeps what it
    decoded up to :data:`KEEP_DECODED_S` of audio (~38 MB at 16 kHz), so a track of that
    length is decoded once; a longer file is decoded again rather than held."""
    sr = config.sr
    win = int(round(config.window * sr))
    hop = max(1, int(round((config.hop or config.window) * sr)))
    buffer, offset, next_start = np.zeros(0, np.float32), 0, 0
    rows, starts, total = [], [], 0
    silence: dict[str, np.ndarray] = {}
    meter = gain = None
    kept: list[np.ndarray] | None = None
    if config.loudness is not None:
        meter, kept, held = ContentMeter(sr), [], 0
        for block in _blocks(path, config, max_duration, integrity):
            meter.add(block)
            held += len(block)
            if kept is not None and held <= KEEP_DECODED_S * sr:
                kept.append(block)
            else:
                kept = None  # too long to hold: the second pass decodes again
        content, seconds, meter = meter.measures(), meter.loudness.samples / sr, None
        if seconds < config.window:
            raise _too_short(path, seconds, config.window, integrity or check_integrity(path))
        if judge is not None and judge(content) is not None:
            return _judged(config, content, seconds, integrity or check_integrity(path))
        gain = np.float32(_gain(config, content))
    else:
        meter = ContentMeter(sr)
    for block in kept if kept is not None else _blocks(path, config, max_duration, integrity):
        if meter is not None:
            meter.add(block)
        else:
            block = block * gain
        total += len(block)
        buffer = np.concatenate([buffer, block])
        segments = []
        while next_start + win <= offset + len(buffer):
            a = next_start - offset
            segments.append(Segment(len(starts) + len(segments), a, a + win, sr))
            next_start += hop
        if segments:
            rows.append(_compute_windows(compute, buffer, segments, silence))
            starts += [offset + s.start_sample for s in segments]
        cut = min(next_start - offset, len(buffer))
        buffer, offset = buffer[cut:], offset + cut
    if not starts:
        raise _too_short(path, total / sr, config.window, integrity or check_integrity(path))
    if meter is not None:
        content = meter.measures()
    starts_s = np.asarray(starts) / sr
    return TrackFeatures(
        np.vstack(rows), starts_s, starts_s + win / sr, content.peak, total / sr, content=content
    )


def _compute_windows(
    compute: Callable, buffer: np.ndarray, segments: list[Segment], silence: dict
) -> np.ndarray:
    """``compute`` over ``segments`` of ``buffer``, with the row of a window of digital
    silence computed once per track and reused (``silence`` keeps it): a day of silence
    costs one window, not 28,800."""
    quiet = np.array([not buffer[s.start_sample : s.end_sample].any() for s in segments])
    if not quiet.any():
        return compute(buffer, segments)
    if "row" not in silence:
        silence["row"] = compute(buffer, [segments[int(np.argmax(quiet))]])[0]
    row = silence["row"]
    out = np.empty((len(segments), row.shape[0]), row.dtype)
    out[quiet] = row
    if not quiet.all():
        out[~quiet] = compute(buffer, [s for s, q in zip(segments, quiet) if not q])
    return out


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
    max_duration: float | None = MAX_DURATION


def features_task(
    item: tuple[int, str], job: FeatureJob
) -> tuple[int, TrackFeatures | None, str | None]:
    """One file's features on a worker: ``(index, features, None)`` or ``(index, None,
    error)``; never raises for a bad file."""
    index, path = item
    try:
        result = track_features(
            path,
            job.config,
            cache_dir=job.cache_dir,
            use_cache=job.use_cache,
            max_duration=job.max_duration,
        )
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
    if use_cache:  # checked once here: one warning line, and workers that do not retry
        usable = usable_cache_dir(cache_dir)
        use_cache, cache_dir = usable is not None, usable
    job = FeatureJob(config, None if cache_dir is None else str(cache_dir), use_cache)
    results: list[TrackFeatures | None] = [None] * len(paths)
    failures: list[tuple[str, str]] = []
    with using_backend(backend, workers=workers, scheduler=scheduler, items=len(paths)) as runner:
        if isinstance(runner, ProcessBackend):
            warm_up(config)
        runner.start(job)
        # Absolute paths travel (a Dask worker resolves a relative one in its own folder);
        # failures name the file as it was given.
        items = enumerate(map(os.path.abspath, paths))
        for done, ((i, path), out) in enumerate(stream(runner, features_task, items), start=1):
            if isinstance(out, BaseException):
                out = (i, None, failure_message(path, out))
            _, results[i], error = out
            if error is not None:
                given = str(paths[i])
                failures.append((given, error.replace(path, given) if path != given else error))
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
