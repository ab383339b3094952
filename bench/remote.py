"""Many client processes on a remote endpoint: gcgate against the Globus Compute SDK.

Both sides run against the same stand-in of Globus Compute and Auth
(``tests/standin``), which enforces the service's per-identity rate limit, and
log in as the same service account (so they share one rate budget, as a user's
processes would). Each side is ``procs`` processes of :mod:`bench.remote_client`
doing ``runs`` ``run()`` calls and then polling every result. The stand-in
pushes results into the run's RabbitMQ broker too (:class:`bench.common.Shared`),
as the service does, to the result queues the daemon's submits ask for.

Time is compressed: the stand-in allows 20 requests per ``WINDOW`` s (the real
service: per 10 s), and the daemon's limiter and result-poll bounds are scaled by
the same factor, so the full figure takes minutes instead of half an hour. Both
sides face the same limit, so the ratio stands; the seconds are not the real
service's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from standin import RATE_WINDOW, StandIn

from bench.common import ROOT, WAIT, Row, Settings, Target, running_daemon

#: The stand-in's rate window (the real one is RATE_WINDOW = 10 s).
WINDOW = 1.0
SCALE = WINDOW / RATE_WINDOW

#: The daemon's time constants that follow the rate window (defaults x SCALE).
DAEMON_SETTINGS = {
    "rate_limit_window_seconds": 10.0 * SCALE,
    "poll_min_seconds": 0.5 * SCALE,
    "poll_max_seconds": 10.0 * SCALE,
}


def run_clients(
    module: str, args: list[str], env: dict[str, str], procs: int
) -> tuple[float, list[dict[str, Any]]]:
    """Start ``procs`` processes of ``python -m module *args``, let them go at once;
    wall seconds from the go to the last report, and their reports.

    The protocol of :mod:`bench.remote_client` and :mod:`bench.latency_client`: a
    client prints ``ready`` once set up, starts on a line on stdin, and ends by
    printing one JSON line (its report).
    """
    command = [sys.executable, "-m", module, *args]
    what = f"{module} {args[0] if args else ''}".strip()
    clients: list[subprocess.Popen[str]] = []
    try:
        # One at a time until each is ready: the SDK's clients create their shared
        # token database on first use, and 8 doing so at once race ("no such table").
        for _ in range(procs):
            p = subprocess.Popen(
                command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
            )
            clients.append(p)
            assert p.stdout is not None
            line = p.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"{what}: a client did not start ({line.strip() or 'EOF'})")
        t0 = time.perf_counter()
        for p in clients:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        reports = []
        for p in clients:
            assert p.stdout is not None
            line = p.stdout.readline()
            if not line:
                raise RuntimeError(f"{what}: a client failed (exit {p.wait()})")
            reports.append(json.loads(line))
        wall = time.perf_counter() - t0
        for p in clients:
            p.wait(timeout=WAIT)
        return wall, reports
    finally:
        for p in clients:
            if p.poll() is None:
                p.kill()
                p.wait()


def sdk_env(standin: StandIn, home: str) -> dict[str, str]:
    """The environment of an SDK client process: the stand-in's URLs and service
    account, the Compute URL for :func:`bench.remote_client.sdk_compute_client`, and
    ``home`` as the SDK's user directory (its token store)."""
    return {
        **os.environ,
        **standin.env(),
        "BENCH_COMPUTE_URL": standin.compute_url,
        "GLOBUS_COMPUTE_USER_DIR": home,
    }


@dataclass
class Traffic:
    """What the stand-in received during one side: every request, Compute and Auth."""

    total: int
    rate_limited: int
    routes: Counter[str]

    @classmethod
    def of(cls, standin: StandIn) -> Traffic:
        records = standin.stats.records
        return cls(
            len(records),
            sum(r.outcome == "rate_limited" for r in records),
            Counter(r.route or f"{r.method} {r.path}" for r in records),
        )

    def describe(self) -> str:
        routes = ", ".join(f"{route} {n}" for route, n in self.routes.most_common())
        return f"{self.total} requests, {self.rate_limited} answered 429 ({routes})"


def remote(settings: Settings) -> list[Row]:
    procs = settings.pick(8, 2)
    runs = settings.pick(200, 3)
    tasks = procs * runs
    with StandIn(workers=settings.workers, broker=settings.shared.broker()) as standin:
        standin.compute.enforce_rate_limit = True
        standin.compute.rate_window = WINDOW
        args = [standin.endpoint_id, str(runs)]

        standin.stats.reset()
        with running_daemon(
            settings, "remote", config=DAEMON_SETTINGS, env=standin.env()
        ) as daemon:
            ours, our_reports = run_clients(
                "bench.remote_client", ["gcgate", *args], daemon.env, procs
            )
            daemon.stop()  # its result poller must not spend the SDK side's budget
        our_traffic = Traffic.of(standin)

        time.sleep(WINDOW)  # a fresh rate window for the other side
        standin.stats.reset()
        with tempfile.TemporaryDirectory(dir=settings.work_dir) as home:
            theirs, their_reports = run_clients(
                "bench.remote_client", ["sdk", *args], sdk_env(standin, home), procs
            )
        their_traffic = Traffic.of(standin)

    workload = f"{procs} processes x {runs} run(); 20 req / {WINDOW:g} s"
    given_up = sum(r["throttled"] for r in their_reports + our_reports)
    baseline = "globus_compute_sdk.Client"
    return [
        Row(
            "remote",
            "HTTP requests per task",
            "req/task",
            our_traffic.total / tasks,
            their_traffic.total / tasks,
            Target("<=", 0.02, on="value"),
            baseline,
            f"{workload}. gcgate: {our_traffic.describe()}. SDK: {their_traffic.describe()};"
            f" 429s that outlasted the SDK's retries: {given_up}",
        ),
        Row(
            "remote",
            "wall time, all results in",
            "s",
            ours,
            theirs,
            Target("<=", 0.2),
            baseline,
            workload,
        ),
    ]
