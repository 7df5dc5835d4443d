"""The HTTP service: every status code through FastAPI's TestClient, then a real
`moodscope serve` process under load (50 concurrent uploads of real tracks), an oversize
upload, and a client that dribbles its upload."""

from __future__ import annotations

import asyncio
import math
import os
import select
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
from moodscope.service.admission import RequestRejected
from moodscope.service.app import create_app
from moodscope.service.config import ServiceConfig
from moodscope.service.server import public_without_token
from moodscope.service.uploads import receive_upload


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


def local_client(app) -> TestClient:
    """A TestClient on 127.0.0.1 (the Host the app serves), its workers warm."""
    return TestClient(app, base_url="http://127.0.0.1")


def _wait_ready(client, timeout: float = 120.0) -> None:
    _wait_until(lambda: client.get("/readyz").status_code == 200, timeout)


@pytest.fixture(scope="module")
def app_client(tmp_path_factory):
    """One worker and no queue: a second request while one runs is refused (503)."""
    uploads = tmp_path_factory.mktemp("uploads")
    app = create_app(workers=1, queue=0, max_upload_mb=8, upload_dir=str(uploads))
    with local_client(app) as client:
        _wait_ready(client)
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
    """Long enough (29 min, under the service's 30-min limit: seconds to predict even on
    the fast path) to be caught while it runs, small to send (the chords, then silence
    that FLAC packs into almost nothing: ~1 MB)."""
    path = tmp_path_factory.mktemp("audio") / "long.flac"
    with sf.SoundFile(path, "w", SR, 1) as f:
        f.write(chord_signal(60.0, seed=3))
        silence = np.zeros(60 * SR, dtype=np.float32)
        for _ in range(28):
            f.write(silence)
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
        "truncated.mp3": (mp3.read_bytes()[:600], "truncated.mp3: is truncated"),
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
    assert time.perf_counter() - started < 30  # long before the 60-s stall ends, however loaded
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
    # How sure it is: the map it carries, its held-out yardsticks, the words the page uses.
    assert info["calibration"]["score"] == model.calibration.score
    assert info["held_out"]["risk_coverage"][0]["coverage"] == 0.25
    assert [w["words"] for w in info["confidence_words"]][:2] == ["sure", "fairly sure"]


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


def _kill_worker_while_running(client, workers, *, not_pid=None) -> int:
    """Wait until a request runs on a worker other than ``not_pid``; kill it."""

    def running_anew() -> bool:  # not a fresh worker warming up: that runs no request
        pids = workers.pids()
        return bool(pids) and pids[0] != not_pid and workers.busy == 1

    _wait_until(running_anew)
    (pid,) = workers.pids()
    os.kill(pid, signal.SIGKILL)
    return pid


@pytest.mark.slow
def test_dead_worker_is_retried_once_then_500(client, app_client, long_track, track):
    workers = app_client.app.state.predictor.workers
    # Killed once: the request runs again on a fresh worker and is answered.
    thread, result = _in_background(lambda: _post(client, long_track))
    _kill_worker_while_running(client, workers)
    thread.join(timeout=120)
    assert result["response"].status_code == 200
    # Killed on the retry too: 500 naming the file, and the server goes on.
    thread, result = _in_background(lambda: _post(client, long_track))
    first = _kill_worker_while_running(client, workers)
    _kill_worker_while_running(client, workers, not_pid=first)
    thread.join(timeout=120)
    response = result["response"]
    assert response.status_code == 500
    assert response.json()["detail"] == (
        "long.flac: the worker process died while reading it (the server restarted its workers)"
    )
    assert _post(client, track).status_code == 200


def test_token_guards_every_api_call(track):
    app = create_app(workers=1, token="s3cret")
    with local_client(app) as client:
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


