"""Errors end to end: what a caller sees when a request is wrong or a task dies.

Against a real gcgated (module-scoped ``daemon``): unknown and malformed ids,
raw gRPC requests with malformed payloads (through the generated stub, so the
client's own checks are bypassed), the per-submission size limit, worker
processes that die under a task, a client without a daemon, and the SDK's
argument checks on ``Batch``.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from gcgate import (
    LOCAL_ENDPOINT_ID,
    Batch,
    Client,
    DaemonUnavailable,
    Executor,
    InvalidArgument,
    NotFound,
    TaskExecutionFailed,
)
from gcgate.client import UNKNOWN_TASK_REASON
from gcgate.constants import MAX_SUBMISSION_BYTES
from gcgate.errors import Unauthenticated
from gcgate.serialize import Serializer, pack_buffers
from gcgate.v1 import gateway_pb2 as pb
from gcgate.v1 import gateway_pb2_grpc
from globus_compute_sdk.sdk.batch import Batch as SdkBatch
from harness import script_function

WAIT = 30.0
SERDE = Serializer()


@script_function
def double(x):
    return x * 2


@script_function
def echo(data):
    return data


@script_function
def exit_hard():
    import os

    os._exit(1)


@script_function
def segfault():
    import ctypes

    ctypes.string_at(0)


@pytest.fixture
def double_id(client: Client) -> str:
    return client.register_function(double)


def stored_task_count(client: Client) -> int:
    """Task records in the daemon's store, by two independent reads."""
    records = client.status()["store"]["task_records"]
    assert len(client.list_tasks(limit=10_000)) == records
    return records


# ------------------------------------------------------------------- unknown ids


def test_unknown_function_id(client: Client) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(NotFound) as info:
        client.get_function(missing)
    assert missing in str(info.value)
    assert "not registered" in info.value.message

    with pytest.raises(NotFound, match=f"function {missing} is not registered"):
        client.run(1, endpoint_id="local", function_id=missing)


def test_unknown_function_in_a_batch_stores_nothing(client: Client, double_id: str) -> None:
    before = stored_task_count(client)
    missing = str(uuid.uuid4())
    batch = client.create_batch()
    batch.add(double_id, args=(1,))
    batch.add(missing, args=(2,))

    with pytest.raises(NotFound, match=missing):
        client.batch_run("local", batch)
    assert stored_task_count(client) == before


def test_globus_endpoint_without_login(client: Client, double_id: str) -> None:
    # Any UUID but the local endpoint's is a Globus endpoint; this daemon has no
    # Globus login, so it says how to get one (and which endpoint it does serve).
    endpoint = str(uuid.uuid4())
    for call in (client.get_endpoint_status, client.get_endpoint_metadata):
        with pytest.raises(Unauthenticated) as info:
            call(endpoint)
        assert f"endpoint {endpoint}" in info.value.message
        assert "gcgate login" in info.value.message
        assert LOCAL_ENDPOINT_ID in info.value.message

    with pytest.raises(Unauthenticated, match=f"endpoint {endpoint}"):
        client.run(1, endpoint_id=endpoint, function_id=double_id)


def test_unknown_task_id(client: Client) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(NotFound) as info:
        client.get_result(missing)
    # The daemon's words, which get_batch_result gives as such an id's reason.
    assert info.value.message == UNKNOWN_TASK_REASON.format(missing)
    with pytest.raises(NotFound, match=missing):
        client.get_task(missing, wait=1.0)
    with pytest.raises(NotFound, match=missing):
        client.get_tasks([missing])


def test_one_unknown_task_fails_get_tasks(client: Client, double_id: str) -> None:
    known = client.run(4, endpoint_id="local", function_id=double_id)
    assert client.get_result(known, wait=WAIT) == double(4)
    missing = str(uuid.uuid4())

    with pytest.raises(NotFound) as info:
        client.get_tasks([known, missing])
    assert missing in info.value.message
    assert known not in info.value.message


