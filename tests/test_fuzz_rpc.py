"""Property-based fuzzing of every Gateway RPC with random, well-typed, mostly wrong requests.

One real gcgated (no Globus login of its own, pointed at the Globus stand-in) takes
requests that hypothesis builds from each request message of gateway.proto: valid
values (registered functions, the local endpoint and its alias, a stand-in endpoint,
finished tasks, a valid Globus token) mixed with bad ones (malformed and nil UUIDs,
empty, huge and odd unicode strings with NULs), task payloads in the Compute wire
format then damaged (wrong strategy headers, truncated or extended pack_buffers,
bad length prefixes, base64 garbage, garbage in kwargs), JSON arguments and options
nested deep or holding huge numbers, bogus bearer tokens; and raw random bytes as
the message of every method.

Every call must end with a status its RPC documents (never UNKNOWN, INTERNAL or a
deadline) and a short details string a person can read (no traceback, no repr of
Python objects, no token); the daemon must answer Status after every example; and a
damaged task it accepted on the local endpoint must end (failed, with a message)
instead of hanging.

CI runs a fixed (derandomized) set of examples per RPC; ``make soak`` runs many more
with fresh randomness. Counts per RPC and status and the daemon's RSS and open fds
before and after go to ``fuzz-rpc[-soak].json`` in pytest's base temp dir (and
docs/reliability.md, section 3).
"""

from __future__ import annotations

import json
import string
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from gcgate.constants import LOCAL_ENDPOINT_ID, MAX_MESSAGE_BYTES
from gcgate.serialize import JSONData, Serializer, pack_buffers, unpack_buffers
from gcgate.v1 import gateway_pb2 as pb
from gcgate.v1.gateway_pb2_grpc import GatewayStub
from gcgated.errors import InvalidArgument
from harness import LoginlessDaemon, script_function
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from procfs import Usage
from standin import StandIn

C = grpc.StatusCode
#: Seconds any one call may take; only reached if the daemon hangs.
CALL_TIMEOUT = 60.0
#: Examples per RPC: CI (fixed seed) and soak (fresh randomness).
CI_EXAMPLES, SOAK_EXAMPLES = 40, 1000
#: Longest error details accepted: a sentence or two, whatever the input size.
MAX_DETAILS = 1000
#: Text that marks a leaked internal (traceback, repr of an object or exception type).
LEAKS = ("Traceback", 'File "', "<class '", " object at 0x", "Unexpected <")
SERVICE = pb.DESCRIPTOR.services_by_name["Gateway"]

_GLOBUS = {C.UNAUTHENTICATED, C.PERMISSION_DENIED}
_SUBMIT = {C.OK, C.INVALID_ARGUMENT, C.NOT_FOUND, C.RESOURCE_EXHAUSTED, *_GLOBUS}
#: The statuses each RPC may answer with (gateway.proto documents each).
ALLOWED: dict[str, set[grpc.StatusCode]] = {
    "Status": {C.OK},
    "RegisterFunction": {C.OK, C.INVALID_ARGUMENT},
    "GetFunction": {C.OK, C.INVALID_ARGUMENT, C.NOT_FOUND},
    "Run": _SUBMIT,
    "BatchRun": _SUBMIT,
    "GetResult": {C.OK, C.INVALID_ARGUMENT, C.NOT_FOUND},
    "GetBatchResult": {C.OK, C.INVALID_ARGUMENT, C.NOT_FOUND},
    "WatchTasks": {C.OK, C.INVALID_ARGUMENT, C.NOT_FOUND},
    "WatchTaskBatches": {C.OK, C.INVALID_ARGUMENT, C.NOT_FOUND},
    "GetEndpointStatus": {C.OK, C.INVALID_ARGUMENT, C.NOT_FOUND, *_GLOBUS},
    "GetEndpointMetadata": {C.OK, C.INVALID_ARGUMENT, C.NOT_FOUND, *_GLOBUS},
    "ListTasks": {C.OK, C.INVALID_ARGUMENT},
    "StartLogin": {C.OK},
    "CompleteLogin": {C.INVALID_ARGUMENT, C.NOT_FOUND, C.FAILED_PRECONDITION, *_GLOBUS},
    # No owner key is sent: Logout is refused (test_sdk_methods sends it).
    "Logout": {C.PERMISSION_DENIED},
    "ForgetTasks": {C.OK, C.INVALID_ARGUMENT, C.FAILED_PRECONDITION},
    "CancelTasks": {C.OK, C.INVALID_ARGUMENT, C.NOT_FOUND},
    # No owner key is sent: PurgeTasks is refused before its filters are read.
    "PurgeTasks": {C.PERMISSION_DENIED},
    "GetMetrics": {C.OK},
    "WhoAmI": {C.OK},
    "ListEndpoints": {C.OK, C.INVALID_ARGUMENT, *_GLOBUS},
    "DeleteFunction": {C.OK, C.INVALID_ARGUMENT, C.NOT_FOUND, *_GLOBUS},
    "GetTaskGroup": {C.OK, C.INVALID_ARGUMENT, C.NOT_FOUND},
    "GetAllowedFunctions": {C.OK, C.INVALID_ARGUMENT, C.NOT_FOUND, *_GLOBUS},
    "StopEndpoint": {C.INVALID_ARGUMENT, C.NOT_FOUND, C.FAILED_PRECONDITION, *_GLOBUS},
    "DeleteEndpoint": {C.INVALID_ARGUMENT, C.NOT_FOUND, C.FAILED_PRECONDITION, *_GLOBUS},
    "GetServiceVersion": {C.OK, *_GLOBUS},
    "ListFunctions": {C.OK},
}
#: Raw bytes either parse as some message of the method or are refused as such.
RAW_ALLOWED = {name: allowed | {C.INVALID_ARGUMENT} for name, allowed in ALLOWED.items()}


