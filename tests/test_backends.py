"""The executor seam: inline and local-pool backends, streaming, bounded windows, crashes."""

from __future__ import annotations

import os
import threading
import time

import pytest

from moodscope.backends import (
    InlineBackend,
    ProcessBackend,
    WorkerLost,
    failure_message,
    open_backend,
    stream,
)
from moodscope.errors import AudioError, ConfigError


def square_plus(item, context):
    return item * item + context


def die_on_seven(item, context):
    if item == 7:
        os._exit(3)  # a decoder segfault, as the pool sees it
    time.sleep(0.05)
    return item + context


def last_first(item, context):
    # Item 0 finishes only once the caller holds another item's result (it then writes
    # the file "go"), however loaded the machine: completion order, not timing, is what is
    # tested. (Waiting for another worker to *start* returning raced: loaded, item 0 could
    # still be handed back first.)
    go = os.path.join(context, "go")
    if item == 0:
        deadline = time.monotonic() + 60
        while not os.path.exists(go) and time.monotonic() < deadline:
            time.sleep(0.01)
    return item


def test_inline_streams_every_item():
    with InlineBackend() as backend:
        backend.start(10)
        got = dict(stream(backend, square_plus, range(6)))
    assert got == {i: i * i + 10 for i in range(6)}


def test_inline_hands_exceptions_back_as_values():
    def fails(item, context):
        raise AudioError(f"/music/{item}.mp3", "file is empty (0 bytes)")

    backend = InlineBackend()
    backend.start(None)
    ((item, out),) = stream(backend, fails, [1])
    assert isinstance(out, AudioError) and "/music/1.mp3" in str(out)


def test_process_pool_yields_in_completion_order(tmp_path):
    with ProcessBackend(2) as backend:
        backend.start(str(tmp_path))
        order = []
        for item, _ in stream(backend, last_first, range(4)):
            order.append(item)
            (tmp_path / "go").touch()
    assert sorted(order) == [0, 1, 2, 3]
    assert order[0] != 0  # the item still running did not hold back the others


def test_window_bounds_items_in_flight():
    submitted, finished = [], []
    lock = threading.Lock()

    class Counting(InlineBackend):
        def submit(self, fn, item):
            with lock:
                submitted.append(item)
                # never more than the window ahead of what the consumer has taken
                assert len(submitted) - len(finished) <= 3
            return super().submit(fn, item)

    backend = Counting()
    backend.start(0)
    for item, _ in stream(backend, square_plus, range(50), in_flight=3):
        finished.append(item)
    assert len(finished) == 50


def test_a_worker_crash_loses_only_the_item_that_caused_it():
    with ProcessBackend(2) as backend:
        backend.start(100)
        results = dict(stream(backend, die_on_seven, range(12)))
    assert sorted(results) == list(range(12))
    assert isinstance(results[7], WorkerLost)
    assert all(results[i] == i + 100 for i in range(12) if i != 7)


def test_a_file_dask_gives_up_runs_again_alone_and_clears_its_neighbours(monkeypatch):
    """Dask counts a dying worker against every task it held, so a file that only ran
    beside the culprit comes back KilledWorker too: stream runs each such file again with
    nothing beside it, which clears the innocent and convicts the culprit."""
    import moodscope.backends.base as base

    class KilledWorker(Exception):  # what stream knows dask's by: its name
        pass

    class Colocated(InlineBackend):
        # Tasks finish together, at the health check: all of them die if the poison is
        # among them (they shared its workers).
        def __init__(self):
            super().__init__()
            self.held, self.runs = [], []

        def submit(self, fn, item):
            future = base.Future()
            self.held.append((item, future))
            return future

        def check(self):
            batch, self.held = self.held, []
            together = [item for item, _ in batch]
            self.runs.append(together)
            for item, future in batch:
                if "poison" in together:
                    future.set_exception(KilledWorker(item))
                else:
                    future.set_result(f"{item}: ok")

    monkeypatch.setattr(base, "HEALTH_CHECK_SECONDS", 0.01)
    items = ["a", "poison", "b", "c", "d", "e"]
    backend = Colocated()
    backend.start(None)
    results = dict(stream(backend, square_plus, items, in_flight=3))
    assert sorted(results) == sorted(items)
    assert isinstance(results["poison"], KilledWorker)
    assert all(results[i] == f"{i}: ok" for i in items if i != "poison")
    assert backend.runs[0] == ["a", "poison", "b"]
    assert ["poison"] in backend.runs and ["a"] in backend.runs and ["b"] in backend.runs


def test_open_backend_choices():
    assert isinstance(open_backend(workers=1), InlineBackend)
    pool = open_backend(workers=2)
    assert isinstance(pool, ProcessBackend) and pool.workers == 2
    pool.close()
    with pytest.raises(ConfigError, match="workers must be a whole number >= 1"):
        open_backend(workers=0)
    with pytest.raises(ConfigError, match="tcp://HOST:PORT"):
        open_backend(scheduler="my-cluster")


def test_failure_message_names_the_file_once():
    assert failure_message("/a.mp3", AudioError("/a.mp3", "file is empty (0 bytes)")) == (
        "/a.mp3: file is empty (0 bytes)"
    )
    assert failure_message("/a.mp3", ValueError("bad\nthing")) == "/a.mp3: ValueError: bad thing"
    assert failure_message("/a.mp3", WorkerLost("the worker died")) == "/a.mp3: the worker died"


