"""Batch runs on a real Dask cluster: a LocalCluster of process workers, a worker killed
mid-run, and a `dask scheduler` + `dask worker` started as a user starts them."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import chord_signal
from moodscope.inference.predictor import load_model, predict, predict_iter

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def music(emotify_dir, tmp_path_factory) -> Path:
    """Two real dev tracks, three synthesized pieces (one 44.1 kHz stereo), one bad file."""
    import soundfile as sf

    folder = tmp_path_factory.mktemp("music")
    for genre, n in (("classical", 2), ("rock", 3)):
        shutil.copy(emotify_dir / "emotifymusic" / genre / f"{n}.mp3", folder / f"{genre}.mp3")
    for i, (sr, channels) in enumerate([(22050, 1), (44100, 2), (16000, 1)]):
        y = chord_signal(20.0 + 5 * i, sr, seed=i)
        sf.write(folder / f"synth{i}.flac", np.stack([y] * channels, axis=1), sr)
    (folder / "notes.mp3").write_text("not audio\n" * 50)
    return folder


def _same(a, b) -> None:
    assert [r.path for r in a] == [r.path for r in b]
    for x, y in zip(a, b):
        assert x.error == y.error
        if x.ok:
            assert x.top_emotion == y.top_emotion
            np.testing.assert_allclose(
                list(x.emotions.values()), list(y.emotions.values()), atol=1e-6
            )
            for s, t in zip(x.timeline, y.timeline):
                assert (s.start, s.end) == (t.start, t.end)
                np.testing.assert_allclose(
                    list(s.emotions.values()), list(t.emotions.values()), atol=1e-6
                )


@pytest.fixture(scope="module")
def local_results(music):
    return predict(music, use_cache=False)


def test_local_cluster_gives_the_local_results(music, local_results):
    bad = [r for r in local_results if not r.ok]
    assert len(local_results) == 6 and [Path(r.path).name for r in bad] == ["notes.mp3"]
    on_cluster = predict(music, scheduler="local:2", use_cache=False)
    _same(local_results, on_cluster)
    assert "notes.mp3: is not an audio file" in "".join(r.error or "" for r in on_cluster)


def test_workers_load_the_model_once_and_a_killed_worker_loses_nothing(music, local_results):
    from distributed import Client, LocalCluster

    from moodscope.backends.cluster import DaskBackend

    files = sorted(str(p) for p in music.iterdir()) * 3  # 18 tasks, each file thrice
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None,
    ) as cluster, Client(cluster) as client:  # fmt: skip
        backend = DaskBackend(client)
        seen, killed = [], None
        for prediction in predict_iter(files, backend=backend, use_cache=False):
            seen.append(prediction)
            if killed is None:
                busy = [w for w, tasks in client.processing().items() if tasks]
                if busy:
                    pids = client.run(os.getpid)
                    killed = pids[busy[0]]
                    os.kill(killed, signal.SIGKILL)
        assert killed is not None, "no worker was busy to kill"
        loads = client.run(
            lambda: __import__("moodscope.inference.predictor", fromlist=["_LOADS"])._LOADS
        )
    assert sorted(r.path for r in seen) == sorted(files)  # each task exactly once
    by_path = {r.path: r for r in local_results}
    for r in seen:
        _same([by_path[r.path]], [r])
    # The surviving worker and the restarted one each loaded the model once.
    assert all(n <= 1 for n in loads.values()), loads


def _moodscope(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "moodscope"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )


@pytest.fixture
def dask_cluster(tmp_path):
    """`dask scheduler` and `dask worker --nworkers 2` as separate processes on 127.0.0.1."""
    scheduler_file = tmp_path / "scheduler.json"
    procs = [
        subprocess.Popen(
            [BIN / "dask", "scheduler", "--host", "127.0.0.1", "--port", "0",
             "--no-dashboard", "--scheduler-file", scheduler_file],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        address = None
        while address is None and time.monotonic() < deadline:
            try:  # the scheduler writes the file in more than one step
                address = json.loads(scheduler_file.read_text())["address"]
            except (OSError, ValueError, KeyError):
                time.sleep(0.1)
        procs.append(
            subprocess.Popen(
                [BIN / "dask", "worker", "--scheduler-file", scheduler_file, "--nworkers", "2",
                 "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=120)
        yield address, procs
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()


def test_cli_on_dask_scheduler_and_workers_equals_the_local_run(music, dask_cluster, tmp_path):
    address, _ = dask_cluster
    local = _moodscope("predict", music, "--format", "json", "--workers", "1")
    remote = _moodscope("predict", music, "--format", "json", "--scheduler", address)
    assert local.returncode == remote.returncode == 1  # the text file fails in both
    assert json.loads(remote.stdout) == json.loads(local.stdout)
    assert "notes.mp3: is not an audio file" in remote.stderr
    assert "Traceback" not in remote.stderr


def test_scheduler_lost_mid_run_then_resumed(music, dask_cluster, tmp_path):
    address, procs = dask_cluster
    many = tmp_path / "many"
    many.mkdir()
    for i in range(12):  # a batch long enough to lose the scheduler in the middle
        for src in music.glob("*.mp3"):
            if src.name != "notes.mp3":
                os.symlink(src, many / f"{i:02d}-{src.name}")
    out = tmp_path / "moods.jsonl"
    partial = out.with_name(out.name + ".partial")
    run = subprocess.Popen(
        [BIN / "moodscope", "predict", many, "--format", "jsonl", "--output", out,
         "--scheduler", address],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and run.poll() is None:
        if partial.is_file() and len(partial.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    procs[0].send_signal(signal.SIGKILL)  # the scheduler
    _, err = run.communicate(timeout=120)
    assert run.returncode == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("error: lost the Dask scheduler at " + address)
    assert "--resume" in lines[-1] and "Traceback" not in err
    assert not out.exists() and partial.is_file()
    done_before = {json.loads(line)["path"] for line in partial.read_text().splitlines()}
    assert 3 <= len(done_before) < 24
    resumed = _moodscope("predict", many, "--format", "jsonl", "--output", out, "--resume",
                         "--workers", "1")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {len(done_before)} file(s) already done" in resumed.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in many.iterdir())
    assert not partial.exists()


def test_unreachable_scheduler_is_one_clear_line(music):
    result = _moodscope("predict", music, "--scheduler", "tcp://127.0.0.1:9")
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("error: cannot reach the Dask scheduler at tcp://127.0.0.1:9")
    )
    assert "Traceback" not in result.stderr


def test_model_is_the_one_asked_for(music):
    model = load_model()
    (one,) = predict(sorted(music.glob("synth*.flac"))[:1], model, scheduler="local:1")
    assert one.ok and one.model == model.model_id


def test_features_on_a_local_cluster_equal_the_local_ones(music):
    from moodscope.features import FeatureConfig
    from moodscope.features.extract import map_tracks

    paths = sorted(str(p) for p in music.iterdir())
    config = FeatureConfig(feature_set="paper", segments=None, window=3.0)
    local, local_failures = map_tracks(paths, config, use_cache=False)
    remote, remote_failures = map_tracks(paths, config, scheduler="local:2", use_cache=False)
    assert remote_failures == local_failures and len(local_failures) == 1
    for a, b in zip(local, remote):
        assert (a is None) == (b is None)
        if a is not None:
            # float32 rounding: BLAS threads here, one thread per worker there
            np.testing.assert_allclose(a.features, b.features, rtol=1e-4, atol=1e-5)
            np.testing.assert_array_equal(a.starts, b.starts)


def test_relative_paths_reach_workers_that_run_elsewhere(music, dask_cluster, tmp_path):
    """The workers run in another folder (pytest's); the CLI is given paths relative to its
    own: they are made absolute before they leave, so every file is found."""
    address, _ = dask_cluster
    names = ["classical.mp3", "synth0.flac"]
    done = _moodscope("predict", *names, "--format", "json", "--scheduler", address, cwd=music)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert [r["path"] for r in results] == names  # named as given
    assert all("error" not in r for r in results)


# A Dask worker whose scheduler went away mid-heartbeat logs the lost connection with its
# traceback: teardown noise of the killed run's own workers, not something the run said.
_HEARTBEAT_NOISE = re.compile(
    r"^.* - distributed\.worker - ERROR - Failed to communicate with scheduler during "
    r"heartbeat\.\n"
    r"(?:(?:  .*|Traceback \(most recent call last\):|The above exception was the direct "
    r"cause of the following exception:|During handling of the above exception, another "
    r"exception occurred:|[\w.]+(?:Error|Closed)(?:: .*)?|)\n)*?"
    r"distributed\.comm\.core\.CommClosedError: .*\n",
    re.M,
)


def without_dask_teardown_noise(stderr: str) -> str:
    return _HEARTBEAT_NOISE.sub("", stderr)


def test_only_the_heartbeat_noise_is_left_out():
    heartbeat = (
        "2026-12-07 02:10:32,331 - distributed.worker - ERROR - Failed to communicate with "
        'scheduler during heartbeat.\nTraceback (most recent call last):\n  File "x.py", '
        "line 1, in read\n    raise\nConnectionResetError: [Errno 104] Connection reset by "
        "peer\n\nThe above exception was the direct cause of the following exception:\n\n"
        'Traceback (most recent call last):\n  File "worker.py", line 1165, in heartbeat\n'
        "distributed.comm.core.CommClosedError: in <TCP (closed)>: ConnectionResetError\n"
    )
    other = "Traceback (most recent call last):\n  File \"cli.py\"\nKeyError: 'x'\n"
    assert without_dask_teardown_noise("a\n" + heartbeat + "b\n") == "a\nb\n"
    assert without_dask_teardown_noise(heartbeat + other) == other


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="counts processes in /proc")
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_killed_local_cluster_run_leaves_no_process_and_says_nothing(tmp_path, how):
    """`--scheduler local:2` killed mid-run: Dask's worker processes and the resource tracker
    end with it, and the tracker does not warn about the pool's semaphores."""
    from test_backends import _descendants, _synth_folder, killed_mid_run

    folder = tmp_path / "music"
    _synth_folder(folder, 24)
    moodscope = str(Path(sys.executable).with_name("moodscope"))
    args = [moodscope, "predict", str(folder), "--scheduler", "local:2", "--format", "jsonl"]

    first = []

    def mid_run(proc) -> bool:  # a first result is out, Dask's workers are up
        if not first:
            first.append(proc.stdout.readline())
            assert first[0].startswith("{")
        return len(_descendants(proc.pid)) >= 2

    left, said = killed_mid_run(args, how, tmp_path / "stderr.txt", mid_run)
    assert left == set(), f"still running 30 s after {how}: {sorted(left)}"
    said = without_dask_teardown_noise(said)
    assert "Traceback" not in said and "leaked" not in said, said


@pytest.fixture
def not_dask(request):
    """A listener that is not a Dask scheduler: one that accepts and says nothing, an HTTP
    server (a dashboard's port given by mistake), or one that greets with a banner."""
    import http.server
    import socket
    import threading

    kind = request.param
    if kind == "http":
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), http.server.BaseHTTPRequestHandler
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield kind, f"tcp://127.0.0.1:{server.server_address[1]}"
        server.shutdown()
        server.server_close()
        return
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def greet() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")

    if kind == "banner":
        threading.Thread(target=greet, daemon=True).start()
    yield kind, f"tcp://127.0.0.1:{listener.getsockname()[1]}"  # silent: never accepts
    stop.set()
    listener.close()


