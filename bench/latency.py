"""How soon a remote task's result reaches the caller: gcgate's Executor against the SDK's.

Both sides run against the same stand-in of Globus Compute and Auth
(``tests/standin``), which pushes every result into the run's RabbitMQ broker
(:class:`bench.common.Shared`) as the service does, and log in as the same service
account. Each side is one process of :mod:`bench.latency_client`: an ``Executor``
submits tasks of several durations at once (one task each, a stand-in worker for
every task, so none waits for another), and each future's done-callback records
when it resolved. The figure is, per task, the seconds from the task's end (the
time it returns) to its future resolved: what the result path adds, whatever the
task's length. The SDK's ``Executor`` takes results from its task group's AMQP
queue itself; gcgate's ``Executor`` gets them from the daemon (logged in as the
service account), which forwards the tasks and takes their results from the
service.

Time is not compressed here (unlike the remote figure): the daemon runs with its
default settings, the tasks sleep real seconds. The stand-in does not enforce the
rate limit (both sides stay far below it; the busiest 10 s of each is in the notes),
so neither side's requests depend on the other's.
"""

from __future__ import annotations

import tempfile

from standin import RATE_WINDOW, StandIn

from bench.common import Row, Settings, Target, median, running_daemon
from bench.remote import Traffic, run_clients, sdk_env

#: Task durations (s) before staggering: one task each, submitted at once.
SECONDS = (1, 2, 3, 5, 8, 13, 21, 34, 45)
QUICK_SECONDS = (0.2, 0.5, 1.0)


def staggered(seconds: tuple[float, ...], spread: float) -> list[float]:
    """``seconds`` with the i-th of n lengthened by ``spread * i / n``.

    The tasks start together, so whole-second lengths would all end at the same
    phase of any periodic check on the result path (the SDK's result watcher
    matches results every 0.5 s, gcgate's poller has its rounds): every task would
    measure the same draw of that phase. Staggered by ``spread / n``, the ends fall
    evenly over ``spread`` (1 s in the full run: with n odd, evenly over 0.5 s too),
    so the median and max sample the phases.
    """
    n = len(seconds)
    return [round(s + spread * i / n, 3) for i, s in enumerate(seconds)]


CLIENT = "bench.latency_client"


def _latencies(report: dict[str, list[float]]) -> list[float]:
    return [float(x) for x in report["latency"]]


def _ms(values: list[float]) -> str:
    return ", ".join(f"{1000 * v:.0f}" for v in values)


def _publish_lags(standin: StandIn, shortest: float) -> list[float]:
    """Per measured task (it slept at least ``shortest`` s: not a warm-up), seconds from
    its end to the broker confirming its result's publish: the stand-in's part of the
    path, the same for both sides."""
    lags = []
    for op in list(standin.compute.publications):
        if op.outcome != "ok" or op.task_id is None or op.done_at is None:
            continue
        task = standin.compute.task(op.task_id)
        ran = task.details.get("task_transitions", {})
        if ran.get("execution-end", 0.0) - ran.get("execution-start", 0.0) >= shortest:
            lags.append(op.done_at - (task.completion_t or op.done_at))
    return lags


def remote_latency(settings: Settings) -> list[Row]:
    seconds = staggered(QUICK_SECONDS, 0.5) if settings.quick else staggered(SECONDS, 1.0)
    args = [f"{s:g}" for s in seconds]
    with StandIn(workers=len(seconds), broker=settings.shared.broker()) as standin:
        endpoint_id = standin.endpoint_id

        standin.stats.reset()
        with running_daemon(settings, "latency", env=standin.env()) as daemon:
            _, (ours,) = run_clients(CLIENT, ["gcgate", endpoint_id, *args], daemon.env, 1)
            daemon.stop()  # every request of the daemon's is in its side's count
        our_traffic = Traffic.of(standin)
        our_peak = standin.stats.max_in_window(RATE_WINDOW)

        standin.stats.reset()
        with tempfile.TemporaryDirectory(dir=settings.work_dir) as home:
            _, (theirs,) = run_clients(
                CLIENT, ["sdk", endpoint_id, *args], sdk_env(standin, home), 1
            )
        their_traffic = Traffic.of(standin)
        their_peak = standin.stats.max_in_window(RATE_WINDOW)
        published = _publish_lags(standin, min(seconds))

    our, their = _latencies(ours), _latencies(theirs)
    workload = (
        f"{len(seconds)} tasks of {', '.join(f'{s:.2f}' for s in seconds)} s,"
        " submitted at once, after one warm-up task. Of both numbers, the stand-in's"
        f" publish (task end to the broker's confirm): median {1000 * median(published):.1f}"
        f" ms, max {1000 * max(published):.1f} ms"
    )
    baseline = "globus_compute_sdk.Executor"
    return [
        Row(
            "remote_latency",
            "task end to future resolved, median",
            "s",
            median(our),
            median(their),
            Target("<=", 1.0),
            baseline,
            workload,
        ),
        Row(
            "remote_latency",
            "task end to future resolved, max",
            "s",
            max(our),
            max(their),
            Target("<=", 0.3, on="value"),
            baseline,
            f"per task, shortest first (ms): gcgate {_ms(our)}; SDK {_ms(their)}",
        ),
        Row(
            "remote_latency",
            "HTTP requests, whole side",
            "req",
            our_traffic.total,
            their_traffic.total,
            Target("<=", 1.0),
            baseline,
            f"gcgate (daemon start to stop): {our_traffic.describe()}, Compute at most {our_peak}"
            f" in any {RATE_WINDOW:g} s. SDK (client process): {their_traffic.describe()},"
            f" Compute at most {their_peak} in any {RATE_WINDOW:g} s",
        ),
    ]
