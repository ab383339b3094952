"""The Globus backend end to end: a real gcgated forwarding to the Compute stand-in.

The stand-in (``tests/standin``) serves Globus Auth and the Compute web service
on 127.0.0.1 with the real paths and documents, runs tasks in worker processes
as an endpoint does, counts every request and injects faults. The daemon runs
as its own process with a service account's credentials in its environment,
exactly as in production; only the two base URLs differ.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import globus_compute_sdk
import grpc
import pytest
from gcgate import (
    Client,
    Executor,
    InvalidArgument,
    NotFound,
    ShellFunction,
    ShellResult,
    TaskExecutionFailed,
)
from gcgate.cli.commands import task_summary
from gcgate.constants import LOCAL_ENDPOINT_ID, MAX_SUBMISSION_BYTES
from gcgate.errors import Unauthenticated
from gcgate.v1 import gateway_pb2 as pb
from gcgate.v1.gateway_pb2_grpc import GatewayStub
from globus_compute_sdk.sdk.client import FunctionRegistrationData
from harness import GlobusDaemon, script_function
from standin import StandIn

WAIT = 60.0


# ------------------------------------------------------------------ functions


@script_function
def hello(firstname, lastname):
    return "Hello {} {}".format(firstname, lastname)  # noqa: UP032 - the guide's code


@script_function
def double(x):
    return x * 2


@script_function
def square(x):
    return x * x


@script_function
def failing_task(x):
    raise ValueError(f"deliberate failure for {x}")


@script_function
def generate_collatz_sequence(N: int, sequence_limit=10_000):
    seq = [N]
    while N != 1 and len(seq) < sequence_limit:
        if N % 2:
            N = 3 * N + 1
        else:
            N //= 2
        seq.append(N)
    return seq


@script_function
def noisy_multiply(x, y, noise=1, offset=0) -> float:
    import random

    return x * y + random.uniform(offset - noise, offset + noise)


# ------------------------------------------------------------------- fixtures


@pytest.fixture
def gcc(remote: GlobusDaemon) -> Iterator[Client]:
    with Client(socket_path=remote.socket_path) as client:
        yield client


def compute_requests(standin: StandIn) -> int:
    return standin.stats.count(service="compute")


def service_id(client: Client, task_id: str) -> str:
    """The id Globus Compute assigned to a finished task: gcgate answers with its
    own ids at once and submits later, and keeps the service's in the details."""
    return str(client.get_task(task_id)["details"]["globus_task_id"])


def backend_details(client: Client) -> dict[str, Any]:
    """The Globus backend's details, as `gcgate status --json` shows them."""
    status = client._conn.call(client._conn.stub.Status, pb.StatusRequest(), timeout=10)
    return dict(json.loads(next(b for b in status.backends if b.name == "globus").details_json))


def refusals(standin: StandIn) -> int:
    """Compute requests the stand-in answered 404."""
    return standin.stats.count(service="compute", where=lambda r: r.status == 404)