@pytest.mark.parametrize("not_dask", ["silent", "http", "banner"], indirect=True)
def test_an_address_that_does_not_answer_as_dask_is_one_line(tmp_path, not_dask):
    import soundfile as sf

    kind, address = not_dask
    song = tmp_path / "a.flac"
    sf.write(song, chord_signal(3.0, 22050), 22050)
    result = _moodscope("predict", song, "--scheduler", address)  # bounded: 300 s
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    said = (
        "answers, but not as a Dask scheduler"
        if kind == "banner"
        else ("does not answer as a Dask scheduler (nothing within 10 s")
    )
    assert lines[0].startswith(f"error: {address} {said}"), lines


# -- workers that die: their files run again on the others ---------------------------------


def dies_on_poison(item, context):
    if item == "poison.mp3":
        os._exit(9)  # a decoder that segfaults on this file, on every worker that reads it
    return f"{item}: {context}"


def test_a_file_that_kills_every_worker_is_its_own_error_and_the_run_ends():
    """LocalCluster (local:2) with a worker killed before the first result, and one file
    that kills each worker it reaches: Dask reruns the dead workers' tasks on the others and
    gives the poison up after its allowed retries; every other file is done exactly once."""
    from moodscope.backends import failure_message, open_backend, stream

    items = ["poison.mp3"] + [f"{i:02d}.mp3" for i in range(10)]
    with open_backend(scheduler="local:2") as backend:
        backend.start("ok")
        first = next(iter(backend.client.run(os.getpid).values()))
        os.kill(first, signal.SIGKILL)
        results = dict(stream(backend, dies_on_poison, items))
    assert sorted(results) == sorted(items)
    assert all(results[i] == f"{i}: ok" for i in items[1:])
    error = failure_message("poison.mp3", results["poison.mp3"])
    assert error.startswith("poison.mp3: every Dask worker that read it died"), error


