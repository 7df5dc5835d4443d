"""The HTTP service behind ``moodscope serve``: a versioned JSON API over the same prediction
seam as the CLI (:func:`~moodscope.inference.predictor.predict_task` on a process pool), and
the offline
page at ``/`` that draws a track's emotions from that API.

The event loop only moves bytes: an upload streams to a temporary file, its size counted as
it arrives; decoding, features and the model run in worker processes, behind a bounded
queue that answers 503 when full. Only ``moodscope serve`` imports this module, so the
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
from concurrent.futures.process import BrokenProcessPool
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from moodscope.audio.decode import AUDIO_EXTENSIONS, HOLDS_TEXT, sniff
from moodscope.backends import ProcessBackend
from moodscope.errors import AudioError, ConfigError, MoodscopeError, NotAudioError
from moodscope.inference.predictor import (
    ModelHandle,
    Prediction,
    PredictJob,
    load_model,
    predict_task,
    prediction_features,
)

API_VERSION = "v1"
FORM_FIELD = "file"
FORM_SLACK = 1 << 20
"""Bytes a multipart body may carry beyond the file itself (boundaries, part headers, small
fields)."""

TOKEN_ENV = "MOODSCOPE_TOKEN"


class RequestRejected(MoodscopeError):
    """A request the service answers with an HTTP error: ``status`` and a one-line detail."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = " ".join(detail.split())
        self.headers = headers or {}


