"""Predict the emotions of any audio: per track a distribution over the emotions, the top
emotion, and a timeline (one entry per segment).

Tracks of any length are cut into fixed windows as long as the segments the model was
trained on, to 0.1 s (3 s for the 20-segment models: 60-s excerpts / 20), hop = window, the
remainder shorter than a window dropped; a clip shorter than one window is an error. Files
are decoded block by block, so memory stays bounded for hour-long recordings.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from moodscope.atomic import bytes_digest
from moodscope.audio.content import not_music
from moodscope.audio.decode import MAX_DURATION
from moodscope.audio.decode import _check_max_duration as check_max_duration
from moodscope.audio.files import find_audio
from moodscope.backends import (
    Backend,
    WorkerLost,
    failure_message,
    preload_in_workers,
    stream,
    using_backend,
)
from moodscope.emotions import (
    EMOTIONS,
    aggression_shift,
    arousal_valence,
    factor_shares,
    top_factor,
)
from moodscope.errors import AudioError, MoodscopeError, NotAudioError
from moodscope.features.extract import TrackFeatures, track_features, usable_cache_dir
from moodscope.features.sets import FeatureConfig
from moodscope.inference.checkpoint import (
    TrainedModel,
    checkpoint_bytes,
    load_checkpoint,
    load_checkpoint_bytes,
)
from moodscope.inference.identity import default_model_path


@dataclass
class TimelinePoint:
    """One window of a track's timeline: its span in seconds and the emotion shares there."""

    start: float
    end: float
    emotions: dict[str, float]


