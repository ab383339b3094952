"""JSON arguments and JSON results: how clients in other languages use the daemon.

A client that cannot pickle registers Python source text, passes arguments as
JSON (the daemon frames them with the JSONData strategy) and asks for results
serialized as JSON. These tests use only the raw stub, as such a client would.
"""

from __future__ import annotations

import functools
import json

import grpc
import pytest
from gcgate.client import owner_key_metadata
from gcgate.serialize import Serializer
from gcgate.v1 import gateway_pb2 as pb
from gcgate.v1.gateway_pb2_grpc import GatewayStub

JSON_RESULTS = pb.SubmitOptions(result_serializers=["globus_compute_sdk.serialize.JSONData"])

SOURCE = """\
def describe(items, scale=1):
    return {"count": len(items), "total": sum(items) * scale, "first": items[0]}
"""


@pytest.fixture(scope="module")
def function_id(daemon) -> str:
    with grpc.insecure_channel(f"unix:{daemon.socket_path}") as channel:
        return (
            GatewayStub(channel)
            .RegisterFunction(
                pb.RegisterFunctionRequest(
                    function_name="describe", function_code=SOURCE, serialized=False
                )
            )
            .function_id
        )


def run_local(stub, function_id: str, args_json: str, **fields: object) -> pb.TaskRecord:
    """Run on the local endpoint with JSON arguments (and ``fields``); its final record."""
    task = stub.Run(
        pb.RunRequest(
            endpoint_id="local",
            function_id=function_id,
            json_arguments=pb.JsonArguments(args_json=args_json),
            **fields,
        )
    )
    return stub.GetResult(pb.GetResultRequest(task_id=task.task_id, wait_seconds=30))


def run_batch(
    stub, function_id: str, payloads: list[str], arguments: list[str], **fields: object
) -> list[pb.TaskRecord]:
    """One BatchRun of ``payloads`` then tasks with these args_json; the final
    records, in task order."""
    tasks = pb.BatchTasks(
        function_id=function_id,
        payloads=payloads,
        json_arguments=[pb.JsonArguments(args_json=a) for a in arguments],
    )
    batch = stub.BatchRun(pb.BatchRunRequest(endpoint_id="local", tasks=[tasks], **fields))
    ids = list(batch.tasks[0].task_ids)
    assert len(ids) == len(payloads) + len(arguments)
    watch = stub.WatchTasks(pb.WatchTasksRequest(task_ids=ids), timeout=60)
    records = {r.task_id: r for r in watch}
    return [records[t] for t in ids]


def json_result(record: pb.TaskRecord) -> object:
    assert record.status == "success", record.exception
    header, _, body = record.result.partition("\n")
    assert header == "11", record.result[:20]
    return json.loads(body)


def test_run_with_json_arguments_returns_json(stub, function_id) -> None:
    items = [3, 5, 8]
    task = stub.Run(
        pb.RunRequest(
            endpoint_id="local",
            function_id=function_id,
            json_arguments=pb.JsonArguments(
                args_json=json.dumps([items]), kwargs_json='{"scale": 2}'
            ),
            options=JSON_RESULTS,
        )
    )
    record = stub.GetResult(pb.GetResultRequest(task_id=task.task_id, wait_seconds=30))
    assert json_result(record) == {"count": 3, "total": sum(items) * 2, "first": 3}


def test_json_arguments_alone_get_json_results_by_default(stub, function_id) -> None:
    """A client that sets nothing but json_arguments reads the result as plain JSON."""
    items = [2, 9]
    record = run_local(stub, function_id, json.dumps([items]))
    expected = {"count": 2, "total": sum(items), "first": 2}
    assert json_result(record) == expected
    assert json.loads(record.result_json) == expected
    assert record.result_json == record.result.removeprefix("11\n")


def test_batch_of_json_arguments_alone_gets_json_results(stub, function_id) -> None:
    records = run_batch(stub, function_id, [], [json.dumps([[n]]) for n in (5, 6)])
    assert [json.loads(r.result_json)["total"] for r in records] == [5, 6]


