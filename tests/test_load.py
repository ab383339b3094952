"""Load: 16 client processes at once, on the local endpoint and on the Globus stand-in.

Each process (``tests/load_client.py``) runs Client.run + get_result(wait=),
batch_run + WatchTasks, Executor futures and re-reads of earlier results for a
bounded time, recording every task id it was handed with the input it sent.
The test then requires: no errors in any process, every task's result is its
input + 1 both as the process received it and as a fresh client reads it back
with GetBatchResult, and the daemon counts exactly these tasks as succeeded
(none pending, none failed). It prints throughput and latency per call type;
docs/reliability.md#4-load holds the figures of a run.

CI runs ``LOAD_SECONDS`` (8 s) of load per endpoint; ``make soak`` runs
``GCGATE_SOAK_LOAD_SECONDS`` (default 300 s).
"""

from __future__ import annotations

import json
import os
import selectors
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from gcgate import Client
from harness import Daemon, serve
from standin import StandIn

CLIENTS = 16
LOAD_SECONDS = 8.0
SOAK_SECONDS = float(os.environ.get("GCGATE_SOAK_LOAD_SECONDS", "300"))
LOAD_CLIENT = Path(__file__).with_name("load_client.py")
START_DEADLINE = 120.0
#: What the daemon allows itself per 10 s window (globus.md), under the service's 20.
GLOBUS_BUDGET = 18


@dataclass
class LoadRun:
    """What the client processes reported, merged."""

    reports: list[dict[str, Any]]
    tasks: dict[str, list[Any]] = field(default_factory=dict)
    latency: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for report in self.reports:
            self.tasks.update(report["tasks"])
            for kind, values in report["latency"].items():
                self.latency.setdefault(kind, []).extend(values)

    @property
    def handed_out(self) -> int:
        return sum(len(r["tasks"]) for r in self.reports)

    @property
    def errors(self) -> list[str]:
        return [e for r in self.reports for e in r["errors"]]

    @property
    def seconds(self) -> float:
        return max(r["seconds"] for r in self.reports)

    @property
    def calls(self) -> int:
        return sum(r["calls"] for r in self.reports)

    def table(self, title: str) -> str:
        rows = [
            f"{title}: {CLIENTS} processes, {self.seconds:.1f} s, {len(self.tasks)} tasks"
            f" ({len(self.tasks) / self.seconds:.0f}/s), {self.calls} client calls"
            f" ({self.calls / self.seconds:.0f}/s)",
            f"{'call':<18}{'count':>7}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}",
        ]
        for kind, values in sorted(self.latency.items()):
            p50, p99 = percentiles(values)
            rows.append(
                f"{kind:<18}{len(values):>7}{p50 * 1000:>9.1f}{p99 * 1000:>9.1f}"
                f"{max(values) * 1000:>9.1f}"
            )
        return "\n".join(rows)


def percentiles(values: list[float]) -> tuple[float, float]:
    """p50 and p99 (inclusive method: a value that was really observed at the top)."""
    if len(values) == 1:
        return values[0], values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[98]


def wait_ready(processes: list[subprocess.Popen[str]]) -> None:
    """Every process prints ``ready`` once connected and registered (or fails here)."""
    selector = selectors.DefaultSelector()
    for process in processes:
        assert process.stdout is not None
        selector.register(process.stdout, selectors.EVENT_READ, process)
    deadline = time.monotonic() + START_DEADLINE
    waiting = len(processes)
    while waiting:
        events = selector.select(timeout=max(0.0, deadline - time.monotonic()))
        assert events, f"{waiting} load clients not ready after {START_DEADLINE:.0f} s"
        for key, _ in events:
            process = key.data
            line = process.stdout.readline()
            if line != "ready\n":
                process.kill()
                _, err = process.communicate(timeout=30)
                pytest.fail(f"load client failed to start ({line!r}):\n{err}")
            selector.unregister(key.fileobj)
            waiting -= 1
    selector.close()