@dataclass
class Prediction:
    """The result for one file; ``error`` is set (and the rest empty) when it failed.

    Every output -- the CLI's JSON/JSONL/CSV, the service's JSON, file tags and the library
    index -- is written from this one object.
    """

    path: str
    emotions: dict[str, float] = field(default_factory=dict)
    top_emotion: str | None = None
    timeline: list[TimelinePoint] = field(default_factory=list)
    duration: float | None = None
    silent: bool = False
    error: str | None = None
    model: str | None = None  # the model's ``name@version``
    precision: str | None = None
    """The network's number format: ``"float32"`` (exact) or ``"bfloat16"`` (the fast path,
    :mod:`moodscope.musicnn.fast`); None for a failed file."""
    error_kind: str | None = None
    """With ``error``: ``"not_audio"`` (the content is not audio), ``"unusable"`` (audio that
    cannot be used: corrupt, empty, too short, NaN, unreadable) or ``"crash"`` (a bug, or a
    worker that died on it). For callers that branch on it (the service's status codes); the
    outputs keep to the one-line ``error``."""
    confidence: float | None = None
    """The chance that ``top_emotion`` is the one most listeners would report, from the
    model's calibration map; None when the model has none (it says so, it does not guess)."""
    truncated: bool = False
    """The file's container declares more audio than its bytes hold (a partial download, a
    cut copy): the prediction is of the ``duration`` that decodes, and ``tag`` leaves the
    file alone unless told ``allow_damaged``."""
    arousal: float | None = None
    """How activating the music is, in [-1, 1] (calm to excited), from the emotion shares'
    places on Russell's circumplex (:func:`moodscope.emotions.arousal_valence`)."""
    valence: float | None = None
    """How pleasant the music is, in [-1, 1] (unpleasant to pleasant): the circumplex
    reading of the shares, averaged with musicnn's tagger's where the model reads it."""
    music: bool = True
    """False: the file is not music (silence, a tone, noise, clicks; see
    :func:`moodscope.audio.content.not_music`): no emotions, top emotion, confidence or
    timeline, and nothing is tagged."""
    not_music: str | None = None
    """With ``music`` False, the one-line reason (``"digital silence"``, ``"a steady tone"``)."""

    @property
    def factors(self) -> dict[str, float]:
        """The three GEMS factors' shares (sublimity, vitality, unease), summing to 1."""
        return factor_shares(self.emotions)

    @property
    def top_factor(self) -> str | None:
        return top_factor(self.factors)

    @classmethod
    def failed(cls, path: str, exc: BaseException, model: str | None = None) -> Prediction:
        """The entry for a file whose prediction raised ``exc``."""
        if isinstance(exc, NotAudioError):
            kind = "not_audio"
        elif isinstance(exc, MoodscopeError) and not isinstance(exc, WorkerLost):
            kind = "unusable"
        else:
            kind = "crash"
        return cls(path, error=failure_message(path, exc), model=model, error_kind=kind)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self, *, timeline: bool = False) -> dict:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        factors = self.factors
        out = {
            "path": self.path,
            "top_emotion": self.top_emotion,
            "confidence": None if self.confidence is None else round(self.confidence, 6),
            "emotions": {k: round(v, 6) for k, v in self.emotions.items()},
            "top_factor": top_factor(factors),
            "factors": {k: round(v, 6) for k, v in factors.items()},
            "arousal": None if self.arousal is None else round(self.arousal, 6),
            "valence": None if self.valence is None else round(self.valence, 6),
            "duration": None if self.duration is None else round(self.duration, 3),
            "silent": self.silent,
            "music": self.music,
            "not_music": self.not_music,
            "truncated": self.truncated,
            "model": self.model,
            "precision": self.precision,
        }
        if timeline:
            out["timeline"] = [
                {
                    "start": round(s.start, 3),
                    "end": round(s.end, 3),
                    "emotions": {k: round(v, 6) for k, v in s.emotions.items()},
                }
                for s in self.timeline
            ]
        return out

    @classmethod
    def from_dict(cls, d: dict) -> Prediction:
        """The inverse of :meth:`to_dict` (to the 6 decimals it keeps)."""
        return cls(
            path=d["path"],
            emotions=dict(d.get("emotions") or {}),
            top_emotion=d.get("top_emotion"),
            timeline=[
                TimelinePoint(s["start"], s["end"], dict(s["emotions"]))
                for s in d.get("timeline", [])
            ],
            duration=d.get("duration"),
            silent=bool(d.get("silent", False)),
            error=d.get("error"),
            model=d.get("model"),
            precision=d.get("precision"),
            confidence=d.get("confidence"),
            truncated=bool(d.get("truncated", False)),
            arousal=d.get("arousal"),
            valence=d.get("valence"),
            music=bool(d.get("music", True)),
            not_music=d.get("not_music"),
        )


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime: float) -> TrainedModel:
    return load_checkpoint(path)


def load_model(model: str | Path | TrainedModel | None = None) -> TrainedModel:
    """A trained model: ``None`` -> the shipped default; a path -> that checkpoint.

    Loaded once per process (cached by path and modification time).
    """
    if isinstance(model, TrainedModel):
        return model
    path = Path(model) if model is not None else default_model_path()
    mtime = path.stat().st_mtime if path.is_file() else 0.0
    return _load_cached(str(path.resolve() if path.exists() else path), mtime)


def prediction_features(model: TrainedModel) -> FeatureConfig:
    """Fixed windows as long as the model's training segments (see module docstring)."""
    config = model.feature_config
    if config.segments is None:
        return config
    seconds = float(model.info.get("segment_seconds") or 60.0 / config.segments)
    # Emotify's excerpts run 59-60 s, so 20 segments average 2.985 s: windows use 3.0 s.
    return FeatureConfig(
        feature_set=config.feature_set,
        segments=None,
        window=round(seconds, 1),
        loudness=config.loudness,
    )


def _ordered(labels: Sequence[str]) -> list[int]:
    """Column order for output: the GEMS order when the labels are emotions."""
    if set(labels) <= set(EMOTIONS):
        return sorted(range(len(labels)), key=lambda i: EMOTIONS.index(labels[i]))
    return list(range(len(labels)))


