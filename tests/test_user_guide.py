"""The Globus Compute user guides' code, end to end against a real gcgated.

Each test runs a code sample of the SDK's Client user guide (and the Executor
items of the Executor user guide) with only the import changed to ``gcgate``
and the tutorial endpoint replaced by the daemon's embedded one (``"local"`` or
:data:`gcgate.LOCAL_ENDPOINT_ID`). Where the guide sleeps to wait for results,
the tests use gcgate's ``wait=`` or a future's timeout instead; every expected
value is computed here, by calling the same function locally.

The guide's functions are decorated with :func:`script_function`, which defines
them again as if they were written in a script's ``__main__``: that is how the
guide runs them, and it makes dill pickle them by value (functions of an
importable test module would be pickled by reference, and the daemon's workers
cannot import this module).

Finally the real SDK's ``Batch`` and ``ComputeSerializer`` build submissions
and read results through gcgate, proving the wire format compatible end to end.
"""

from __future__ import annotations

import concurrent.futures
import platform
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from gcgate import LOCAL_ENDPOINT_ID, Client, Executor, TaskExecutionFailed, TaskPending
from gcgate.v1 import gateway_pb2 as pb
from gcgate.v1 import gateway_pb2_grpc as pb_grpc
from globus_compute_sdk.sdk.batch import Batch as SdkBatch
from globus_compute_sdk.sdk.batch import create_user_runtime as sdk_create_user_runtime
from globus_compute_sdk.serialize import ComputeSerializer, JSONData
from harness import Daemon, script_function

#: Upper bound on any wait for a result; tasks here take milliseconds.
WAIT = 30.0

# The guide's tutorial endpoint; gcgate's embedded local endpoint stands in.
tutorial_endpoint = "local"


# ------------------------------------------------------------ the guide's functions


@script_function
def platform_func():
    """Get platform information about this system."""

    import platform

    return platform.platform()


@script_function
def hello(firstname, lastname):
    """Say hello to someone."""

    return "Hello {} {}".format(firstname, lastname)  # noqa: UP032 - the guide's code


@script_function
def noisy_multiply(x, y, noise=1, offset=0) -> float:
    import random

    return x * y + random.uniform(offset - noise, offset + noise)


@script_function
def function_with_docstring():
    """My function, with a docstring"""
    return "foo"


@script_function
def double(x):
    return x * 2


@script_function
def double_text(x):
    return f"{x} -> {x * 2}"


@script_function
def generate_collatz_sequence(N: int, sequence_limit=10_000):
    seq = [N]
    while N != 1 and len(seq) < sequence_limit:
        if N % 2:
            N = 3 * N + 1
        else:
            N //= 2  # okay because guaranteed integer result
        seq.append(N)
    if N != 1:
        raise ValueError(f"Sequence not terminated in {sequence_limit} steps")
    return seq


# Not from the guide: a task that fails, and one that stays pending until the
# test lets it finish (it waits for a file the test creates: a condition the
# test controls, not a timed sleep on the test's side).


@script_function
def failing_task(x):
    raise ValueError(f"deliberate failure for {x}")


@script_function
def wait_for_file(path, value):
    import os
    import time

    while not os.path.exists(path):
        time.sleep(0.01)
    return value


# -------------------------------------------------------------------------- helpers


def is_uuid(value: Any) -> bool:
    try:
        return str(uuid.UUID(str(value))) == str(value)
    except ValueError:
        return False


class CountingRegistrations:
    """Wraps ``client.register_function`` to count calls and record returned ids."""

    def __init__(self, client: Client) -> None:
        self.ids: list[str] = []
        self._real = client.register_function

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        function_id = self._real(*args, **kwargs)
        self.ids.append(function_id)
        return function_id


@pytest.fixture
def gcc(client: Client) -> Client:
    """The guide's name for the client."""
    return client


@pytest.fixture
def registrations(client: Client, monkeypatch: pytest.MonkeyPatch) -> CountingRegistrations:
    spy = CountingRegistrations(client)
    monkeypatch.setattr(client, "register_function", spy)
    return spy


# --------------------------------------------------------------- Client user guide


