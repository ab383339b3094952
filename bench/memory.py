"""Daemon memory with many tasks tracked: RSS as tasks pile up, and after they finish.

The local endpoint's workers are paused (SIGSTOP) while ``steps`` batches of
10,000 no-op tasks (5,000 with ``--quick``) are submitted, so every task is in
flight (stored, queued, tracked by the core) when the daemon's RSS is read from
/proc after each batch; then the workers resume and RSS is read again once every
task is final. The
growth per 10,000 tasks is the slope of a least-squares line through the
in-flight readings; "linear or better" means the second half of the run grew
no faster than the first (within 1 MB per 10,000, for noise).
"""

from __future__ import annotations

from gcgate import Client
from gcgate.constants import LOCAL_ENDPOINT_ID
from harness import script_function

from bench.common import Row, Settings, Target, running_daemon, wait_idle
from bench.noop import noop
from bench.procs import children, paused, rss_mb

#: Readings are per 10,000 tasks; a step is one batch_run.
PER = 10_000


def _parts(reading: dict[str, float]) -> str:
    return f"anon {reading['RssAnon']:.0f} MB + file-backed {reading['RssFile']:.0f} MB"


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )


def memory(settings: Settings) -> list[Row]:
    steps = settings.pick(10, 2)
    step = settings.pick(PER, PER // 2)
    with (
        running_daemon(settings, "memory") as daemon,
        Client(socket_path=daemon.socket_path) as client,
    ):
        function_id = client.register_function(script_function(noop))
        client.get_result(
            client.run(endpoint_id=LOCAL_ENDPOINT_ID, function_id=function_id), wait=60
        )
        idle = rss_mb(daemon.pid)
        tracked = [0]
        readings = [idle]
        with paused(children(daemon.pid)):
            for _ in range(steps):
                b = client.create_batch()
                for i in range(step):
                    b.add(function_id, (i,))
                client.batch_run(LOCAL_ENDPOINT_ID, b)
                tracked.append(tracked[-1] + step)
                readings.append(rss_mb(daemon.pid))
        wait_idle(client)
        completed = rss_mb(daemon.pid)

    rss = [r["VmRSS"] for r in readings]
    per_10k = slope([t / PER for t in tracked], rss)
    half = len(tracked) // 2
    first = slope(tracked[: half + 1], rss[: half + 1]) * PER
    second = slope(tracked[half:], rss[half:]) * PER
    linear = second <= first + 1.0
    total = tracked[-1]
    return [
        Row(
            "memory",
            f"daemon RSS, {total:,} tasks in flight (max)",
            "MB",
            max(rss),
            target=Target("<=", 150, on="value"),
            note=f"{_parts(readings[-1])}; idle before: {idle['VmRSS']:.0f} MB ({_parts(idle)})",
        ),
        Row(
            "memory",
            "RSS growth per 10,000 tasks in flight",
            "MB",
            per_10k,
            target="linear or better",
            passed=linear,
            note=f"first half {first:.1f} MB, second half {second:.1f} MB per 10,000",
        ),
        Row(
            "memory",
            f"daemon RSS, {total:,} tasks completed",
            "MB",
            completed["VmRSS"],
            target=Target("<=", 150, on="value"),
            note=_parts(completed),
        ),
    ]