@script_function
def echo(*args, **kwargs):
    return [args, kwargs]


# ------------------------------------------------------------------ the daemon


@dataclass
class World:
    """The daemon under test and the valid values strategies mix in."""

    daemon: LoginlessDaemon
    stub: GatewayStub
    channel: grpc.Channel
    function_ids: list[str]
    #: Functions for DeleteFunction alone: the others must stay runnable.
    deletable_ids: list[str]
    task_ids: list[str]
    task_group_ids: list[str]
    standin_endpoint: str
    token: str
    before: Usage
    #: "ci", or "soak" once a soak test ran.
    profile: str = "ci"
    statuses: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    task_outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def pid(self) -> int:
        assert self.daemon.process is not None
        return self.daemon.process.pid

    def report(self, seconds: float) -> dict[str, Any]:
        statuses = {rpc: dict(counts) for rpc, counts in sorted(self.statuses.items())}
        return {
            "profile": self.profile,
            "seconds": round(seconds, 1),
            "cases": {rpc: sum(c.values()) for rpc, c in statuses.items()},
            "total_cases": sum(sum(c.values()) for c in statuses.values()),
            "statuses": statuses,
            "accepted_local_tasks": dict(self.task_outcomes),
            "daemon_before": self.before.as_dict(),
            "daemon_after": Usage.of(self.pid).as_dict(),
        }


