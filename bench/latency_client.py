"""One client process of the remote_latency figure: an ``Executor``, the SDK's or gcgate's.

``python -m bench.latency_client gcgate|sdk ENDPOINT_ID SECONDS...``: builds its
Executor, runs one warm-up task to the end (the function registered, the result
path connected: the SDK's AMQP watcher, gcgate's stream to the daemon), prints
``ready``, waits for a line on stdin, then submits one task per SECONDS at once.
Each task sleeps that long and returns ``time.time()`` at its end, its only
result; a done-callback on each future records ``time.time()`` when the future
resolves. Prints one JSON line: per task, the seconds from its end to its future
resolved (same machine, same clock).

The gcgate side finds its daemon through ``GCGATE_SOCKET``; the SDK side logs in
as the service account of its environment (:func:`bench.remote.sdk_env`) and gets
results the SDK's own way, from the task group's AMQP queue.
"""

from __future__ import annotations

import json
import queue
import sys
import time
from typing import Any

import bench.common  # noqa: F401 - puts tests/ (harness, standin) on sys.path
from bench.common import WAIT


def sleep_then_time(seconds):
    """The task: sleep, then return the time it ends."""
    import time

    time.sleep(seconds)
    return time.time()


def _executor(side: str, endpoint_id: str) -> Any:
    if side == "gcgate":
        from gcgate import Executor

        return Executor(endpoint_id=endpoint_id)
    from globus_compute_sdk import Executor

    from bench.remote_client import sdk_compute_client

    return Executor(endpoint_id=endpoint_id, client=sdk_compute_client())


def main(argv: list[str]) -> int:
    side, endpoint_id, seconds = argv[0], argv[1], [float(s) for s in argv[2:]]
    from harness import script_function

    task = script_function(sleep_then_time)
    with _executor(side, endpoint_id) as ex:
        ex.submit(task, 0).result(timeout=WAIT)  # warm-up
        print("ready", flush=True)
        sys.stdin.readline()

        # Callbacks run on the executor's result thread after the future's waiters
        # are woken: they hand their time over here, so none is read before it is set.
        resolved: queue.SimpleQueue[tuple[int, float]] = queue.SimpleQueue()
        t0 = time.time()
        futures = [ex.submit(task, s) for s in seconds]
        t_submitted = time.time()
        for i, fut in enumerate(futures):
            fut.add_done_callback(lambda _f, i=i: resolved.put((i, time.time())))
        at: dict[int, float] = {}
        deadline = time.monotonic() + max(seconds) + WAIT
        while len(at) < len(futures):
            i, t = resolved.get(timeout=max(0.0, deadline - time.monotonic()))
            at[i] = t
        ends = [f.result() for f in futures]
    report = {
        "seconds": seconds,
        "latency": [at[i] - end for i, end in enumerate(ends)],
        "submit_s": t_submitted - t0,
        "wall_s": max(at.values()) - t0,
    }
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