def wait_until(what: str, condition: Any, timeout: float = WAIT) -> None:
    """Poll ``condition`` until true (fails after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# --------------------------------------------------------- the seed guide, remote


def test_hello_runs_on_the_remote_endpoint(gcc: Client, standin: StandIn) -> None:
    func_id = gcc.register_function(hello)
    task_id = gcc.run("Bob", "Smith", endpoint_id=standin.endpoint_id, function_id=func_id)

    assert gcc.get_result(task_id, wait=WAIT) == "Hello Bob Smith"
    # The id is the daemon's; the task ran at the service, under the id it assigned.
    assert task_id not in standin.compute.tasks
    ran = service_id(gcc, task_id)
    assert standin.compute.tasks[ran].endpoint_id == standin.endpoint_id
    # `gcgate tasks --json` lists the service's id with the task.
    listed = {t["task_id"]: t for t in gcc.list_tasks(limit=10)}
    assert task_summary(listed[task_id])["globus_task_id"] == ran
    task = gcc.get_task(task_id)
    assert task["status"] == "success"
    assert float(task["completion_t"]) <= time.time()

    by_kw = gcc.run(
        endpoint_id=standin.endpoint_id, function_id=func_id, firstname="Ada", lastname="Lovelace"
    )
    assert gcc.get_result(by_kw, wait=WAIT) == "Hello Ada Lovelace"


def test_batching_on_the_remote_endpoint(gcc: Client, standin: StandIn) -> None:
    noisy_fn_id = gcc.register_function(noisy_multiply)
    batch = gcc.create_batch()
    expected = []
    for val in range(7):
        args, kwargs = (val + 3, val), {"noise": 0, "offset": val + 1}
        batch.add(noisy_fn_id, args=args, kwargs=kwargs)
        expected.append((val + 3) * val + val + 1)

    batch_res = gcc.batch_run(standin.endpoint_id, batch)

    assert batch_res["endpoint_id"] == standin.endpoint_id
    task_ids = batch_res["tasks"][noisy_fn_id]
    assert len(set(task_ids)) == 7
    results = gcc.get_batch_result(task_ids, wait=WAIT)
    assert [results[t]["result"] for t in task_ids] == expected
    ran = [results[t]["details"]["globus_task_id"] for t in task_ids]
    assert all(t in standin.compute.tasks for t in ran)
    # One batch: one submit request.
    assert standin.stats.count(service="compute", path="/v3/endpoints/*/submit") == 1


def test_remote_failure_carries_the_remote_traceback(gcc: Client, standin: StandIn) -> None:
    func_id = gcc.register_function(failing_task)
    task_id = gcc.run(7, endpoint_id=standin.endpoint_id, function_id=func_id)

    with pytest.raises(TaskExecutionFailed) as info:
        gcc.get_result(task_id, wait=WAIT)
    assert "ValueError: deliberate failure for 7" in str(info.value)
    assert "Traceback" in str(info.value)


def test_executor_on_the_remote_endpoint(gcc: Client, standin: StandIn) -> None:
    # Executors join the last task group used in the process for their endpoint
    # (the SDK's keep one per process): a local endpoint's group from an earlier
    # test, unknown to Globus, must not be sent there.
    with Executor(endpoint_id="local", client=gcc) as local:
        assert local.submit(pow, 2, 3).result(timeout=WAIT) == 8
    with Executor(endpoint_id=standin.endpoint_id, client=gcc) as gce:
        assert list(gce.map(pow, [2, 3], [10, 10])) == [1024, 59049]
        futures = [gce.submit(generate_collatz_sequence, n) for n in (1, 6, 27)]
        assert [f.result(timeout=WAIT)[-1] for f in futures] == [1, 1, 1]
        assert len(futures[2].result()) == len(generate_collatz_sequence(27))


def run_source_remotely(
    remote: GlobusDaemon, endpoint_id: str, name: str, source: str, arguments: pb.JsonArguments
) -> pb.TaskRecord:
    """Register ``source`` and run it once with JSON arguments alone, as a client
    without Python would; the task's final record."""
    with grpc.insecure_channel(f"unix:{remote.socket_path}") as channel:
        stub = GatewayStub(channel)
        request = pb.RegisterFunctionRequest(function_name=name, function_code=source)
        fid = stub.RegisterFunction(request, timeout=WAIT).function_id
        run = pb.RunRequest(endpoint_id=endpoint_id, function_id=fid, json_arguments=arguments)
        task = stub.Run(run, timeout=WAIT)
        wait = pb.GetResultRequest(task_id=task.task_id, wait_seconds=WAIT)
        return stub.GetResult(wait, timeout=WAIT + 5)


def test_json_arguments_get_json_results_from_a_globus_endpoint(
    remote: GlobusDaemon, standin: StandIn
) -> None:
    """JSON in, JSON out by default there too: the daemon names JSONData in the
    submission, since the endpoint picks the result's format from it."""
    arguments = pb.JsonArguments(args_json='["x"]', kwargs_json='{"b": 2}')
    source = "def pair(a, b=0):\n    return [a, b]\n"
    record = run_source_remotely(remote, standin.endpoint_id, "pair", source, arguments)
    assert record.status == "success", record.exception
    assert json.loads(record.result_json) == ["x", 2]
    ran = json.loads(record.details_json)["globus_task_id"]
    assert standin.compute.tasks[ran].result_serializers == [
        "globus_compute_sdk.serialize.JSONData"
    ]


def test_a_nan_result_from_a_globus_endpoint_fails_the_task(
    remote: GlobusDaemon, standin: StandIn
) -> None:
    """The endpoint writes JSONData's NaN as Python does; the daemon refuses it as
    it does the local endpoint's, since other languages cannot parse it."""
    source = "def nan():\n    return float('nan')\n"
    record = run_source_remotely(remote, standin.endpoint_id, "nan", source, pb.JsonArguments())
    assert record.status == "failed"
    assert "float NaN, which JSON cannot represent" in record.exception
    ran = json.loads(record.details_json)["globus_task_id"]
    assert standin.compute.tasks[ran].result == "11\nNaN"


