"""The HTTP application behind ``moodscope serve``: a versioned JSON API over the same
prediction seam as the CLI (:func:`~moodscope.inference.predictor.predict_task` on a process
pool), the offline page at ``/`` that draws a track's emotions from that API, the probes and
the metrics.

The event loop only moves bytes: an upload streams to a temporary file
(:mod:`~moodscope.service.uploads`), holding no place in the queue; once it has arrived it
waits for one of the worker processes in a bounded queue that answers 503 when full
(:mod:`~moodscope.service.admission`, :mod:`~moodscope.service.predictor`). A request that
runs too long, or whose client leaves, gives its worker back (killed and replaced,
:mod:`~moodscope.service.workers`). The limits are in :mod:`~moodscope.service.config`, the
response schemas in :mod:`~moodscope.service.schemas`, probes, metrics, the Host check and
the access log in :mod:`~moodscope.service.operators`, uvicorn in
:mod:`~moodscope.service.server`. Only ``moodscope serve`` imports this module, so the other
commands never pay for FastAPI.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import Awaitable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from moodscope.inference.predictor import Prediction
from moodscope.service.admission import RequestRejected
from moodscope.service.config import ServiceConfig
from moodscope.service.connections import ConnectionGuard
from moodscope.service.operators import HostCheck, OperatorMiddleware
from moodscope.service.predictor import Predictor
from moodscope.service.schemas import (
    MULTIPART_BODY,
    ErrorOut,
    HealthOut,
    PredictionOut,
    ReadyOut,
    responses,
)
from moodscope.service.uploads import (
    FORM_SLACK,
    cannot_store,
    receive_upload,
    remove_upload,
    too_large,
)

API_VERSION = "v1"


def web_dir() -> Path:
    """The page's files (index.html, app.js, style.css), shipped in the package."""
    return Path(str(resources.files("moodscope.service").joinpath("web")))


_PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def create_app(
    model: Any = None,
    *,
    host: str = "127.0.0.1",
    connections: ConnectionGuard | None = None,
    **options: Any,
):
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
    connections : ConnectionGuard, optional
        The server's connection rules (``moodscope serve`` passes them), whose counts
        ``/metrics`` then shows.
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
    if connections is not None:
        predictor.metrics.watch_connections(connections)
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

    @app.exception_handler(OSError)
    async def os_error(request: Request, exc: OSError):
        # A file the server writes (a full disk above all): one line, no traceback.
        failed = cannot_store(exc, "this request's files")
        print(f"error: {request.url.path}: {failed.detail}", file=sys.stderr, flush=True)
        return json_error(failed.status, failed.detail, failed.headers)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception):
        # A bug of ours: the client gets one line; the traceback goes to the server's log.
        return json_error(500, "the server failed on this request; its log has the details")

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
        openapi_extra={"requestBody": MULTIPART_BODY},
        responses=responses(
            400, 401, 408, 413, 415, 421, 422, 500, 503, 504, 507, ok=PredictionOut
        ),
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
            raise too_large(config.max_upload_mb)  # before admitting it or reading a byte
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
            remove_upload(upload.path)
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


__all__ = ["API_VERSION", "create_app", "web_dir"]
