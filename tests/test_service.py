"""The HTTP service: every status code through FastAPI's TestClient, then a real
`moodscope serve` process under load (50 concurrent uploads of real tracks), an oversize
upload, and a client that dribbles its upload."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from conftest import SR, chord_signal
from live_server import start_server, stop_server
from moodscope import EMOTIONS
from moodscope.inference.predictor import load_model, predict
from moodscope.service.app import (
    RequestRejected,
    ServiceConfig,
    create_app,
    public_without_token,
    receive_upload,
)


def _post(client, path: Path | None = None, *, name: str | None = None, data=None, **kw):
    content = path.read_bytes() if data is None else data
    files = {"file": (name if name is not None else path.name, content)}
    return client.post("/v1/predict", files=files, **kw)


def _same_numbers(a: dict, b: dict, tol: float = 2e-6) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict):
            _same_numbers(a[key], b[key], tol)
        elif isinstance(a[key], list):
            assert len(a[key]) == len(b[key])
            for x, y in zip(a[key], b[key]):
                _same_numbers(x, y, tol)
        elif isinstance(a[key], float):
            assert a[key] == pytest.approx(b[key], abs=tol), key
        else:
            assert a[key] == b[key], key


@pytest.fixture(scope="module")
def app_client(tmp_path_factory):
    """One worker and no queue: a second request while one runs is refused (503)."""
    uploads = tmp_path_factory.mktemp("uploads")
    app = create_app(workers=1, queue=0, max_upload_mb=8, upload_dir=str(uploads))
    with TestClient(app) as client:
        client.uploads = uploads
        yield client


@pytest.fixture
def client(app_client):
    yield app_client
    # Temporary files are removed on every path, the failing ones included.
    assert list(app_client.uploads.iterdir()) == []


@pytest.fixture(scope="module")
def track(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "chords.wav"
    sf.write(path, chord_signal(7.0), SR)
    return path


@pytest.fixture(scope="module")
def long_track(tmp_path_factory) -> Path:
    """Long enough (90 s, ~3 s to predict) to be caught while it runs."""
    path = tmp_path_factory.mktemp("audio") / "long.flac"
    sf.write(path, chord_signal(90.0, seed=3), SR)
    return path


def test_predict_is_the_cli_json_for_one_file(client, track):
    response = _post(client, track, params={"timeline": "true"})
    assert response.status_code == 200, response.text
    body = response.json()
    (expected,) = predict(track, use_cache=False)
    want = expected.to_dict(timeline=True)
    want["path"] = "chords.wav"  # the client's name, never the temporary file's
    _same_numbers(body, want)
    assert list(body["emotions"]) == list(EMOTIONS)
    assert [(s["start"], s["end"]) for s in body["timeline"]] == [(0.0, 3.0), (3.0, 6.0)]
    assert "timeline" not in _post(client, track).json()


def test_format_is_judged_by_content_not_name(client, track, tmp_path):
    response = _post(client, track, name="chords.txt")
    assert response.status_code == 200 and response.json()["path"] == "chords.txt"
    text = tmp_path / "notes.mp3"
    text.write_text("these are lyrics, not audio\n" * 40)
    response = _post(client, text)
    assert response.status_code == 415
    assert response.json() == {"detail": "notes.mp3: is not an audio file (it holds text)"}
    response = _post(client, name="noise.wav", data=np.random.default_rng(0).bytes(4000))
    assert response.status_code == 415
    assert response.json()["detail"].startswith("noise.wav: is not an audio file")


def test_undecodable_short_nan_and_empty_files_are_422(client, write_audio):
    mp3 = write_audio("whole.mp3", chord_signal(8.0))
    short = write_audio("short.wav", chord_signal(0.5))
    nan = chord_signal(4.0)
    nan[100] = np.nan
    nan_path = short.with_name("nan.wav")
    sf.write(nan_path, nan, SR, subtype="FLOAT")
    cases = {
        "truncated.mp3": (mp3.read_bytes()[:600], "truncated.mp3: corrupt MP3 audio"),
        "short.wav": (short.read_bytes(), "short.wav: is 0.50 s long; at least 3.00 s is needed"),
        "nan.wav": (nan_path.read_bytes(), "nan.wav: contains NaN or infinite samples"),
        "empty.ogg": (b"", "empty.ogg: file is empty (0 bytes)"),
    }
    for name, (data, detail) in cases.items():
        response = _post(client, name=name, data=data)
        assert response.status_code == 422, (name, response.text)
        got = response.json()["detail"]
        assert got.startswith(detail) and "\n" not in got and "upload-" not in got


def test_no_file_is_400(client, track):
    assert client.post("/v1/predict").status_code == 400
    response = client.post("/v1/predict", files={"other": ("x.wav", track.read_bytes())})
    assert response.status_code == 400
    assert "field named 'file'" in response.json()["detail"]
    # What a browser form sends when no file was chosen: an empty part with no name.
    assert _post(client, name="", data=b"").status_code == 400
    response = client.post("/v1/predict", data={"file": "not a file"})  # url-encoded
    assert response.status_code == 400


def test_bad_query_is_one_line_json(client, track):
    response = _post(client, track, params={"timeline": "perhaps"})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("invalid request: timeline")


def test_oversize_is_413_by_header_and_while_streaming(client):
    big = b"\0" * (9 * 2**20)  # the app allows 8 MB
    response = _post(client, name="big.wav", data=big)
    assert response.status_code == 413 and "8 MB" in response.json()["detail"]

    def body():  # no Content-Length: only the streaming count can stop it
        yield b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
        for _ in range(12):
            yield b"\0" * 2**20
        yield b"\r\n--xyz--\r\n"

    response = client.post(
        "/v1/predict",
        content=body(),
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert response.status_code == 413


def test_a_stalled_upload_is_408_and_leaves_no_file(tmp_path):
    from starlette.requests import Request

    head = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="stall.wav"\r\n\r\n'
    sent = []

    async def receive():  # one chunk of the file, then a client that sends nothing more
        if not sent:
            sent.append(head + b"RIFF" + b"\0" * 996)
            return {"type": "http.request", "body": sent[0], "more_body": True}
        await asyncio.sleep(60)
        raise AssertionError("the upload should have been dropped by now")

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/predict",
        "headers": [(b"content-type", b"multipart/form-data; boundary=xyz")],
    }
    config = ServiceConfig(upload_timeout=0.3)
    started = time.perf_counter()
    with pytest.raises(RequestRejected) as info:
        asyncio.run(receive_upload(Request(scope, receive), config, str(tmp_path)))
    assert time.perf_counter() - started < 5
    assert info.value.status == 408
    assert info.value.detail == (
        f"stall.wav: nothing received for 0.3 s after {len(sent[0])} bytes; the upload was dropped"
    )
    assert list(tmp_path.iterdir()) == []  # the partial upload is gone
    with pytest.raises(ValueError, match="upload timeout must be > 0 s"):
        ServiceConfig(upload_timeout=0)


def test_health_and_model(client):
    health = client.get("/v1/health").json()
    assert health["status"] == "ok" and health["model_loaded"] is True
    assert health["max_upload_mb"] == 8 and health["capacity"] == 1
    model = load_model()
    assert health["model"] == model.model_id
    info = client.get("/v1/model").json()
    assert info["id"] == model.model_id and info["name"] == model.name
    assert info["version"] == model.version
    assert info["labels"] == list(EMOTIONS)
    assert info["feature_set"] == model.feature_config.feature_set
    assert info["crossval"] == model.info["crossval"]
    assert "track_accuracy" in info["crossval"]


def test_docs_page_and_its_files_are_served(client):
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    assert "cdn" not in docs.text.lower()
    schema = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/health", "/v1/model"} <= set(schema["paths"])
    page = client.get("/")
    assert (
        page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    )
    for asset in ("static/app.js", "static/style.css"):
        response = client.get("/" + asset)
        assert response.status_code == 200 and asset in page.text
        assert "http://" not in response.text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in response.text


def _in_background(fn):
    result = {}
    thread = threading.Thread(target=lambda: result.update(response=fn()))
    thread.start()
    return thread, result


def _wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_full_queue_is_503_with_retry_after(client, long_track, track):
    thread, result = _in_background(lambda: _post(client, long_track))
    _wait_until(lambda: client.get("/v1/health").json()["running"] == 1)
    response = _post(client, track)
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert "busy" in response.json()["detail"]
    thread.join(timeout=120)
    assert result["response"].status_code == 200
    assert _post(client, track).status_code == 200  # a slot again


def _kill_workers_while_running(client, backend, *, pool=None):
    """Wait until a request runs on a pool other than ``pool``; kill its workers."""
    _wait_until(lambda: client.get("/v1/health").json()["running"] == 1)
    _wait_until(lambda: backend._pool is not pool and bool(backend._pool._processes))
    killed = backend._pool
    for pid in list(killed._processes):
        os.kill(pid, signal.SIGKILL)
    return killed


def test_dead_worker_is_retried_once_then_500(client, app_client, long_track, track):
    backend = app_client.app.state.predictor.backend
    # Killed once: the request runs again on a fresh pool and is answered.
    thread, result = _in_background(lambda: _post(client, long_track))
    _kill_workers_while_running(client, backend)
    thread.join(timeout=120)
    assert result["response"].status_code == 200
    # Killed on the retry too: 500 naming the file, and the server goes on.
    thread, result = _in_background(lambda: _post(client, long_track))
    first = _kill_workers_while_running(client, backend)
    _kill_workers_while_running(client, backend, pool=first)
    thread.join(timeout=120)
    response = result["response"]
    assert response.status_code == 500
    assert response.json()["detail"] == (
        "long.flac: the worker process died while reading it (the server restarted its workers)"
    )
    assert _post(client, track).status_code == 200


def test_token_guards_every_api_call(track):
    app = create_app(workers=1, token="s3cret")
    with TestClient(app) as client:
        for method, path in (("get", "/v1/health"), ("get", "/v1/model"), ("post", "/v1/predict")):
            response = getattr(client, method)(path)
            assert response.status_code == 401, path
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert response.json()["detail"].startswith("missing bearer token")
        wrong = client.get("/v1/health", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["detail"].startswith("wrong")
        # 401 comes before the body is read: an oversize upload with no token is still 401.
        response = _post(client, name="big.wav", data=b"\0" * (101 * 2**20))
        assert response.status_code == 401
        good = client.get("/v1/health", headers={"Authorization": "Bearer s3cret"})
        assert good.status_code == 200
        assert client.get("/").status_code == 200  # the page itself asks for the token


def test_public_address_without_token_warns():
    assert not public_without_token("127.0.0.1", None)
    assert not public_without_token("localhost", None)
    assert not public_without_token("::1", None)
    assert public_without_token("0.0.0.0", None)
    assert public_without_token("192.168.1.20", None)
    assert not public_without_token("0.0.0.0", "token")


def test_serve_command_warns_and_passes_its_options(monkeypatch, capsys):
    import moodscope.service.app as service
    from moodscope.cli import main

    seen = {}
    monkeypatch.setattr(service, "create_app", lambda model, **kw: seen.update(kw) or "app")
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: seen.update(app=app, **kw))
    monkeypatch.delenv("MOODSCOPE_TOKEN", raising=False)
    with pytest.raises(SystemExit) as info:
        main(
            ["serve", "--host", "0.0.0.0", "--port", "9001", "--workers", "3", "--queue", "5"]
            + ["--upload-timeout", "12.5"]
        )
    assert info.value.code == 0
    assert "warning: serving on 0.0.0.0 without a token" in capsys.readouterr().err
    assert seen["host"] == "0.0.0.0" and seen["port"] == 9001
    assert seen["workers"] == 3 and seen["queue"] == 5 and seen["max_upload_mb"] == 100.0
    assert seen["token"] is None and seen["upload_timeout"] == 12.5
    monkeypatch.setenv("MOODSCOPE_TOKEN", "from-env")
    with pytest.raises(SystemExit):
        main(["serve", "--host", "0.0.0.0"])
    assert seen["token"] == "from-env"
    assert "warning" not in capsys.readouterr().err


# -- a real server ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("live"), "--workers", "2", "--queue", "48")
    try:
        yield server
    finally:
        stop_server(server)
    assert server.uploads_left() == []


@pytest.mark.slow
@pytest.mark.data
def test_live_50_concurrent_uploads_answer_as_predict(live, emotify_dir):
    import httpx

    from moodscope.datasets import EmotifyDataset

    # Three real 60-s tracks of different genres, reused across the 50 requests.
    table = EmotifyDataset(emotify_dir).tracks
    tracks = [Path(p) for p in table.groupby("genre").head(1)["path"].tolist()[:3]]
    expected = {}
    for result in predict(tracks, use_cache=False):
        want = result.to_dict(timeline=True)
        want["path"] = Path(result.path).name
        expected[result.path] = want
    bodies = {str(t): t.read_bytes() for t in tracks}
    order = [str(tracks[i % len(tracks)]) for i in range(50)]
    health_seconds: list[float] = []

    async def upload(client, path):
        files = {"file": (Path(path).name, bodies[path], "audio/mpeg")}
        return path, await client.post("/v1/predict?timeline=true", files=files)

    async def watch_health(client, stop):
        while not stop.is_set():
            start = time.perf_counter()
            assert (await client.get("/v1/health")).status_code == 200
            health_seconds.append(time.perf_counter() - start)
            await asyncio.sleep(0.1)

    async def load():
        limits = httpx.Limits(max_connections=60)
        async with httpx.AsyncClient(base_url=live.url, timeout=300, limits=limits) as client:
            stop = asyncio.Event()
            watcher = asyncio.create_task(watch_health(client, stop))
            answers = await asyncio.gather(*(upload(client, p) for p in order))
            stop.set()
            await watcher
            return answers

    start = time.perf_counter()
    answers = asyncio.run(load())
    seconds = time.perf_counter() - start
    assert len(answers) == 50
    for path, response in answers:
        assert response.status_code == 200, response.text
        _same_numbers(response.json(), expected[path])
    # The event loop never decodes: health answers at once while both workers are busy.
    health_seconds.sort()
    median = health_seconds[len(health_seconds) // 2]
    print(
        f"50 uploads in {seconds:.1f} s; /v1/health median {median * 1000:.1f} ms, "
        f"max {health_seconds[-1] * 1000:.1f} ms over {len(health_seconds)} calls"
    )
    assert len(health_seconds) >= 10
    assert median < 0.1 and health_seconds[-1] < 0.5
    assert live.uploads_left() == []


@pytest.mark.slow
def test_live_oversize_upload_is_413_and_memory_stays_flat(live):
    import httpx

    sent = 0

    def body():
        nonlocal sent
        yield b'--b0und\r\nContent-Disposition: form-data; name="file"; filename="huge.wav"\r\n\r\n'
        chunk = b"\0" * 2**20
        for _ in range(300):  # 300 MB against the default 100 MB limit
            sent += len(chunk)
            yield chunk
        yield b"\r\n--b0und--\r\n"

    before_rss, before_peak = live.memory_kb("VmRSS"), live.memory_kb("VmHWM")
    response = httpx.post(
        live.url + "/v1/predict",
        content=body(),
        headers={"Content-Type": "multipart/form-data; boundary=b0und"},
        timeout=120,
    )
    assert response.status_code == 413
    assert response.json()["detail"].startswith(
        "upload is larger than the server's limit of 100 MB"
    )
    assert sent < 300 * 2**20  # refused while it streamed, not after
    grown_mb = (live.memory_kb("VmHWM") - before_peak) / 1024
    print(
        f"sent {sent / 2**20:.0f} MB of 300; server RSS {before_rss / 1024:.0f} MB, "
        f"peak grew by {grown_mb:.1f} MB"
    )
    assert grown_mb < 32  # nowhere near the upload's 300 MB
    assert live.uploads_left() == []
    assert httpx.get(live.url + "/v1/health").status_code == 200


def _multipart(name: str, data: bytes, boundary: str = "dr1bble") -> bytes:
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode()


@pytest.mark.slow
def test_live_slow_or_vanishing_client_does_not_block_others(live, tmp_path):
    import httpx

    slow_audio = tmp_path / "slow.wav"
    sf.write(slow_audio, chord_signal(6.0, seed=5), SR)
    quick_audio = tmp_path / "quick.wav"
    sf.write(quick_audio, chord_signal(6.0, seed=6), SR)
    body = _multipart("slow.wav", slow_audio.read_bytes())
    head = (
        f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\n"
        f"Content-Type: multipart/form-data; boundary=dr1bble\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", live.port), timeout=60) as slow:
        slow.sendall(head + body[:1000])  # then nothing for a while
        started = time.perf_counter()
        for _ in range(5):
            assert httpx.get(live.url + "/v1/health", timeout=5).status_code == 200
        files = {"file": ("quick.wav", quick_audio.read_bytes())}
        quick = httpx.post(live.url + "/v1/predict", files=files, timeout=60)
        others_done = time.perf_counter() - started
        assert quick.status_code == 200 and quick.json()["path"] == "quick.wav"
        # The slow upload is still open and unfinished; it completes when its bytes come.
        pieces = [body[i : i + 65536] for i in range(1000, len(body), 65536)]
        for piece in pieces:
            slow.sendall(piece)
            time.sleep(0.05)
        answer = b""
        while chunk := slow.recv(65536):
            answer += chunk
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.endswith(b"200 OK"), answer[:300]
    assert b'"path":"slow.wav"' in answer
    print(f"others answered in {others_done:.2f} s while one client held its upload open")

    # A client that gives up halfway: its partial upload is removed, its slot freed.
    with socket.create_connection(("127.0.0.1", live.port), timeout=60) as gone:
        gone.sendall(head + body[:200_000])
        _wait_until(lambda: len(live.uploads_left()) == 1)
    _wait_until(lambda: live.uploads_left() == [])
    health = httpx.get(live.url + "/v1/health").json()
    assert health["queued"] == 0 and health["running"] == 0