def test_endpoint_status_and_metadata_are_the_services(gcc: Client, standin: StandIn) -> None:
    status = gcc.get_endpoint_status(standin.endpoint_id)
    metadata = gcc.get_endpoint_metadata(standin.endpoint_id)
    assert status["status"] == "online"
    assert metadata["uuid"] == standin.endpoint_id
    assert metadata == standin.compute.endpoints[standin.endpoint_id].document()
    # Cached: asking again at once sends nothing.
    before = compute_requests(standin)
    assert gcc.get_endpoint_status(standin.endpoint_id) == status
    assert gcc.get_endpoint_metadata(standin.endpoint_id) == metadata
    assert compute_requests(standin) == before


def test_get_endpoints_lists_local_then_globus(gcc: Client, standin: StandIn) -> None:
    endpoints = gcc.get_endpoints()
    assert endpoints[0]["uuid"] == LOCAL_ENDPOINT_ID
    assert [e["uuid"] for e in endpoints[1:]] == standin.endpoint_ids
    assert standin.stats.count(service="compute", path="/v2/endpoints") == 1
    # Cached for a moment: a second listing sends nothing.
    assert gcc.get_endpoints() == endpoints
    assert standin.stats.count(service="compute", path="/v2/endpoints") == 1


# ---------------------------------------------------------------- registration


def test_a_function_is_registered_with_globus_once(
    gcc: Client, standin: StandIn, remote: GlobusDaemon
) -> None:
    func_id = gcc.register_function(square)
    tasks = [gcc.run(n, endpoint_id=standin.endpoint_id, function_id=func_id) for n in range(3)]
    assert [gcc.get_result(t, wait=WAIT) for t in tasks] == [0, 1, 4]
    assert standin.stats.count(service="compute", path="/v3/functions") == 1

    # The mapping is in the store: a restarted daemon does not register it again.
    remote.restart()
    with Client(socket_path=remote.socket_path) as again:
        assert again.register_function(square) == func_id
        task = again.run(5, endpoint_id=standin.endpoint_id, function_id=func_id)
        assert again.get_result(task, wait=WAIT) == 25
    assert standin.stats.count(service="compute", path="/v3/functions") == 1
    # The function the service holds is the client's code, untouched.
    code = gcc.get_function(func_id)["function_code"]
    assert [f.function_code for f in standin.compute.functions.values()].count(code) == 1


def test_delete_function_deletes_it_at_globus_and_here(gcc: Client, standin: StandIn) -> None:
    """As with the SDK against the service: a deleted function runs nowhere any more
    (the service answers 404; the daemon refuses it before sending anything), a
    second delete is NOT_FOUND, and registering it again makes it runnable."""
    func_id = gcc.register_function(generate_collatz_sequence)
    first = gcc.run(6, endpoint_id=standin.endpoint_id, function_id=func_id)
    assert gcc.get_result(first, wait=WAIT)[-1] == 1
    code = gcc.get_function(func_id)["function_code"]
    registered = [f for f in standin.compute.functions.values() if f.function_code == code]
    assert len(registered) == 1

    answer = gcc.delete_function(func_id)

    assert answer == {"result": 302}
    assert registered[0].deleted
    assert standin.stats.count(service="compute", method="DELETE") == 1
    requests = compute_requests(standin)
    for endpoint in (standin.endpoint_id, "local"):
        with pytest.raises(NotFound, match="was deleted"):
            gcc.run(7, endpoint_id=endpoint, function_id=func_id)
    with pytest.raises(NotFound, match="was deleted"):
        gcc.get_function(func_id)
    with pytest.raises(NotFound, match="was deleted"):
        gcc.delete_function(func_id)
    assert compute_requests(standin) == requests
    # The task run before keeps its result (asked afresh: gcc remembers it).
    with Client(socket_path=gcc.socket_path) as other:
        assert other.get_result(first)[-1] == 1

    # Registered again: the same id, registered at Globus again on its next run.
    registrations = standin.stats.count(service="compute", path="/v3/functions")
    assert gcc.register_function(generate_collatz_sequence) == func_id
    again = gcc.run(7, endpoint_id=standin.endpoint_id, function_id=func_id)
    assert gcc.get_result(again, wait=WAIT)[-1] == 1
    assert standin.stats.count(service="compute", path="/v3/functions") == registrations + 1
    with pytest.raises(NotFound):
        gcc.delete_function(str(uuid.uuid4()))


