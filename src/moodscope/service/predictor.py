"""The service's side of predicting: the model, loaded once; the worker processes, warmed
before they take a request; the admission counts; and a failed prediction turned into the
HTTP error the CLI's ``failed ...`` line would be."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from moodscope.audio.decode import HOLDS_TEXT, sniff
from moodscope.backends import preload_in_workers
from moodscope.errors import AudioError, NotAudioError
from moodscope.inference.predictor import (
    ModelHandle,
    Prediction,
    PredictJob,
    load_model,
    predict_task,
    prediction_features,
)
from moodscope.service.admission import Admission, RequestRejected
from moodscope.service.config import ServiceConfig
from moodscope.service.operators import ServiceMetrics
from moodscope.service.uploads import Upload, remove_upload
from moodscope.service.workers import WorkerDied, WorkerSlots, WorkTimedOut

_STATUS = {"not_audio": 415, "unusable": 422, "crash": 500}


def _rejected_prediction(prediction: Prediction) -> RequestRejected:
    """A failed prediction as an HTTP error worded like the CLI's ``failed ...`` line:
    415 when the content is not audio, 422 for audio that cannot be used (undecodable, too
    short, NaN samples), 500 for a bug of ours or a worker that died."""
    return RequestRejected(_STATUS.get(prediction.error_kind, 500), prediction.error or "failed")


def _predict_job(model: Any, config: ServiceConfig) -> PredictJob:
    # The decoder checks max_duration on the header before decoding, then on what decodes.
    return PredictJob(
        ModelHandle(model), use_cache=config.use_cache, max_duration=config.max_duration
    )


class Predictor:
    """The model, the worker processes and the counts of a running service."""

    def __init__(self, model: Any, config: ServiceConfig):
        self.model = load_model(model)
        self.config = config
        self.job = _predict_job(self.model, config)
        preload_in_workers(predict_task.__module__)  # a replaced worker is warm at once
        self.workers = WorkerSlots(config.workers, prepare=self._warm_worker)
        self.admission = Admission(config, self.workers.service_seconds)
        self.metrics = ServiceMetrics(self.state)
        self.ready = False  # the model is loaded and every worker has run once
        self.upload_dir = config.upload_dir or ""
        self._own_upload_dir = False
        self._warming: asyncio.Task | None = None

    def state(self) -> dict:
        """The counts ``/v1/health`` and ``/metrics`` show; they add up: ``running`` is at
        most ``workers``, ``running + queued`` at most ``capacity``."""
        running = self.workers.busy
        return {
            "workers": self.config.workers,
            "running": running,
            "queued": self.admission.admitted - running,
            "capacity": self.admission.capacity,
            "receiving": self.admission.receiving,
            "ready": self.ready,
            "restarts": dict(self.workers.restarts),
        }

    async def start(self) -> None:
        """Open the upload folder and the worker pools; the workers warm up in the
        background, and :attr:`ready` turns true when they have (``/readyz``)."""
        if not self.upload_dir:
            self.upload_dir = tempfile.mkdtemp(prefix="moodscope-uploads-")
            self._own_upload_dir = True
        Path(self.upload_dir).mkdir(parents=True, exist_ok=True)
        self.workers.start(self.job)
        self._warming = asyncio.create_task(self._warm())

    async def _warm(self) -> None:
        """Compile what compiles (once, here), then warm every worker and open it to
        requests; ready once all are warm."""
        from moodscope.features.extract import warm_up

        try:
            await asyncio.to_thread(warm_up, prediction_features(self.model))
        except Exception as exc:  # noqa: BLE001 - the workers compile their own
            print(f"warning: features did not warm up ({exc})", file=sys.stderr, flush=True)
        failed = await self.workers.warm()
        if failed:
            exc = failed[0]
            print(
                f"error: the workers did not start: {type(exc).__name__}: {exc}; /readyz stays 503",
                file=sys.stderr,
                flush=True,
            )
            return
        self.ready = True

    async def _warm_worker(self, slot) -> None:
        """One short prediction in a fresh worker (imports, model, weights), so the first
        request on it does not pay for them."""
        import numpy as np
        import soundfile as sf

        fd, path = tempfile.mkstemp(dir=self.upload_dir, prefix="warm-", suffix=".wav")
        os.close(fd)
        try:
            noise = np.random.default_rng(0).standard_normal(3 * 22050).astype(np.float32)
            sf.write(path, 0.1 * noise, 22050)
            await asyncio.wrap_future(slot.submit(predict_task, (0, path)))
        finally:
            remove_upload(Path(path))

    def close(self) -> None:
        self.ready = False
        if self._warming is not None:
            self._warming.cancel()
        self.workers.close()
        if self._own_upload_dir:
            shutil.rmtree(self.upload_dir, ignore_errors=True)

    def outcome(self, kind: str) -> None:
        self.metrics.predictions.labels(kind).inc()

    async def predict(self, upload: Upload) -> Prediction:
        """The prediction for an uploaded file, computed in a worker process. Cancelling
        the caller (its client went away) frees the worker at once."""
        if upload.size == 0:
            self.outcome("unusable")
            raise RequestRejected(422, str(AudioError(upload.name, "file is empty (0 bytes)")))
        if sniff(upload.path) == "text":  # 512 bytes: cheap enough for the event loop
            self.outcome("not_audio")
            raise RequestRejected(415, str(NotAudioError(upload.name, HOLDS_TEXT)))
        try:
            prediction = await self._run(upload)
        except asyncio.CancelledError:
            self.outcome("cancelled")
            raise
        # The client's name, not the temporary one, in the result and in any message.
        prediction.path = upload.name
        if prediction.error is not None:
            self.outcome(prediction.error_kind or "crash")
            prediction.error = prediction.error.replace(str(upload.path), upload.name)
            raise _rejected_prediction(prediction)
        self.outcome("ok")
        return prediction

    async def _run(self, upload: Upload) -> Prediction:
        """``predict_task`` on a worker, within the time limit. A worker that dies under a
        request is replaced and the request tried once more, so only a file that kills its
        worker twice fails."""
        limit = self.config.request_timeout
        for attempt in (1, 2):
            try:
                _, prediction = await self.workers.run(
                    predict_task, (0, str(upload.path)), timeout=limit
                )
                return prediction
            except WorkTimedOut:
                self.outcome("timeout")
                raise RequestRejected(
                    504,
                    f"{upload.name}: the prediction ran longer than the server's limit of "
                    f"{limit:g} s (--request-timeout); its worker was stopped",
                ) from None
            except WorkerDied:
                if attempt == 2:
                    self.outcome("crash")
                    raise RequestRejected(
                        500,
                        f"{upload.name}: the worker process died while reading it "
                        "(the server restarted its workers)",
                    ) from None
        raise AssertionError("unreachable")

    def describe(self) -> dict:
        """``GET /v1/model``: what the model is and how well it was measured to do."""
        m = self.model
        crossval = m.info.get("crossval") or {}
        return {
            "id": m.model_id,
            "name": m.name,
            "version": m.version,
            "labels": _gems_order(m.labels),
            "feature_set": m.feature_config.feature_set,
            "features": prediction_features(m).to_dict(),
            "protocol": m.info.get("protocol"),
            "crossval": crossval,
            **_confidence_info(m),
        }


def _confidence_info(m) -> dict:
    """What the model says of its own confidence: the map (or null), the held-out
    yardsticks from its card, and the words the page uses."""
    from moodscope.inference.calibration import CONFIDENCE_WORDS

    cal = m.calibration
    return {
        "calibration": None
        if cal is None
        else {"score": cal.score, "method": cal.method, "n_tracks": cal.n_tracks},
        "held_out": m.info.get("held_out"),
        "confidence_words": [{"from": low, "words": words} for low, words in CONFIDENCE_WORDS],
    }


def _gems_order(labels: list[str]) -> list[str]:
    from moodscope.inference.predictor import _ordered

    return [labels[i] for i in _ordered(labels)]


__all__ = ["Predictor"]