class ModelHandle:
    """A trained model that can travel to worker processes: pickled as its checkpoint's
    bytes (sent once per worker) and loaded there once per process."""

    def __init__(self, model: TrainedModel):
        self._model: TrainedModel | None = model
        self._data = model.checkpoint
        self.name, self.version = model.name, model.version

    def __getstate__(self) -> dict:
        if self._data is None:
            self._data = checkpoint_bytes(self._model)
        return {"name": self.name, "version": self.version, "data": self._data}

    def __setstate__(self, state: dict) -> None:
        self.name, self.version, self._data = state["name"], state["version"], state["data"]
        self._model = None

    def __eq__(self, other: object) -> bool:
        """The same model: the same object here, or the same checkpoint bytes."""
        if not isinstance(other, ModelHandle):
            return NotImplemented
        if self._model is not None and self._model is other._model:
            return True
        return self._data is not None and self._data == other._data

    __hash__ = None

    def get(self) -> TrainedModel:
        if self._model is None:
            digest = bytes_digest(self._data)
            if digest not in _LOADED:
                global _LOADS
                _LOADS += 1
                model = load_checkpoint_bytes(self._data, name=self.name)
                model.version = self.version  # an unsaved model keeps the id it had
                _LOADED[digest] = model
            self._model = _LOADED[digest]
        return self._model


_LOADED: dict[str, TrainedModel] = {}
"""Models loaded in this (worker) process, by the SHA-1 of their checkpoint bytes."""
_LOADS = 0  # how many times this process loaded a model from bytes (tests read it)


@dataclass
class PredictJob:
    """What every worker needs to predict: sent to each worker once."""

    model: ModelHandle
    use_cache: bool = True
    cache_dir: str | None = None
    max_duration: float | None = MAX_DURATION
    exact: bool = False


def predict_file(
    path: str | Path,
    model: TrainedModel,
    *,
    use_cache: bool = True,
    cache_dir: str | Path | None = None,
    max_duration: float | None = MAX_DURATION,
    exact: bool = False,
) -> Prediction:
    """One file's prediction in this process; a file that cannot be used gives a
    :class:`Prediction` with ``error`` set, never an exception.

    ``exact=False`` runs the network on this CPU's fast path where it has one (bfloat16 on
    AMX; :func:`moodscope.musicnn.fast.fast_precision`), ``exact=True`` in float32."""
    path = str(path)
    try:
        from moodscope.musicnn.fast import resolve_precision  # torch: only when predicting

        features = track_features(
            path,
            prediction_features(model),
            cache_dir=cache_dir,
            use_cache=use_cache,
            max_duration=max_duration,
            precision=resolve_precision(exact),
            judge=not_music,
        )
        return _prediction(path, model, features)
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop a batch
        return Prediction.failed(path, exc, model.model_id)


def predict_task(item: tuple[int, str], job: PredictJob) -> tuple[int, Prediction]:
    """The unit of work a backend runs: ``(index, path)`` -> ``(index, Prediction)``."""
    index, path = item
    model = job.model.get()
    return index, predict_file(
        path,
        model,
        use_cache=job.use_cache,
        cache_dir=job.cache_dir,
        exact=job.exact,
        max_duration=job.max_duration,
    )


@dataclass
class TrackReading:
    """What a model reads from one track's segment features: the distribution (labels in
    ``names`` order), the timeline, and what is derived from them."""

    names: list[str]
    track: np.ndarray  # [n_labels], summing to 1
    timeline: np.ndarray  # [n_segments, n_labels]
    confidence: float | None
    arousal: float | None
    valence: float | None


def tagger_tags(columns: Sequence[str], rows: np.ndarray) -> list[dict[str, float]] | None:
    """musicnn's MSD tagger's tag probabilities in each feature row ``rows [n, len(columns)]``
    (tag name -> probability), or None when the features do not hold them."""
    tags = {
        c.split("_tag_", 1)[1].replace("_", " "): i
        for i, c in enumerate(columns)
        if c.startswith("musicnn_msd") and "_tag_" in c
    }
    if not tags:
        return None
    rows = np.asarray(rows, dtype=np.float64)
    return [{t: float(row[i]) for t, i in tags.items()} for row in rows]


