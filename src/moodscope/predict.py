"""Predict the emotions of any audio: per track a distribution over the emotions, the top
emotion, and a timeline (one entry per segment).

Tracks of any length are cut into fixed windows as long as the segments the model was
trained on, to 0.1 s (3 s for the 20-segment models: 60-s excerpts / 20), hop = window, the
remainder shorter than a window dropped; a clip shorter than one window is an error. Files
are decoded block by block, so memory stays bounded for hour-long recordings.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .audio import AUDIO_EXTENSIONS
from .checkpoint import TrainedModel, load_checkpoint
from .datasets import EMOTIONS
from .errors import AudioError
from .features import FeatureConfig
from .features.extract import map_tracks

SILENCE_PEAK = 1e-4
"""A file whose largest sample is below this (-80 dBFS) is reported as silent."""


@dataclass
class Segment:
    start: float
    end: float
    emotions: dict[str, float]


@dataclass
class Prediction:
    """The result for one file; ``error`` is set (and the rest empty) when it failed."""

    path: str
    emotions: dict[str, float] = field(default_factory=dict)
    top_emotion: str | None = None
    timeline: list[Segment] = field(default_factory=list)
    duration: float | None = None
    silent: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self, *, timeline: bool = False) -> dict:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        out = {
            "path": self.path,
            "top_emotion": self.top_emotion,
            "emotions": {k: round(v, 6) for k, v in self.emotions.items()},
            "duration": None if self.duration is None else round(self.duration, 3),
            "silent": self.silent,
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


def default_model_path() -> Path:
    """The checkpoint shipped inside the package."""
    return Path(str(resources.files("moodscope.models").joinpath("default", "default.ckpt")))


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
    return FeatureConfig(feature_set=config.feature_set, segments=None, window=round(seconds, 1))


def find_audio(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, and audio files (by extension) under folders, recursively, sorted."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS
            )
        else:
            found.append(p)
    return found


def _ordered(labels: Sequence[str]) -> list[int]:
    """Column order for output: the GEMS order when the labels are emotions."""
    if set(labels) <= set(EMOTIONS):
        return sorted(range(len(labels)), key=lambda i: EMOTIONS.index(labels[i]))
    return list(range(len(labels)))


def predict(
    paths: str | Path | Iterable[str | Path],
    model: str | Path | TrainedModel | None = None,
    *,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
    use_cache: bool = True,
) -> list[Prediction]:
    """Predict each file's emotion distribution, top emotion and timeline.

    Parameters
    ----------
    paths : path or iterable of paths
        Audio files; folders are searched recursively for audio extensions.
    model : None, path or TrainedModel
        ``None`` uses the model shipped with moodscope.
    workers : int
        Processes for decoding and feature extraction.

    Returns
    -------
    list of Prediction
        One per file, in input order; a file that failed has ``error`` set instead of
        raising, so one bad file never stops a batch.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files = [str(p) for p in find_audio(paths)]
    trained = load_model(model)
    config = prediction_features(trained)
    results, failures = map_tracks(
        files, config, workers=workers, progress=progress, use_cache=use_cache
    )
    errors = dict(failures)
    order = _ordered(trained.labels)
    names = [trained.labels[i] for i in order]
    out = []
    for path, features in zip(files, results):
        if features is None:
            out.append(Prediction(path, error=errors.get(path, f"{path}: failed")))
            continue
        mean, proba = trained.predict_track(features.features)
        mean, proba = mean[order] / mean.sum(), proba[:, order]
        out.append(
            Prediction(
                path,
                emotions=dict(zip(names, map(float, mean))),
                top_emotion=names[int(mean.argmax())],
                timeline=[
                    Segment(float(a), float(b), dict(zip(names, map(float, p))))
                    for a, b, p in zip(features.starts, features.ends, proba)
                ],
                duration=features.duration,
                silent=features.peak < SILENCE_PEAK,
            )
        )
    return out


__all__ = [
    "AudioError",
    "Prediction",
    "Segment",
    "default_model_path",
    "find_audio",
    "load_model",
    "predict",
    "prediction_features",
]