def run_load(daemon: Daemon, endpoint: str, seconds: float) -> LoadRun:
    """Start the clients, let them go together, collect their reports."""
    processes = [
        subprocess.Popen(
            [sys.executable, str(LOAD_CLIENT), endpoint, str(seconds), str(index)],
            env=daemon.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(CLIENTS)
    ]
    try:
        wait_ready(processes)
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()  # communicate() closes it
        reports = []
        for process in processes:
            out, err = process.communicate(timeout=seconds + START_DEADLINE)
            assert process.returncode == 0, err
            reports.append(json.loads(out.splitlines()[-1]))
        return LoadRun(reports)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def check_nothing_lost(daemon: Daemon, run: LoadRun) -> None:
    assert not run.errors, run.errors[:10]
    assert len(run.tasks) == run.handed_out  # no id handed out twice
    assert run.tasks
    kinds = {
        "Run",
        "GetResult(wait)",
        "BatchRun",
        "WatchTasks",
        "Executor future",
        "GetResult(done)",
    }
    assert kinds <= run.latency.keys(), run.latency.keys()
    wrong = {t: xr for t, xr in run.tasks.items() if xr[1] != xr[0] + 1}
    assert not wrong, list(wrong.items())[:10]
    with Client(socket_path=daemon.socket_path) as fresh:
        stored = fresh.get_batch_result(run.tasks)
        status = fresh.status()
    assert stored.keys() == run.tasks.keys()
    wrong = {t: s for t, s in stored.items() if s.get("result") != run.tasks[t][0] + 1}
    assert not wrong, list(wrong.items())[:10]
    assert status["tasks"] == {
        "pending": 0,
        "success": len(run.tasks),
        "failed": 0,
        "cancelled": 0,
        "reused": 0,
    }


def serving(d: Daemon) -> Iterator[Daemon]:
    """``d`` started for a test; after it, a clean stop with no traceback logged."""
    yield from serve(d.start())
    assert "Traceback" not in d.log()


@pytest.fixture
def local_daemon(tmp_path: Path) -> Iterator[Daemon]:
    yield from serving(Daemon(tmp_path / "state", workers=2))


@pytest.fixture
def globus_daemon(standin: StandIn, tmp_path: Path) -> Iterator[Daemon]:
    """Logged in as the stand-in's service account, which enforces its rate limit."""
    standin.compute.enforce_rate_limit = True
    yield from serving(Daemon(tmp_path / "state", workers=1, daemon_env=standin.env()))


def load_local(daemon: Daemon, seconds: float) -> None:
    run = run_load(daemon, "local", seconds)
    print("\n" + run.table("local endpoint"))
    check_nothing_lost(daemon, run)


def load_globus(daemon: Daemon, standin: StandIn, seconds: float) -> None:
    run = run_load(daemon, standin.endpoint_id, seconds)
    requests = standin.stats.count(service="compute") + standin.stats.count(service="auth")
    busiest = standin.stats.max_in_window(10.0, service=None)
    print(
        "\n"
        + run.table("Globus stand-in")
        + f"\nHTTP requests {requests} ({requests / len(run.tasks):.4f}/task),"
        f" busiest 10 s: {busiest}, {dict(standin.stats.by_route('compute'))}"
    )
    check_nothing_lost(daemon, run)
    # Each ran at the service, under the id it assigned (gcgate answers with its own).
    with Client(socket_path=daemon.socket_path) as fresh:
        ran = fresh.get_batch_result(run.tasks)
    assert all(r["details"]["globus_task_id"] in standin.compute.tasks for r in ran.values())
    assert standin.stats.count(outcome="rate_limited") == 0
    assert busiest <= GLOBUS_BUDGET
    assert requests / len(run.tasks) < 0.5


def test_sixteen_clients_on_the_local_endpoint(local_daemon: Daemon) -> None:
    load_local(local_daemon, LOAD_SECONDS)


def test_sixteen_clients_on_the_globus_standin(globus_daemon: Daemon, standin: StandIn) -> None:
    load_globus(globus_daemon, standin, LOAD_SECONDS)


@pytest.mark.soak
@pytest.mark.timeout(SOAK_SECONDS + 600)
def test_soak_local_endpoint(local_daemon: Daemon) -> None:
    load_local(local_daemon, SOAK_SECONDS)


@pytest.mark.soak
@pytest.mark.timeout(SOAK_SECONDS + 600)
def test_soak_globus_standin(globus_daemon: Daemon, standin: StandIn) -> None:
    load_globus(globus_daemon, standin, SOAK_SECONDS)
