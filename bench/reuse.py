"""Result reuse: the same ``n`` tasks again with ``reuse_results=True``, against running them.

A notebook rerun: each repetition submits ``n`` tasks with arguments no earlier
repetition used (reuse on, so they all miss, run and are recorded), then the
very same ``n`` again (all hits: answered from the store, nothing runs). Both
are timed as the batch figure times a batch, from building it to having every
result; a third side submits fresh arguments with reuse off, to show what
asking for reuse costs when nothing is stored.
"""

from __future__ import annotations

from gcgate import Client
from gcgate.constants import LOCAL_ENDPOINT_ID
from harness import script_function

from bench.common import WAIT, Row, Settings, median, running_daemon, timed
from bench.noop import noop


def _submit_all(client: Client, function_id: str, args: range) -> list[str]:
    """``batch_run`` of one task per argument, and wait for every result (all
    must succeed); the task ids."""
    batch = client.create_batch()
    for i in args:
        batch.add(function_id, (i,))
    task_ids: list[str] = client.batch_run(LOCAL_ENDPOINT_ID, batch)["tasks"][function_id]
    results = client.get_batch_result(task_ids, wait=WAIT)
    if len(results) != len(args) or any(t["pending"] for t in results.values()):
        raise RuntimeError("reuse figure: not every task succeeded")
    return task_ids


def reuse(settings: Settings) -> list[Row]:
    n = settings.pick(2_000, 200)
    reps = settings.pick(3, 1)
    with (
        running_daemon(settings, "reuse") as daemon,
        Client(socket_path=daemon.socket_path) as plain,
        Client(socket_path=daemon.socket_path, reuse_results=True) as reusing,
    ):
        function_id = plain.register_function(script_function(noop))
        # Warm-up: every worker started and has run noop (arguments no side uses).
        _submit_all(plain, function_id, range(10**9, 10**9 + 4 * settings.workers))
        off: list[float] = []
        miss: list[float] = []
        hit: list[float] = []
        for rep in range(reps):
            fresh, unused = range(rep * n, (rep + 1) * n), range(-(rep + 1) * n, -rep * n)
            off.append(timed(lambda: _submit_all(plain, function_id, unused)))  # noqa: B023
            miss.append(timed(lambda: _submit_all(reusing, function_id, fresh)))  # noqa: B023
            hit.append(timed(lambda: _submit_all(reusing, function_id, fresh)))  # noqa: B023
        reused = reusing.status()["tasks"]["reused"]
    if reused != n * reps:
        raise RuntimeError(f"reuse figure: {reused} tasks reused, expected {n * reps}")
    note = f"median of {reps}; {n:,} noop tasks by batch_run + get_batch_result"
    return [
        Row(
            "reuse",
            f"{n:,} tasks again, reuse_results=True (all reused)",
            "tasks/s",
            n / median(hit),
            n / median(miss),
            None,
            "the same tasks run (reuse on, all missed)",
            note,
        ),
        Row(
            "reuse",
            f"{n:,} new tasks, reuse_results=True (all missed, run)",
            "tasks/s",
            n / median(miss),
            n / median(off),
            None,
            "new tasks, reuse off",
            note + "; the cost of asking when nothing is stored",
        ),
    ]