def test_named_result_serializers_win_over_the_json_default(stub, function_id) -> None:
    """Asking for dill still gets dill; then result_json stays empty."""
    dill = pb.SubmitOptions(result_serializers=["globus_compute_sdk.serialize.DillDataBase64"])
    record = run_local(stub, function_id, "[[4]]", options=dill)
    assert record.status == "success", record.exception
    assert Serializer().deserialize(record.result) == {"count": 1, "total": 4, "first": 4}
    assert record.result.startswith("00\n") and record.result_json == ""


def test_a_batch_with_payloads_keeps_the_dill_default(stub, function_id) -> None:
    """A Python payload in the batch means a Python client: results stay dill."""
    records = run_batch(stub, function_id, [Serializer().task_payload(([3],), {})], ["[[7]]"])
    assert [Serializer().deserialize(r.result)["total"] for r in records] == [3, 7]
    assert all(r.result.startswith("00\n") and r.result_json == "" for r in records)


def test_batch_mixes_payloads_and_json_arguments_in_order(stub, function_id) -> None:
    payload = Serializer().task_payload(([1, 1],), {})
    arguments = [json.dumps([[n] * n]) for n in (2, 4)]
    records = run_batch(stub, function_id, [payload], arguments, options=JSON_RESULTS)
    assert [json_result(r)["total"] for r in records] == [2, 4, 16]


def test_unserializable_result_is_a_clear_task_error(stub) -> None:
    fid = stub.RegisterFunction(
        pb.RegisterFunctionRequest(
            function_name="make_set", function_code="def make_set():\n    return {1, 2}\n"
        )
    ).function_id
    task = stub.Run(
        pb.RunRequest(
            endpoint_id="local",
            function_id=fid,
            json_arguments=pb.JsonArguments(),
            options=JSON_RESULTS,
        )
    )
    record = stub.GetResult(pb.GetResultRequest(task_id=task.task_id, wait_seconds=30))
    assert record.status == "failed"
    assert "JSONData" in record.exception and "set" in record.exception


RETURNS_SOURCE = "import json\n\ndef returns(text):\n    return json.loads(text)\n"


@pytest.fixture(scope="module")
def returns_id(daemon) -> str:
    """A function returning the Python value of the JSON text it is given: Python's
    parser reads NaN and Infinity, so results holding them can be produced."""
    with grpc.insecure_channel(f"unix:{daemon.socket_path}") as channel:
        return (
            GatewayStub(channel)
            .RegisterFunction(
                pb.RegisterFunctionRequest(function_name="returns", function_code=RETURNS_SOURCE)
            )
            .function_id
        )


@pytest.mark.parametrize(
    ("value_text", "word"),
    [("NaN", "NaN"), ('[1, {"x": Infinity}]', "Infinity"), ("-Infinity", "-Infinity")],
)
def test_a_result_json_cannot_hold_fails_the_task(stub, returns_id, value_text, word) -> None:
    record = run_local(stub, returns_id, json.dumps([value_text]))
    assert record.status == "failed"
    assert f"float {word}, which JSON cannot represent" in record.exception
    assert record.result == record.result_json == ""


def test_strings_naming_nan_are_results_like_any_other(stub, returns_id) -> None:
    value = {"NaN": "Infinity", "n": [1.5, None]}
    record = run_local(stub, returns_id, json.dumps([json.dumps(value)]))
    assert record.status == "success", record.exception
    assert json.loads(record.result_json) == value