def test_lambdas_and_shell_functions_reach_globus_as_the_sdk_sends_them(
    gcc: Client, standin: StandIn, tmp_path: Path
) -> None:
    """The service gets the SDK's registration (name "<lambda>", the SDK's
    pickle of its ShellFunction); the endpoint (the SDK's serializer) runs them,
    and the SDK's ShellResult comes back as gcgate's."""
    script: dict[str, Any] = {"__name__": "__main__"}
    exec("increment = lambda x: x + 1", script)
    out, err = str(tmp_path / "out"), str(tmp_path / "err")  # not the stand-in's cwd
    shell = ShellFunction("echo {word}", stdout=out, stderr=err)
    lambda_id, shell_id = gcc.register_function(script["increment"]), gcc.register_function(shell)

    tasks = [
        gcc.run(4, endpoint_id=standin.endpoint_id, function_id=lambda_id),
        gcc.run(endpoint_id=standin.endpoint_id, function_id=shell_id, word="globus"),
    ]

    incremented, result = (gcc.get_result(t, wait=WAIT) for t in tasks)
    assert incremented == 5
    assert type(result) is ShellResult and (result.stdout, result.returncode) == ("globus\n", 0)
    at_service = {f.function_code: f.function_name for f in standin.compute.functions.values()}
    assert at_service[gcc.get_function(lambda_id)["function_code"]] == "<lambda>"
    sdk_shell = FunctionRegistrationData(
        function=globus_compute_sdk.ShellFunction("echo {word}", stdout=out, stderr=err)
    )
    assert at_service[sdk_shell.function_code] == "ShellFunction"


def test_submits_share_one_service_task_group_with_a_result_queue(
    gcc: Client, standin: StandIn
) -> None:
    """Every submit asks for a result queue, and the daemon's submits without a task
    group of the client's join one service task group (its home), so one queue
    carries all their results; a group the service forgot is replaced by a new one."""
    func_id = gcc.register_function(double)

    def group_of_a_run(n: int) -> str:
        task_id = gcc.run(n, endpoint_id=standin.endpoint_id, function_id=func_id)
        assert gcc.get_result(task_id, wait=WAIT) == 2 * n
        return standin.compute.tasks[service_id(gcc, task_id)].task_group_id

    home = group_of_a_run(1)
    assert group_of_a_run(2) == home
    assert standin.compute.task_groups[home].create_queue
    assert standin.compute.submits and all(r.create_queue for r in standin.compute.submits)

    standin.compute.task_groups.clear()  # the service forgets every task group
    refused = refusals(standin)
    new_home = group_of_a_run(3)
    assert new_home != home
    assert group_of_a_run(4) == new_home
    # One submit was refused for the forgotten group, and sent once more without it.
    assert refusals(standin) == refused + 1


# -------------------------------------------------------------- errors, limits


def test_unknown_endpoint_and_function_are_not_found(gcc: Client, standin: StandIn) -> None:
    func_id = gcc.register_function(double)
    unknown = str(uuid.uuid4())
    # The endpoint is the service's to know: the task is accepted, then fails
    # with the service's refusal (nothing ran).
    task_id = gcc.run(1, endpoint_id=unknown, function_id=func_id)
    with pytest.raises(TaskExecutionFailed) as info:
        gcc.get_result(task_id, wait=WAIT)
    assert "did not run there" in str(info.value) and "ENDPOINT_NOT_FOUND" in str(info.value)
    assert unknown in str(info.value)
    with pytest.raises(NotFound):
        gcc.get_endpoint_status(unknown)
    missing_function = str(uuid.uuid4())
    with pytest.raises(NotFound, match=missing_function):
        gcc.run(1, endpoint_id=standin.endpoint_id, function_id=missing_function)


def test_over_limit_payload_is_refused_without_a_request(gcc: Client, standin: StandIn) -> None:
    func_id = gcc.register_function(double)
    before = compute_requests(standin)
    with pytest.raises(InvalidArgument, match="TASK_PAYLOAD_TOO_LARGE"):
        gcc.run(
            "x" * (MAX_SUBMISSION_BYTES + 1), endpoint_id=standin.endpoint_id, function_id=func_id
        )
    assert compute_requests(standin) == before


