"""The HTTP service behind ``moodscope serve``: a versioned JSON API over the same prediction
seam as the CLI (:func:`~moodscope.inference.predictor.predict_task` on a process pool), and
the offline
page at ``/`` that draws a track's emotions from that API.

The event loop only moves bytes: an upload streams to a temporary file, its size and rate
counted as it arrives, holding no place in the queue; once it has arrived it waits for one
of the worker processes (decoding, features, the model) in a bounded queue that answers
503 when full. A request that runs too long, or whose client leaves, gives its worker
back (killed and replaced, :mod:`moodscope.service.workers`). The limits are defined in
:mod:`moodscope.service.config`; probes, metrics, the Host check and the access log in
:mod:`moodscope.service.operators`. Only ``moodscope serve`` imports this module, so the
other commands never pay for FastAPI.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field
from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from moodscope.audio.decode import AUDIO_EXTENSIONS, HOLDS_TEXT, sniff
from moodscope.backends import preload_in_workers
from moodscope.errors import AudioError, ConfigError, MoodscopeError, NotAudioError
from moodscope.inference.predictor import (
    ModelHandle,
    Prediction,
    PredictJob,
    load_model,
    predict_task,
    prediction_features,
)
from moodscope.service.config import DEFAULTS, TOKEN_ENV, ServiceConfig, resolve_token
from moodscope.service.operators import (
    HostCheck,
    OperatorMiddleware,
    ServiceMetrics,
    configure_access_log,
)
from moodscope.service.workers import WorkerDied, WorkerSlots, WorkTimedOut

API_VERSION = "v1"
FORM_FIELD = "file"
FORM_SLACK = 1 << 20
"""Bytes a multipart body may carry beyond the file itself (boundaries, part headers, small
fields)."""


class RequestRejected(MoodscopeError):
    """A request the service answers with an HTTP error: ``status`` and a one-line detail."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = " ".join(detail.split())
        self.headers = headers or {}


# -- admission: a bounded queue in front of the workers ---------------------------------------


class Admission:
    """Two counts, each with its limit, checked without waiting (a full server says 503 at
    once, with a ``Retry-After`` from the measured service time):

    - uploads being received (``max_uploads``): they hold a connection and a temporary
      file, never a worker's place, so clients that trickle cannot starve the others;
    - received uploads running or waiting for a worker (``workers + queue``).
    """

    GUESS_SECONDS = 2.0
    """Service time assumed before the first request is measured."""

    def __init__(self, config: ServiceConfig, service_seconds: Callable[[], float | None]):
        self.workers = config.workers
        self.capacity = config.workers + config.queue
        self.max_receiving = config.max_uploads
        self.retry_after_max = config.retry_after_max
        self.service_seconds = service_seconds
        self.admitted = 0
        self.receiving = 0

    def check(self) -> None:
        """Refuse now when a received upload would find the queue full (before any byte of
        it is read; :meth:`enter` decides once it has arrived)."""
        if self.admitted >= self.capacity:
            raise self._busy(
                f"{self.admitted} requests are running or queued (at most {self.capacity})"
            )

    def start_upload(self) -> None:
        if self.receiving >= self.max_receiving:
            raise self._busy(
                f"{self.receiving} uploads are being received (at most {self.max_receiving}, "
                "--max-uploads)"
            )
        self.receiving += 1

    def end_upload(self) -> None:
        self.receiving -= 1

    def enter(self) -> None:
        # No await between the check and the increment: atomic on the event loop.
        self.check()
        self.admitted += 1

    def leave(self) -> None:
        self.admitted -= 1

    def retry_after(self) -> int:
        """Seconds until a place is likely free: a running request ends about every
        (median recent service time / workers) seconds; capped by ``retry_after_max``."""
        seconds = self.service_seconds() or self.GUESS_SECONDS
        return min(self.retry_after_max, max(1, math.ceil(seconds / self.workers)))

    def _busy(self, why: str) -> RequestRejected:
        return RequestRejected(
            503, f"the server is busy: {why}; retry later", {"Retry-After": str(self.retry_after())}
        )


# -- uploads ----------------------------------------------------------------------------------


@dataclass
class Upload:
    """An uploaded file, written to ``path``; ``name`` is the client's file name."""

    path: Path
    name: str
    size: int