def test_get_batch_result_rpc_with_and_without_skip_unknown(
    client: Client, stub: gateway_pb2_grpc.GatewayStub, double_id: str
) -> None:
    known = client.run(4, endpoint_id="local", function_id=double_id)
    assert client.get_result(known, wait=WAIT) == double(4)
    missing, other = str(uuid.uuid4()), str(uuid.uuid4())

    # Without the flag (as every client before it): NOT_FOUND for the whole call,
    # naming only the unknown id.
    with pytest.raises(grpc.RpcError) as info:
        stub.GetBatchResult(pb.GetBatchResultRequest(task_ids=[known, missing]), timeout=WAIT)
    assert info.value.code() is grpc.StatusCode.NOT_FOUND
    assert missing in info.value.details() and known not in info.value.details()

    # With it: the known ids answered, the unknown listed, each in request order
    # with duplicates collapsed.
    answer = stub.GetBatchResult(
        pb.GetBatchResultRequest(task_ids=[other, known, missing, known, other], skip_unknown=True),
        timeout=WAIT,
    )
    assert [r.task_id for r in answer.tasks] == [known]
    assert answer.tasks[0].status == "success"
    assert list(answer.unknown_task_ids) == [other, missing]

    # Only unknown ids, and a malformed one (still refused: it is no id at all).
    answer = stub.GetBatchResult(
        pb.GetBatchResultRequest(task_ids=[missing], skip_unknown=True), timeout=WAIT
    )
    assert (list(answer.tasks), list(answer.unknown_task_ids)) == ([], [missing])
    with pytest.raises(grpc.RpcError) as info:
        stub.GetBatchResult(
            pb.GetBatchResultRequest(task_ids=[known, "nope"], skip_unknown=True), timeout=WAIT
        )
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_executor_submission_errors_reach_the_futures(client: Client, double_id: str) -> None:
    missing_function = str(uuid.uuid4())
    with Executor(endpoint_id="local", client=client) as gce:
        bad = gce.submit_to_registered_function(missing_function, args=(1,))
        with pytest.raises(NotFound, match=f"function {missing_function}"):
            bad.result(timeout=WAIT)
        assert bad.task_id is None  # never accepted, so no task id
        # The executor keeps working after a refused submission.
        assert gce.submit(double, 2).result(timeout=WAIT) == double(2)

    missing_endpoint = str(uuid.uuid4())
    with Executor(endpoint_id=missing_endpoint, client=client) as gce:
        future = gce.submit(double, 3)
        with pytest.raises(Unauthenticated, match=f"endpoint {missing_endpoint}"):
            future.result(timeout=WAIT)


# ----------------------------------------------------------------- malformed ids


def test_malformed_function_id(client: Client, double_id: str) -> None:
    with pytest.raises(InvalidArgument, match=r"function_id: 'not-a-uuid' is not a UUID$"):
        client.get_function("not-a-uuid")
    # Client-side, as the SDK: run() checks the function id before sending
    # (the SDK's ValueError, naming the argument).
    with pytest.raises(ValueError, match=r"^function_id: 'not-a-uuid' is not a UUID$"):
        client.run(endpoint_id="local", function_id="not-a-uuid")
    # A BatchRun of several functions names the group.
    with grpc.insecure_channel(f"unix:{client.socket_path}") as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        payload = pack_buffers([SERDE.serialize((1,)), SERDE.serialize({})])
        request = pb.BatchRunRequest(
            endpoint_id="local",
            tasks=[
                pb.BatchTasks(function_id=double_id, payloads=[payload]),
                pb.BatchTasks(function_id="nope", payloads=[payload]),
            ],
        )
        with pytest.raises(grpc.RpcError) as caught:
            stub.BatchRun(request, timeout=WAIT)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "tasks[1].function_id: 'nope' is not a UUID"


def test_malformed_endpoint_id(client: Client, double_id: str) -> None:
    expected = (
        "endpoint_id: 'not-a-uuid' is not a UUID; give a Globus Compute endpoint's UUID,"
        " or 'local' for the daemon's own local endpoint$"
    )
    with pytest.raises(InvalidArgument, match=expected):
        client.get_endpoint_status("not-a-uuid")
    with pytest.raises(InvalidArgument, match=expected):
        client.run(1, endpoint_id="not-a-uuid", function_id=double_id)
    # Client-side, as the SDK's Executor: a ValueError, here naming the argument.
    with pytest.raises(ValueError, match="^" + expected.replace("not-a-uuid", "nope")):
        Executor(endpoint_id="nope", client=client)
    with pytest.raises(InvalidArgument, match="endpoint_id is required; give a Globus"):
        client.get_endpoint_status("")


def test_malformed_task_id(client: Client) -> None:
    with pytest.raises(InvalidArgument, match=r"task_id: 'not-a-uuid' is not a UUID$"):
        client.get_result("not-a-uuid")
    good = str(uuid.uuid4())
    with pytest.raises(InvalidArgument, match=r"task_ids\[2\]: 'xyz' is not a UUID$"):
        client.get_batch_result([good, good.upper(), "xyz"])
    with pytest.raises(InvalidArgument, match=r"task_ids\[1\]: 'xyz' is not a UUID$"):
        client.cancel_tasks([good, "xyz"])
    with pytest.raises(ValueError, match=r"^task_group_id: 'xyz' is not a UUID$"):
        Executor(endpoint_id="local", client=client, task_group_id="xyz")


# ---------------------------------------------------------- raw malformed payloads

ARGS = SERDE.serialize((1,))
KWARGS = SERDE.serialize({})