@pytest.mark.parametrize("resume", [False, True])
def test_a_worker_killed_mid_run_on_a_tcp_cluster_loses_nothing(
    music, dask_cluster, tmp_path, resume
):
    from distributed import Client

    from moodscope.inference.outputs import PredictionFile
    from moodscope.inference.predictor import Prediction

    address, _ = dask_cluster
    many = tmp_path / "many"
    many.mkdir()
    for i in range(4):
        for src in music.glob("*.mp3"):
            if src.name != "notes.mp3":
                os.symlink(src, many / f"{i:02d}-{src.name}")
    out = tmp_path / "moods.jsonl"
    partial = out.with_name(out.name + ".partial")
    args = ["predict", many, "--format", "jsonl", "--output", out, "--scheduler", address]
    if resume:  # an earlier run stopped after one file
        earlier = PredictionFile(out, "jsonl", timeline=False)
        first = sorted(str(p) for p in many.iterdir())[0]
        earlier.add(Prediction(first, emotions={"calmness": 1.0}, top_emotion="calmness"))
        earlier.close()
        args.append("--resume")
    with Client(address, timeout="30s") as client:
        run = subprocess.Popen(
            [BIN / "moodscope", *map(str, args)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 240
        while run.poll() is None and time.monotonic() < deadline:
            busy = [w for w, tasks in client.processing().items() if tasks]
            if busy:
                os.kill(client.run(os.getpid, workers=busy[:1])[busy[0]], signal.SIGKILL)
                break
            time.sleep(0.05)
        assert busy, "no worker was busy to kill"
        _, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    assert "Traceback" not in err and "lost the Dask scheduler" not in err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in many.iterdir())
    assert all("error" not in r for r in rows) and not partial.exists()
    if resume:
        assert "resuming: 1 file(s) already done" in err


def test_a_local_cluster_from_a_plain_script_without_a_main_guard(tmp_path):
    """``scheduler="local:2"`` at a script's top level: Dask's spawned workers do not run
    the script again (no "bootstrapping phase" errors), and the script runs once."""
    import soundfile as sf

    sf.write(tmp_path / "a.flac", chord_signal(3.0, 22050), 22050)
    script = tmp_path / "plain.py"
    script.write_text(
        "import os, moodscope\n"
        "print('top level of', os.getpid(), flush=True)\n"
        "found = moodscope.predict('a.flac', scheduler='local:2')\n"
        "print('predicted', [r.ok for r in found], flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert len([line for line in lines if line.startswith("top level of")]) == 1, lines
    assert "predicted [True]" in lines
    assert "bootstrapping" not in done.stderr and "Traceback" not in done.stderr
