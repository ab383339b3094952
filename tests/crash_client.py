"""A client process for the crash tests: submit, record every id at once, poll.

Run as ``python crash_client.py SPEC_JSON``; the socket comes from
``GCGATE_SOCKET``. It lives in a process of its own so that the test can
``kill -9`` the daemon under it: a call that fails because the daemon is gone
(``UNAVAILABLE``) is retried until the daemon is back, as a patient user's
script would. Files it writes (one line each, flushed at once):

- ``ids``: ``<task id> <x> <tag>`` for every task id a ``batch_run`` handed out;
  a retried ``batch_run`` gets a new tag, so the function's run log tells
  which submission a run belonged to;
- ``results``: ``<task id> <status> <result or exception>`` as polled;
- ``done``: written last, the client's totals as JSON.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from gcgate import Client
from gcgate.errors import DaemonUnavailable, DeadlineExceeded, Unavailable

T = TypeVar("T")

#: How long a client keeps retrying while the daemon is down.
RETRY_SECONDS = 120.0
#: Pause between retries while the daemon is down (a back-off, not a sync).
RETRY_PAUSE = 0.1
#: Task ids per get_batch_result call while polling.
POLL_CHUNK = 1000


def retried(call: Callable[[], T], counter: dict[str, int]) -> T:
    """``call()``, again while the daemon is unreachable (killed, restarting)."""
    deadline = time.monotonic() + RETRY_SECONDS
    while True:
        try:
            return call()
        except (Unavailable, DaemonUnavailable, DeadlineExceeded):
            counter["retries"] += 1
            if time.monotonic() > deadline:
                raise
            time.sleep(RETRY_PAUSE)


def main(spec: dict[str, Any]) -> None:
    out = Path(spec["out"])
    counter = {"retries": 0}
    ids: list[str] = []
    with (
        Client() as gcc,
        open(out / "ids", "a", buffering=1) as ids_file,
        open(out / "results", "a", buffering=1) as results_file,
    ):
        xs = range(spec["first"], spec["first"] + spec["count"])
        for start in range(0, len(xs), spec["chunk"]):
            chunk = xs[start : start + spec["chunk"]]

            def submit(chunk: range = chunk) -> tuple[str, dict[str, Any]]:
                # A new tag per attempt: an attempt whose answer was lost may
                # still have run; its runs must not count as this one's.
                tag = uuid.uuid4().hex[:12]
                batch = gcc.create_batch()
                for x in chunk:
                    batch.add(spec["function_id"], args=(x, tag, spec["runs"]))
                return tag, gcc.batch_run(spec["endpoint_id"], batch)

            tag, answer = retried(submit, counter)
            task_ids = answer["tasks"][spec["function_id"]]
            pairs = zip(task_ids, chunk, strict=True)
            ids_file.write("".join(f"{t} {x} {tag}\n" for t, x in pairs))
            ids.extend(task_ids)
        for start in range(0, len(ids), POLL_CHUNK):
            wanted = ids[start : start + POLL_CHUNK]
            tasks = retried(lambda w=wanted: gcc.get_tasks(w, wait=60), counter)
            lines = []
            for task_id in wanted:
                task = tasks[task_id]
                value = task.get("result") if "exception" not in task else task["exception"]
                lines.append(f"{task_id} {task['status']} {json.dumps(str(value))}\n")
            results_file.write("".join(lines))
    (out / "done").write_text(json.dumps({"submitted": len(ids), **counter}))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
