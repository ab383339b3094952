"""One client process of the remote figure: the same user code on either SDK.

``python -m bench.remote_client gcgate|sdk ENDPOINT_ID RUNS``: builds its Client,
prints ``ready``, waits for a line on stdin (so every process starts its calls at
once), then registers the no-op function, calls ``run()`` RUNS times and polls
``get_result`` for each task as a user would (``TaskPending``: sleep briefly, ask
again), and prints one JSON line of what it did.

The gcgate side finds its daemon through ``GCGATE_SOCKET``. The SDK side logs
in as the service account from ``GLOBUS_COMPUTE_CLIENT_ID``/``_SECRET`` (the SDK's
own way) at the Auth URL in ``GLOBUS_SDK_SERVICE_URL_AUTH``, and reaches the
stand-in's Compute service through ``standin.sdk.compute_client`` (the SDK reads
its Compute URL only from its list of Globus environments). A 429 that outlasts
the SDK's own retries (5, honouring Retry-After) is what a user's loop must
handle; it is retried after a second and counted.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import bench.common  # noqa: F401 - puts tests/ (harness, standin) on sys.path

#: Seconds a user's polling loop sleeps after TaskPending.
POLL_SLEEP = 0.2


def _gcgate_client() -> tuple[Any, type[Exception], Callable[[Exception], bool]]:
    from gcgate import Client, TaskPending

    return Client(), TaskPending, lambda exc: False


def sdk_compute_client() -> Any:
    """A ``globus_compute_sdk.Client`` logged in as the service account of the
    environment (:func:`bench.remote.sdk_env`), talking to the stand-in."""
    from standin.sdk import compute_client

    return compute_client(SimpleNamespace(compute_url=os.environ["BENCH_COMPUTE_URL"]))


def _sdk_client() -> tuple[Any, type[Exception], Callable[[Exception], bool]]:
    import globus_sdk
    from globus_compute_sdk.errors import TaskPending

    client = sdk_compute_client()

    def throttled(exc: Exception) -> bool:
        return isinstance(exc, globus_sdk.GlobusAPIError) and exc.http_status == 429

    return client, TaskPending, throttled


def main(argv: list[str]) -> int:
    side, endpoint_id, runs = argv[0], argv[1], int(argv[2])
    from harness import script_function

    from bench.noop import noop

    client, task_pending, throttled = {"gcgate": _gcgate_client, "sdk": _sdk_client}[side]()
    counts = {"throttled": 0, "pending": 0}

    def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if not throttled(exc):
                    raise
                counts["throttled"] += 1
                time.sleep(1.0)

    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.perf_counter()
    function_id = call(client.register_function, script_function(noop))
    task_ids = [
        call(client.run, endpoint_id=endpoint_id, function_id=function_id) for _ in range(runs)
    ]
    t_submitted = time.perf_counter()
    for task_id in task_ids:
        while True:
            try:
                call(client.get_result, task_id)
                break
            except task_pending:
                counts["pending"] += 1
                time.sleep(POLL_SLEEP)
    t_done = time.perf_counter()
    report = {"submit_s": t_submitted - t0, "total_s": t_done - t0, **counts}
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