def test_a_pool_reused_with_the_same_context_keeps_its_workers():
    with ProcessBackend(2) as backend:
        backend.start(5)
        first = {pid for _, pid in stream(backend, worker_pid, range(4))}
        pool = backend._pool
        backend.start(5)  # the same context: nothing to send again
        assert backend._pool is pool
        backend.start(6)  # another context: fresh workers that have it
        assert backend._pool is not pool
        assert dict(stream(backend, square_plus, [2]))[2] == 10
        assert not {pid for _, pid in stream(backend, worker_pid, range(4))} & first


def worker_pid(item, context):
    time.sleep(0.05)
    return os.getpid()


def test_inline_keeps_submission_order():
    backend = InlineBackend()
    backend.start(0)
    for _ in range(20):  # a set of finished futures would come back in any order
        assert [item for item, _ in stream(backend, square_plus, range(7))] == list(range(7))


# -- workers end with their parent ---------------------------------------------------------


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state) of every process, from /proc."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[int(entry)] = (int(fields[1]), fields[0])
    return found


def _descendants(pid: int) -> set[int]:
    table = _processes()
    out, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, (ppid, _) in table.items() if ppid in frontier} - out
        out |= frontier
    return out


def _running(pids: set[int]) -> set[int]:
    table = _processes()
    return {p for p in pids if p in table and table[p][1] not in ("Z", "X")}


def _synth_folder(folder, n: int) -> None:
    import soundfile as sf

    from moodscope.demo.synth import DEMO_PIECES, synthesize_piece

    folder.mkdir()
    for i in range(n):
        piece = list(DEMO_PIECES)[i % len(DEMO_PIECES)]
        sf.write(folder / f"{i:02d}.flac", synthesize_piece(piece, duration=10.0, seed=i), 22050)


def killed_mid_run(args: list[str], how: str, err_path, mid_run, grace: float = 30.0):
    """Start ``args``, wait until ``mid_run(proc)`` says the run is under way, send it the
    signal ``how``; the processes it started that still run ``grace`` s later (killed here,
    so no test leaves them to the next), and what it wrote on stderr. The wait ends as soon
    as they are gone: ``grace`` only bounds it, generously, for a loaded machine."""
    import signal
    import subprocess

    with open(err_path, "w") as err:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            deadline = time.monotonic() + 240
            while not mid_run(proc):
                assert proc.poll() is None and time.monotonic() < deadline, "finished first"
                time.sleep(0.05)
            tree = _descendants(proc.pid)
            assert proc.poll() is None, "the run finished before it could be killed"
            os.kill(proc.pid, getattr(signal, how))
            proc.wait(timeout=30)
            gone_by = time.monotonic() + grace
            while _running(tree) and time.monotonic() < gone_by:
                time.sleep(0.05)
            left = _running(tree)
        finally:
            if proc.poll() is None:
                proc.kill()
            for pid in _running(_descendants(proc.pid)):
                os.kill(pid, signal.SIGKILL)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left, err_path.read_text()


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="counts processes in /proc")
@pytest.mark.parametrize("command", ["predict", "tag"])
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_workers_forkserver_and_tracker_end_with_a_killed_run(tmp_path, command, how):
    import sys
    from pathlib import Path

    folder = tmp_path / "music"
    _synth_folder(folder, 24)
    moodscope = str(Path(sys.executable).with_name("moodscope"))
    args = [moodscope, command, str(folder), "--workers", "2"]
    args += ["--format", "jsonl"] if command == "predict" else ["--db", str(tmp_path / "i.db")]
    first = []

    def mid_run(proc) -> bool:
        # two workers, the forkserver and the resource tracker are up, a first result out
        if command == "predict" and not first:
            first.append(proc.stdout.readline())
            assert first[0].startswith("{")
        return len(_descendants(proc.pid)) >= 4 and (command != "tag" or _tagged(folder))

    left, said = killed_mid_run(args, how, tmp_path / "stderr.txt", mid_run)
    assert left == set(), f"still running 30 s after {how}: {sorted(left)}"
    assert "Traceback" not in said and "Error" not in said


def _tagged(folder) -> bool:
    from moodscope.library.tags import read_tags

    return any(read_tags(p).tagged for p in folder.iterdir() if p.suffix == ".flac")


def test_a_pool_starts_under_a_tmpdir_too_long_for_a_unix_socket(tmp_path):
    """The forkserver's socket lives under TMPDIR; a path over 107 bytes cannot be bound, so
    the pool gets a short folder of its own and the run goes as anywhere else."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    long_tmp = tmp_path / ("t" * 60) / ("m" * 60)
    long_tmp.mkdir(parents=True)
    assert len(str(long_tmp)) + len("/pymp-12345678/listener-12345678") > 107
    folder = tmp_path / "music"
    _synth_folder(folder, 2)
    moodscope = str(Path(sys.executable).with_name("moodscope"))
    env = {**os.environ, "TMPDIR": str(long_tmp)}
    run = subprocess.run(
        [moodscope, "predict", str(folder), "--workers", "2", "--format", "jsonl"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(rows) == 2 and all("error" not in r and r["emotions"] for r in rows), rows
    assert list(long_tmp.iterdir()) == []  # nothing left behind where the user pointed