@pytest.fixture(scope="module")
def world(standin_service: StandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    state = tmp_path_factory.mktemp("fuzz") / "state"
    daemon = LoginlessDaemon(state, standin_service.env(service_account=False)).start()
    channel = grpc.insecure_channel(
        f"unix:{daemon.socket_path}",
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    stub = GatewayStub(channel)
    try:
        function_ids = [
            stub.RegisterFunction(r).function_id
            for r in (
                pb.RegisterFunctionRequest(
                    function_name="echo",
                    function_code=Serializer().function_code(echo),
                    serialized=True,
                ),
                pb.RegisterFunctionRequest(
                    function_name="f", function_code="def f(*a, **k):\n    return a, k\n"
                ),
                # Accepted (it parses and defines f) but cannot run: its tasks must
                # fail, not hang.
                pb.RegisterFunctionRequest(
                    function_name="f",
                    function_code="import no_such_module_gcgate\n\ndef f(*a, **k):\n    pass\n",
                ),
            )
        ]
        run = stub.Run(
            pb.RunRequest(
                endpoint_id="local",
                function_id=function_ids[0],
                json_arguments=pb.JsonArguments(args_json="[1]"),
            )
        )
        done = stub.GetResult(pb.GetResultRequest(task_id=run.task_id, wait_seconds=60))
        assert not done.pending, done
        deletable_ids = [
            stub.RegisterFunction(
                pb.RegisterFunctionRequest(function_name=name, function_code=f"def {name}(): pass")
            ).function_id
            for name in ("gone", "going")
        ]
        user = standin_service.auth.add_user("fuzz@example.org")
        world = World(
            daemon=daemon,
            stub=stub,
            channel=channel,
            function_ids=function_ids,
            deletable_ids=deletable_ids,
            task_ids=[run.task_id],
            task_group_ids=[run.task_group_id],
            standin_endpoint=standin_service.endpoint_id,
            token=standin_service.auth.mint_token(user),
            before=Usage.of(daemon.process.pid),  # type: ignore[union-attr]
        )
        started = time.monotonic()
        yield world
        report = world.report(time.monotonic() - started)
        path = tmp_path_factory.getbasetemp() / f"fuzz-rpc-{world.profile}.json"
        path.write_text(json.dumps(report, indent=2))
        print(f"\n{report['total_cases']} fuzz cases -> {path}\n{json.dumps(report)}")
        assert daemon.stop() == 0, daemon.log()
    finally:
        channel.close()
        daemon.close()


# ---------------------------------------------------------------- strategies

#: Any code point but surrogates (protobuf strings are UTF-8), NULs and controls included.
ODD = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
HUGE = st.builds(
    lambda unit, n: unit * n,
    st.sampled_from(["a", "\x00", "é", "\U0001f600", "[", "\n", "9", "-"]),
    st.integers(5_000, 1_000_000),
)
UUIDISH = st.uuids().flatmap(
    lambda u: st.sampled_from(
        [
            str(u),
            str(u).upper(),
            f"{{{u}}}",
            u.hex,
            f"urn:uuid:{u}",
            str(u)[:-1],
            f"{u}\x00",
            f" {u}",
            f"{u}{u}",
            "00000000-0000-0000-0000-000000000000",
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
        ]
    )
)


@st.composite
def mostly(draw: st.DrawFn, valid: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> Any:
    """``valid`` three times in four, so a request with one bad field among several
    still gets past the other fields' checks and every check is reached. (A coin
    from st.randoms: one_of and sampled_from favour the rarer branch.)"""
    coin = draw(st.randoms(use_true_random=False)).random()
    return draw(valid if coin < 0.75 else bad)


def text(*valid: str) -> st.SearchStrategy[str]:
    """A string field: one of ``valid``, or empty, odd, huge or UUID-shaped text."""
    bad = st.one_of(st.just(""), ODD, HUGE, UUIDISH)
    return mostly(st.sampled_from(valid), bad) if valid else bad


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=10),
)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ODD, inner, max_size=4),
    max_leaves=12,
)
JSON_TEXT = st.one_of(
    JSONISH.map(json.dumps),
    st.dictionaries(ODD, JSONISH, max_size=4).map(json.dumps),
    st.integers(100, 5000).map(lambda n: "[" * n + "]" * n),
    st.integers(100, 5000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.integers(4000, 50_000).map(lambda n: "[" + "9" * n + "]"),
    st.sampled_from(
        ["[1e999]", "[NaN, -Infinity]", "{}", "[]", "null", "1", '"x"', "[1,", "{'a': 1}"]
    ),
    ODD,
    st.just(""),
)
JSON_ARGS = st.builds(
    pb.JsonArguments,
    args_json=mostly(st.lists(JSONISH, max_size=4).map(json.dumps), JSON_TEXT),
    kwargs_json=mostly(st.dictionaries(ODD, JSONISH, max_size=4).map(json.dumps), JSON_TEXT),
)

SERIALIZERS = (Serializer(), Serializer(strategy_data=JSONData()))
VALID_PAYLOAD = st.builds(
    lambda args, kwargs, serde: serde.task_payload(args, kwargs),
    st.lists(JSONISH, max_size=3),
    # Keyword names need not be identifiers: f(**{"a b": 1}) fails on the endpoint.
    st.dictionaries(ODD, JSONISH, max_size=3),
    st.sampled_from(SERIALIZERS),
)
HEADERS = st.one_of(
    st.sampled_from(["00\n", "11\n", "13\n", "01\n", "st\n", "zz\n", "", "0", "\n\n\n"]),
    st.text(max_size=3),
)


@st.composite
def damaged(draw: st.DrawFn, valid: st.SearchStrategy[str]) -> str:
    """A wire-format string, then damaged the way a buggy client or a torn write would."""
    packed = draw(valid)
    frames = unpack_buffers(packed)
    how = draw(
        st.sampled_from(["none", "header", "truncate", "extend", "length", "body", "frames", "raw"])
    )
    if how == "header":
        i = draw(st.integers(0, len(frames) - 1))
        frames[i] = draw(HEADERS) + frames[i][3:]
        return pack_buffers(frames)
    if how == "truncate":
        return packed[: draw(st.integers(0, max(len(packed) - 1, 0)))]
    if how == "extend":
        return packed + draw(st.one_of(ODD, st.just("3\n00\n"), VALID_PAYLOAD))
    if how == "length":
        bad = draw(st.sampled_from(["-1", "x", "", " 5", "9" * 5000, "\u0663", "1e3"]))
        return bad + packed[packed.index("\n") :]
    if how == "body":
        i = draw(st.integers(0, len(frames) - 1))
        frames[i] = frames[i][:3] + draw(st.one_of(ODD, HUGE, st.just("!!!!\n")))
        return pack_buffers(frames)
    if how == "frames":
        return pack_buffers(draw(st.lists(st.sampled_from([*frames, "00\n", ""]), max_size=4)))
    if how == "raw":
        return draw(st.one_of(ODD, HUGE))
    return packed


PAYLOAD = damaged(VALID_PAYLOAD)


@st.composite
def registrations(draw: st.DrawFn) -> pb.RegisterFunctionRequest:
    """A serialized or source-text function, mostly consistent with its name."""
    serialized = draw(st.booleans())
    if serialized:
        name, code = "echo", draw(damaged(st.just(Serializer().function_code(echo))))
    else:
        name = draw(st.sampled_from(["f", "_", "é"]))
        code = draw(
            mostly(
                st.sampled_from([f"def {name}(*a, **k):\n    return a\n", f"{name} = print"]),
                st.one_of(st.just(f"def {name}(:"), ODD, HUGE),
            )
        )
    return pb.RegisterFunctionRequest(
        function_name=draw(
            mostly(st.just(name), st.one_of(ODD, HUGE, st.integers(1, 200_000).map("f".__mul__)))
        ),
        function_code=code,
        serialized=draw(mostly(st.just(serialized), st.just(not serialized))),
        meta=draw(
            st.builds(pb.FunctionMeta, python_version=ODD, sdk_version=ODD, serde_identifier=ODD)
        ),
        description=draw(st.one_of(st.just(""), ODD, HUGE)),
        public=draw(st.booleans()),
        group=draw(mostly(st.just(""), st.one_of(UUIDISH, ODD))),
    )


RESULT_SERIALIZERS = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "globus_compute_sdk.serialize.JSONData",
                "globus_compute_sdk.serialize.DillDataBase64",
                "JSONData",
                "os.system",
                "no.such.Module",
                "",
            ]
        ),
        ODD,
    ),
    max_size=3,
)