def test_register_run_and_get_result(gcc: Client, capsys: pytest.CaptureFixture[str]) -> None:
    func_uuid = gcc.register_function(platform_func)
    assert is_uuid(func_uuid)

    task_id = gcc.run(endpoint_id=tutorial_endpoint, function_id=func_uuid)
    assert is_uuid(task_id)

    gcc.get_task(task_id, wait=WAIT)  # gcgate: instead of waiting by hand
    try:
        print(gcc.get_result(task_id))
    except Exception as e:
        print("Exception: {}".format(e))  # noqa: UP032 - the guide's code

    # The workers run on this machine, so the remote platform is ours.
    assert capsys.readouterr().out == platform.platform() + "\n"


def test_get_task_of_a_finished_task(gcc: Client) -> None:
    func_uuid = gcc.register_function(platform_func)
    before = time.time()
    task_id = gcc.run(endpoint_id=LOCAL_ENDPOINT_ID, function_id=func_uuid)

    task = gcc.get_task(task_id, wait=WAIT)

    assert task["pending"] is False
    assert task["status"] == "success"
    assert task["result"] == platform.platform()
    assert before <= float(task["completion_t"]) <= time.time()


def test_hello_with_positional_arguments(gcc: Client, capsys: pytest.CaptureFixture[str]) -> None:
    func_id = gcc.register_function(hello)

    task_id = gcc.run("Bob", "Smith", endpoint_id=tutorial_endpoint, function_id=func_id)

    gcc.get_task(task_id, wait=WAIT)
    try:
        print(gcc.get_result(task_id))
    except Exception as e:
        print("Exception: {}".format(e))  # noqa: UP032 - the guide's code
    assert capsys.readouterr().out == hello("Bob", "Smith") + "\n"


def test_hello_with_keyword_arguments(gcc: Client) -> None:
    func_id = gcc.register_function(hello)

    task_id = gcc.run(
        endpoint_id=tutorial_endpoint, function_id=func_id, firstname="Ada", lastname="Lovelace"
    )

    assert gcc.get_result(task_id, wait=WAIT) == hello(firstname="Ada", lastname="Lovelace")