def track_reading(model: TrainedModel, features: np.ndarray) -> TrackReading:
    """A track's reading from its raw segment features [n_segments, n_features]: the model's
    distribution with the aggression rule applied (:func:`moodscope.emotions.aggression_shift`:
    where musicnn's tagger hears metal or punk, joyful activation gives way to power and
    tension), its confidence, arousal and valence. Every front end and ``evaluate`` read
    tracks through this one function."""
    features = np.asarray(features, dtype=np.float64)
    order = _ordered(model.labels)
    names = [model.labels[i] for i in order]
    mean, proba = model.predict_track(features)
    mean, proba = mean[order] / mean.sum(), proba[:, order]
    tags = tagger_tags(model.feature_config.columns, features)
    if tags is not None:
        track_tags = {t: float(np.mean([w[t] for w in tags])) for t in tags[0]}
        mean = _shifted(names, mean, track_tags)
        if len(proba) == len(tags):
            proba = np.stack([_shifted(names, p, w) for p, w in zip(proba, tags)])
    else:
        track_tags = None
    arousal, valence = arousal_valence(dict(zip(names, map(float, mean))), track_tags)
    confidence = None
    if model.calibration is not None:
        confidence = model.confidence(mean, model.track_row(features))
    return TrackReading(names, mean, proba, confidence, arousal, valence)


def _shifted(names: list[str], p: np.ndarray, tags: dict[str, float]) -> np.ndarray:
    shifted = aggression_shift(dict(zip(names, map(float, p))), tags)
    return np.array([shifted[n] for n in names])


def _prediction(path: str, model: TrainedModel, features: TrackFeatures) -> Prediction:
    content = features.content
    silent = content is not None and content.silent
    reason = None if content is None else not_music(content)
    if reason is not None:
        return Prediction(
            path,
            duration=features.duration,
            silent=silent,
            model=model.model_id,
            precision=features.precision,
            truncated=features.truncated,
            music=False,
            not_music=reason,
        )
    reading = track_reading(model, features.features)
    names, mean = reading.names, reading.track
    return Prediction(
        path,
        emotions=dict(zip(names, map(float, mean))),
        top_emotion=names[int(mean.argmax())],
        timeline=[
            TimelinePoint(float(a), float(b), dict(zip(names, map(float, p))))
            for a, b, p in zip(features.starts, features.ends, reading.timeline)
        ],
        duration=features.duration,
        silent=silent,
        model=model.model_id,
        precision=features.precision,
        confidence=reading.confidence,
        truncated=features.truncated,
        arousal=reading.arousal,
        valence=reading.valence,
    )