def _client_name(raw: bytes | None) -> str:
    """The file name the client gave, without any folders it sent along."""
    if not raw:
        return ""
    name = raw.decode("utf-8", errors="replace")
    return re.split(r"[/\\]", name)[-1].strip()


def _too_large(limit_mb: float) -> RequestRejected:
    return RequestRejected(
        413,
        f"upload is larger than the server's limit of {limit_mb:g} MB (--max-upload-mb)",
        {"Connection": "close"},
    )


def _no_file() -> RequestRejected:
    return RequestRejected(
        400,
        f"no file: send the audio as a multipart/form-data field named '{FORM_FIELD}' "
        f"(curl -F {FORM_FIELD}=@song.mp3 ...)",
    )


class _FormWriter:
    """Feeds a multipart body to python-multipart's streaming parser and writes the part
    named ``file`` to a temporary file chunk by chunk; raises 413 as soon as it passes the
    limit. Other parts are dropped as they pass (the body's total size is bounded by the
    caller). Nothing of the body is held in memory beyond the chunk being parsed."""

    def __init__(self, boundary: bytes, upload_dir: str, limit: int, limit_mb: float):
        self.upload_dir, self.limit, self.limit_mb = upload_dir, limit, limit_mb
        self.path: Path | None = None
        self.name = ""
        self.size = 0
        self.file_done = False
        self._file = None
        self._writing = False
        self._headers: dict[bytes, bytes] = {}
        self._field = self._value = b""
        self.parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )

    def write(self, chunk: bytes) -> None:
        self.parser.write(chunk)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.strip().lower()] = self._value.strip()
        self._field = self._value = b""

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._writing = params.get(b"name") == FORM_FIELD.encode() and self.path is None
        if self._writing:
            self.name = _client_name(params.get(b"filename"))
            suffix = Path(self.name).suffix.lower()
            # Content decides the format; a known audio suffix only helps the decoders guess.
            fd, path = tempfile.mkstemp(
                dir=self.upload_dir,
                prefix="upload-",
                suffix=suffix if suffix in AUDIO_EXTENSIONS else "",
            )
            self.path = Path(path)
            self._file = os.fdopen(fd, "wb")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        n = end - start
        if self._writing and self._file is not None:
            self.size += n
            if self.size > self.limit:
                raise _too_large(self.limit_mb)
            self._file.write(data[start:end])

    def _part_end(self) -> None:
        if self._writing:
            self._writing = False
            self.file_done = True
            self.close()


async def receive_upload(request: Request, config: ServiceConfig, upload_dir: str) -> Upload:
    """Stream the request's multipart body; its ``file`` part goes to a temporary file in
    ``upload_dir``. Raises :class:`RequestRejected`: 400 (no ``file`` part, whatever else
    was sent), 408 when the client sends nothing for ``config.upload_timeout`` seconds or
    averages less than ``config.min_upload_rate`` bytes/s over a
    ``config.upload_rate_window``-second window (a client trickling bytes to hold a
    connection and a file), 413; on any failure the temporary file is already removed."""
    limit = config.max_upload_bytes
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit + FORM_SLACK:
        raise _too_large(config.max_upload_mb)
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or not params.get(b"boundary"):
        raise _no_file()
    form = _FormWriter(params[b"boundary"], upload_dir, limit, config.max_upload_mb)
    pace = _UploadPace(config)
    chunks = aiter(request.stream())
    next_chunk: asyncio.Future | None = None
    try:
        while True:
            if next_chunk is None:
                next_chunk = asyncio.ensure_future(anext(chunks))
            # Waiting without cancelling the read: a window may end while bytes are on
            # their way, and a cancelled read would end the stream.
            done, _ = await asyncio.wait({next_chunk}, timeout=pace.wait_seconds())
            chunk = None
            if done:
                try:
                    chunk = next_chunk.result()
                except StopAsyncIteration:
                    next_chunk = None
                    break
                next_chunk = None
            pace.check(form.name, chunk)
            if chunk is None:
                continue
            form.write(chunk)  # raises 413 once the file part passes the limit
            if pace.received > limit + FORM_SLACK:
                if form.path is None:  # the whole limit read and still no file part
                    raise _no_file()
                raise _too_large(config.max_upload_mb)
        form.close()
        if form.path is None:
            raise _no_file()
        if not form.file_done:
            raise RequestRejected(400, f"{form.name or 'upload'}: the upload ended early")
        if form.size == 0 and not form.name:  # a form sent with no file chosen
            raise _no_file()
        return Upload(form.path, form.name or "upload", form.size)
    except MultipartParseError as exc:
        _drop(form, next_chunk)
        raise RequestRejected(400, f"malformed multipart body ({exc})") from None
    except ClientDisconnect:
        _drop(form, next_chunk)
        raise RequestRejected(400, "the client went away during the upload") from None
    except BaseException:
        _drop(form, next_chunk)
        raise