OPTIONS = mostly(
    st.one_of(
        st.none(),
        st.builds(
            pb.SubmitOptions,
            result_serializers=st.sampled_from(
                [["globus_compute_sdk.serialize.JSONData"], ["no.such.Strategy"]]
            ),
        ),
    ),
    st.builds(
        pb.SubmitOptions,
        task_group_id=st.one_of(st.just(""), UUIDISH, ODD),
        resource_specification_json=st.one_of(st.just(""), JSON_TEXT),
        user_endpoint_config_json=st.one_of(st.just(""), JSON_TEXT),
        result_serializers=RESULT_SERIALIZERS,
        user_runtime_json=st.one_of(st.just(""), JSON_TEXT),
    ),
)


@st.composite
def run_requests(draw: st.DrawFn, world: World) -> pb.RunRequest:
    """A payload or JSON arguments (mostly one of the two, as documented)."""
    request = pb.RunRequest(
        endpoint_id=draw(endpoints(world)),
        function_id=draw(text(*world.function_ids)),
        options=draw(OPTIONS),
    )
    given = draw(mostly(st.sampled_from(["payload", "json"]), st.sampled_from(["both", ""])))
    if given in ("payload", "both"):
        request.payload = draw(PAYLOAD)
    if given in ("json", "both"):
        request.json_arguments.CopyFrom(draw(JSON_ARGS))
    return request


def endpoints(world: World) -> st.SearchStrategy[str]:
    return text(
        "local", LOCAL_ENDPOINT_ID, "LOCAL", LOCAL_ENDPOINT_ID.upper(), world.standin_endpoint
    )


def endpoints_to_spare(world: World) -> st.SearchStrategy[str]:
    """Endpoint ids for calls that stop or delete one: never the stand-in's own."""
    return text("local", LOCAL_ENDPOINT_ID, "LOCAL", LOCAL_ENDPOINT_ID.upper())


