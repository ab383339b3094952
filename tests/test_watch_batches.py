"""WatchTaskBatches: WatchTasks with the records final together in one message.

Against a real daemon: each task is sent once, already-final tasks arrive
together in the first message, bad and unknown ids get WatchTasks' errors, and
the splitting of a batch into messages keeps each under its size budget.
"""

from __future__ import annotations

import uuid

import grpc
import pytest
from gcgate import Client
from gcgate.constants import LOCAL_ENDPOINT_ID, TaskStatus
from gcgate.v1 import gateway_pb2 as pb
from gcgate.v1.gateway_pb2_grpc import GatewayStub
from gcgated.model import TaskRecord
from gcgated.server.servicer import BATCH_MESSAGE_BYTES, wire_chunks
from harness import script_function

WAIT = 60.0


@script_function
def square(x: int) -> int:
    return x * x


def submit(client: Client, count: int) -> list[str]:
    batch = client.create_batch()
    function_id = client.register_function(square)
    for i in range(count):
        batch.add(function_id, args=(i,))
    return client.batch_run(LOCAL_ENDPOINT_ID, batch)["tasks"][function_id]


def test_final_tasks_come_in_one_message_in_request_order(
    client: Client, stub: GatewayStub
) -> None:
    task_ids = submit(client, 300)
    client.get_batch_result(task_ids, wait=WAIT)
    messages = list(stub.WatchTaskBatches(pb.WatchTasksRequest(task_ids=task_ids), timeout=WAIT))
    assert len(messages) == 1
    assert [r.task_id for r in messages[0].tasks] == task_ids
    assert all(r.status == "success" and not r.pending for r in messages[0].tasks)
    results = [client.fx_serializer.deserialize(r.result) for r in messages[0].tasks]
    assert results == [i * i for i in range(300)]


def test_each_task_is_sent_once_as_it_completes(client: Client, stub: GatewayStub) -> None:
    task_ids = submit(client, 500)
    watched = [*task_ids, task_ids[0]]  # a duplicate id is watched once
    call = stub.WatchTaskBatches(pb.WatchTasksRequest(task_ids=watched), timeout=WAIT)
    seen = [record for message in call for record in message.tasks]
    assert sorted(r.task_id for r in seen) == sorted(task_ids)
    assert all(r.status == "success" for r in seen)


def test_client_watch_yields_every_result(client: Client) -> None:
    task_ids = submit(client, 200)
    finished = {task["task_id"]: task["result"] for task in client.watch(task_ids, timeout=WAIT)}
    assert finished == {tid: i * i for i, tid in enumerate(task_ids)}


@pytest.mark.parametrize(
    ("task_id", "code"),
    [
        ("not-a-uuid", grpc.StatusCode.INVALID_ARGUMENT),
        (str(uuid.uuid4()), grpc.StatusCode.NOT_FOUND),
    ],
    ids=["malformed", "unknown"],  # stable names: the unknown id is random
)
def test_bad_and_unknown_ids_are_refused(
    stub: GatewayStub, task_id: str, code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        list(stub.WatchTaskBatches(pb.WatchTasksRequest(task_ids=[task_id]), timeout=WAIT))
    assert raised.value.code() == code
    assert task_id in (raised.value.details() or "")


def record(size: int) -> TaskRecord:
    return TaskRecord(str(uuid.uuid4()), TaskStatus.SUCCESS, "f", "e", "g", 0.0, result="x" * size)


def test_wire_chunks_keep_messages_under_the_budget_and_lose_nothing() -> None:
    big = BATCH_MESSAGE_BYTES // 3
    records = [record(big), record(big), record(10), record(big), record(BATCH_MESSAGE_BYTES)]
    chunks = list(wire_chunks(records))
    assert [r for chunk in chunks for r in chunk] == records
    assert [len(chunk) for chunk in chunks] == [3, 1, 1]
    small = [record(10) for _ in range(1000)]
    assert list(wire_chunks(small)) == [small]
    assert list(wire_chunks([])) == []