class _UploadPace:
    """The two rules an upload in progress must keep: some byte every ``upload_timeout``
    seconds, and at least ``min_upload_rate`` bytes/s on average over each
    ``upload_rate_window`` seconds (the last, unfinished window is not judged)."""

    def __init__(self, config: ServiceConfig):
        self.config = config
        now = time.monotonic()
        self.last_byte = self.window_start = now
        self.window_bytes = self.received = 0

    def wait_seconds(self) -> float:
        c, now = self.config, time.monotonic()
        ends = [self.last_byte + c.upload_timeout]
        if c.min_upload_rate > 0:
            ends.append(self.window_start + c.upload_rate_window)
        return max(0.0, min(ends) - now)

    def check(self, name: str, chunk: bytes | None) -> None:
        c, now = self.config, time.monotonic()
        if chunk:
            self.received += len(chunk)
            self.window_bytes += len(chunk)
            self.last_byte = now
        what = name or "upload"
        if now - self.last_byte >= c.upload_timeout:
            raise RequestRejected(
                408,
                f"{what}: nothing received for {c.upload_timeout:g} s after {self.received} "
                "bytes; the upload was dropped",
                {"Connection": "close"},
            )
        elapsed = now - self.window_start
        if c.min_upload_rate > 0 and elapsed >= c.upload_rate_window:
            rate = self.window_bytes / elapsed
            if rate < c.min_upload_rate:
                raise RequestRejected(
                    408,
                    f"{what}: the upload came at {rate:.0f} bytes/s over {elapsed:.0f} s, under "
                    f"the server's minimum of {c.min_upload_rate:g} bytes/s "
                    "(--min-upload-rate); the upload was dropped",
                    {"Connection": "close"},
                )
            self.window_start, self.window_bytes = now, 0


def _drop(form: _FormWriter, next_chunk: asyncio.Future | None) -> None:
    if next_chunk is not None:
        next_chunk.cancel()
    form.close()
    _remove(form.path)


def _remove(path: Path | None) -> None:
    if path is not None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


# -- predictions ------------------------------------------------------------------------------

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
            _remove(Path(path))

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


# -- the application --------------------------------------------------------------------------


def web_dir() -> Path:
    """The page's files (index.html, app.js, style.css), shipped in the package."""
    return Path(str(resources.files("moodscope.service").joinpath("web")))


_PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

_MULTIPART_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": [FORM_FIELD],
                "properties": {FORM_FIELD: {"type": "string", "format": "binary"}},
            }
        }
    },
}


_ERROR_TEXT = {
    400: "No `file` part in the request (whatever else was sent), or a malformed body.",
    401: "Missing or wrong bearer token.",
    408: "The upload stalled (nothing for `--upload-timeout` s) or trickled (under "
    "`--min-upload-rate` bytes/s over a window).",
    413: "The upload is over the size limit (checked while it streams).",
    415: "Not an audio file (judged by its content, not its name).",
    421: "The Host header names another server (`--allowed-host`).",
    422: "Undecodable audio, too short for one window, too long, or NaN samples.",
    500: "A worker process died while reading the file, or a bug.",
    503: "The queue or the upload slots are full; retry after `Retry-After` seconds.",
    504: "The prediction ran longer than `--request-timeout`; its worker was stopped.",
}