def test_batching(gcc: Client) -> None:
    # The guide's sample, with its dict literal typo ``offset=val + 1`` fixed.
    noisy_fn_id = gcc.register_function(noisy_multiply)
    batch = gcc.create_batch()

    expected = []
    for val in range(7):
        fn_args = (val + 3, val)
        fn_kwargs = {"noise": val // 5, "offset": val + 1}

        batch.add(noisy_fn_id, args=fn_args, kwargs=fn_kwargs)
        expected.append((fn_args, fn_kwargs))

    before = time.time()
    batch_res = gcc.batch_run(tutorial_endpoint, batch)

    assert set(batch_res) == {"request_id", "task_group_id", "endpoint_id", "tasks"}
    assert is_uuid(batch_res["request_id"])
    assert is_uuid(batch_res["task_group_id"])
    assert batch_res["endpoint_id"] == LOCAL_ENDPOINT_ID
    assert list(batch_res["tasks"]) == [noisy_fn_id]
    assert len(batch_res["tasks"][noisy_fn_id]) == 7
    assert all(is_uuid(t) for t in batch_res["tasks"][noisy_fn_id])
    assert len(set(batch_res["tasks"][noisy_fn_id])) == 7

    task_ids = []
    for fn_task_list in batch_res["tasks"].values():
        task_ids.extend(fn_task_list)

    # gcgate: wait= instead of the guide's time.sleep(60).
    batch_status = gcc.get_batch_result(task_ids, wait=WAIT)

    assert set(batch_status) == set(task_ids)
    for task_id, ((x, y), kwargs) in zip(task_ids, expected, strict=True):
        status = batch_status[task_id]
        assert {"pending", "status", "result", "completion_t"} <= set(status)
        assert status["pending"] is False
        assert status["status"] == "success"
        assert before <= float(status["completion_t"]) <= time.time()
        # noise 0 makes random.uniform(a, a) exactly a; otherwise within +-noise.
        exact = x * y + kwargs["offset"]
        assert abs(status["result"] - exact) <= kwargs["noise"]
        if kwargs["noise"] == 0:
            assert status["result"] == exact


def test_a_failing_function_reraises_with_the_remote_traceback(gcc: Client) -> None:
    func_id = gcc.register_function(failing_task)
    task_id = gcc.run(7, endpoint_id=tutorial_endpoint, function_id=func_id)

    with pytest.raises(TaskExecutionFailed) as info:
        gcc.get_result(task_id, wait=WAIT)

    text = str(info.value)
    assert "Traceback" in text
    assert "ValueError: deliberate failure for 7" in text
    assert "failing_task" in text
    assert float(info.value.completion_t) <= time.time()
    # get_task raises the same failure, as the SDK's does.
    with pytest.raises(TaskExecutionFailed, match="deliberate failure for 7"):
        gcc.get_task(task_id)
    # A batch result leaves it out, as the SDK's does; get_tasks reports it, not raised.
    assert task_id not in gcc.get_batch_result([task_id])
    status = gcc.get_tasks([task_id])[task_id]
    assert status["status"] == "failed"
    assert isinstance(status["exception"], TaskExecutionFailed)


def test_pending_task(gcc: Client, tmp_path: Path) -> None:
    marker = tmp_path / "go"
    func_id = gcc.register_function(wait_for_file)
    task_id = gcc.run(str(marker), 42, endpoint_id=tutorial_endpoint, function_id=func_id)
    try:
        task = gcc.get_task(task_id)
        assert task["pending"] is True
        assert task["status"] in {"received", "waiting-for-ep", "running"}
        assert "result" not in task
        with pytest.raises(TaskPending) as info:
            gcc.get_result(task_id)
        assert info.value.reason == task["status"]
        # A short wait= answers with the task still pending.
        assert gcc.get_task(task_id, wait=0.2)["pending"] is True
    finally:
        marker.touch()

    assert gcc.get_result(task_id, wait=WAIT) == 42


def test_endpoint_status_and_metadata(gcc: Client, daemon: Daemon) -> None:
    status = gcc.get_endpoint_status(tutorial_endpoint)
    assert status["status"] == "online"
    assert status["details"]["total_workers"] == daemon.workers
    assert gcc.get_endpoint_status(LOCAL_ENDPOINT_ID)["status"] == "online"

    metadata = gcc.get_endpoint_metadata(tutorial_endpoint)
    assert metadata["uuid"] == LOCAL_ENDPOINT_ID
    assert isinstance(metadata["name"], str) and metadata["name"]
    assert metadata["status"] == "online"
    assert metadata["python_version"] == platform.python_version()
    by_uuid = gcc.get_endpoint_metadata(uuid.UUID(LOCAL_ENDPOINT_ID))
    assert by_uuid["uuid"] == LOCAL_ENDPOINT_ID


# ------------------------------------------------------------------ registration


def test_registration_is_content_addressed(gcc: Client) -> None:
    first = gcc.register_function(hello)
    assert gcc.register_function(hello) == first
    assert gcc.register_function(double) != first
    # Same body, different description: a different registration.
    assert gcc.register_function(hello, description="another") != first


def test_get_function_document(gcc: Client) -> None:
    func_uuid = gcc.register_function(platform_func)

    doc = gcc.get_function(func_uuid)

    assert doc["function_uuid"] == func_uuid
    assert doc["function_name"] == "platform_func"
    assert doc["description"] == "Get platform information about this system."
    assert doc["serialized"] is True
    assert doc["function_code"] == gcc.fx_serializer.function_code(platform_func)
    assert doc["metadata"]["python_version"] == platform.python_version()
    assert doc["metadata"]["serde_identifier"] == "01"
    assert doc["public"] is False
    assert doc["group"] is None


def test_sharing_and_descriptions(gcc: Client) -> None:
    group_id = str(uuid.uuid4())
    shared = gcc.get_function(gcc.register_function(double, group=group_id))
    assert shared["group"] == group_id

    public = gcc.get_function(gcc.register_function(double, public=True))
    assert public["public"] is True

    described = gcc.get_function(gcc.register_function(double, description="My function"))
    assert described["description"] == "My function"

    from_doc = gcc.get_function(gcc.register_function(function_with_docstring))
    assert from_doc["description"] == "My function, with a docstring"

    # if both are specified, the argument wins
    fid = gcc.register_function(
        function_with_docstring, description="this has priority over docstrings"
    )
    assert gcc.get_function(fid)["description"] == "this has priority over docstrings"


def test_executor_registers_with_the_docstring(
    gcc: Client, registrations: CountingRegistrations
) -> None:
    with Executor(endpoint_id=tutorial_endpoint, client=gcc) as gcx:
        fut = gcx.submit(function_with_docstring)
        assert fut.result(timeout=WAIT) == function_with_docstring()

    [fid] = registrations.ids
    assert gcc.get_function(fid)["description"] == "My function, with a docstring"


# -------------------------------------------------------------- Executor user guide


def test_executor_basic_example(gcc: Client, capsys: pytest.CaptureFixture[str]) -> None:
    with Executor(endpoint_id=tutorial_endpoint, client=gcc) as gce:
        fut = gce.submit(double, 7)

        print(fut.result(timeout=WAIT))

    assert capsys.readouterr().out == f"{double(7)}\n"


def test_executor_collatz(gcc: Client) -> None:
    generate_from = 1
    generate_through = 100
    futs, results, disproof_candidates = [], [], []
    with Executor(endpoint_id=tutorial_endpoint, client=gcc) as gce:
        for n in range(generate_from, generate_through + 1):
            futs.append(gce.submit(generate_collatz_sequence, n))

    for f in futs:
        r = f.result(timeout=WAIT)
        results.append(r)
        if r[-1] != 1:
            disproof_candidates.append(r[0])

    expected = [generate_collatz_sequence(n) for n in range(generate_from, generate_through + 1)]
    assert results == expected
    assert disproof_candidates == []


def test_executor_exception_propagation(gcc: Client) -> None:
    with pytest.raises(ValueError) as local:
        generate_collatz_sequence(1234567890, sequence_limit=100)

    with Executor(endpoint_id=tutorial_endpoint, client=gcc) as gce:
        future = gce.submit(generate_collatz_sequence, 1234567890, sequence_limit=100)

    with pytest.raises(TaskExecutionFailed) as remote:
        future.result(timeout=WAIT)
    assert f"ValueError: {local.value}" in str(remote.value)
    assert "generate_collatz_sequence" in str(remote.value)
    assert future.exception(timeout=0) is remote.value


def test_executor_done_while_pending(gcc: Client, tmp_path: Path) -> None:
    marker = tmp_path / "go"
    with Executor(endpoint_id=tutorial_endpoint, client=gcc) as gce:
        try:
            future = gce.submit(wait_for_file, str(marker), "finished")
            # Use the .done() method to check the status without blocking.
            assert future.done() is False
            with pytest.raises(concurrent.futures.TimeoutError):
                future.result(timeout=0.2)
        finally:
            marker.touch()
        assert future.result(timeout=WAIT) == "finished"


def test_executor_results_as_completed(gcc: Client) -> None:
    with Executor(endpoint_id=tutorial_endpoint, client=gcc) as gce:
        futs = [gce.submit(double_text, i) for i in range(10)]
        assert [f.result(timeout=WAIT) for f in futs] == [double_text(i) for i in range(10)]

        futs = [gce.submit(double_text, i) for i in range(10, 60)]
        received = [f.result() for f in concurrent.futures.as_completed(futs, timeout=WAIT)]

    assert len(received) == 50
    assert sorted(received) == sorted(double_text(i) for i in range(10, 60))


def test_executor_map(gcc: Client) -> None:
    with Executor(endpoint_id=tutorial_endpoint, client=gcc) as gce:
        results = list(gce.map(double, range(20), timeout=WAIT))
    assert results == [double(i) for i in range(20)]


def test_executor_context_manager_shuts_down(gcc: Client) -> None:
    with Executor(endpoint_id=tutorial_endpoint, client=gcc) as gce:
        futs = [gce.submit(double, i) for i in range(20)]

    # Leaving the block waited for every result.
    assert all(f.done() for f in futs)
    assert [f.result(timeout=0) for f in futs] == [double(i) for i in range(20)]
    with pytest.raises(RuntimeError, match="shutdown"):
        gce.submit(double, 1)
    # The client given to the executor is not closed by it.
    assert gcc.get_endpoint_status(tutorial_endpoint)["status"] == "online"


def test_executor_task_ids_are_fetchable_later(gcc: Client, daemon: Daemon) -> None:
    with Executor(endpoint_id=tutorial_endpoint, client=gcc) as gce:
        futs = [gce.submit(double, i) for i in range(5)]
        results = [f.result(timeout=WAIT) for f in futs]

    assert all(is_uuid(f.task_id) for f in futs)
    assert len({f.task_id for f in futs}) == 5
    with Client(socket_path=daemon.socket_path) as other:
        assert [other.get_result(f.task_id) for f in futs] == results


def test_executor_registers_each_function_once(
    gcc: Client, registrations: CountingRegistrations
) -> None:
    with Executor(endpoint_id=tutorial_endpoint, client=gcc) as gce:
        doubles = [gce.submit(double, i) for i in range(50)]
        texts = [gce.submit(double_text, i) for i in range(5)]
        more = [gce.submit(double, i) for i in range(50, 55)]
        results = [f.result(timeout=WAIT) for f in doubles + texts + more]

    assert results == (
        [double(i) for i in range(50)]
        + [double_text(i) for i in range(5)]
        + [double(i) for i in range(50, 55)]
    )
    registered = list(registrations.ids)
    assert len(registered) == 2
    # The ids the executor got are the functions' (content-addressed) ids.
    assert registered == [gcc.register_function(double), gcc.register_function(double_text)]


# --------------------------------------------------- wire compatibility with the SDK


def test_sdk_batch_payloads_run_through_gcgate(gcc: Client, stub: pb_grpc.GatewayStub) -> None:
    """A batch built by the real SDK (its serializer, its prepare()) runs as is."""
    sdk = ComputeSerializer()
    add_id = gcc.register_function(hello)
    double_id = gcc.register_function(double)

    batch = SdkBatch(task_group_id=None, user_runtime=sdk_create_user_runtime())
    names = [("Grace", "Hopper"), ("Alan", "Turing"), ("Edsger", "Dijkstra")]
    for first, last in names:
        batch.add(add_id, args=(first,), kwargs={"lastname": last})
    for i in range(4):
        batch.add(double_id, args=[i])

    res = gcc.batch_run(tutorial_endpoint, batch)

    assert set(res["tasks"]) == {add_id, double_id}
    hello_ids, double_ids = res["tasks"][add_id], res["tasks"][double_id]
    status = gcc.get_batch_result(hello_ids + double_ids, wait=WAIT)
    assert [status[t]["result"] for t in hello_ids] == [hello(f, last) for f, last in names]
    assert [status[t]["result"] for t in double_ids] == [double(i) for i in range(4)]

    # And the SDK's own deserializer reads the stored results.
    record = stub.GetResult(pb.GetResultRequest(task_id=hello_ids[0]), timeout=WAIT)
    assert sdk.deserialize(record.result) == hello(*names[0])


def test_sdk_batch_options_reach_the_daemon(gcc: Client, stub: pb_grpc.GatewayStub) -> None:
    """The SDK batch's task group and result serializers are honoured."""
    double_id = gcc.register_function(double)
    group = uuid.uuid4()
    batch = SdkBatch(
        task_group_id=group,
        result_serializers=["globus_compute_sdk.serialize.JSONData"],
    )
    batch.add(double_id, args=(21,))

    res = gcc.batch_run(LOCAL_ENDPOINT_ID, batch)

    assert res["task_group_id"] == str(group)
    [task_id] = res["tasks"][double_id]
    assert gcc.get_result(task_id, wait=WAIT) == double(21)
    record = stub.GetResult(pb.GetResultRequest(task_id=task_id), timeout=WAIT)
    assert record.task_group_id == str(group)
    # Serialized by the worker with the requested strategy, readable by the SDK.
    assert record.result.startswith(JSONData.identifier)
    assert ComputeSerializer().deserialize(record.result) == double(21)


def test_function_registered_with_sdk_serialization(gcc: Client, stub: pb_grpc.GatewayStub) -> None:
    """Function code and arguments serialized by the SDK, results read by the SDK."""
    sdk = ComputeSerializer()
    registered = stub.RegisterFunction(
        pb.RegisterFunctionRequest(
            function_name="hello",
            function_code=sdk.pack_buffers([sdk.serialize(hello)]),
            serialized=True,
            meta=pb.FunctionMeta(python_version=platform.python_version(), sdk_version="4.19.0"),
        ),
        timeout=WAIT,
    )
    payload = sdk.pack_buffers([sdk.serialize(("Bob",)), sdk.serialize({"lastname": "Smith"})])
    run = stub.Run(
        pb.RunRequest(endpoint_id="local", function_id=registered.function_id, payload=payload),
        timeout=WAIT,
    )
    record = stub.GetResult(
        pb.GetResultRequest(task_id=run.task_id, wait_seconds=WAIT), timeout=WAIT + 5
    )

    assert record.status == "success"
    assert sdk.deserialize(record.result) == hello("Bob", "Smith")
    # gcgate's client reads the same task the same way.
    assert gcc.get_result(run.task_id) == hello("Bob", "Smith")