MALFORMED_PAYLOADS = {
    "not framed": ("hello, daemon", "pack_buffers framing"),
    "bad length": ("999\n" + ARGS, "pack_buffers framing"),
    "wrong strategy header": (pack_buffers(["zz\nabc", KWARGS]), "unknown data strategy header"),
    "code header for data": (pack_buffers(["01\nabc", KWARGS]), "unknown data strategy header"),
    "three buffers": (pack_buffers([ARGS, KWARGS, KWARGS]), "found 3"),
    "one buffer": (pack_buffers([ARGS]), "found 1"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_PAYLOADS))
def test_run_with_malformed_payload(
    case: str, client: Client, stub: gateway_pb2_grpc.GatewayStub, double_id: str
) -> None:
    payload, expected = MALFORMED_PAYLOADS[case]
    before = stored_task_count(client)

    with pytest.raises(grpc.RpcError) as info:
        stub.Run(
            pb.RunRequest(endpoint_id="local", function_id=double_id, payload=payload),
            timeout=WAIT,
        )

    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert expected in info.value.details()
    assert stored_task_count(client) == before


def test_batch_with_one_malformed_payload_stores_nothing(
    client: Client, stub: gateway_pb2_grpc.GatewayStub, double_id: str
) -> None:
    good = pack_buffers([ARGS, KWARGS])
    bad = pack_buffers([ARGS, KWARGS, KWARGS])
    before = stored_task_count(client)

    with pytest.raises(grpc.RpcError) as info:
        stub.BatchRun(
            pb.BatchRunRequest(
                endpoint_id="local",
                tasks=[pb.BatchTasks(function_id=double_id, payloads=[good, good, bad])],
            ),
            timeout=WAIT,
        )

    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "2 buffers" in info.value.details()
    assert stored_task_count(client) == before


def test_batch_without_tasks(stub: gateway_pb2_grpc.GatewayStub, double_id: str) -> None:
    for tasks in ([], [pb.BatchTasks(function_id=double_id, payloads=[])]):
        with pytest.raises(grpc.RpcError) as info:
            stub.BatchRun(pb.BatchRunRequest(endpoint_id="local", tasks=tasks), timeout=WAIT)
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "no tasks" in info.value.details()