def test_integers_beyond_2_to_the_53_keep_every_digit(stub, returns_id) -> None:
    """Exact in the JSON text, as documented; a JavaScript number would round it."""
    big = 2**64 + 1
    record = run_local(stub, returns_id, json.dumps([str(big)]))
    assert record.result_json == str(big)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (pb.JsonArguments(args_json="[1,"), "not valid JSON"),
        (pb.JsonArguments(args_json='{"a": 1}'), "must be a JSON array"),
        (pb.JsonArguments(kwargs_json="[1]"), "must be a JSON object"),
    ],
)
def test_bad_json_arguments_are_invalid_argument(stub, function_id, arguments, message) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Run(
            pb.RunRequest(endpoint_id="local", function_id=function_id, json_arguments=arguments)
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details()


def test_a_bad_task_in_a_batch_is_named_by_its_place(stub, function_id) -> None:
    """A refusal of a BatchRun names the task at fault, as the request spells it."""
    good = Serializer().task_payload(([1],), {})

    def batch(*groups: pb.BatchTasks) -> pb.BatchRunRequest:
        return pb.BatchRunRequest(endpoint_id="local", tasks=list(groups))

    json_group = pb.BatchTasks(
        function_id=function_id,
        json_arguments=[pb.JsonArguments(args_json="[1]"), pb.JsonArguments(args_json="{}")],
    )
    payload_group = pb.BatchTasks(function_id=function_id, payloads=[good, "garbage"])
    assert "tasks[1].json_arguments[1].args_json must be a JSON array" in refusal(
        stub.BatchRun, batch(payload_group, json_group)
    )
    assert refusal(stub.BatchRun, batch(json_group, payload_group)).startswith(
        "tasks[0].json_arguments[1].args_json"
    )
    json_ok = pb.BatchTasks(function_id=function_id, json_arguments=[pb.JsonArguments()])
    assert refusal(stub.BatchRun, batch(json_ok, payload_group)).startswith("tasks[1].payloads[1] ")
    lone = pb.BatchTasks(function_id=function_id, payloads=["garbage"])
    assert refusal(stub.BatchRun, batch(lone)).startswith("payload ")


def refusal(call, request) -> str:
    """The details of the INVALID_ARGUMENT ``call(request)`` must answer."""
    with pytest.raises(grpc.RpcError) as err:
        call(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    return err.value.details()


def test_a_run_without_arguments_names_both_ways_to_give_them(stub, function_id) -> None:
    for request in (
        pb.RunRequest(endpoint_id="local", function_id=function_id),
        pb.RunRequest(endpoint_id="local", function_id=function_id, payload=""),
    ):
        message = refusal(stub.Run, request)
        assert "json_arguments" in message and "payload" in message
        assert "{} calls the function without arguments" in message


def test_payload_and_json_arguments_are_one_oneof() -> None:
    """Wire-compatible: the fields keep their numbers, and setting one clears the other."""
    fields = pb.RunRequest.DESCRIPTOR.oneofs_by_name["arguments"].fields
    assert {(f.name, f.number) for f in fields} == {("payload", 3), ("json_arguments", 5)}
    request = pb.RunRequest(payload="x")
    request.json_arguments.SetInParent()
    assert request.WhichOneof("arguments") == "json_arguments" and request.payload == ""


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("z = 5\n", "function_code does not define 'q' at top level"),
        ("# def q():\n#     return 1\n", "function_code does not define 'q' at top level"),
        ("def x(:\n    pass\n", "function_code:1: "),
        ("def outer():\n    def q():\n        return 1\n", "does not define 'q' at top level"),
    ],
)
def test_source_that_does_not_define_the_function_is_refused(stub, source, message) -> None:
    request = pb.RegisterFunctionRequest(function_name="q", function_code=source)
    details = refusal(stub.RegisterFunction, request)
    assert message in details and "parsed, not run" in details


@pytest.mark.parametrize(
    "source",
    ["def q():\n    return 1\n", "import math\nq = math.sqrt\n", "class q:\n    pass\n"],
)
def test_source_defining_the_function_at_top_level_registers(stub, source) -> None:
    request = pb.RegisterFunctionRequest(function_name="q", function_code=source)
    assert stub.RegisterFunction(request).function_id


