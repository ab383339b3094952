"""Executor: while submissions wait behind a BatchRun call, the results of the
batches sent meanwhile are watched together (gcgate.executor.WATCH_GATHER); none
may be left unwatched, at shutdown either.

The BatchRun of the fake daemon of test_client_unit is held on its first call, so
a burst queues up behind it whatever the machine's speed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from gcgate import Client, Executor
from test_client_unit import FakeDaemon, FakeGateway, add

WAIT = 60.0


class HeldGateway(FakeGateway):
    """Holds the first BatchRun call until ``go`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.first_call = threading.Event()
        self.go = threading.Event()
        self.batch_runs = 0

    def BatchRun(self, request: Any, context: Any) -> Any:
        self.batch_runs += 1
        self.first_call.set()
        self.go.wait(WAIT)
        return super().BatchRun(request, context)


@pytest.fixture
def held() -> Iterator[FakeDaemon]:
    daemon = FakeDaemon()
    daemon.gateway = HeldGateway()
    daemon.start()
    yield daemon
    daemon.close()


def test_a_burst_behind_a_batch_run_is_watched_and_resolved(held: FakeDaemon) -> None:
    gateway = held.gateway
    assert isinstance(gateway, HeldGateway)
    with Client(socket_path=held.socket_path) as client:
        ex = Executor("local", client=client, batch_size=10)
        first = ex.submit(add, 0, 0)
        assert gateway.first_call.wait(WAIT)  # the submitter is inside BatchRun now
        burst = [ex.submit(add, i, 1) for i in range(1, 301)]
        gateway.go.set()
        assert first.result(timeout=WAIT) == 0
        assert [f.result(timeout=WAIT) for f in burst] == list(range(2, 302))
        assert gateway.batch_runs >= 31  # every batch was sent (how many streams
        # watched them depends on the machine's speed: not asserted)
        ex.shutdown()


def test_shutdown_resolves_a_burst_still_gathering(held: FakeDaemon) -> None:
    gateway = held.gateway
    assert isinstance(gateway, HeldGateway)
    with Client(socket_path=held.socket_path) as client:
        ex = Executor("local", client=client, batch_size=10)
        futures = [ex.submit(add, i, i) for i in range(100)]
        assert gateway.first_call.wait(WAIT)
        gateway.go.set()
        ex.shutdown(wait=True)  # the sentinel is queued behind the burst
        assert all(f.done() for f in futures)
        assert [f.result() for f in futures] == [2 * i for i in range(100)]