@dataclass
class ServiceConfig:
    """How a service runs; ``moodscope serve``'s options."""

    workers: int = 2  # prediction processes (decoding, features, model)
    queue: int = 32  # requests that may wait for a worker beyond those running; more -> 503
    max_upload_mb: float = 100.0  # largest upload, in MiB, enforced while it streams
    token: str | None = None  # when set, every /v1 call needs "Authorization: Bearer TOKEN"
    use_cache: bool = False  # keep the feature cache for uploads (off: nothing accumulates)
    upload_dir: str | None = None  # where uploads wait for a worker (default: a fresh temp dir)
    upload_timeout: float = 30.0  # seconds an upload may send nothing before it gets 408

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        if self.queue < 0:
            raise ConfigError(f"queue must be >= 0, got {self.queue}")
        if not self.max_upload_mb > 0:
            raise ConfigError(f"max upload size must be > 0 MB, got {self.max_upload_mb}")
        if not self.upload_timeout > 0:
            raise ConfigError(f"upload timeout must be > 0 s, got {self.upload_timeout}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)


# -- admission: a bounded queue in front of the workers ---------------------------------------


class Admission:
    """Counts the requests admitted (running or waiting for a worker) and refuses more than
    ``workers + queue``, without waiting: a full server says 503 at once, with a
    ``Retry-After`` estimated from recent prediction times."""

    def __init__(self, workers: int, queue: int):
        self.workers = workers
        self.capacity = workers + queue
        self.admitted = 0
        self.running = 0
        self.seconds_per_file = 2.0  # running mean of recent predictions (seeded with a guess)

    def enter(self) -> None:
        # No await between the check and the increment: atomic on the event loop.
        if self.admitted >= self.capacity:
            raise RequestRejected(
                503,
                f"the server is busy: {self.admitted} requests are running or queued "
                f"(at most {self.capacity}); retry later",
                {"Retry-After": str(self.retry_after())},
            )
        self.admitted += 1

    def leave(self) -> None:
        self.admitted -= 1

    def record(self, seconds: float) -> None:
        self.seconds_per_file = 0.8 * self.seconds_per_file + 0.2 * seconds

    def retry_after(self) -> int:
        waiting = max(1, self.admitted - self.workers + 1)
        return max(1, math.ceil(waiting * self.seconds_per_file / self.workers))


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
    limit. Nothing of the body is held in memory beyond the chunk being parsed."""

    def __init__(self, boundary: bytes, upload_dir: str, limit: int, limit_mb: float):
        self.upload_dir, self.limit, self.limit_mb = upload_dir, limit, limit_mb
        self.path: Path | None = None
        self.name = ""
        self.size = 0
        self.file_done = False
        self._file = None
        self._writing = False
        self._other = 0
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
        else:
            self._other += n
            if self._other > FORM_SLACK:
                raise _too_large(self.limit_mb)

    def _part_end(self) -> None:
        if self._writing:
            self._writing = False
            self.file_done = True
            self.close()


async def receive_upload(request: Request, config: ServiceConfig, upload_dir: str) -> Upload:
    """Stream the request's multipart body; its ``file`` part goes to a temporary file in
    ``upload_dir``. Raises :class:`RequestRejected` (400, 408 when the client sends nothing
    for ``config.upload_timeout`` seconds, 413); on any failure the temporary file is
    already removed. The timeout matters because an upload holds a place in the queue: a
    stalled client must not keep it (nor a file) forever."""
    limit = config.max_upload_bytes
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit + FORM_SLACK:
        raise _too_large(config.max_upload_mb)
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or not params.get(b"boundary"):
        raise _no_file()
    form = _FormWriter(params[b"boundary"], upload_dir, limit, config.max_upload_mb)
    received = 0
    chunks = aiter(request.stream())
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(anext(chunks), config.upload_timeout)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise RequestRejected(
                    408,
                    f"{form.name or 'upload'}: nothing received for {config.upload_timeout:g} s "
                    f"after {received} bytes; the upload was dropped",
                    {"Connection": "close"},
                ) from None
            received += len(chunk)
            if received > limit + FORM_SLACK:
                raise _too_large(config.max_upload_mb)
            form.write(chunk)
        form.close()
        if form.path is None:
            raise _no_file()
        if not form.file_done:
            raise RequestRejected(400, f"{form.name or 'upload'}: the upload ended early")
        if form.size == 0 and not form.name:  # a form sent with no file chosen
            raise _no_file()
        return Upload(form.path, form.name or "upload", form.size)
    except MultipartParseError as exc:
        form.close()
        _remove(form.path)
        raise RequestRejected(400, f"malformed multipart body ({exc})") from None
    except ClientDisconnect:
        form.close()
        _remove(form.path)
        raise RequestRejected(400, "the client went away during the upload") from None
    except BaseException:
        form.close()
        _remove(form.path)
        raise


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


class Predictor:
    """The model and the worker pool of a running service."""

    def __init__(self, model: Any, config: ServiceConfig):
        self.model = load_model(model)
        self.config = config
        self.job = PredictJob(ModelHandle(self.model), use_cache=config.use_cache)
        self.backend = ProcessBackend(config.workers)
        self.admission = Admission(config.workers, config.queue)
        self.generation = 0  # bumped on every restart, so one broken pool restarts once
        self.upload_dir = config.upload_dir or ""
        self._own_upload_dir = False

    def start(self) -> None:
        from moodscope.features.extract import warm_up

        if not self.upload_dir:
            self.upload_dir = tempfile.mkdtemp(prefix="moodscope-uploads-")
            self._own_upload_dir = True
        Path(self.upload_dir).mkdir(parents=True, exist_ok=True)
        warm_up(prediction_features(self.model))  # numba kernels compiled once, here
        self.backend.start(self.job)

    async def warm_workers(self) -> None:
        """Start every worker and run one short prediction in each (imports, model,
        weights), so neither the first requests nor the event loop pay for it."""
        import numpy as np
        import soundfile as sf

        fd, path = tempfile.mkstemp(dir=self.upload_dir, prefix="warm-", suffix=".wav")
        os.close(fd)
        try:
            noise = np.random.default_rng(0).standard_normal(3 * 22050).astype(np.float32)
            sf.write(path, 0.1 * noise, 22050)
            futures = [
                self.backend.submit(predict_task, (i, path)) for i in range(self.config.workers)
            ]
            await asyncio.gather(*map(asyncio.wrap_future, futures))
        finally:
            _remove(Path(path))

    def close(self) -> None:
        self.backend.close()
        if self._own_upload_dir:
            shutil.rmtree(self.upload_dir, ignore_errors=True)

    async def predict(self, upload: Upload) -> Prediction:
        """The prediction for an uploaded file, computed in a worker process."""
        if upload.size == 0:
            raise RequestRejected(422, str(AudioError(upload.name, "file is empty (0 bytes)")))
        if sniff(upload.path) == "text":  # 512 bytes: cheap enough for the event loop
            raise RequestRejected(415, str(NotAudioError(upload.name, HOLDS_TEXT)))
        started = time.perf_counter()
        self.admission.running += 1
        try:
            prediction = await self._run(upload)
        finally:
            self.admission.running -= 1
        self.admission.record(time.perf_counter() - started)
        # The client's name, not the temporary one, in the result and in any message.
        prediction.path = upload.name
        if prediction.error is not None:
            prediction.error = prediction.error.replace(str(upload.path), upload.name)
            raise _rejected_prediction(prediction)
        return prediction

    async def _run(self, upload: Upload) -> Prediction:
        """``predict_task`` on the pool. When a worker dies, the whole local pool breaks and
        every request in it sees it: each is tried once more on a fresh pool, so only a
        file that kills its worker twice (or a request caught twice beside one) fails."""
        for attempt in (1, 2):
            generation = self.generation
            try:
                future = self.backend.submit(predict_task, (0, str(upload.path)))
                _, prediction = await asyncio.wrap_future(future)
                return prediction
            except BrokenProcessPool:
                if generation == self.generation:  # the first to see this pool broken
                    self.generation += 1
                    self.backend.restart()
                if attempt == 2:
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
    400: "No file in the request.",
    408: "The client stopped sending its upload (nothing for `--upload-timeout` seconds).",
    401: "Missing or wrong bearer token.",
    413: "The upload is over the size limit (checked while it streams).",
    415: "Not an audio file (judged by its content, not its name).",
    422: "Undecodable audio, too short for one window, or NaN samples.",
    500: "A worker process died while reading the file, or a bug.",
    503: "The queue is full; retry after `Retry-After` seconds.",
}

_EXAMPLE = {
    "path": "song.mp3",
    "top_emotion": "calmness",
    "emotions": {
        "amazement": 0.04, "solemnity": 0.13, "tenderness": 0.14, "nostalgia": 0.16,
        "calmness": 0.22, "power": 0.07, "joyful_activation": 0.08, "tension": 0.08,
        "sadness": 0.08,
    },
    "duration": 60.03,
    "silent": False,
    "model": "default@fbe3183cdc45",
    "timeline": [{"start": 0.0, "end": 3.0, "emotions": {"calmness": 0.21, "...": 0.0}}],
}  # fmt: skip


def _responses(*codes: int) -> dict:
    error = {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"detail": {"type": "string"}},
                "required": ["detail"],
            }
        }
    }
    out: dict = {200: {"content": {"application/json": {"example": _EXAMPLE}}}}
    out.update({c: {"description": _ERROR_TEXT[c], "content": error} for c in codes})
    return out


def create_app(
    model: Any = None,
    *,
    workers: int = 2,
    max_upload_mb: float = 100.0,
    token: str | None = None,
    queue: int = 32,
    use_cache: bool = False,
    upload_dir: str | None = None,
    upload_timeout: float = 30.0,
):
    """The FastAPI application: ``/v1`` API, OpenAPI docs at ``/docs``, the page at ``/``.

    The model loads here, once; the worker pool starts with the application's lifespan
    (``uvicorn`` or ``with TestClient(app)``) and closes with it.

    Parameters
    ----------
    model : None, path or TrainedModel
        ``None``: the model shipped with moodscope.
    workers : int
        Worker processes for decoding, features and the model.
    max_upload_mb : float
        Largest accepted upload in MiB; larger ones get 413 while they stream.
    token : str, optional
        When given, every ``/v1`` call needs ``Authorization: Bearer TOKEN``.
    queue : int
        Requests that may wait for a worker beyond those running; more get 503.
    upload_timeout : float
        Seconds an upload may send nothing before it is dropped with 408 (its place in the
        queue and its temporary file freed).
    """
    from moodscope import __version__

    config = ServiceConfig(
        workers=workers,
        queue=queue,
        max_upload_mb=max_upload_mb,
        token=token or None,
        use_cache=use_cache,
        upload_dir=upload_dir,
        upload_timeout=upload_timeout,
    )
    predictor = Predictor(model, config)

    @asynccontextmanager
    async def lifespan(app):
        predictor.start()
        try:
            await predictor.warm_workers()
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

    # Every /v1 call needs the token; the page, its files and the docs stay open (the page
    # asks for the token when the API answers 401).
    api = APIRouter(prefix=f"/{API_VERSION}", dependencies=[Depends(require_token)])

    @api.post(
        "/predict",
        summary="Predict the emotions of one uploaded audio file",
        openapi_extra={"requestBody": _MULTIPART_BODY},
        responses=_responses(400, 401, 408, 413, 415, 422, 500, 503),
    )
    async def predict(
        request: Request,
        timeline: bool = Query(False, description="Include one entry per 3-s window."),
    ):
        """The same JSON object as `moodscope predict --format json` gives for one file;
        `path` is the uploaded file's name."""
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > config.max_upload_bytes + FORM_SLACK:
            raise _too_large(config.max_upload_mb)  # before admitting it or reading a byte
        predictor.admission.enter()
        try:
            upload = await receive_upload(request, config, predictor.upload_dir)
            try:
                prediction = await predictor.predict(upload)
            finally:
                _remove(upload.path)
        finally:
            predictor.admission.leave()
        return prediction.to_dict(timeline=timeline)

    @api.get("/health", summary="Is the service alive, with its model loaded?")
    async def health():
        a = predictor.admission
        return {
            "status": "ok",
            "model_loaded": predictor.model is not None,
            "model": predictor.model.model_id,
            "workers": config.workers,
            "running": a.running,
            "queued": max(0, a.admitted - a.running),
            "capacity": a.capacity,
            "max_upload_mb": config.max_upload_mb,
        }

    @api.get("/model", summary="The model: labels, feature set, cross-validated metrics")
    async def model_info():
        return predictor.describe()

    app.include_router(api)

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


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    model: Any = None,
    workers: int = 2,
    max_upload_mb: float = 100.0,
    token: str | None = None,
    queue: int = 32,
    upload_timeout: float = 30.0,
    log_level: str = "info",
) -> None:
    """Run the service with uvicorn until interrupted (``moodscope serve``)."""
    import uvicorn

    token = token or os.environ.get(TOKEN_ENV) or None
    if public_without_token(host, token):
        print(
            f"warning: serving on {host} without a token: anyone who can reach port {port} "
            f"can use it; pass --token or set {TOKEN_ENV}",
            file=sys.stderr,
            flush=True,
        )
    app = create_app(
        model,
        workers=workers,
        max_upload_mb=max_upload_mb,
        token=token,
        queue=queue,
        upload_timeout=upload_timeout,
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=10)


__all__ = [
    "Admission",
    "RequestRejected",
    "ServiceConfig",
    "create_app",
    "public_without_token",
    "receive_upload",
    "serve",
    "web_dir",
]
