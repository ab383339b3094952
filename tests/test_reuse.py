"""Opt-in result reuse (``reuse_results``), end to end and in the store.

Whether a task ran is observed through its side effect: the functions here
append a line to a file named by their first argument, so the file's line
count is how many times they ran (each test has its own file, hence its own
payloads and reuse keys on the module's shared daemon).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeBackend
from gcgate import Client, Executor, TaskExecutionFailed
from gcgate.constants import LOCAL_ENDPOINT_ID, TaskStatus
from gcgated.backends.base import Outcome
from gcgated.caller import DAEMON
from gcgated.core import TaskLifecycle
from gcgated.model import Registration, Submission, SubmitOptions
from gcgated.routing import Router
from gcgated.store import Store, reuse_keys
from gcgated.validation import json_payload
from harness import Daemon, GlobusDaemon, script_function
from standin import StandIn

WAIT = 60.0
JSON_RESULTS = "globus_compute_sdk.serialize.JSONData"


@script_function
def counted(path, x):
    with open(path, "a") as f:
        f.write(f"{x}\n")
    return x * 10


@script_function
def counted_other(path, x):
    with open(path, "a") as f:
        f.write(f"{x}\n")
    return x * 10 + 1


@script_function
def counted_failure(path, x):
    with open(path, "a") as f:
        f.write(f"{x}\n")
    raise ValueError(f"deliberate failure for {x}")


@script_function
def counted_once_allowed(path, go, x):
    import os
    import time

    with open(path, "a") as f:
        f.write(f"{x}\n")
    while not os.path.exists(go):  # the workload: it ends once the test allows it
        time.sleep(0.01)
    return x * 10


def runs(path: Path) -> int:
    """How many times a counted function ran with ``path``."""
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture
def reusing(daemon: Daemon) -> Iterator[Client]:
    with Client(socket_path=daemon.socket_path, reuse_results=True) as client:
        yield client


# ------------------------------------------------------------ local endpoint


def test_off_by_default_every_submission_runs(client: Client, tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    fid = client.register_function(counted)
    first = client.run(str(counter), 1, endpoint_id="local", function_id=fid)
    assert client.get_result(first, wait=WAIT) == 10
    second = client.run(str(counter), 1, endpoint_id="local", function_id=fid)
    assert client.get_result(second, wait=WAIT) == 10
    assert runs(counter) == 2
    assert "reused_from" not in client.get_task(second)


def test_a_hit_is_a_new_task_final_at_once_with_the_stored_result(
    reusing: Client, tmp_path: Path
) -> None:
    counter = tmp_path / "runs"
    fid = reusing.register_function(counted)
    first = reusing.run(str(counter), 2, endpoint_id="local", function_id=fid)
    assert reusing.get_result(first, wait=WAIT) == 20
    before = reusing.status()["tasks"]["reused"]

    second = reusing.run(str(counter), 2, endpoint_id="local", function_id=fid)
    task = reusing.get_task(second)  # no wait: final at once
    assert second != first
    assert task["status"] == "success" and not task["pending"]
    assert task["result"] == 20
    assert task["reused_from"] == first
    assert runs(counter) == 1
    assert reusing.status()["tasks"]["reused"] == before + 1
    listed = {t["task_id"]: t for t in reusing.list_tasks(limit=20)}
    assert listed[second]["reused_from"] == first
    assert "reused_from" not in listed[first]

    # A copy of a copy names the task that ran.
    third = reusing.run(str(counter), 2, endpoint_id="local", function_id=fid)
    assert reusing.get_task(third)["reused_from"] == first
    assert runs(counter) == 1


def test_a_submission_without_the_option_neither_reuses_nor_is_reused(
    client: Client, reusing: Client, tmp_path: Path
) -> None:
    counter = tmp_path / "runs"
    fid = client.register_function(counted)
    plain = client.run(str(counter), 3, endpoint_id="local", function_id=fid)
    assert client.get_result(plain, wait=WAIT) == 30
    # Not recorded for reuse: the reusing client runs it.
    first = reusing.run(str(counter), 3, endpoint_id="local", function_id=fid)
    assert reusing.get_result(first, wait=WAIT) == 30
    assert runs(counter) == 2
    # Stored now, but a client without the option still runs it.
    again = client.run(str(counter), 3, endpoint_id="local", function_id=fid)
    assert client.get_result(again, wait=WAIT) == 30
    assert runs(counter) == 3


def test_misses_when_args_or_code_or_result_serializers_differ(
    reusing: Client, tmp_path: Path
) -> None:
    counter = tmp_path / "runs"
    fid = reusing.register_function(counted)
    other_fid = reusing.register_function(counted_other)
    assert other_fid != fid
    first = reusing.run(str(counter), 4, endpoint_id="local", function_id=fid)
    assert reusing.get_result(first, wait=WAIT) == 40

    other_args = reusing.run(str(counter), 5, endpoint_id="local", function_id=fid)
    other_code = reusing.run(str(counter), 4, endpoint_id="local", function_id=other_fid)
    batch = reusing.create_batch(result_serializers=[JSON_RESULTS])
    batch.add(fid, args=(str(counter), 4))
    as_json = reusing.batch_run("local", batch)["tasks"][fid][0]
    results = reusing.get_tasks([other_args, other_code, as_json], wait=WAIT)
    assert [results[t]["result"] for t in (other_args, other_code, as_json)] == [50, 41, 40]
    assert not any("reused_from" in task for task in results.values())
    assert runs(counter) == 4


def test_failed_tasks_are_never_reused(reusing: Client, tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    fid = reusing.register_function(counted_failure)
    for _ in range(2):
        task_id = reusing.run(str(counter), 6, endpoint_id="local", function_id=fid)
        with pytest.raises(TaskExecutionFailed, match="deliberate failure for 6"):
            reusing.get_result(task_id, wait=WAIT)
    assert runs(counter) == 2


def test_batch_reuses_what_is_stored_and_runs_the_rest(reusing: Client, tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    fid = reusing.register_function(counted)
    batch = reusing.create_batch()
    for x in (1, 2, 3):
        batch.add(fid, args=(str(counter), x))
    first = reusing.batch_run("local", batch)["tasks"][fid]
    done = reusing.get_tasks(first, wait=WAIT)
    assert [done[t]["result"] for t in first] == [10, 20, 30]

    batch = reusing.create_batch()
    for x in (3, 4, 2, 1):
        batch.add(fid, args=(str(counter), x))
    answer = reusing.batch_run("local", batch)
    second = answer["tasks"][fid]
    assert len(set(second) | set(first)) == 7  # every task its own id
    results = reusing.get_tasks(second, wait=WAIT)
    assert [results[t]["result"] for t in second] == [30, 40, 20, 10]
    assert [results[t].get("reused_from") for t in second] == [first[2], None, first[1], first[0]]
    assert runs(counter) == 4
    # The group the batch answered holds all of its tasks.
    assert set(second) <= set(reusing._task_ids_in_group(answer["task_group_id"]))


def test_a_batch_of_only_hits_joins_a_group_its_endpoint_knows(
    reusing: Client, tmp_path: Path
) -> None:
    counter = tmp_path / "runs"
    fid = reusing.register_function(counted)
    batch = reusing.create_batch()
    batch.add(fid, args=(str(counter), 7))
    first = reusing.batch_run("local", batch)
    assert reusing.get_result(first["tasks"][fid][0], wait=WAIT) == 70

    batch = reusing.create_batch()
    batch.add(fid, args=(str(counter), 7))
    again = reusing.batch_run("local", batch)
    assert again["task_group_id"] == first["task_group_id"]
    assert reusing.get_task(again["tasks"][fid][0])["reused_from"] == first["tasks"][fid][0]
    assert runs(counter) == 1


def test_executor_reuses_with_its_own_or_its_clients_setting(
    daemon: Daemon, client: Client, reusing: Client, tmp_path: Path
) -> None:
    counter = tmp_path / "runs"
    with Executor(endpoint_id="local", client=client, reuse_results=True) as ex:
        assert ex.reuse_results
        futures = [ex.submit(counted, str(counter), x) for x in (1, 2)]
        assert [f.result(timeout=WAIT) for f in futures] == [10, 20]
    assert runs(counter) == 2
    with Executor(endpoint_id="local", client=reusing) as ex:  # the client's setting
        futures = [ex.submit(counted, str(counter), x) for x in (1, 2, 3)]
        assert [f.result(timeout=WAIT) for f in futures] == [10, 20, 30]
        reused = reusing.get_tasks([f.task_id for f in futures])
    assert [t.get("reused_from") is not None for t in reused.values()] == [True, True, False]
    assert runs(counter) == 3
    with Executor(endpoint_id="local", client=reusing, reuse_results=False) as ex:
        assert ex.submit(counted, str(counter), 1).result(timeout=WAIT) == 10
    assert runs(counter) == 4


def test_identical_tasks_in_flight_at_once_each_run(reusing: Client, tmp_path: Path) -> None:
    """Reuse answers only from results already stored: a second identical task
    submitted while the first is unfinished runs too (no waiting on another task's
    fate); whichever succeeds is reused afterwards."""
    counter, go = tmp_path / "runs", tmp_path / "go"
    fid = reusing.register_function(counted_once_allowed)
    first = reusing.run(str(counter), str(go), 13, endpoint_id="local", function_id=fid)
    second = reusing.run(str(counter), str(go), 13, endpoint_id="local", function_id=fid)
    assert reusing.get_task(second)["pending"]
    go.touch()
    done = reusing.get_tasks([first, second], wait=WAIT)
    assert [done[t]["result"] for t in (first, second)] == [130, 130]
    assert not any("reused_from" in task for task in done.values())
    assert runs(counter) == 2
    third = reusing.run(str(counter), str(go), 13, endpoint_id="local", function_id=fid)
    assert reusing.get_task(third)["reused_from"] in (first, second)
    assert runs(counter) == 2


def test_gcgate_batch_reuse_flag(daemon: Daemon, tmp_path: Path) -> None:
    """`gcgate batch --reuse` asks for reuse; its JSON and `gcgate tasks --json` say
    which tasks were reused, and from which."""
    counter = tmp_path / "runs"
    source = "def counted(path, x):\n    open(path, 'a').write('x\\n')\n    return x * 10\n"
    with Client(socket_path=daemon.socket_path) as gcc:
        fid = gcc.register_source_code(source, "counted")
    gcgate = str(Path(sys.executable).with_name("gcgate"))
    env = {"PATH": str(Path(sys.executable).parent), "GCGATE_SOCKET": str(daemon.socket_path)}
    lines = "".join(f"[{json.dumps(str(counter))}, {x}]\n" for x in (1, 2))

    def batch(*flags: str) -> list[dict[str, Any]]:
        proc = subprocess.run(
            [gcgate, "--json", "batch", "--function-id", fid, "--args-json", "-", *flags],
            input=lines,
            env=env,
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        return list(json.loads(proc.stdout)["tasks"])

    first = batch("--reuse")
    again = batch("--reuse")
    plain = batch()
    assert [t["result"] for t in first + again + plain] == [10, 20] * 3
    assert [t.get("reused_from") for t in again] == [t["task_id"] for t in first]
    assert not any("reused_from" in t for t in first + plain)
    assert runs(counter) == 4
    listed = subprocess.run(
        [gcgate, "--json", "tasks", "--limit", "6"],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=True,
    )
    reused_from = {t["task_id"]: t.get("reused_from") for t in json.loads(listed.stdout)}
    assert {t["task_id"]: reused_from[t["task_id"]] for t in again} == {
        t["task_id"]: f["task_id"] for t, f in zip(again, first, strict=True)
    }


def _client_script(socket_path: Path, counter: Path) -> str:
    """A user's script: registers ``counted`` (defined in its own ``__main__``),
    runs it once with reuse on, and prints the task id, result and reused_from."""
    return textwrap.dedent(
        f"""
        import json
        from gcgate import Client

        def counted(path, x):
            with open(path, "a") as f:
                f.write(f"{{x}}\\n")
            return x * 10

        with Client(socket_path={str(socket_path)!r}, reuse_results=True) as gcc:
            fid = gcc.register_function(counted)
            tid = gcc.run({str(counter)!r}, 8, endpoint_id="local", function_id=fid)
            task = gcc.get_task(tid, wait={WAIT})
            print(json.dumps({{"task_id": tid, "function_id": fid, **task}}))
        """
    )


def _run_script(script: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=WAIT, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def test_hit_across_client_processes(daemon: Daemon, tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    script = tmp_path / "notebook.py"
    script.write_text(_client_script(daemon.socket_path, counter))
    first = _run_script(script)
    second = _run_script(script)
    assert first["function_id"] == second["function_id"]  # same code, same id
    assert first["result"] == second["result"] == 80
    assert "reused_from" not in first
    assert second["reused_from"] == first["task_id"] != second["task_id"]
    assert runs(counter) == 1


def test_hit_across_a_daemon_restart(fresh_daemon: Daemon, tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    with Client(socket_path=fresh_daemon.socket_path, reuse_results=True) as gcc:
        fid = gcc.register_function(counted)
        first = gcc.run(str(counter), 9, endpoint_id="local", function_id=fid)
        assert gcc.get_result(first, wait=WAIT) == 90
    fresh_daemon.restart()
    with Client(socket_path=fresh_daemon.socket_path, reuse_results=True) as gcc:
        second = gcc.run(str(counter), 9, endpoint_id="local", function_id=fid)
        assert gcc.get_task(second)["reused_from"] == first
        assert gcc.get_result(second) == 90
        assert gcc.status()["tasks"]["reused"] == 1
    assert runs(counter) == 1


def test_a_task_resumed_after_a_restart_is_still_recorded_for_reuse(
    fresh_daemon: Daemon, tmp_path: Path
) -> None:
    """The reuse key travels with the task's run data: a task in flight when the
    daemon stops runs again after the restart and, once it succeeds, is reused."""
    counter, go = tmp_path / "runs", tmp_path / "go"
    with Client(socket_path=fresh_daemon.socket_path, reuse_results=True) as gcc:
        fid = gcc.register_function(counted_once_allowed)
        first = gcc.run(str(counter), str(go), 12, endpoint_id="local", function_id=fid)
        assert gcc.get_task(first)["pending"]
    fresh_daemon.restart()
    go.touch()
    with Client(socket_path=fresh_daemon.socket_path, reuse_results=True) as gcc:
        assert gcc.get_result(first, wait=WAIT) == 120
        ran = runs(counter)
        second = gcc.run(str(counter), str(go), 12, endpoint_id="local", function_id=fid)
        assert gcc.get_task(second)["reused_from"] == first
    assert runs(counter) == ran


# ------------------------------------------------------------------- Globus


def test_globus_hit_sends_no_submit_and_endpoints_do_not_share(
    remote: GlobusDaemon, standin: StandIn, tmp_path: Path
) -> None:
    counter = tmp_path / "runs"
    with Client(socket_path=remote.socket_path, reuse_results=True) as gcc:
        fid = gcc.register_function(counted)
        local = gcc.run(str(counter), 11, endpoint_id="local", function_id=fid)
        assert gcc.get_result(local, wait=WAIT) == 110
        # The same task on another endpoint is another task: it is sent and runs.
        first = gcc.run(str(counter), 11, endpoint_id=standin.endpoint_id, function_id=fid)
        assert gcc.get_result(first, wait=WAIT) == 110
        assert "reused_from" not in gcc.get_task(first)
        submits = len(standin.compute.submits)
        assert submits >= 1
        requests = standin.stats.count(service="compute")

        second = gcc.run(str(counter), 11, endpoint_id=standin.endpoint_id, function_id=fid)
        task = gcc.get_task(second)
        assert task["reused_from"] == first
        assert task["result"] == 110
        # The service's task id of the run that produced the result stays visible.
        assert task["details"]["globus_task_id"] == gcc.get_task(first)["details"]["globus_task_id"]
    assert len(standin.compute.submits) == submits
    assert standin.stats.count(service="compute") == requests
    assert runs(counter) == 2


# ------------------------------------------------------- the store's index


@pytest.mark.fast
def test_the_key_covers_what_decides_what_runs_and_nothing_else() -> None:
    def reuse_key(payload: str, **options: Any) -> str:
        (key,) = reuse_keys([payload], **options)
        return key

    base: dict[str, Any] = {
        "endpoint_id": LOCAL_ENDPOINT_ID,
        "function_id": "f1",
        "payload": json_payload("[1]", ""),
        "result_serializers": (),
        "resource_specification": {"num_nodes": 1, "ranks_per_node": 2},
        "user_endpoint_config": None,
        "caller_key": "",
    }
    key = reuse_key(**base)
    changes: dict[str, Any] = {
        "endpoint_id": "8c01d13c-d6b0-4f0e-a75d-4d7e6b1e0a11",
        "function_id": "f2",
        "payload": json_payload("[1.0]", ""),
        "result_serializers": (JSON_RESULTS,),
        "resource_specification": {"num_nodes": 2, "ranks_per_node": 2},
        "user_endpoint_config": {"worker_init": "module load x"},
        "caller_key": "token:0123",
    }
    for name, value in changes.items():
        assert reuse_key(**{**base, name: value}) != key, name
    # JSON options are values: their key order does not count; nor does "none" vs {}.
    same = {**base, "resource_specification": {"ranks_per_node": 2, "num_nodes": 1}}
    assert reuse_key(**same) == key
    assert reuse_key(**{**base, "user_endpoint_config": {}}) == key


@pytest.mark.fast
def test_an_index_entry_whose_record_is_gone_is_dropped_and_the_task_runs(
    tmp_path: Path,
) -> None:
    """A result whose retention ran out (here: at once, as the store's retention
    clock starts when a client first reads it) is not reused; the task runs, and
    its own result is what later lookups find."""

    async def scenario() -> None:
        store = Store(tmp_path / "store", size_limit_bytes=1 << 30, retention_seconds=-1.0)
        backend = FakeBackend()
        core = TaskLifecycle(store, Router(backend, FakeBackend()))  # type: ignore[arg-type]
        await core.start()
        fid, _ = core.register_function(
            Registration("f", "def f(x):\n    return x\n", serialized=False, meta={})
        )
        submission = Submission(
            endpoint_id="local",
            groups=[(fid, [json_payload("[1]", "")])],
            options=SubmitOptions(task_group_id="", reuse_results=True),
            caller=DAEMON,
        )

        async def run_once() -> str:
            receipt = await core.submit(submission)
            (task_id,) = receipt.tasks[0][1]
            if task_id in backend.dispatched:
                backend.report(Outcome(task_id, TaskStatus.SUCCESS, result="11\n1"))
            return task_id

        first = await run_once()
        assert (await core.wait_for(first, WAIT))["status"] == "success"
        assert len(store.reuse) == 1
        # A client reads it (if wait_for's read was not the first): its retention
        # clock starts and, here, has run out at once.
        store.get_task(first)
        assert store.get_task(first) is None

        second = await run_once()
        assert second in backend.dispatched  # ran again
        # From here results are kept an hour after their first read (a reload), so
        # this one, read as wait_for hands it over, stays reusable.
        store.retention_seconds = 3600.0
        record = await core.wait_for(second, WAIT)
        assert record["status"] == "success" and "reused_from" not in record
        assert len(store.reuse) == 1  # the stale entry dropped, the new one in

        third = await run_once()
        assert third not in backend.dispatched
        copy = store.get_task(third)
        assert copy is not None and copy["reused_from"] == second
        await core.stop()
        store.close()

    asyncio.run(scenario())