def _stream_predictions(
    paths: str | Path | Iterable[str | Path],
    model: str | Path | TrainedModel | None,
    *,
    workers: int,
    scheduler: str | None,
    backend: Backend | None,
    use_cache: bool,
    cache_dir: str | Path | None,
    progress: Callable[[int, int], None] | None,
    max_duration: float | None,
    exact: bool,
) -> tuple[int, Iterator[tuple[int, Prediction]]]:
    """The number of files, and ``(input index, Prediction)`` pairs as they finish."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    check_max_duration(max_duration)  # here, once: a cached result would not check it
    files = [str(p) for p in find_audio(paths)]
    trained = load_model(model)
    if use_cache:  # checked once here: one warning line, and workers that do not retry
        usable = usable_cache_dir(cache_dir)
        use_cache, cache_dir = usable is not None, usable
    cache = None if cache_dir is None else str(cache_dir)

    preload_in_workers(__name__)  # pool workers start with torch and the network imported

    def outcomes() -> Iterator[tuple[int, Prediction]]:
        job = PredictJob(
            ModelHandle(trained), use_cache, cache, max_duration=max_duration, exact=exact
        )
        with using_backend(
            backend, workers=workers, scheduler=scheduler, items=len(files)
        ) as runner:
            runner.start(job)
            # Absolute paths travel (a Dask worker resolves a relative one in its own
            # folder, on its own machine); results name the file as it was given.
            sent = enumerate(map(os.path.abspath, files))
            for done, ((index, path), out) in enumerate(
                stream(runner, predict_task, sent), start=1
            ):
                if isinstance(out, BaseException):
                    out = index, Prediction.failed(path, out, trained.model_id)
                out[1].path = files[index]
                if out[1].error is not None and path != files[index]:
                    out[1].error = out[1].error.replace(path, files[index])
                if progress is not None:
                    progress(done, len(files))
                yield out

    return len(files), outcomes()


def predict_iter(
    paths: str | Path | Iterable[str | Path],
    model: str | Path | TrainedModel | None = None,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    backend: Backend | None = None,
    progress: Callable[[int, int], None] | None = None,
    use_cache: bool = True,
    cache_dir: str | Path | None = None,
    max_duration: float | None = MAX_DURATION,
    exact: bool = False,
) -> Iterator[Prediction]:
    """Like :func:`predict`, but yield each file's :class:`Prediction` as soon as it is
    done (completion order), holding only the files in flight in memory."""
    _, outcomes = _stream_predictions(**locals())  # every argument, passed on
    for _, prediction in outcomes:
        yield prediction


def predict(
    paths: str | Path | Iterable[str | Path],
    model: str | Path | TrainedModel | None = None,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    backend: Backend | None = None,
    progress: Callable[[int, int], None] | None = None,
    use_cache: bool = True,
    cache_dir: str | Path | None = None,
    max_duration: float | None = MAX_DURATION,
    exact: bool = False,
) -> list[Prediction]:
    """Predict each file's emotion distribution, top emotion and timeline.

    Parameters
    ----------
    paths : path or iterable of paths
        Audio files; folders are searched recursively for audio extensions.
    model : None, path or TrainedModel
        ``None`` uses the model shipped with moodscope.
    workers : int
        Local processes for decoding, features and the model (1: this process).
    scheduler : str, optional
        Run on a Dask cluster instead: ``"tcp://HOST:PORT"`` or ``"local:N"`` (see
        :func:`moodscope.backends.open_backend`); workers read the files from these paths.
    backend : Backend, optional
        An open backend to run on (it stays open); overrides ``workers`` and ``scheduler``.
    progress : callable, optional
        Called as ``progress(done, total)`` after each file.
    max_duration : float or None
        Seconds a file may declare or decode to (default a day); a longer one is an error
        found before decoding. None: no limit.
    exact : bool
        Run the network in float32 everywhere. By default it runs on the CPU's fast path
        where it has one (bfloat16 GEMMs on AMX: the same top emotion as float32 on >= 99 %
        of the dev tracks, shares within 0.01; ``benchmarks/bench_fast.py``); each
        :class:`Prediction` says which ran in ``precision``.

    Returns
    -------
    list of Prediction
        One per file, in input order; a file that failed has ``error`` set instead of
        raising, so one bad file never stops a batch.
    """
    n_files, outcomes = _stream_predictions(**locals())  # every argument, passed on
    out: list[Prediction | None] = [None] * n_files
    for index, prediction in outcomes:
        out[index] = prediction
    return out


__all__ = [
    "AudioError",
    "ModelHandle",
    "Prediction",
    "PredictJob",
    "TimelinePoint",
    "TrackReading",
    "default_model_path",
    "find_audio",
    "load_model",
    "predict",
    "predict_file",
    "predict_iter",
    "predict_task",
    "prediction_features",
    "tagger_tags",
    "track_reading",
]
