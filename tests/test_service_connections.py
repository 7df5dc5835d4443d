"""A server that sheds idle and abusive clients: against a real `moodscope serve` on
127.0.0.1, sockets that send nothing or half a request are closed after --header-timeout,
more idle sockets than the process has file descriptors leave /healthz answering, made-up
methods cannot grow the metrics, and a full upload disk is a one-line JSON 507; the rules
themselves on fake connections."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import socket
import subprocess
import time

import httpx
import numpy as np
import pytest
import soundfile as sf

from live_server import start_server, stop_server
from moodscope.errors import ConfigError
from moodscope.service.connections import RESERVED_FILES, ConnectionGuard, connection_cap
from moodscope.service.operators import METHODS

HEADER_TIMEOUT = 2.0
BOUND = 20.0  # seconds any closing may take under load before the test calls it kept open


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=BOUND)


def _until_closed(sock: socket.socket, *, keep_sending: bytes = b"") -> bytes:
    """What the server sends until it closes the connection (``keep_sending``: a byte string
    sent every 0.25 s meanwhile, as a client trickling its head would); fails after
    ``BOUND`` seconds with the connection still open."""
    deadline = time.monotonic() + BOUND
    data = b""
    sock.settimeout(0.25 if keep_sending else BOUND)
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            try:
                sock.sendall(keep_sending)
            except (BrokenPipeError, ConnectionResetError):
                return data
            continue
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk
    pytest.fail(f"the server kept the connection open for {BOUND:g} s (sent {data[:200]!r})")


def _json_answer(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), head
    return status, json.loads(body)


def _metrics(url: str) -> str:
    return httpx.get(url + "/metrics", timeout=BOUND).text


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^{name}" + (rf"\{{{re.escape(want)}\}}" if labels else "") + r" ([\d.e+]+)$"
    found = re.search(pattern, text, flags=re.M)
    assert found, f"{name} {labels} not in /metrics"
    return float(found.group(1))


def _wav(path, seconds: float) -> None:
    noise = np.random.default_rng(3).standard_normal(int(seconds * 22050)).astype(np.float32)
    sf.write(path, 0.1 * noise, 22050, subtype="PCM_16")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    live = start_server(
        tmp_path_factory.mktemp("guarded"),
        "--workers",
        "1",
        "--header-timeout",
        f"{HEADER_TIMEOUT:g}",
    )
    yield live
    stop_server(live)


@pytest.mark.slow
def test_sockets_that_send_nothing_or_half_a_head_are_closed(server):
    silent, half, trickle = (_connect(server.port) for _ in range(3))
    half.sendall(b"GET /heal")
    trickle.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert _until_closed(silent) == b""  # nothing sent: closed without a word
    status, body = _json_answer(_until_closed(half))
    assert status == 408 and "--header-timeout" in body["detail"]
    assert "\n" not in body["detail"]
    # A byte now and then does not keep a connection open: the head has one deadline.
    status, _ = _json_answer(_until_closed(trickle, keep_sending=b"X-Slow: 1\r\n"))
    assert status == 408
    closed = _metric(
        _metrics(server.url), "moodscope_connections_closed_total", reason="header_timeout"
    )
    assert closed >= 3


@pytest.mark.slow
def test_a_kept_alive_connection_and_a_slow_body_are_not_cut(server, tmp_path):
    with _connect(server.port) as sock:
        for _ in range(2):  # two requests on one connection, the second after a pause
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = b""
            while not answer.endswith(b'{"status":"ok"}'):
                chunk = sock.recv(4096)
                assert chunk, f"closed after {answer!r}"
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200")
            time.sleep(HEADER_TIMEOUT / 4)
    # The head arrives at once; the body takes longer than --header-timeout (the upload's own
    # pace rules apply to it, not the head's deadline).
    _wav(tmp_path / "a.wav", 4.0)
    audio = (tmp_path / "a.wav").read_bytes()
    body = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        + audio
        + b"\r\n--b--\r\n"
    )
    head = (
        "POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with _connect(server.port) as sock:
        sock.sendall(head)
        parts = np.array_split(np.frombuffer(body, np.uint8), 3)
        for part in parts:
            time.sleep(HEADER_TIMEOUT * 0.6)
            sock.sendall(part.tobytes())
        status, answer = _json_answer(_until_closed(sock))
    assert status == 200 and answer["path"] == "a.wav"


@pytest.mark.slow
def test_made_up_methods_and_bytes_that_are_not_http_get_json_and_bounded_labels(server):
    for i in range(40):
        with _connect(server.port) as sock:
            sock.sendall(
                f"FOO{i} / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
            )
            status, body = _json_answer(_until_closed(sock))
            assert status == 405 and body["detail"]
    text = _metrics(server.url)
    methods = set(re.findall(r'^moodscope_http_requests_total\{.*method="([^"]*)"', text, re.M))
    assert "other" in methods and methods <= METHODS | {"other"}, methods
    assert "FOO" not in text
    with _connect(server.port) as sock:
        sock.sendall(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03 not http\r\n\r\n")
        status, body = _json_answer(_until_closed(sock))
    assert status == 400 and "not a valid HTTP/1.1 request" in body["detail"]


@pytest.mark.slow
def test_more_idle_sockets_than_file_descriptors_leave_healthz_answering(tmp_path):
    files = 320
    cap = files - RESERVED_FILES - 64  # --max-uploads' default
    ours = resource.getrlimit(resource.RLIMIT_NOFILE)
    if ours[0] < 3 * files:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(ours[1], 4 * files), ours[1]))
    live = start_server(tmp_path, "--workers", "1", rlimits={resource.RLIMIT_NOFILE: files})
    idle = []
    try:
        assert f"note: at most {cap} open connections" in live.log.read_text()
        for i in range(files + 80):  # more than the server could hold open at all
            sock = _connect(live.port)
            if i % 2:
                sock.sendall(b"GET /heal")  # half a request line
            idle.append(sock)
        answer = httpx.get(live.url + "/healthz", timeout=BOUND)
        assert answer.status_code == 200 and answer.json() == {"status": "ok"}
        text = _metrics(live.url)
        assert _metric(text, "moodscope_connections_max") == cap
        assert _metric(text, "moodscope_connections_open") <= cap
        assert _metric(text, "moodscope_connections_closed_total", reason="shed") > 0
        assert len(os.listdir(f"/proc/{live.process.pid}/fd")) < files
    finally:
        for sock in idle:
            sock.close()
        stop_server(live)


def _tmpfs_wrapper(size: str) -> list[str]:
    """A command line that mounts a tmpfs of ``size`` on the server's $TMPDIR (in a mount
    namespace of its own, no root needed where the kernel allows user namespaces)."""
    mount = f'mount -t tmpfs -o size={size} tmpfs "$TMPDIR" && exec "$@"'
    return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", mount, "sh"]


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = _tmpfs_wrapper("64k") + ["true"]
    env = {**os.environ, "TMPDIR": "/tmp"}
    return subprocess.run(probe, env=env, capture_output=True, timeout=30).returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize("full", ["tmpfs", "file-size limit"])
def test_a_full_upload_disk_is_one_json_line_and_the_server_goes_on(full, tmp_path):
    if full == "tmpfs" and not _can_mount_tmpfs():
        pytest.skip("this kernel lets no unprivileged process mount a tmpfs (user namespaces)")
    options: dict = (
        {"wrapper": _tmpfs_wrapper("1m")}
        if full == "tmpfs"
        else {"rlimits": {resource.RLIMIT_FSIZE: 2**20}}
    )
    live = start_server(tmp_path, "--workers", "1", **options)
    try:
        _wav(tmp_path / "big.wav", 60.0)  # 2.6 MB: more than the disk takes
        _wav(tmp_path / "small.wav", 4.0)
        with open(tmp_path / "big.wav", "rb") as f:
            answer = httpx.post(live.url + "/v1/predict", files={"file": f}, timeout=60)
        assert answer.status_code == 507, answer.text
        detail = answer.json()["detail"]
        assert "the server cannot store the upload" in detail and "retry later" in detail
        assert "\n" not in detail
        with open(tmp_path / "small.wav", "rb") as f:
            answer = httpx.post(live.url + "/v1/predict", files={"file": f}, timeout=60)
        assert answer.status_code == 200 and answer.json()["path"] == "small.wav"
        if full != "tmpfs":  # the tmpfs is only seen from inside the server's namespace
            assert live.uploads_left() == []
        assert "Traceback" not in live.log.read_text()
    finally:
        stop_server(live)


# -- the rules on their own -------------------------------------------------------------------


def test_the_cap_stays_under_the_file_limit():
    assert connection_cap(1000, 64, None) == 1000
    assert connection_cap(1000, 64, 1024) == 1024 - RESERVED_FILES - 64
    assert connection_cap(100, 64, 65536) == 100
    with pytest.raises(ConfigError, match=r"ulimit -n 150\) leaves room for 0 connections"):
        connection_cap(1000, 64, 150)


class _FakeConnection:
    def __init__(self, guard: ConnectionGuard, *, idle: bool):
        self.guard, self.dropped = guard, False
        if idle:
            guard.idle[self] = None

    def drop(self) -> None:
        self.dropped = True
        self.guard.forget(self)


def test_a_newcomer_takes_the_longest_idle_place_or_is_refused():
    guard = ConnectionGuard(2, 1.0)
    busy = _FakeConnection(guard, idle=False)
    first = _FakeConnection(guard, idle=True)
    assert guard.admit(busy) and guard.admit(first)
    newcomer = _FakeConnection(guard, idle=True)
    assert guard.admit(newcomer) and first.dropped and not busy.dropped
    assert guard.open == {busy, newcomer} and guard.closed["shed"] == 1
    guard.idle.pop(newcomer)  # its request is in progress now
    assert not guard.admit(_FakeConnection(guard, idle=False))
    assert guard.closed["refused"] == 1 and len(guard.open) == 2