_EXAMPLE = {
    "path": "song.mp3",
    "top_emotion": "calmness",
    "confidence": 0.41,
    "emotions": {
        "amazement": 0.04, "solemnity": 0.13, "tenderness": 0.14, "nostalgia": 0.16,
        "calmness": 0.22, "power": 0.07, "joyful_activation": 0.08, "tension": 0.08,
        "sadness": 0.08,
    },
    "top_factor": "sublimity",
    "factors": {"sublimity": 0.69, "vitality": 0.15, "unease": 0.16},
    "duration": 60.03,
    "silent": False,
    "truncated": False,
    "model": "default@fbe3183cdc45",
    "precision": "bfloat16",
    "timeline": [{"start": 0.0, "end": 3.0, "emotions": {"calmness": 0.21, "...": 0.0}}],
}  # fmt: skip


class ErrorOut(BaseModel):
    """Every error: one line, worded like the CLI's."""

    detail: str = Field(examples=["notes.mp3: is not an audio file (it holds text)"])


class EmotionsOut(BaseModel):
    """The nine GEMS shares, in GEMS order; they sum to 1."""

    model_config = ConfigDict(extra="forbid")

    amazement: float
    solemnity: float
    tenderness: float
    nostalgia: float
    calmness: float
    power: float
    joyful_activation: float
    tension: float
    sadness: float


class SegmentOut(BaseModel):
    start: float = Field(description="Seconds.")
    end: float = Field(description="Seconds.")
    emotions: EmotionsOut


class PredictionOut(BaseModel):
    """A file's prediction: what `moodscope predict --format json` writes for one file."""

    path: str = Field(description="The uploaded file's name.")
    top_emotion: str | None = Field(description="None when the file is not music.")
    emotions: EmotionsOut | dict = Field(description="Empty when the file is not music.")
    duration: float | None = Field(description="Seconds of audio decoded.")
    silent: bool = Field(description="The track is (nearly) silent: the shares mean little.")
    model: str = Field(description="The model's name@version.")
    precision: str | None = Field(
        None, description="The network's number format: float32, or bfloat16 (a CPU's fast path)."
    )
    # Sent once the branches that add them are in (conf: confidence and the factors).
    truncated: bool = Field(
        False, description="The container declares more audio than decodes (a cut file)."
    )
    confidence: float | None = Field(
        None, description="The chance that top_emotion is what most listeners report."
    )
    top_factor: str | None = Field(None, description="The top GEMS factor.")
    music: bool = Field(True, description="False: silence, a tone, noise or clicks; no mood.")
    not_music: str | None = Field(None, description="Why it is not music, in one line.")
    factors: dict[str, float] | None = Field(
        None, description="The three GEMS factors' shares (sublimity, vitality, unease)."
    )
    timeline: list[SegmentOut] | None = Field(
        None, description="One entry per window, with `?timeline=true`."
    )


class HealthOut(BaseModel):
    """Counts that add up: `running` <= `workers`, `running + queued` <= `capacity`."""

    status: str
    ready: bool
    model_loaded: bool
    model: str
    workers: int
    running: int = Field(description="Workers running a prediction now.")
    queued: int = Field(description="Received uploads waiting for a worker.")
    receiving: int = Field(description="Uploads being received (they hold no worker).")
    capacity: int = Field(description="`workers` + `--queue`.")
    max_upload_mb: float
    max_duration: float


class ReadyOut(BaseModel):
    ready: bool
    detail: str


for _model in (ErrorOut, EmotionsOut, SegmentOut, PredictionOut, HealthOut, ReadyOut):
    _model.model_rebuild()  # resolved here: ``from __future__ import annotations`` defers them


def _responses(*codes: int, ok: type[BaseModel] | None = None) -> dict:
    out: dict = {}
    if ok is not None:
        out[200] = {"model": ok}
        if ok is PredictionOut:
            out[200]["content"] = {"application/json": {"example": _EXAMPLE}}
    out.update({c: {"description": _ERROR_TEXT[c], "model": ErrorOut} for c in codes})
    return out