def task_id_lists(world: World) -> st.SearchStrategy[list[str]]:
    ids = text(*world.task_ids)
    return st.one_of(
        st.lists(ids, max_size=10),
        st.builds(lambda n: world.task_ids[:1] * n, st.integers(1, 20_000)),
    )


def requests(world: World) -> dict[str, st.SearchStrategy[Any]]:
    """A strategy per RPC for its request message."""
    functions = text(*world.function_ids)
    return {
        "Status": st.just(pb.StatusRequest()),
        "RegisterFunction": registrations(),
        "GetFunction": st.builds(pb.GetFunctionRequest, function_id=functions),
        "Run": run_requests(world),
        "BatchRun": st.builds(
            pb.BatchRunRequest,
            endpoint_id=endpoints(world),
            tasks=st.lists(
                st.builds(
                    pb.BatchTasks,
                    function_id=functions,
                    payloads=st.lists(PAYLOAD, max_size=4),
                    json_arguments=mostly(st.just([]), st.lists(JSON_ARGS, max_size=2)),
                ),
                max_size=3,
            ),
            options=OPTIONS,
        ),
        "GetResult": st.builds(
            pb.GetResultRequest,
            task_id=text(*world.task_ids),
            wait_seconds=st.one_of(
                st.sampled_from([0.0, -1.0, float("nan"), float("inf"), -float("inf"), 1e308]),
                st.floats(0, 1),
            ),
        ),
        "GetBatchResult": st.builds(pb.GetBatchResultRequest, task_ids=task_id_lists(world)),
        "WatchTasks": st.builds(pb.WatchTasksRequest, task_ids=task_id_lists(world)),
        "WatchTaskBatches": st.builds(pb.WatchTasksRequest, task_ids=task_id_lists(world)),
        "GetEndpointStatus": st.builds(pb.EndpointRequest, endpoint_id=endpoints(world)),
        "GetEndpointMetadata": st.builds(pb.EndpointRequest, endpoint_id=endpoints(world)),
        "ListTasks": st.builds(
            pb.ListTasksRequest,
            limit=st.integers(-(2**31), 2**31 - 1),
            status=text("pending", "success", "failed", "cancelled", "running", "waiting-for-ep"),
            include_results=st.booleans(),
            function_id=text(*world.function_ids),
            since=st.floats(),
            endpoint_id=endpoints(world),
        ),
        "StartLogin": st.builds(pb.StartLoginRequest, force=st.booleans()),
        "CompleteLogin": st.builds(pb.CompleteLoginRequest, login_id=text(), auth_code=text()),
        "Logout": st.just(pb.LogoutRequest()),
        "ForgetTasks": st.builds(
            pb.ForgetTasksRequest,
            task_ids=st.lists(st.uuids().map(str) | text(), max_size=5),
            in_flight=st.booleans(),
        ),
        # Ids of no task (or not ids): the world's tasks stay as they are.
        "CancelTasks": st.builds(
            pb.CancelTasksRequest, task_ids=st.lists(st.uuids().map(str) | text(), max_size=5)
        ),
        "PurgeTasks": st.builds(
            pb.PurgeTasksRequest,
            status=text("success", "failed", "pending"),
            older_than_seconds=st.floats(),
            dry_run=st.booleans(),
        ),
        "GetMetrics": st.just(pb.GetMetricsRequest()),
        "WhoAmI": st.just(pb.WhoAmIRequest()),
        "ListEndpoints": st.builds(pb.ListEndpointsRequest, role=text("owner", "any")),
        "DeleteFunction": st.builds(
            pb.DeleteFunctionRequest, function_id=text(*world.deletable_ids)
        ),
        "GetTaskGroup": st.builds(
            pb.GetTaskGroupRequest, task_group_id=text(*world.task_group_ids)
        ),
        "GetAllowedFunctions": st.builds(pb.EndpointRequest, endpoint_id=endpoints(world)),
        "StopEndpoint": st.builds(pb.EndpointRequest, endpoint_id=endpoints_to_spare(world)),
        "DeleteEndpoint": st.builds(pb.EndpointRequest, endpoint_id=endpoints_to_spare(world)),
        "GetServiceVersion": st.just(pb.ServiceVersionRequest()),
        "ListFunctions": st.builds(
            pb.ListFunctionsRequest,
            limit=st.integers(-(2**31), 2**31 - 1),
            name=text("echo", "f"),
            include_deleted=st.booleans(),
        ),
    }