def test_serve_command_warns_and_passes_its_options(monkeypatch, capsys, tmp_path):
    import moodscope.service.server as service
    from moodscope.cli import main
    from moodscope.service.config import DEFAULTS

    seen, run = {}, {}
    # The access log's handler is process-wide state: recorded here, not installed.
    monkeypatch.setattr(service, "configure_access_log", lambda level: run.update(json=level))
    monkeypatch.setattr(service, "create_app", lambda model, **kw: seen.update(kw) or "app")
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: run.update(app=app, **kw))
    monkeypatch.delenv("MOODSCOPE_TOKEN", raising=False)
    with pytest.raises(SystemExit) as info:
        main(
            ["serve", "--host", "0.0.0.0", "--port", "9001", "--workers", "3", "--queue", "5"]
            + ["--upload-timeout", "12.5", "--request-timeout", "7", "--max-duration", "600"]
            + ["--allowed-host", "a.example", "--allowed-host", "b.example"]
            + ["--min-upload-rate", "0", "--access-log", "json", "--log-level", "warning"]
            + ["--header-timeout", "3", "--idle-timeout", "2.5", "--max-connections", "40"]
        )
    assert info.value.code == 0
    assert "warning: serving on 0.0.0.0 without a token" in capsys.readouterr().err
    assert seen["host"] == "0.0.0.0" and run["host"] == "0.0.0.0" and run["port"] == 9001
    assert seen["workers"] == 3 and seen["queue"] == 5
    assert seen["token"] is None and seen["upload_timeout"] == 12.5
    assert seen["request_timeout"] == 7 and seen["max_duration"] == 600
    assert seen["allowed_hosts"] == ("a.example", "b.example")
    assert seen["min_upload_rate"] == 0 and seen["access_log"] == "json"
    assert run["log_level"] == "warning" and run["access_log"] is False  # ours, not uvicorn's
    assert run["json"] == "warning"
    # The connection rules: uvicorn's protocol guarded by them, their counts in /metrics.
    guard = seen["connections"]
    assert guard.cap == 40 and guard.header_timeout == 3 and run["http"].guard is guard
    assert run["timeout_keep_alive"] == 2.5
    # Every limit left alone is the service's own default, defined once.
    for name in ("max_upload_mb", "max_uploads", "upload_rate_window", "retry_after_max"):
        assert seen[name] == getattr(DEFAULTS, name), name
    # The token: from the environment or a file, silently; on the command line, with a warning.
    monkeypatch.setenv("MOODSCOPE_TOKEN", "from-env")
    with pytest.raises(SystemExit):
        main(["serve", "--host", "0.0.0.0"])
    assert seen["token"] == "from-env"
    assert "warning" not in capsys.readouterr().err
    monkeypatch.delenv("MOODSCOPE_TOKEN")
    secret = tmp_path / "token.txt"
    secret.write_text("from-file\n")
    with pytest.raises(SystemExit):
        main(["serve", "--token-file", str(secret)])
    assert seen["token"] == "from-file"
    assert "warning" not in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", "--token", "in-ps"])
    assert seen["token"] == "in-ps"
    err = capsys.readouterr().err
    assert "warning: --token is visible to every user of this machine" in err
    assert "--token-file" in err


@pytest.mark.parametrize(
    "args",
    [
        ["--request-timeout", "0"],
        ["--upload-rate-window", "-1"],
        ["--max-uploads", "0"],
        ["--log-level", "loud"],
        ["--access-log", "xml"],
    ],
)
def test_serve_refuses_bad_values_before_starting(args, monkeypatch, capsys):
    from moodscope.cli import main

    monkeypatch.setattr("uvicorn.run", lambda app, **kw: pytest.fail("it started"))
    with pytest.raises(SystemExit) as info:
        main(["serve", *args])
    assert info.value.code == 2
    assert args[0] in capsys.readouterr().err