def test_status_describes_the_globus_backend(
    gcc: Client, standin: StandIn, remote: GlobusDaemon
) -> None:
    func_id = gcc.register_function(double)
    assert (
        gcc.get_result(gcc.run(4, endpoint_id=standin.endpoint_id, function_id=func_id), wait=WAIT)
        == 8
    )
    status = gcc._conn.call(gcc._conn.stub.Status, pb.StatusRequest(), timeout=10)
    backends = {b.name: b for b in status.backends}
    info = json.loads(backends["globus"].details_json)
    assert backends["globus"].state == "ready"
    assert info["login"] == {"state": "client", "identity": standin.service_account.client_id}
    assert info["compute_url"] == standin.compute_url
    assert info["in_flight"] == 0
    assert info["requests_sent"] >= 2
    assert info["rate"]["limit"] == 18 and info["rate"]["window_seconds"] == 10.0
    assert (status.login.state, status.login.identity) == (
        "client",
        standin.service_account.client_id,
    )


# ------------------------------------------------------------ many clients, one budget

CLIENT_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from concurrent.futures import ThreadPoolExecutor
    from gcgate import Client

    def triple(x):
        return 3 * x

    endpoint, base, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with Client() as gcc:
        fid = gcc.register_function(triple)
        with ThreadPoolExecutor(count) as pool:
            ids = list(pool.map(
                lambda n: gcc.run(n, endpoint_id=endpoint, function_id=fid),
                range(base, base + count)))
        results = gcc.get_batch_result(ids, wait=120)
        print(json.dumps([[n, results[t]["details"]["globus_task_id"], results[t]["result"]]
                          for n, t in zip(range(base, base + count), ids)]))
    """
)


def test_eight_clients_share_one_budget(
    standin: StandIn, remote: GlobusDaemon, tmp_path: Path
) -> None:
    script = tmp_path / "client.py"
    script.write_text(CLIENT_SCRIPT)
    # Warm up (login, registration) outside the measurement? No: count everything.
    started = time.monotonic()
    processes = [
        subprocess.Popen(
            [sys.executable, str(script), standin.endpoint_id, str(1000 * i), "100"],
            env=remote.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    rows = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        rows.extend(json.loads(out))
    elapsed = time.monotonic() - started

    assert len(rows) == 800
    assert all(result == 3 * n for n, _, result in rows)
    task_ids = [t for _, t, _ in rows]
    assert len(set(task_ids)) == 800
    assert all(t in standin.compute.tasks for t in task_ids)

    requests = standin.stats.count(service="compute") + standin.stats.count(service="auth")
    per_task = requests / 800
    busiest = standin.stats.max_in_window(10.0, service=None)
    print(
        f"\n800 tasks from 8 processes in {elapsed:.1f}s: {requests} HTTP requests"
        f" ({per_task:.4f}/task), busiest 10 s window: {busiest};"
        f" {dict(standin.stats.by_route('compute'))}"
    )
    assert per_task <= 0.05
    assert busiest <= 18
    assert standin.stats.count(service="compute", outcome="rate_limited") == 0


def test_the_limiter_binds_when_requests_cannot_be_merged(standin: StandIn, tmp_path: Path) -> None:
    """Submissions with different resource specifications cannot share a request;
    with a tight budget (5 per 2 s) the daemon spaces them out and the service
    never sees more, Auth token requests included."""
    daemon = GlobusDaemon(
        tmp_path / "state",
        standin,
        {"rate_limit_requests": 5, "rate_limit_window_seconds": 2.0, "rate_limit_burst": 2},
    ).start()
    try:
        with Client(socket_path=daemon.socket_path) as client:
            func_id = client.register_function(double)

            def submit(i: int) -> str:
                batch = client.create_batch(resource_specification={"num_nodes": i + 1})
                batch.add(func_id, args=(i,))
                return client.batch_run(standin.endpoint_id, batch)["tasks"][func_id][0]

            with ThreadPoolExecutor(12) as pool:
                task_ids = list(pool.map(submit, range(12)))
            results = client.get_batch_result(task_ids, wait=WAIT)
            assert [results[t]["result"] for t in task_ids] == [2 * i for i in range(12)]
        submits = standin.stats.count(service="compute", path="/v3/endpoints/*/submit")
        assert submits == 12
        # Spaced out: never more than 5 in any 2 s as the service counts them
        # (Auth included), and the budget was really used.
        assert standin.stats.max_in_window(2.0, service=None) == 5
        assert standin.stats.count(outcome="rate_limited") == 0
    finally:
        daemon.close()


# ----------------------------------------------------------------------- faults


def run_many(client: Client, endpoint: str, func_id: str, values: range) -> list[str]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(values)) as pool:
        return list(
            pool.map(lambda n: client.run(n, endpoint_id=endpoint, function_id=func_id), values)
        )


def assert_exactly_once(
    standin: StandIn, client: Client, task_ids: list[str], values: range, fn: Any, submits: int
) -> None:
    results = client.get_batch_result(task_ids, wait=WAIT)
    assert [results[t]["result"] for t in task_ids] == [fn(n) for n in values]
    assert len(set(task_ids)) == len(values)
    # Nothing duplicated: the service received each task exactly once.
    submitted = [t for record in standin.compute.submits[submits:] for t in record.task_ids]
    assert sorted(submitted) == sorted(results[t]["details"]["globus_task_id"] for t in task_ids)


def test_429_storm_loses_and_duplicates_nothing(gcc: Client, standin: StandIn) -> None:
    func_id = gcc.register_function(double)
    # Register and warm up first, so the storm hits submits and polls.
    assert (
        gcc.get_result(gcc.run(1, endpoint_id=standin.endpoint_id, function_id=func_id), wait=WAIT)
        == 2
    )
    standin.reset()
    submits = len(standin.compute.submits)
    storm = standin.faults.rate_limit(count=6, retry_after=1)
    values = range(40)
    task_ids = run_many(gcc, standin.endpoint_id, func_id, values)
    assert_exactly_once(standin, gcc, task_ids, values, double, submits)
    assert storm.hits == 6
    # Retry-After was honoured: after a 429, nothing new was sent until it passed
    # (a request already on its way when the 429 was answered may still arrive).
    records = standin.stats.select(service="compute")
    throttled = [r.t for r in records if r.status == 429]
    assert len(throttled) == 6
    for t in throttled:
        assert not [r for r in records if t + 0.15 < r.t < t + 0.9]


def test_5xx_burst_loses_and_duplicates_nothing(gcc: Client, standin: StandIn) -> None:
    func_id = gcc.register_function(square)
    assert (
        gcc.get_result(gcc.run(2, endpoint_id=standin.endpoint_id, function_id=func_id), wait=WAIT)
        == 4
    )
    standin.reset()
    submits = len(standin.compute.submits)
    # The first matching fault answers until it is used up: 500, 500, 502, 502, 503, 503.
    bursts = [standin.faults.server_error(count=2, status=status) for status in (500, 502, 503)]
    values = range(30)
    task_ids = run_many(gcc, standin.endpoint_id, func_id, values)
    assert_exactly_once(standin, gcc, task_ids, values, square, submits)
    assert [b.hits for b in bursts] == [2, 2, 2]


@script_function
def length(text):
    return len(text)


def test_merged_submits_stay_under_the_limits(standin: StandIn, tmp_path: Path) -> None:
    """Callers are merged, but a request never exceeds 10 MB or submit_max_tasks."""
    daemon = GlobusDaemon(
        tmp_path / "state", standin, {"submit_window_ms": 300.0, "submit_max_tasks": 25}
    ).start()
    try:
        before = len(standin.compute.submits)
        with Client(socket_path=daemon.socket_path) as client:
            func_id = client.register_function(length)
            big = 6_000_000  # two of these cannot share one 10 MB request

            def submit(i: int) -> list[str]:
                batch = client.create_batch()
                if i < 2:
                    batch.add(func_id, args=("x" * big,))
                else:
                    for n in range(10):
                        batch.add(func_id, args=("y" * n,))
                return client.batch_run(standin.endpoint_id, batch)["tasks"][func_id]

            with ThreadPoolExecutor(8) as pool:
                per_caller = list(pool.map(submit, range(8)))
            for i, task_ids in enumerate(per_caller):
                results = client.get_batch_result(task_ids, wait=WAIT)
                expected = [big] if i < 2 else list(range(10))
                assert [results[t]["result"] for t in task_ids] == expected
        records = standin.compute.submits[before:]
        assert all(r.body_bytes <= 10_000_000 for r in records)
        assert all(len(r.task_ids) <= 25 for r in records)
        assert sum(len(r.task_ids) for r in records) == 62
        # Callers did share requests: 62 tasks of 8 callers in fewer than 8.
        assert len(records) < 8
    finally:
        daemon.close()


def test_submit_that_keeps_failing_keeps_its_tasks_queued(standin: StandIn, tmp_path: Path) -> None:
    """503s that outlast the retry budget did not reach the service: the tasks
    stay queued (pending, counted as waiting), and go once the service is back."""
    daemon = GlobusDaemon(tmp_path / "state", standin, {"retry_seconds": 2.0}).start()
    try:
        with Client(socket_path=daemon.socket_path) as client:
            func_id = client.register_function(double)
            outage = standin.faults.server_error(
                duration=600, status=503, path="/v3/endpoints/*/submit"
            )
            submits = len(standin.compute.submits)
            task_ids = run_many(client, standin.endpoint_id, func_id, range(10))
            wait_until("a submit given up on", lambda: "wait to be submitted" in daemon.log())
            assert all(client.get_task(t)["pending"] for t in task_ids)
            details = backend_details(client)
            assert details["waiting_to_submit"] == 10
            assert "Globus Compute" in details["last_error"]
            assert len(standin.compute.submits) == submits

            standin.faults.remove(outage)
            assert_exactly_once(standin, client, task_ids, range(10), lambda n: 2 * n, submits)
    finally:
        daemon.close()


# ------------------------------------------------------------ restart, kill -9


def test_kill_9_with_tasks_in_flight_then_all_resolve(standin: StandIn, tmp_path: Path) -> None:
    daemon = GlobusDaemon(tmp_path / "state", standin).start()
    try:
        with Client(socket_path=daemon.socket_path) as client:
            func_id = client.register_function(double)
            # The endpoint is offline: tasks wait at the service, in flight.
            standin.compute.set_endpoint_status(standin.endpoint_id, "offline")
            values = range(20)
            task_ids = run_many(client, standin.endpoint_id, func_id, values)
            assert all(client.get_task(t)["pending"] for t in task_ids)
            wait_until("the tasks at the service", lambda: sent(client) == 20)
        daemon.kill()
        standin.compute.set_endpoint_status(standin.endpoint_id, "online")
        daemon.start()
        with Client(socket_path=daemon.socket_path) as client:
            results = client.get_batch_result(task_ids, wait=WAIT)
        assert [results[t]["result"] for t in task_ids] == [2 * n for n in values]
        assert "resumed 20 unfinished task(s)" in daemon.log()
    finally:
        daemon.close()


def sent(client: Client) -> int:
    """Tasks the daemon has submitted and polls (none waiting to be sent)."""
    details = backend_details(client)
    return int(details["in_flight"]) if details["waiting_to_submit"] == 0 else -1


def test_kill_9_before_the_submit_then_it_is_sent(standin: StandIn, tmp_path: Path) -> None:
    """Accepted, not yet sent (the service unavailable) when killed: sent after the
    restart, once (the tasks never reached the service)."""
    daemon = GlobusDaemon(tmp_path / "state", standin, {"retry_seconds": 1.0}).start()
    try:
        with Client(socket_path=daemon.socket_path) as client:
            func_id = client.register_function(double)
            outage = standin.faults.server_error(
                duration=600, status=503, path="/v3/endpoints/*/submit"
            )
            submits = len(standin.compute.submits)
            task_ids = run_many(client, standin.endpoint_id, func_id, range(15))
            # Back in the queue (the transport gave up; the next try is 5 s away).
            wait_until("a submit given up on", lambda: "wait to be submitted" in daemon.log())
        daemon.kill()
        standin.faults.remove(outage)
        daemon.start()
        with Client(socket_path=daemon.socket_path) as client:
            assert_exactly_once(standin, client, task_ids, range(15), lambda n: 2 * n, submits)
    finally:
        daemon.close()


def test_kill_9_during_the_submit_fails_the_tasks_clearly(standin: StandIn, tmp_path: Path) -> None:
    """Killed while a submit was on its way: it may have reached the service, so
    after the restart it is not sent again; its tasks fail saying they may have run."""
    daemon = GlobusDaemon(tmp_path / "state", standin).start()
    try:
        with Client(socket_path=daemon.socket_path) as client:
            func_id = client.register_function(double)
            late = standin.faults.slow(10.0, count=1, path="/v3/endpoints/*/submit")
            submits = len(standin.compute.submits)
            task_ids = run_many(client, standin.endpoint_id, func_id, range(5))
            wait_until("the submit at the service", lambda: late.hits == 1)
        daemon.kill()
        daemon.start()
        with Client(socket_path=daemon.socket_path) as client:
            results = client.get_tasks(task_ids, wait=WAIT)
        for task_id in task_ids:
            assert results[task_id]["status"] == "failed"
            message = str(results[task_id]["exception"])
            assert "gcgated stopped" in message and "may have accepted and run it" in message
        # Sent once, never again.
        assert standin.stats.count(service="compute", path="/v3/endpoints/*/submit") == 1
        assert len(standin.compute.submits) <= submits + 1
    finally:
        daemon.close()


# ------------------------------------------------------------------ credentials


def test_an_expired_token_is_renewed_silently(gcc: Client, standin: StandIn) -> None:
    func_id = gcc.register_function(double)
    assert (
        gcc.get_result(gcc.run(5, endpoint_id=standin.endpoint_id, function_id=func_id), wait=WAIT)
        == 10
    )
    assert standin.auth.expire_tokens() >= 1
    standin.reset()

    task = gcc.run(6, endpoint_id=standin.endpoint_id, function_id=func_id)

    assert gcc.get_result(task, wait=WAIT) == 12
    # One 401, one client-credentials grant, and the submit went through.
    assert standin.stats.count(service="compute", where=lambda r: r.status == 401) == 1
    assert standin.stats.count(service="auth", path="/v2/oauth2/token") == 1


def test_a_function_deleted_at_the_service_is_registered_again(
    gcc: Client, standin: StandIn
) -> None:
    func_id = gcc.register_function(noisy_multiply)
    first = gcc.run(2, 3, noise=0, endpoint_id=standin.endpoint_id, function_id=func_id)
    assert gcc.get_result(first, wait=WAIT) == 6
    code = gcc.get_function(func_id)["function_code"]
    for record in standin.compute.functions.values():
        if record.function_code == code:
            record.deleted = True
    standin.reset()

    again = gcc.run(4, 5, noise=0, endpoint_id=standin.endpoint_id, function_id=func_id)

    assert gcc.get_result(again, wait=WAIT) == 20
    assert standin.stats.count(service="compute", path="/v3/functions") == 1


def test_wrong_secret_is_unauthenticated(standin: StandIn, tmp_path: Path) -> None:
    daemon = GlobusDaemon(
        tmp_path / "state", standin, env={"GLOBUS_COMPUTE_CLIENT_SECRET": "not-the-secret"}
    ).start()
    try:
        with Client(socket_path=daemon.socket_path) as client:
            func_id = client.register_function(double)
            # The first task finds out (Auth is asked when it is sent): it fails...
            first = client.run(1, endpoint_id=standin.endpoint_id, function_id=func_id)
            with pytest.raises(TaskExecutionFailed) as failed:
                client.get_result(first, wait=WAIT)
            # ...and from then on, submissions are refused at once.
            with pytest.raises(Unauthenticated) as info:
                client.run(2, endpoint_id=standin.endpoint_id, function_id=func_id)
        for message in (str(failed.value), info.value.message):
            assert "Globus Auth refused" in message
            assert "not-the-secret" not in message
        assert "not-the-secret" not in daemon.log()
    finally:
        daemon.close()


def test_secret_and_tokens_never_reach_the_log(
    standin: StandIn, remote: GlobusDaemon, gcc: Client
) -> None:
    func_id = gcc.register_function(double)
    assert (
        gcc.get_result(gcc.run(3, endpoint_id=standin.endpoint_id, function_id=func_id), wait=WAIT)
        == 6
    )
    log = remote.log()
    assert "Globus Compute backend ready" in log  # the log is the daemon's, at DEBUG
    secret = standin.service_account.secret
    assert secret and secret not in log
    tokens = list(standin.auth.tokens)
    assert tokens
    for token in tokens:
        assert token not in log
    # The token file is private.
    token_file = remote.state_dir / "globus-tokens.db"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert os.environ.get("GLOBUS_COMPUTE_CLIENT_SECRET") != secret


def test_grpc_status_codes_for_refusals(standin: StandIn, remote: GlobusDaemon) -> None:
    channel = grpc.insecure_channel(f"unix:{remote.socket_path}")
    try:
        stub = GatewayStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.GetEndpointMetadata(pb.EndpointRequest(endpoint_id=str(uuid.uuid4())), timeout=30)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert "Globus Compute" in info.value.details()
    finally:
        channel.close()