def metadata(world: World) -> st.SearchStrategy[tuple[tuple[str, str], ...]]:
    """No token (most calls), the stand-in user's valid token, or a bogus one."""
    printable = st.text(
        st.sampled_from(string.ascii_letters + string.digits + "-._~+/="), max_size=60
    )
    return st.one_of(
        st.just(()),
        st.just((("authorization", f"Bearer {world.token}"),)),
        printable.map(lambda t: (("authorization", f"Bearer {t}"),)),
        printable.map(lambda t: (("authorization", t),)),
    )


# ------------------------------------------------------------------ checking


def call(world: World, rpc: str, request: Any, md: Any = ()) -> tuple[grpc.StatusCode, str, Any]:
    """Send one request; the status, details and response (None unless OK)."""
    method = getattr(world.stub, rpc)
    try:
        response = method(request, metadata=md, timeout=CALL_TIMEOUT)
        if SERVICE.methods_by_name[rpc].server_streaming:
            response = list(response)
        return C.OK, "", response
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or "", None


def check_status(world: World, rpc: str, code: grpc.StatusCode, details: str, allowed: Any) -> None:
    """The status is one the RPC documents; its details are short human text."""
    world.statuses[rpc][code.name] += 1
    assert code in allowed, f"{rpc} answered {code.name}: {details[:2000]!r}"
    if code is C.OK:
        return
    assert details.strip(), f"{rpc} answered {code.name} without details"
    assert len(details) <= MAX_DETAILS, f"{rpc}: {len(details)}-character details {details[:300]!r}"
    assert not any(leak in details for leak in LEAKS), f"{rpc} leaked internals: {details!r}"
    assert world.token not in details, f"{rpc} echoed the client's token"


def check_accepted_tasks(world: World, task_ids: list[str]) -> None:
    """Tasks the daemon accepted on the local endpoint end, failed with a message if broken."""
    for task_id in task_ids:
        record = world.stub.GetResult(
            pb.GetResultRequest(task_id=task_id, wait_seconds=CALL_TIMEOUT),
            timeout=CALL_TIMEOUT + 10,
        )
        assert not record.pending, (
            f"accepted task {task_id} still {record.status} after {CALL_TIMEOUT}s"
        )
        world.task_outcomes[record.status] += 1
        if record.status == "failed":
            assert record.exception.strip(), record
        world.task_ids.append(task_id)


def local_tasks(world: World, rpc: str, response: Any) -> list[str]:
    if rpc == "Run" and response.endpoint_id == LOCAL_ENDPOINT_ID:
        return [response.task_id]
    if rpc == "BatchRun" and response.endpoint_id == LOCAL_ENDPOINT_ID:
        return [t for group in response.tasks for t in group.task_ids]
    return []


def alive(world: World) -> None:
    assert world.stub.Status(pb.StatusRequest(), timeout=CALL_TIMEOUT).pid == world.pid