def create_app(model: Any = None, *, host: str = "127.0.0.1", **options: Any):
    """The FastAPI application: ``/v1`` API, OpenAPI docs at ``/docs``, the page at ``/``,
    the probes ``/healthz`` and ``/readyz`` (open) and ``/metrics`` (behind the token).

    The model loads here, once; the workers start with the application's lifespan
    (``uvicorn`` or ``with TestClient(app)``), warm up in the background (``/readyz`` says
    when) and stop with it.

    Parameters
    ----------
    model : None, path or TrainedModel
        ``None``: the model shipped with moodscope.
    host : str
        The address the server is bound to: requests must name it (or localhost, or one
        of ``allowed_hosts``) in their Host header.
    **options
        Any field of :class:`~moodscope.service.config.ServiceConfig` (``workers``,
        ``queue``, ``max_upload_mb``, ``token``, ``request_timeout``, ...), each with the
        default documented there.
    """
    from moodscope import __version__

    unknown = set(options) - ServiceConfig.options()
    if unknown:
        raise TypeError(f"create_app() got unknown options: {', '.join(sorted(unknown))}")
    options["token"] = options.get("token") or None
    config = ServiceConfig(**options)
    predictor = Predictor(model, config)
    hosts = HostCheck(host, config.allowed_hosts)

    @asynccontextmanager
    async def lifespan(app):
        await predictor.start()
        try:
            yield
        finally:
            predictor.close()

    app = FastAPIOffline(
        title="moodscope",
        version=__version__,
        description=(
            "The emotion music induces, on the nine GEMS categories: a distribution, the top "
            "emotion and a timeline per track. `POST /v1/predict` answers with the same JSON "
            "object as `moodscope predict --format json` gives for one file."
        ),
        lifespan=lifespan,
    )
    app.state.predictor = predictor
    app.state.config = config
    app.add_middleware(
        OperatorMiddleware,
        metrics=predictor.metrics,
        hosts=hosts,
        json_log=config.access_log == "json",
    )

    def json_error(status: int, detail: str, headers: dict | None = None):
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)

    @app.exception_handler(RequestRejected)
    async def rejected(request: Request, exc: RequestRejected):
        return json_error(exc.status, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg')}"
            for e in exc.errors()
        )
        return json_error(422, f"invalid request: {problems}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return json_error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    bearer = HTTPBearer(auto_error=False, description="The token given to `moodscope serve`.")

    def require_token(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
    ) -> None:
        if not config.token:
            return
        given = credentials.credentials.encode() if credentials is not None else None
        if given is None or not secrets.compare_digest(given, config.token.encode()):
            problem = "wrong" if given is not None else "missing"
            raise RequestRejected(
                401,
                f"{problem} bearer token: send 'Authorization: Bearer TOKEN' with the token "
                "the server was started with",
                {"WWW-Authenticate": "Bearer"},
            )

    # Every /v1 call and /metrics need the token; the page, its files, the docs and the
    # probes stay open (the page asks for the token when the API answers 401).
    api = APIRouter(prefix=f"/{API_VERSION}", dependencies=[Depends(require_token)])

    @api.post(
        "/predict",
        summary="Predict the emotions of one uploaded audio file",
        openapi_extra={"requestBody": _MULTIPART_BODY},
        responses=_responses(400, 401, 408, 413, 415, 421, 422, 500, 503, 504, ok=PredictionOut),
    )
    async def predict(
        request: Request,
        timeline: bool = Query(False, description="Include one entry per 3-s window."),
    ):
        """The same JSON object as `moodscope predict --format json` gives for one file;
        `path` is the uploaded file's name."""
        admission = predictor.admission
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > config.max_upload_bytes + FORM_SLACK:
            raise _too_large(config.max_upload_mb)  # before admitting it or reading a byte
        admission.check()  # a full queue says so before the upload is sent
        # Receiving holds an upload slot, not a place in the queue: only a file that has
        # arrived waits for a worker.
        admission.start_upload()
        try:
            upload = await receive_upload(request, config, predictor.upload_dir)
        finally:
            admission.end_upload()
        try:
            admission.enter()
            try:
                prediction = await _unless_client_leaves(request, predictor.predict(upload))
            finally:
                admission.leave()
        finally:
            _remove(upload.path)
        return prediction.to_dict(timeline=timeline)

    @api.get(
        "/health",
        summary="Is the service alive, with its model loaded? Counts of its work",
        response_model=HealthOut,
    )
    async def health():
        state = predictor.state()
        return {
            "status": "ok",
            "ready": state["ready"],
            "model_loaded": predictor.model is not None,
            "model": predictor.model.model_id,
            **{k: state[k] for k in ("workers", "running", "queued", "receiving", "capacity")},
            "max_upload_mb": config.max_upload_mb,
            "max_duration": config.max_duration,
        }

    @api.get("/model", summary="The model: labels, feature set, cross-validated metrics")
    async def model_info():
        return predictor.describe()

    app.include_router(api)

    def probe(path: str, summary: str, **kw):
        """A GET route and its HEAD twin (load balancers and curl -I probe with HEAD)."""

        def register(fn):
            for method in ("GET", "HEAD"):
                app.add_api_route(
                    path,
                    fn,
                    methods=[method],
                    summary=summary,
                    operation_id=f"{fn.__name__}_{method.lower()}",
                    tags=["probes"],
                    **kw,
                )
            return fn

        return register

    @probe("/healthz", "Liveness: the process answers (no token needed)")
    async def healthz():
        return {"status": "ok"}

    @probe(
        "/readyz",
        "Readiness: the model is loaded and the workers are up (no token needed)",
        response_model=ReadyOut,
        responses={503: {"description": "Not ready yet (or shutting down).", "model": ReadyOut}},
    )
    async def readyz():
        if predictor.ready:
            return {"ready": True, "detail": f"model {predictor.model.model_id}, workers up"}
        return JSONResponse(
            {"ready": False, "detail": "the workers are starting (or the server is stopping)"},
            status_code=503,
        )

    @app.get(
        "/metrics",
        summary="Prometheus metrics (behind the token when one is set)",
        dependencies=[Depends(require_token)],
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}, 401: {"model": ErrorOut}},
        tags=["probes"],
    )
    async def metrics():
        body, content_type = predictor.metrics.exposition()
        return Response(body, media_type=content_type)

    page = web_dir()

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(
            page / "index.html",
            media_type="text/html",
            headers={"Content-Security-Policy": _PAGE_CSP, "Cache-Control": "no-cache"},
        )

    app.mount("/static", StaticFiles(directory=str(page)), name="static")
    return app


