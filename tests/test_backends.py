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


def slow_first(item, context):
    time.sleep(0.6 if item == 0 else 0.01)
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


def test_process_pool_yields_in_completion_order():
    with ProcessBackend(2) as backend:
        backend.start(0)
        list(stream(backend, square_plus, range(4)))  # both workers up before timing
        order = [item for item, _ in stream(backend, slow_first, range(4))]
    assert sorted(order) == [0, 1, 2, 3]
    assert order[0] != 0  # the slow first item did not hold back the others


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


def test_open_backend_choices():
    assert isinstance(open_backend(workers=1), InlineBackend)
    pool = open_backend(workers=2)
    assert isinstance(pool, ProcessBackend) and pool.workers == 2
    pool.close()
    with pytest.raises(ConfigError, match="workers must be >= 1"):
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