def test_malformed_json_options(
    client: Client, stub: gateway_pb2_grpc.GatewayStub, double_id: str
) -> None:
    before = stored_task_count(client)
    options = pb.SubmitOptions(resource_specification_json="{not json")
    with pytest.raises(grpc.RpcError) as info:
        stub.Run(
            pb.RunRequest(
                endpoint_id="local",
                function_id=double_id,
                payload=pack_buffers([ARGS, KWARGS]),
                options=options,
            ),
            timeout=WAIT,
        )
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "resource_specification_json" in info.value.details()
    assert stored_task_count(client) == before


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("not framed", "pack_buffers framing"),
        (pack_buffers(["00\n" + SERDE.serialize(1)[3:]]), "code strategy header"),
        (pack_buffers(["01\nabc", "01\nabc"]), "code strategy header"),
    ],
)
def test_register_malformed_function_code(
    code: str, expected: str, stub: gateway_pb2_grpc.GatewayStub
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.RegisterFunction(
            pb.RegisterFunctionRequest(function_name="f", function_code=code, serialized=True),
            timeout=WAIT,
        )
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert expected in info.value.details()


# ------------------------------------------------------------------------- sizes


def test_submission_over_the_size_limit_is_refused(client: Client) -> None:
    """The local endpoint's limit (local_max_payload_mb, default 10 MB) counts the
    user's serialized bytes, not the base64 text the wire carries."""
    echo_id = client.register_function(echo)
    data = b"x" * (MAX_SUBMISSION_BYTES + 100_000)
    before = stored_task_count(client)

    with pytest.raises(InvalidArgument) as info:
        client.run(data, endpoint_id="local", function_id=echo_id)

    assert "TASK_PAYLOAD_TOO_LARGE" in info.value.message
    assert "limit of 10 MB (setting local_max_payload_mb" in info.value.message
    assert stored_task_count(client) == before


def test_batch_with_a_task_over_the_size_limit_is_refused(client: Client) -> None:
    """On the local endpoint the limit is per task (nothing travels in one request
    to a service): tasks under it are accepted together, one over it refuses all."""
    echo_id = client.register_function(echo)
    batch = client.create_batch()
    chunk = b"y" * (MAX_SUBMISSION_BYTES // 4)
    for _ in range(3):
        batch.add(echo_id, args=(chunk,))
    batch.add(echo_id, args=(b"z" * (MAX_SUBMISSION_BYTES + 1000),))
    before = stored_task_count(client)

    with pytest.raises(InvalidArgument, match="of task 4 of this submission"):
        client.batch_run("local", batch)
    assert stored_task_count(client) == before


def test_nine_megabyte_payload_round_trips(client: Client) -> None:
    """Over gRPC's 4 MiB default both ways: message size options are set on both ends."""
    echo_id = client.register_function(echo)
    data = os.urandom(6_600_000)
    payload = client.fx_serializer.task_payload((data,), {})
    assert 2 * 4 * 1024 * 1024 < len(payload) < MAX_SUBMISSION_BYTES

    task_id = client.run(data, endpoint_id="local", function_id=echo_id)

    assert client.get_result(task_id, wait=WAIT) == data


# ------------------------------------------------------------------ dying workers


@pytest.mark.parametrize(
    ("function", "how"),
    [(exit_hard, "exit code 1"), (segfault, "SIGSEGV")],
    ids=["os._exit", "segfault"],
)
def test_worker_death_fails_the_task_and_the_daemon_carries_on(
    function: Callable[[], Any], how: str, client: Client, double_id: str
) -> None:
    function_id = client.register_function(function)
    task_id = client.run(endpoint_id="local", function_id=function_id)

    with pytest.raises(TaskExecutionFailed) as info:
        client.get_result(task_id, wait=WAIT)
    text = str(info.value)
    assert "died" in text
    assert how in text
    assert "not retried" in text

    # The daemon keeps serving: new tasks run, on the survivor or a replacement.
    ids = [client.run(i, endpoint_id="local", function_id=double_id) for i in range(4)]
    results = client.get_batch_result(ids, wait=WAIT)
    assert [results[t]["result"] for t in ids] == [double(i) for i in range(4)]
    assert client.get_endpoint_status("local")["status"] == "online"


# ---------------------------------------------------------------------- no daemon


def test_client_without_a_daemon(tmp_path: Path) -> None:
    missing = tmp_path / "no-daemon.sock"
    with pytest.raises(DaemonUnavailable) as info:
        Client(socket_path=missing)
    assert str(missing) in str(info.value)
    assert "gcgated" in str(info.value)


def test_client_without_a_daemon_via_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "env.sock"
    monkeypatch.setenv("GCGATE_SOCKET", str(missing))
    with pytest.raises(DaemonUnavailable) as info:
        Client()
    assert str(missing) in str(info.value)
    assert "gcgated" in str(info.value)


def test_client_on_a_stale_socket(tmp_path: Path) -> None:
    """A socket file left by a dead daemon: nobody listens on it."""
    stale = tmp_path / "stale.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(stale))
    sock.close()
    assert stale.is_socket()

    with pytest.raises(DaemonUnavailable) as info:
        Client(socket_path=stale)
    assert str(stale) in str(info.value)
    assert "gcgated" in str(info.value)


# --------------------------------------------------------------- client-side checks

BAD_ADD_ARGUMENTS: list[dict[str, Any]] = [
    {"args": "abc"},
    {"args": 5},
    {"args": {"a": 1}},
    {"kwargs": [("a", 1)]},
    {"kwargs": "abc"},
    {"kwargs": {1: "a"}},
    {"args": "abc", "kwargs": {1: "a"}},
]


@pytest.mark.parametrize("bad", BAD_ADD_ARGUMENTS, ids=repr)
def test_batch_add_bad_arguments_like_the_sdk(bad: dict[str, Any], client: Client) -> None:
    function_id = str(uuid.uuid4())
    with pytest.raises(TypeError) as sdk:
        SdkBatch(task_group_id=None).add(function_id, **bad)
    with pytest.raises(TypeError) as ours:
        client.create_batch().add(function_id, **bad)
    with pytest.raises(TypeError) as plain:
        Batch(task_group_id=None).add(function_id, **bad)
    assert str(ours.value) == str(sdk.value)
    assert str(plain.value) == str(sdk.value)


def test_batch_add_bad_function_id_like_the_sdk(client: Client) -> None:
    with pytest.raises(ValueError) as sdk:
        SdkBatch(task_group_id=None).add("not-a-uuid", args=(1,))
    with pytest.raises(ValueError) as ours:
        client.create_batch().add("not-a-uuid", args=(1,))
    # The SDK's class; the message names the argument and the value, where the
    # SDK's says only "badly formed hexadecimal UUID string".
    assert type(ours.value) is type(sdk.value)
    assert str(ours.value) == "function_id: 'not-a-uuid' is not a UUID"


def test_empty_batch_run(client: Client) -> None:
    before = stored_task_count(client)
    with pytest.raises(ValueError, match="No tasks specified for batch run"):
        client.batch_run("local", client.create_batch())
    with pytest.raises(ValueError, match="No tasks specified for batch run"):
        client.batch_run("local", SdkBatch(task_group_id=None))
    assert stored_task_count(client) == before