def test_serve_with_an_empty_token_file_is_one_line(tmp_path, monkeypatch, capsys):
    from moodscope.cli import main

    monkeypatch.setattr("uvicorn.run", lambda app, **kw: pytest.fail("it started"))
    empty = tmp_path / "token.txt"
    empty.write_text("")
    with pytest.raises(SystemExit) as info:
        main(["serve", "--token-file", str(empty)])
    assert info.value.code == 1
    assert capsys.readouterr().err.strip() == f"error: {empty}: the token file is empty"


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
    upload_seconds: list[float] = []

    async def upload(client, path):
        files = {"file": (Path(path).name, bodies[path], "audio/mpeg")}
        start = time.perf_counter()
        response = await client.post("/v1/predict?timeline=true", files=files)
        upload_seconds.append(time.perf_counter() - start)
        return path, response

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
    # The yardstick is this run's own quickest upload (one prediction at least): a loop
    # that decoded would hold every health call for about that long.
    health_seconds.sort()
    median, quickest = health_seconds[len(health_seconds) // 2], min(upload_seconds)
    print(
        f"50 uploads in {seconds:.1f} s; /v1/health median {median * 1000:.1f} ms, "
        f"max {health_seconds[-1] * 1000:.1f} ms over {len(health_seconds)} calls; "
        f"quickest upload {quickest * 1000:.0f} ms"
    )
    assert len(health_seconds) >= 10
    assert median < quickest / 4 and health_seconds[-1] < quickest
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


# -- issue 19/20: limits, cancellation, operators -----------------------------------------


def _metrics(client, **kw) -> dict[tuple[str, tuple], float]:
    """``/metrics`` parsed by prometheus_client's own parser: (sample name, labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    response = client.get("/metrics", **kw)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_probes_are_open_and_answer_head_while_api_and_metrics_need_the_token():
    app = create_app(workers=1, token="s3cret")
    # Before the lifespan starts the workers, the process is alive but not ready.
    bare = local_client(app)
    assert bare.get("/healthz").status_code == 200
    not_ready = bare.get("/readyz")
    assert not_ready.status_code == 503 and not_ready.json()["ready"] is False
    with local_client(app) as client:
        _wait_ready(client)
        auth = {"Authorization": "Bearer s3cret"}
        for path in ("/healthz", "/readyz"):
            assert client.get(path).status_code == 200, path
            head = client.head(path)
            assert head.status_code == 200 and head.content == b"", path
        assert client.get("/readyz").json()["ready"] is True
        assert client.get("/v1/health").status_code == 401
        assert client.get("/v1/health", headers=auth).json()["ready"] is True
        response = client.get("/metrics")
        assert response.status_code == 401 and response.json()["detail"].startswith("missing")
        samples = _metrics(client, headers=auth)
        assert samples[("moodscope_ready", ())] == 1
        assert samples[("moodscope_workers", ())] == 1
    assert app.state.predictor.ready is False  # stopped: not ready any more


def test_metrics_count_requests_outcomes_and_latency(client, track, tmp_path):
    before = _metrics(client)
    assert _post(client, track).status_code == 200
    text = tmp_path / "lyrics.mp3"
    text.write_text("la la la\n" * 50)
    assert _post(client, text).status_code == 415
    assert client.get("/nowhere").status_code == 404
    after = _metrics(client)

    def grew(name: str, **labels) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    route = {"route": "/v1/predict", "method": "POST"}
    assert grew("moodscope_http_requests_total", status="200", **route) == 1
    assert grew("moodscope_http_requests_total", status="415", **route) == 1
    assert grew("moodscope_http_requests_total", route="other", method="GET", status="404") == 1
    assert grew("moodscope_predictions_total", outcome="ok") == 1
    assert grew("moodscope_predictions_total", outcome="not_audio") == 1
    # Each answered request is one observation of the latency histogram.
    latency = "moodscope_http_request_duration_seconds"
    assert grew(latency + "_count", route="/v1/predict") == 2
    assert grew(latency + "_bucket", route="/v1/predict", le="+Inf") == 2
    assert after[("moodscope_queue_depth", ())] == 0
    assert after[("moodscope_workers_busy", ())] == 0
    for reason in ("died", "timeout", "cancelled"):
        assert ("moodscope_worker_restarts_total", (("reason", reason),)) in after


def test_unknown_host_is_421_on_every_route(client):
    for path in ("/v1/health", "/healthz", "/", "/metrics", "/docs"):
        response = client.get(path, headers={"Host": "rebind.attacker.example"})
        assert response.status_code == 421, path
        detail = response.json()["detail"]
        assert detail.startswith("host 'rebind.attacker.example' is not served here")
        assert "--allowed-host" in detail
    response = _post(client, name="x.wav", data=b"RIFF", headers={"Host": "evil.example:8000"})
    assert response.status_code == 421
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000"):
        assert client.get("/healthz", headers={"Host": host}).status_code == 200, host


def test_allowed_host_adds_a_name(track):
    app = create_app(workers=1, allowed_hosts=("moods.example.org",))
    with TestClient(app, base_url="http://moods.example.org") as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/healthz", headers={"Host": "other.example"}).status_code == 421


def test_json_access_log_is_one_object_a_line(tmp_path, caplog):
    import json
    import logging

    app = create_app(workers=1, access_log="json", upload_dir=str(tmp_path))
    with caplog.at_level(logging.INFO, logger="moodscope.access"):
        with local_client(app) as client:
            client.get("/healthz", headers={"User-Agent": 'probe\n{"status": 200}'})
            client.get("/v1/health", headers={"Host": "evil.example"})
    lines = [r.getMessage() for r in caplog.records if r.name == "moodscope.access"]
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    first, second = map(json.loads, lines)
    assert first["path"] == "/healthz" and first["route"] == "/healthz"
    assert first["status"] == 200 and first["method"] == "GET"
    assert first["user_agent"] == 'probe\n{"status": 200}'  # escaped, never a second line
    assert second["status"] == 421 and second["host"] == "evil.example"
    assert {"time", "client", "seconds"} <= set(first)


@pytest.mark.slow
def test_health_counts_add_up_under_load(tmp_path_factory, track):
    app = create_app(workers=2, queue=3, upload_dir=str(tmp_path_factory.mktemp("load")))
    seen = []
    with local_client(app) as client:
        _wait_ready(client)
        threads = [_in_background(lambda: _post(client, track)) for _ in range(5)]
        while any(t.is_alive() for t, _ in threads):
            seen.append(client.get("/v1/health").json())
        for thread, _ in threads:
            thread.join()
        answers = [r["response"].status_code for _, r in threads]
    assert answers.count(200) == 5  # 2 running + 3 queued: all admitted
    for h in seen:
        assert 0 <= h["running"] <= h["workers"] == 2, h
        assert 0 <= h["queued"] and h["running"] + h["queued"] <= h["capacity"] == 5, h
    assert max(h["running"] for h in seen) == 2  # both workers were used


@pytest.mark.slow
def test_a_prediction_over_the_time_limit_is_504_and_frees_its_worker(tmp_path, long_track, track):
    app = create_app(workers=1, request_timeout=0.5, upload_dir=str(tmp_path))
    with local_client(app) as client:
        _wait_ready(client)
        workers = app.state.predictor.workers
        (pid,) = workers.pids()
        started = time.perf_counter()
        response = _post(client, long_track)  # seconds of work
        seconds = time.perf_counter() - started
        assert response.status_code == 504
        assert response.json()["detail"] == (
            "long.flac: the prediction ran longer than the server's limit of 0.5 s "
            "(--request-timeout); its worker was stopped"
        )
        _wait_until(lambda: not _alive(pid))  # the worker was killed, not left running
        samples = _metrics(client)
        assert samples[("moodscope_worker_restarts_total", (("reason", "timeout"),))] == 1
        assert samples[("moodscope_predictions_total", (("outcome", "timeout"),))] == 1
    app = create_app(workers=1, request_timeout=60, upload_dir=str(tmp_path))
    with local_client(app) as client:  # the same file within a limit it fits in
        _wait_ready(client)
        started = time.perf_counter()
        assert _post(client, long_track).status_code == 200
        whole = time.perf_counter() - started
    # Answered at the limit, not when the work would have ended.
    assert seconds < 0.8 * whole, (seconds, whole)


@pytest.mark.slow
def test_a_replaced_worker_takes_no_request_until_it_is_warm(
    tmp_path, long_track, track, monkeypatch
):
    """A worker killed at the time limit is replaced and warmed before it takes a request:
    meanwhile the queue goes to the warm worker, never to a cold start."""
    from moodscope.service.predictor import Predictor

    warm_one = Predictor._warm_worker
    warmed: list = []
    gate = threading.Event()

    async def held_back(self, slot):
        warmed.append(slot)
        await warm_one(self, slot)
        if len(warmed) > 2:  # not the start-up's two: a replacement, held until the gate
            await asyncio.to_thread(gate.wait, 60)

    monkeypatch.setattr(Predictor, "_warm_worker", held_back)
    app = create_app(workers=2, queue=8, request_timeout=1.0, upload_dir=str(tmp_path))
    with local_client(app) as client:
        _wait_ready(client)
        assert _post(client, long_track).status_code == 504
        _wait_until(lambda: len(warmed) == 3)  # the replacement warms up
        seen = []
        threads = [_in_background(lambda: _post(client, track)) for _ in range(3)]
        while any(t.is_alive() for t, _ in threads):
            seen.append(client.get("/v1/health").json()["running"])
        assert [r["response"].status_code for _, r in threads] == [200] * 3
        assert max(seen) == 1  # only the warm worker took requests
        gate.set()
        _wait_until(lambda: app.state.predictor.workers._free.qsize() == 2)
        assert _post(client, track).status_code == 200


def test_the_service_passes_its_max_duration_to_the_decoder(tmp_path, track):
    import dataclasses

    from moodscope.inference.predictor import PredictJob

    if "max_duration" not in {f.name for f in dataclasses.fields(PredictJob)}:
        pytest.skip("PredictJob has no max_duration yet (the decode branch adds it)")
    app = create_app(workers=1, max_duration=5.0, upload_dir=str(tmp_path))
    assert app.state.predictor.job.max_duration == 5.0
    with local_client(app) as client:
        _wait_ready(client)
        response = _post(client, track)  # 7 s of audio against a 5-s limit
        assert response.status_code == 422, response.text
        assert response.json()["detail"].startswith("chords.wav: ")
    assert create_app(workers=1).state.predictor.job.max_duration == 1800


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def test_retry_after_follows_the_service_time_and_is_capped():
    from moodscope.service.admission import Admission

    times: list[float | None] = [None]
    admission = Admission(ServiceConfig(workers=2, queue=0, retry_after_max=60), lambda: times[0])
    assert admission.retry_after() == 1  # the 2-s guess over 2 workers
    times[0] = 9.0
    assert admission.retry_after() == 5  # a place frees about every 9 / 2 s
    times[0] = 25_000.0  # one hostile file's worth
    assert admission.retry_after() == 60
    for _ in range(2):
        admission.enter()
    with pytest.raises(RequestRejected) as info:
        admission.enter()
    assert info.value.status == 503 and info.value.headers["Retry-After"] == "60"


def test_a_wrong_field_over_a_mib_is_400_not_413(client):
    big = b"\0" * (3 * 2**20)  # well under the 8-MB limit, over the multipart slack
    response = client.post("/v1/predict", files={"audio": ("song.wav", big)})
    assert response.status_code == 400, response.text
    assert "field named 'file'" in response.json()["detail"]
    # Whatever else is sent, up to the whole limit: still 400, the file part is missing.
    huge = b"\0" * (10 * 2**20)

    def body():  # no Content-Length: the streaming count meets the limit first
        yield b'--q\r\nContent-Disposition: form-data; name="upload"; filename="a.wav"\r\n\r\n'
        yield huge
        yield b"\r\n--q--\r\n"

    response = client.post(
        "/v1/predict", content=body(), headers={"Content-Type": "multipart/form-data; boundary=q"}
    )
    assert response.status_code == 400, response.text


def _trickle_scope() -> dict:
    return {
        "type": "http",
        "method": "POST",
        "path": "/v1/predict",
        "headers": [(b"content-type", b"multipart/form-data; boundary=xyz")],
    }


def test_an_upload_under_the_minimum_rate_is_408(tmp_path):
    from starlette.requests import Request

    head = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="drip.wav"\r\n\r\n'
    sent = []

    async def receive():  # a byte every 50 ms: never silent, far too slow
        if not sent:
            sent.append(head)
            return {"type": "http.request", "body": head, "more_body": True}
        await asyncio.sleep(0.05)
        assert len(sent) < 200, "the trickling upload should have been dropped by now"
        sent.append(b"x")
        return {"type": "http.request", "body": b"x", "more_body": True}

    config = ServiceConfig(upload_timeout=5, min_upload_rate=1000, upload_rate_window=0.5)
    started = time.perf_counter()
    with pytest.raises(RequestRejected) as info:
        asyncio.run(receive_upload(Request(_trickle_scope(), receive), config, str(tmp_path)))
    # After one rate window; the trickle's own guard (200 bytes, >= 10 s) bounds it above,
    # however loaded the machine.
    assert 0.5 <= time.perf_counter() - started
    assert info.value.status == 408
    assert info.value.detail.startswith("drip.wav: the upload came at ")
    assert "under the server's minimum of 1000 bytes/s (--min-upload-rate)" in info.value.detail
    assert list(tmp_path.iterdir()) == []


def test_an_upload_at_the_rate_over_several_windows_is_received(tmp_path):
    from starlette.requests import Request

    head = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="ok.wav"\r\n\r\n'
    chunks = [head] + [b"y" * 200] * 30 + [b"\r\n--xyz--\r\n"]

    async def receive():  # 200 bytes every 20 ms: 10 kB/s over 0.6 s, past two windows
        await asyncio.sleep(0.02)
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    config = ServiceConfig(min_upload_rate=2000, upload_rate_window=0.25)
    upload = asyncio.run(receive_upload(Request(_trickle_scope(), receive), config, str(tmp_path)))
    assert upload.name == "ok.wav" and upload.size == 6000
    assert upload.path.read_bytes() == b"y" * 6000


def test_openapi_describes_the_prediction_and_the_error(client, track):
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    answers = schema["paths"]["/v1/predict"]["post"]["responses"]

    def resolve(ref: dict) -> dict:
        return components[ref["$ref"].rsplit("/", 1)[1]]

    ok = resolve(answers["200"]["content"]["application/json"]["schema"])
    body = _post(client, track, params={"timeline": "true"}).json()
    assert set(body) <= set(ok["properties"])  # every field the API sends is described
    assert set(ok["required"]) <= set(body)
    # Nine shares, or none for a file that is not music.
    (emotions,) = [resolve(s) for s in ok["properties"]["emotions"]["anyOf"] if "$ref" in s]
    assert list(emotions["properties"]) == list(EMOTIONS)
    for code in ("400", "401", "413", "415", "421", "422", "500", "503", "504", "507"):
        error = resolve(answers[code]["content"]["application/json"]["schema"])
        assert error["required"] == ["detail"], code
    health = schema["paths"]["/v1/health"]["get"]["responses"]["200"]
    assert set(resolve(health["content"]["application/json"]["schema"])["properties"]) == set(
        client.get("/v1/health").json()
    )
    assert {"/healthz", "/readyz", "/metrics"} <= set(schema["paths"])
    assert "head" in schema["paths"]["/healthz"]


# -- a real server with one worker and one queue place -------------------------------------


@pytest.fixture(scope="module")
def small_live(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("small"), "--workers", "1", "--queue", "1")
    try:
        yield server
    finally:
        stop_server(server)
    assert server.uploads_left() == []


def _live_metrics(server) -> dict[tuple[str, tuple], float]:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(server.url + "/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _health(server) -> dict:
    import httpx

    return httpx.get(server.url + "/v1/health", timeout=10).json()


def _request_head(port: int, length: int, *, host: str | None = None) -> bytes:
    return (
        f"POST /v1/predict HTTP/1.1\r\nHost: {host or f'127.0.0.1:{port}'}\r\n"
        "Content-Type: multipart/form-data; boundary=dr1bble\r\n"
        f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode()


@pytest.mark.slow
def test_live_probes_host_check_and_metrics(small_live):
    import httpx

    for path in ("/healthz", "/readyz"):
        assert httpx.head(small_live.url + path).status_code == 200
    with socket.create_connection(("127.0.0.1", small_live.port), timeout=10) as s:
        s.sendall(
            b"GET /v1/health HTTP/1.1\r\nHost: rebind.example:80\r\nConnection: close\r\n\r\n"
        )
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 421 "), answer[:200]
    assert b"host 'rebind.example:80' is not served here" in answer
    samples = _live_metrics(small_live)  # parses: Prometheus text format
    key = (
        "moodscope_http_requests_total",
        (("method", "GET"), ("route", "other"), ("status", "421")),
    )
    assert samples[key] >= 1
    assert samples[("moodscope_ready", ())] == 1


@pytest.mark.slow
def test_live_slowloris_holds_no_queue_place(small_live, tmp_path):
    """20 clients trickling a byte every half second, against 1 worker and 1 queue place:
    a legitimate upload is answered about as fast as without them, and each trickler is
    dropped with 408 once a rate window has passed."""
    import httpx

    audio = tmp_path / "legit.wav"
    sf.write(audio, chord_signal(6.0, seed=9), SR)
    files = {"file": ("legit.wav", audio.read_bytes())}

    def legit() -> float:
        started = time.perf_counter()
        response = httpx.post(small_live.url + "/v1/predict", files=files, timeout=60)
        assert response.status_code == 200, response.text
        return time.perf_counter() - started

    reference = sorted(legit() for _ in range(3))[1]
    body = _multipart("drip.wav", b"\0" * 100_000)
    tricklers = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", small_live.port), timeout=30)
        s.sendall(_request_head(small_live.port, len(body)) + body[:200])
        tricklers.append(s)
    stop = threading.Event()
    # The server judges a rate only once a whole window (10 s) has passed: the drip stops
    # well before that, so no byte can cross the server's close (a byte sent after it makes
    # the kernel reset the connection before the 408 is read); the silence after it is as
    # far under the minimum rate, and the upload timeout (30 s) is further still.
    quiet_after = time.monotonic() + 0.6 * 10.0

    def drip():
        sent = 200
        while not stop.wait(0.5) and sent < len(body) and time.monotonic() < quiet_after:
            # A socket with an answer to read was dropped (as a real client stops sending
            # once answered, too).
            answered, _, _ = select.select(tricklers, [], [], 0)
            for s in tricklers:
                if s in answered:
                    continue
                try:
                    s.send(body[sent : sent + 1])
                except OSError:  # dropped by the server: what the test waits for
                    pass
            sent += 1

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    try:
        _wait_until(lambda: _health(small_live)["receiving"] == 20)
        during = sorted(legit() for _ in range(3))[1]
        health = _health(small_live)
        assert health["receiving"] == 20 and health["queued"] == 0
        print(f"legitimate upload {during:.2f} s beside 20 tricklers; alone {reference:.2f} s")
        assert during < 5 * reference
        answers = []
        for s in tricklers:
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
            answers.append(answer)
    finally:
        stop.set()
        dripper.join(timeout=5)
        for s in tricklers:
            s.close()
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"under the server's minimum of 16384 bytes/s" in answer
    _wait_until(lambda: _health(small_live)["receiving"] == 0)
    assert small_live.uploads_left() == []


def _send_all(port: int, name: str, data: bytes) -> socket.socket:
    body = _multipart(name, data)
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.sendall(_request_head(port, len(body)) + body)
    return s


@pytest.mark.slow
def test_live_a_client_that_leaves_cancels_its_queued_or_running_work(small_live, long_track):
    import httpx

    data = long_track.read_bytes()
    cancelled = ("moodscope_worker_restarts_total", (("reason", "cancelled"),))
    outcome = ("moodscope_predictions_total", (("outcome", "cancelled"),))
    before = _live_metrics(small_live)
    running = _send_all(small_live.port, "running.flac", data)
    _wait_until(lambda: _health(small_live)["running"] == 1)
    queued = _send_all(small_live.port, "queued.flac", data)
    _wait_until(lambda: _health(small_live)["queued"] == 1)
    # The queued one leaves: out of the queue, no worker touched.
    queued.close()
    _wait_until(lambda: _health(small_live)["queued"] == 0)
    health = _health(small_live)
    assert health["running"] == 1
    after_queued = _live_metrics(small_live)
    assert after_queued.get(cancelled, 0) == before.get(cancelled, 0)
    assert after_queued[outcome] == before.get(outcome, 0) + 1
    # The running one leaves: its worker is killed and replaced, free for the next client.
    running.close()
    _wait_until(lambda: _health(small_live)["running"] == 0)
    after = _live_metrics(small_live)
    assert after[cancelled] == before.get(cancelled, 0) + 1
    assert after[outcome] == before.get(outcome, 0) + 2
    files = {"file": ("next.flac", data)}
    response = httpx.post(small_live.url + "/v1/predict", files=files, timeout=120)
    assert response.status_code == 200 and response.json()["path"] == "next.flac"
    assert small_live.uploads_left() == []


@pytest.mark.slow
def test_live_retry_after_matches_how_fast_a_burst_clears(small_live, tmp_path):
    """A burst against 1 worker and 1 queue place: the 503s' Retry-After, taken from the
    measured service time, is no longer than the burst took to clear (issue 19: it said
    1222 s after a burst that cleared in under 10 s)."""
    import httpx

    audio = tmp_path / "burst.wav"
    sf.write(audio, chord_signal(6.0, seed=11), SR)
    files = {"file": ("burst.wav", audio.read_bytes())}
    for _ in range(5):  # recent service times the server can measure
        assert httpx.post(small_live.url + "/v1/predict", files=files, timeout=60).is_success

    async def burst():
        async with httpx.AsyncClient(base_url=small_live.url, timeout=60) as client:
            return await asyncio.gather(
                *(client.post("/v1/predict", files=files) for _ in range(10))
            )

    started = time.perf_counter()
    answers = asyncio.run(burst())
    cleared = time.perf_counter() - started
    codes = sorted(r.status_code for r in answers)
    assert codes.count(200) >= 2 and set(codes) <= {200, 503}, codes
    waits = [int(r.headers["Retry-After"]) for r in answers if r.status_code == 503]
    assert waits, codes
    print(f"burst of 10 cleared in {cleared:.2f} s; Retry-After {sorted(set(waits))}")
    assert max(waits) <= max(1, math.ceil(cleared))


@pytest.mark.slow
def test_live_token_file_probes_and_json_access_log(tmp_path):
    """A server as an operator runs it: the token from a file (so not in ps), probes open,
    the API and /metrics behind the token, one JSON object a line in the log."""
    import json

    import httpx

    secret = tmp_path / "token.txt"
    secret.write_text("live-s3cret\n")
    server = start_server(
        tmp_path, "--workers", "1", "--token-file", str(secret), "--access-log", "json"
    )
    try:
        cmdline = Path(f"/proc/{server.process.pid}/cmdline").read_bytes()
        assert b"live-s3cret" not in cmdline
        for path in ("/healthz", "/readyz"):
            assert httpx.get(server.url + path).status_code == 200
            assert httpx.head(server.url + path).status_code == 200
        assert httpx.get(server.url + "/v1/health").status_code == 401
        assert httpx.get(server.url + "/metrics").status_code == 401
        auth = {"Authorization": "Bearer live-s3cret"}
        assert httpx.get(server.url + "/v1/health", headers=auth).json()["ready"] is True
        assert httpx.get(server.url + "/metrics", headers=auth).status_code == 200
    finally:
        stop_server(server)
    log = server.log.read_text()
    assert "warning" not in log  # a token from a file, on 127.0.0.1: nothing to warn about
    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    routes = {(e["route"], e["method"], e["status"]) for e in entries}
    assert {
        ("/healthz", "HEAD", 200),
        ("/v1/health", "GET", 401),
        ("/metrics", "GET", 200),
    } <= routes
    assert not [line for line in log.splitlines() if '" 200' in line]  # no uvicorn text lines


@pytest.mark.slow
def test_live_small_files_with_heavy_work_cannot_hold_the_workers(tmp_path, long_track):
    """Issue 19's amplification: two small uploads that take long to predict, on both
    workers. Past --request-timeout each gets 504 and its worker is replaced, so a
    legitimate upload waits about the limit, not the hostile files' whole run."""
    import httpx

    launched = time.perf_counter()
    server = start_server(tmp_path, "--workers", "2", "--request-timeout", "1")
    start_up = time.perf_counter() - launched  # bounds a fresh worker's start: it includes one
    try:
        quick = tmp_path / "quick.wav"
        sf.write(quick, chord_signal(6.0, seed=12), SR)
        files = {"file": ("quick.wav", quick.read_bytes())}
        started = time.perf_counter()
        assert httpx.post(server.url + "/v1/predict", files=files, timeout=60).is_success
        reference = time.perf_counter() - started

        async def attack_then_legit():
            async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
                heavy = {"file": ("heavy.flac", long_track.read_bytes())}
                attacks = [asyncio.create_task(client.post("/v1/predict", files=heavy))]
                attacks.append(asyncio.create_task(client.post("/v1/predict", files=heavy)))
                await asyncio.sleep(0.3)  # both on a worker
                started = time.perf_counter()
                legit = await client.post("/v1/predict", files=files)
                waited = time.perf_counter() - started
                return await asyncio.gather(*attacks), legit, waited

        attacks, legit, waited = asyncio.run(attack_then_legit())
        assert [a.status_code for a in attacks] == [504, 504]
        assert legit.status_code == 200
        print(
            f"legitimate upload answered in {waited:.2f} s beside two heavy ones; alone "
            f"{reference:.2f} s; server start-up {start_up:.2f} s"
        )
        # The limit, a fresh worker's start (the killed ones are replaced), its own run.
        assert waited < 1.0 + start_up + 5 * reference
        samples = _live_metrics_with(server)
        assert samples[("moodscope_worker_restarts_total", (("reason", "timeout"),))] == 2
    finally:
        stop_server(server)


def _live_metrics_with(server, **kw):
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(server.url + "/metrics", timeout=10, **kw).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_every_serve_command_in_the_docs_parses(tmp_path, monkeypatch):
    """docs/serve.md's command lines run through the real option parser (uvicorn stubbed),
    and every path its curl lines probe is a route of the app."""
    import re
    import shlex

    import moodscope.service.server as service
    from moodscope.cli import main

    docs = (Path(__file__).resolve().parents[1] / "docs" / "serve.md").read_text()
    blocks = "\n".join(re.findall(r"```sh\n(.*?)```", docs, flags=re.S))
    commands = [line for line in blocks.splitlines() if "moodscope serve" in line]
    assert len(commands) >= 4
    monkeypatch.chdir(tmp_path)
    (tmp_path / "token.txt").write_text("t0ken\n")
    secret = tmp_path / "secret"
    secret.write_text("t0ken\n")
    started = []
    monkeypatch.setattr(service, "create_app", lambda model, **kw: started.append(kw) or "app")
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: None)
    for line in commands:
        words = shlex.split(line.replace("/run/secrets/moodscope_token", str(secret)))
        env = dict(w.split("=", 1) for w in words[: words.index("moodscope")])
        for name, value in env.items():
            monkeypatch.setenv(name, "t0ken" if "$(" in value else value)
        with pytest.raises(SystemExit) as info:
            main(words[words.index("moodscope") + 1 :])
        assert info.value.code == 0, line
        assert started[-1]["token"] == "t0ken", line
        for name in env:
            monkeypatch.delenv(name)
    app_paths = set(create_app(workers=1).openapi()["paths"])
    probed = re.findall(r"curl [^\n]*?http://127\.0\.0\.1:8000(/\S*)", blocks)
    assert len(probed) >= 2
    for url in probed:
        assert url in app_paths, url


def test_the_prediction_schema_passes_every_field_a_prediction_sends():
    """The service answers ``Prediction.to_dict()`` as it is; its documented schema takes any
    field a newer model adds (not-music, arousal, valence, ...) without an edit here."""
    from moodscope.inference.predictor import Prediction
    from moodscope.service.schemas import EXAMPLE, PredictionOut

    sent = Prediction.from_dict(EXAMPLE).to_dict()
    sent["a_field_added_later"] = 0.5
    assert PredictionOut.model_validate(sent).model_dump()["a_field_added_later"] == 0.5
    schema = create_app(workers=1).openapi()["components"]["schemas"]["PredictionOut"]
    assert schema["additionalProperties"] is True
    assert set(Prediction.from_dict(EXAMPLE).to_dict()) <= set(schema["properties"])