def test_unknown_result_serializers_are_refused_at_submit(stub, function_id) -> None:
    request = pb.RunRequest(
        endpoint_id="local",
        function_id=function_id,
        json_arguments=pb.JsonArguments(args_json="[[1]]"),
        options=pb.SubmitOptions(result_serializers=["JSONData", "json"]),
    )
    message = refusal(stub.Run, request)
    assert "options.result_serializers[1]: 'json' is not a serialization strategy" in message
    assert "JSONData" in message and "DillDataBase64" in message
    listed = stub.ListTasks(pb.ListTasksRequest(function_id=function_id, limit=10000))
    assert all(t.status == "success" for t in listed.tasks)  # nothing was stored


def test_result_serializers_take_short_names(stub, function_id) -> None:
    short = pb.SubmitOptions(result_serializers=["DillDataBase64"])
    record = run_local(stub, function_id, "[[6]]", options=short)
    assert Serializer().deserialize(record.result)["total"] == 6


@pytest.mark.parametrize("alias", ["Local", "LOCAL", " local"])
def test_a_misspelt_local_alias_names_the_alias(stub, function_id, alias) -> None:
    request = pb.RunRequest(
        endpoint_id=alias, function_id=function_id, json_arguments=pb.JsonArguments()
    )
    assert "alias of the daemon's own local endpoint is 'local', in lower case" in refusal(
        stub.Run, request
    )


@pytest.mark.parametrize("rpc", ["ListTasks", "PurgeTasks"])
def test_filters_by_endpoint_name_the_local_alias_too(daemon, stub, function_id, rpc) -> None:
    """The endpoint filters of ListTasks and PurgeTasks take the same ids and alias as Run."""
    request = getattr(pb, f"{rpc}Request")(endpoint_id="Local")
    owner = owner_key_metadata(str(daemon.state_dir))
    assert "alias of the daemon's own local endpoint is 'local'" in refusal(
        functools.partial(getattr(stub, rpc), metadata=owner), request
    )
    task_id = run_local(stub, function_id, "[[1]]").task_id
    listed = stub.ListTasks(pb.ListTasksRequest(endpoint_id="local", limit=1000))
    assert task_id in {t.task_id for t in listed.tasks}


SLOW_SOURCE = "import time\ndef nap(seconds):\n    time.sleep(seconds)\n    return seconds\n"


@pytest.mark.parametrize("wait_seconds", [-1.0, float("-inf")])
def test_a_negative_wait_answers_at_once(stub, wait_seconds) -> None:
    fid = stub.RegisterFunction(
        pb.RegisterFunctionRequest(function_name="nap", function_code=SLOW_SOURCE)
    ).function_id
    task = stub.Run(
        pb.RunRequest(
            endpoint_id="local", function_id=fid, json_arguments=pb.JsonArguments(args_json="[3]")
        )
    )
    record = stub.GetResult(
        pb.GetResultRequest(task_id=task.task_id, wait_seconds=wait_seconds), timeout=2
    )
    assert record.pending


def test_a_nan_wait_is_refused_not_waited_past_the_cap(stub, function_id) -> None:
    """NaN passes min/max through and never runs out: it is refused instead."""
    task_id = stub.Run(
        pb.RunRequest(
            endpoint_id="local",
            function_id=function_id,
            json_arguments=pb.JsonArguments(args_json="[[1]]"),
        )
    ).task_id
    request = pb.GetResultRequest(task_id=task_id, wait_seconds=float("nan"))
    assert "wait_seconds must be a number of seconds" in refusal(stub.GetResult, request)


def test_a_globus_endpoint_without_a_login_is_unauthenticated_naming_local(stub, function_id):
    """What api.md's Run errors say a client without a Globus login gets for any
    endpoint UUID but the local one (not NOT_FOUND)."""
    request = pb.RunRequest(
        endpoint_id="00000000-0000-4000-8000-000000000001",
        function_id=function_id,
        json_arguments=pb.JsonArguments(args_json="[[1]]"),
    )
    with pytest.raises(grpc.RpcError) as err:
        stub.Run(request)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, err.value.details()
    assert "not logged in to Globus" in err.value.details()
    assert "only the local endpoint" in err.value.details()