async def _client_gone(request: Request) -> None:
    """Returns when the client closes its connection (after its body has been read, the
    server's ``receive`` waits for exactly that)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _unless_client_leaves(request: Request, work: Awaitable[Prediction]) -> Prediction:
    """``work``'s result; if the client disconnects first, ``work`` is cancelled (leaving
    the queue, or its worker killed and replaced) and the request ends with 499, which
    nobody reads but the access log and the metrics."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_client_gone(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        raise RequestRejected(499, "the client closed the connection; its work was cancelled")
    return task.result()


# -- running it -------------------------------------------------------------------------------


def public_without_token(host: str, token: str | None) -> bool:
    """Whether serving on ``host`` lets other machines in with no token."""
    if token:
        return False
    if host in ("localhost", "ip6-localhost"):
        return False
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return True  # a host name: assume others can reach it


LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    model: Any = None,
    token_file: str | Path | None = None,
    log_level: str = "info",
    **options: Any,
) -> None:
    """Run the service with uvicorn until interrupted (``moodscope serve``).

    The token is ``token``, else the first line of ``token_file``, else
    ``$MOODSCOPE_TOKEN``; ``options`` are :class:`ServiceConfig` fields.
    """
    import uvicorn

    if log_level not in LOG_LEVELS:
        raise ConfigError(f"log level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    token = resolve_token(options.pop("token", None), token_file)
    if public_without_token(host, token):
        print(
            f"warning: serving on {host} without a token: anyone who can reach port {port} "
            f"can use it; pass --token-file or set {TOKEN_ENV}",
            file=sys.stderr,
            flush=True,
        )
    app = create_app(model, host=host, token=token, **options)
    access_log = options.get("access_log", DEFAULTS.access_log)
    if access_log == "json":
        configure_access_log(log_level)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log == "text",
        timeout_graceful_shutdown=10,
    )


__all__ = [
    "DEFAULTS",
    "Admission",
    "RequestRejected",
    "ServiceConfig",
    "create_app",
    "public_without_token",
    "receive_upload",
    "serve",
    "web_dir",
]