def fuzz_settings(examples: int, derandomize: bool) -> settings:
    """The hypothesis settings of every fuzz run: ``examples`` calls to the real daemon,
    no deadline (a loaded machine is slow, not wrong), no example database, no health
    checks."""
    return settings(
        max_examples=examples,
        derandomize=derandomize,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


def fuzz(world: World, rpc: str, examples: int, derandomize: bool) -> None:
    """Run ``examples`` hypothesis examples of ``rpc`` against the daemon."""
    request_strategy = requests(world)[rpc]
    md_strategy = metadata(world)

    @fuzz_settings(examples, derandomize)
    @given(data=st.data())
    def one(data: st.DataObject) -> None:
        request = data.draw(request_strategy, label="request")
        md = data.draw(md_strategy, label="metadata")
        if rpc == "CompleteLogin" and data.draw(st.booleans(), label="after StartLogin"):
            request.login_id = world.stub.StartLogin(pb.StartLoginRequest()).login_id
        code, details, response = call(world, rpc, request, md)
        check_status(world, rpc, code, details, ALLOWED[rpc])
        if code is C.OK:
            check_accepted_tasks(world, local_tasks(world, rpc, response))
        alive(world)

    one()


def fuzz_raw(world: World, rpc: str, examples: int, derandomize: bool) -> None:
    """Random bytes as the serialized request of ``rpc``."""
    method = SERVICE.methods_by_name[rpc]
    path = f"/{SERVICE.full_name}/{rpc}"
    raw = (world.channel.unary_stream if method.server_streaming else world.channel.unary_unary)(
        path, request_serializer=bytes, response_deserializer=bytes
    )

    @fuzz_settings(examples, derandomize)
    @given(body=st.binary(max_size=200))
    def one(body: bytes) -> None:
        try:
            answer = raw(body, timeout=CALL_TIMEOUT)
            if method.server_streaming:
                list(answer)
            code, details = C.OK, ""
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
        check_status(world, f"{rpc} (raw bytes)", code, details, RAW_ALLOWED[rpc])
        alive(world)

    one()


# --------------------------------------------------------------------- tests

RPCS = list(SERVICE.methods_by_name)
#: Login RPCs change the daemon's login state; raw bytes there are covered by the
#: typed fuzzing, and random bytes could parse as a real StartLogin/Logout.
RAW_RPCS = [r for r in RPCS if r not in ("StartLogin", "CompleteLogin", "Logout")]


def test_every_rpc_has_a_strategy_and_allowed_statuses(world: World) -> None:
    """A new RPC in gateway.proto fails here until it is fuzzed too."""
    assert not set(RPCS) - set(requests(world))
    assert not set(RPCS) - set(ALLOWED)


@pytest.mark.parametrize("rpc", RPCS)
def test_fuzz_rpc(world: World, rpc: str) -> None:
    fuzz(world, rpc, CI_EXAMPLES, derandomize=True)


@pytest.mark.parametrize("rpc", RAW_RPCS)
def test_fuzz_raw_bytes(world: World, rpc: str) -> None:
    fuzz_raw(world, rpc, CI_EXAMPLES // 2, derandomize=True)


#: A soak run's 1,000 calls of one RPC may take minutes where each call waits on
#: the Auth stand-in (CompleteLogin: ~0.2 s each on 2 busy cores), past the
#: suite's 180 s default.
SOAK_TIMEOUT = 900


@pytest.mark.soak
@pytest.mark.timeout(SOAK_TIMEOUT)
@pytest.mark.parametrize("rpc", RPCS)
def test_fuzz_rpc_soak(world: World, rpc: str) -> None:
    world.profile = "soak"
    fuzz(world, rpc, SOAK_EXAMPLES, derandomize=False)


@pytest.mark.soak
@pytest.mark.timeout(SOAK_TIMEOUT)
@pytest.mark.parametrize("rpc", RAW_RPCS)
def test_fuzz_raw_bytes_soak(world: World, rpc: str) -> None:
    world.profile = "soak"
    fuzz_raw(world, rpc, SOAK_EXAMPLES // 4, derandomize=False)


def test_daemon_resources_stay_bounded(world: World) -> None:
    """After all the bad input: open fds are back near the start, memory bounded."""
    after = Usage.of(world.pid)
    assert after.fds <= world.before.fds + 16, (world.before, after)
    assert after.rss_kb <= world.before.rss_kb + 512 * 1024, (world.before, after)


# ------------------------------------------------- what the fuzzing found


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("args_json", "[" * 5000 + "]" * 5000, "more than 200 levels deep"),
        ("args_json", "[" * 201 + "]" * 201, "more than 200 levels deep"),
        ("kwargs_json", '{"a":' * 300 + "1" + "}" * 300, "more than 200 levels deep"),
        ("args_json", "[" + "9" * 5000 + "]", "integer longer than 4,300 digits"),
    ],
)
def test_json_arguments_too_deep_or_too_long_are_invalid(
    world: World, field: str, value: str, message: str
) -> None:
    """Were INTERNAL (RecursionError, int digit limit)."""
    code, details, _ = call(
        world,
        "Run",
        pb.RunRequest(
            endpoint_id="local",
            function_id=world.function_ids[0],
            json_arguments=pb.JsonArguments(**{field: value}),
        ),
    )
    assert (code, message in details) == (C.INVALID_ARGUMENT, True), details


def test_json_arguments_at_the_depth_limit_run(world: World) -> None:
    code, details, response = call(
        world,
        "Run",
        pb.RunRequest(
            endpoint_id="local",
            function_id=world.function_ids[0],
            json_arguments=pb.JsonArguments(args_json="[" * 200 + "]" * 200),
        ),
    )
    assert code is C.OK, details
    check_accepted_tasks(world, [response.task_id])


@pytest.mark.parametrize(
    "body", [b"\x0a\x03\xff\xfe\xfd", b"\xff\xff\xff\xff", b"\x0a\xff\xff\xff\xff\x0f"]
)
@pytest.mark.parametrize("rpc", ["GetResult", "WatchTasks", "Run"])
def test_undecodable_request_is_invalid_argument(world: World, rpc: str, body: bytes) -> None:
    """Were UNKNOWN ("Unexpected <class 'DecodeError'>") with a traceback in the log."""
    method = SERVICE.methods_by_name[rpc]
    path = f"/{SERVICE.full_name}/{rpc}"
    factory = world.channel.unary_stream if method.server_streaming else world.channel.unary_unary
    raw = factory(path, request_serializer=bytes, response_deserializer=bytes)
    with pytest.raises(grpc.RpcError) as caught:
        list(raw(body, timeout=CALL_TIMEOUT)) if method.server_streaming else raw(
            body, timeout=CALL_TIMEOUT
        )
    assert caught.value.code() is C.INVALID_ARGUMENT
    assert f"{rpc}: the request is not a valid message" in caught.value.details()
    assert "Unexpected [DecodeError]" not in world.daemon.log()


@pytest.mark.parametrize(
    ("rpc", "request_message", "message"),
    [
        (
            "RegisterFunction",
            pb.RegisterFunctionRequest(function_name="é" * 100_000, function_code="pass"),
            "does not define 'ééé",
        ),
        ("GetFunction", pb.GetFunctionRequest(function_id="\U0001f600" * 5000), "is not a UUID"),
        (
            "Run",
            pb.RunRequest(
                endpoint_id="local", function_id=LOCAL_ENDPOINT_ID, payload="x" * 9000 + "\n"
            ),
            "not valid pack_buffers framing",
        ),
    ],
)
def test_huge_values_are_quoted_short(
    world: World, rpc: str, request_message: Any, message: str
) -> None:
    """A 5,000-character value quoted whole made a trailer the client dropped, as
    RESOURCE_EXHAUSTED "received metadata size exceeds soft limit"."""
    code, details, _ = call(world, rpc, request_message)
    assert code is C.INVALID_ARGUMENT, details
    assert message in details and len(details) < 400, details


def test_unknown_endpoint_role_is_invalid_argument(world: World) -> None:
    """Was sent to Globus, and a long one came back UNAVAILABLE with an HTML 414 page."""
    for role in ("x" * 10_000, "owners"):
        code, details, _ = call(world, "ListEndpoints", pb.ListEndpointsRequest(role=role))
        assert code is C.INVALID_ARGUMENT and "is not one of owner, any" in details, details
    code, details, _ = call(world, "ListEndpoints", pb.ListEndpointsRequest(role="any"))
    assert code is C.OK, details


def test_a_token_batch_whose_first_function_has_no_tasks_runs(world: World) -> None:
    """Was UNAVAILABLE "submission to Globus Compute failed: KeyError" (make soak): a
    BatchRun with a client's token to a Globus endpoint, its first function group
    empty. The empty group gets no ids; the task of the second runs."""
    token = (("authorization", f"Bearer {world.token}"),)
    request = pb.BatchRunRequest(
        endpoint_id=world.standin_endpoint,
        tasks=[
            pb.BatchTasks(function_id=world.function_ids[1]),
            pb.BatchTasks(
                function_id=world.function_ids[0],
                json_arguments=[pb.JsonArguments(args_json="[7]")],
            ),
        ],
    )
    code, details, response = call(world, "BatchRun", request, token)
    assert code is C.OK, details
    assert [len(group.task_ids) for group in response.tasks] == [0, 1]
    record = world.stub.GetResult(
        pb.GetResultRequest(task_id=response.tasks[1].task_ids[0], wait_seconds=CALL_TIMEOUT),
        metadata=token,
        timeout=CALL_TIMEOUT + 10,
    )
    assert (record.status, record.exception) == ("success", ""), record


@pytest.mark.parametrize("unit", ["a", "%", "é", "\U0001f600", "\x00"])
def test_any_gateway_error_fits_a_trailer(unit: str) -> None:
    """Whatever raised it: percent-encoded, the message stays under the 8 KiB trailer."""
    text = str(InvalidArgument("bad: " + unit * 50_000))
    wire = sum(1 if " " <= c <= "~" and c != "%" else 3 * len(c.encode()) for c in text)
    assert text.startswith("bad: ") and text.endswith("(message cut: too long)")
    assert wire <= 6100
