"""Units of the Globus backend that need no service: the rate limiter's arithmetic,
request bodies against the real SDK, answer splitting, outcome mapping, the store's
Globus function map, the submit ledger."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gcgated.backends.base import SubmitGroup
from gcgated.backends.globus import pipeline as pipeline_module
from gcgated.backends.globus.http import AnswerLost
from gcgated.backends.globus.ledger import TABLE as LEDGER_TABLE
from gcgated.backends.globus.ledger import Ledger
from gcgated.backends.globus.limiter import RateLimiter
from gcgated.backends.globus.pipeline import (
    MAY_HAVE_RUN,
    Lane,
    Pipeline,
    Queued,
    Unit,
    _pair,
    lane_doc,
    lane_key,
)
from gcgated.backends.globus.submit import (
    BODY_OVERHEAD,
    FUNCTIONS_TABLE,
    FunctionRegistry,
    json_size,
    registration_body,
)
from gcgated.backends.globus.tracker import outcome_from
from gcgated.caller import DAEMON, Caller
from gcgated.errors import NotFound, ServiceUnavailable
from gcgated.model import SubmitOptions
from gcgated.store import Store
from globus_compute_sdk.sdk.client import (
    FunctionRegistrationData,
    FunctionRegistrationMetadata,
)

pytestmark = pytest.mark.fast

# ------------------------------------------------------------------ limiter


def max_in_window(starts: list[float], window: float) -> int:
    starts = sorted(starts)
    best = 0
    j = 0
    for i, t in enumerate(starts):
        while starts[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


@pytest.mark.parametrize(("limit", "window", "burst"), [(18, 10.0, 3), (5, 1.0, 5), (3, 2.0, 1)])
def test_limiter_never_exceeds_its_window(limit: int, window: float, burst: int) -> None:
    limiter = RateLimiter(limit, window, burst)
    starts = [limiter.reserve() for _ in range(10 * limit)]
    assert starts == sorted(starts)
    # Slightly less than the window: a request exactly `window` later is allowed.
    assert max_in_window(starts, window - 1e-6) == limit
    # Only `burst` go at once, at the start and at any later moment.
    first = starts[0]
    assert sum(1 for s in starts if s - first < 1e-3) == burst
    assert max_in_window(starts, 1e-3) == burst
    # Sustained, they average window/limit apart.
    assert starts[-1] - starts[0] >= (len(starts) - limit) * window / limit - 1e-6


def test_limiter_pause_holds_every_request_back() -> None:
    limiter = RateLimiter(18, 10.0, 3)
    before = time.monotonic()
    limiter.pause(5.0)
    assert limiter.reserve() >= before + 5.0
    assert limiter.describe()["throttled"] == 1
    assert limiter.describe()["paused_seconds"] > 4.0


def test_limiter_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0, 10.0)


# -------------------------------------------------------- request bodies


FUNCTION = "7f0c3d1e-0000-5000-8000-000000000001"


def stored_function(**overrides: object) -> dict:
    record = {
        "function_id": FUNCTION,
        "function_name": "double",
        "function_code": "10\nabc\n",
        "serialized": True,
        "meta": {"python_version": "3.11.4", "sdk_version": "4.19.0", "serde_identifier": ""},
        "description": "",
        "public": False,
        "group": "",
    }
    record.update(overrides)
    return record


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"description": "doubles", "public": True},
        {"group": "0b7f3e1a-7c55-4e4a-9a0f-3a4f6f1c2d3e", "serialized": False},
        {"meta": {"python_version": "3.11.4", "sdk_version": "4.19", "serde_identifier": "10"}},
    ],
)
def test_registration_body_is_the_sdks(extra: dict) -> None:
    record = stored_function(**extra)
    meta = {k: v for k, v in record["meta"].items() if v}
    sdk = FunctionRegistrationData(
        function_name=record["function_name"],
        function_code=record["function_code"],
        metadata=FunctionRegistrationMetadata(**meta),
        description=record["description"] or None,
        public=record["public"],
        group=record["group"] or None,
        serialized=record["serialized"],
    ).to_dict()
    assert registration_body(record) == sdk


# ----------------------------------------------------- the pipeline's pieces


def queued(task_id: str, function_id: str, payload: str = "p") -> Queued:
    return Queued(task_id, stored_function(function_id=function_id), payload)


def waiting_unit(loop: asyncio.AbstractEventLoop, groups: list[tuple[str, int]]) -> Unit:
    """A client's submission waiting for its ids: ``n`` tasks of each function."""
    tasks = [queued("", fid, f"p{fid}-{i}") for fid, n in groups for i in range(n)]
    return Unit(tasks, loop.create_future(), size=10 * len(tasks))


def own_unit(task_id: str, function_id: str, payload: str = "p") -> Unit:
    """A task the daemon accepted under its own id (may go in any request)."""
    return Unit([queued(task_id, function_id, payload)], size=json_size(payload))


class FakeLedger:
    """Records what the pipeline writes to the ledger."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def sending(self, task_ids: list[str]) -> None:
        self.calls.append(("sending", list(task_ids)))

    def sent(self, rows: list[tuple[str, str, str]]) -> None:
        self.calls.append(("sent", list(rows)))

    def queued(self, rows: list[tuple[str, dict]]) -> None:
        self.calls.append(("queued", [task_id for task_id, _ in rows]))


def bare_pipeline(max_tasks: int = 5, max_bytes: int = BODY_OVERHEAD + 100) -> Pipeline:
    return Pipeline(
        limiter=RateLimiter(18, 10.0),
        registry=FunctionRegistry(None, None, lambda caller: "me"),  # type: ignore[arg-type]
        ledger=FakeLedger(),  # type: ignore[arg-type]
        window=0.02,
        max_tasks=max_tasks,
        max_bytes=max_bytes,
    )


def test_service_ids_pair_with_the_tasks_in_order() -> None:
    tasks = [queued("d1", "fa"), queued("d2", "fb"), queued("d3", "fa")]
    answer = {"tasks": {"GA": ["s1", "s3"], "GB": ["s2"]}}
    globus = {"fa": "GA", "fb": "GB"}
    assert _pair(answer, tasks, globus) == ["s1", "s2", "s3"]
    # Fewer ids than tasks: the service may have created them; not resent.
    with pytest.raises(AnswerLost, match="fewer task ids"):
        _pair({"tasks": {"GA": ["s1"], "GB": ["s2"]}}, tasks, globus)


def test_an_answer_is_split_per_unit_in_order() -> None:
    loop = asyncio.new_event_loop()
    try:
        pipeline = bare_pipeline()
        sent: list[list[tuple[str, str, str]]] = []
        pipeline.on_sent = sent.append
        a = waiting_unit(loop, [("fa", 2), ("fb", 1)])
        mine = own_unit("d1", "fb")
        b = waiting_unit(loop, [("fa", 1)])
        c = waiting_unit(loop, [("fb", 2), ("fa", 1)])
        batch = [a, mine, b, c]
        globus = {"fa": "GA", "fb": "GB"}
        answer = {
            "request_id": "r1",
            "task_group_id": "tg",
            "tasks": {"GA": ["a1", "a2", "a3", "a4"], "GB": ["b1", "b2", "b3", "b4"]},
        }
        tasks = [t for unit in batch for t in unit.tasks]
        pipeline._answer(batch, answer, _pair(answer, tasks, globus), home=True)
        assert [u.future.result().task_ids for u in (a, b, c)] == [  # type: ignore[union-attr]
            ["a1", "a2", "b1"],
            ["a3"],
            ["b3", "b4", "a4"],
        ]
        assert {u.future.result().request_id for u in (a, b, c)} == {"r1"}  # type: ignore[union-attr]
        assert {u.future.result().task_group_id for u in (a, b, c)} == {"tg"}  # type: ignore[union-attr]
        # The daemon's own task: the ledger first, then the backend, with its group.
        assert sent == [[("d1", "b2", "tg")]]
        assert pipeline.ledger.calls == [("sent", [("d1", "b2", "tg")])]  # type: ignore[attr-defined]
        # A task group the client named is not followed: others may consume its queue.
        named = own_unit("d2", "fa")
        pipeline._answer([named], {"task_group_id": "theirs"}, ["s9"], home=False)
        assert sent[-1] == [("d2", "s9", "")]
        short = {"tasks": {"GA": ["a1"], "GB": ["b1", "b2", "b3", "b4"]}}
        with pytest.raises(ServiceUnavailable, match="fewer task ids"):
            _pair(short, tasks, globus)
    finally:
        loop.close()


def test_a_request_never_splits_a_waiting_callers_unit() -> None:
    loop = asyncio.new_event_loop()
    try:
        pipeline = bare_pipeline(max_tasks=5)
        lane = Lane(DAEMON, "ep", SubmitOptions(task_group_id=""))
        units = [waiting_unit(loop, [("f", n)]) for n in (3, 2, 1, 7, 4, 1)]
        lane.units = list(units)
        taken = [pipeline._take(lane) for _ in range(4)]
        assert [[len(u.tasks) for u in request] for request in taken] == [[3, 2], [1], [7], [4, 1]]
        assert [u for request in taken for u in request] == units
        assert not lane.units
        # Bytes count too (each test unit is 10 bytes per task): 100 bytes of room.
        by_size = [waiting_unit(loop, [("f", 1)]) for _ in range(3)]
        for unit, size in zip(by_size, (60, 50, 40), strict=True):
            unit.size = size
        lane.units = list(by_size)
        assert [len(pipeline._take(lane)) for _ in range(2)] == [1, 2]
    finally:
        loop.close()


def test_a_request_takes_the_daemons_tasks_that_fit() -> None:
    pipeline = bare_pipeline(max_tasks=3)
    lane = Lane(DAEMON, "ep", SubmitOptions(task_group_id=""))
    lane.units = [own_unit(f"t{n}", "f") for n in range(7)]
    assert [len(pipeline._take(lane)) for _ in range(3)] == [3, 3, 1]
    assert not lane.units
    # By bytes (as JSON in the body): 60 + 50 > 100, so one each; a task larger
    # than a request still goes, alone.
    lane.units = [
        own_unit("a", "f", "x" * 56),
        own_unit("b", "f", "x" * 46),
        own_unit("c", "f", "x" * 500),
    ]
    taken = [[t.task_id for u in pipeline._take(lane) for t in u.tasks] for _ in range(3)]
    assert taken == [["a"], ["b"], ["c"]]


def test_payload_size_is_counted_as_json() -> None:
    payload = "01\n" + 'ab"c' * 10
    assert json_size(payload) == len(json.dumps(payload)) + 2 > len(payload)


def test_lane_key_separates_what_cannot_share_a_request() -> None:
    def key(caller: Caller, endpoint_id: str, options: SubmitOptions) -> tuple[str, str]:
        return lane_key(caller, lane_doc(endpoint_id, options))

    base = SubmitOptions(task_group_id="", resource_specification={"a": 1, "b": 2})
    same = SubmitOptions(task_group_id="", resource_specification={"b": 2, "a": 1})
    assert key(DAEMON, "ep", base) == key(DAEMON, "ep", same)
    for other in (
        SubmitOptions(task_group_id="", resource_specification={"a": 2, "b": 2}),
        SubmitOptions(task_group_id="tg", resource_specification={"a": 1, "b": 2}),
        SubmitOptions(
            task_group_id="", resource_specification={"a": 1, "b": 2}, result_serializers=("x",)
        ),
        SubmitOptions(
            task_group_id="", resource_specification={"a": 1, "b": 2}, user_endpoint_config={}
        ),
        SubmitOptions(
            task_group_id="", resource_specification={"a": 1, "b": 2}, user_runtime={"v": 1}
        ),
    ):
        assert key(DAEMON, "ep", other) != key(DAEMON, "ep", base)
    assert key(DAEMON, "ep2", base) != key(DAEMON, "ep", base)
    # Two tokens never share a request, nor a token the daemon's login.
    alice, bob = Caller("alice-token"), Caller("bob-token")
    assert key(alice, "ep", base) == key(Caller("alice-token"), "ep", same)
    assert len({key(c, "ep", base) for c in (DAEMON, alice, bob)}) == 3


# ------------------------------------------- the pipeline, on a fake service


class FakeService:
    """``ComputeAPI.call`` answered in memory: registrations and submits."""

    def __init__(self) -> None:
        self.registered: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        self.tokens: list[str | None] = []
        #: Raised by the next submits, in order.
        self.submit_errors: list[Exception] = []
        #: Task groups the service knows (it made them).
        self.groups: set[str] = set()

    async def call(self, what: str, request: Any, **kwargs: Any) -> dict[str, Any]:
        self.tokens.append(kwargs.get("token"))
        return request(None, self)

    def register_function(self, body: dict[str, Any]) -> dict[str, Any]:
        self.registered.append(body["function_name"])
        return {"function_uuid": f"G-{body['function_name']}"}

    def submit(self, endpoint_id: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.submit_errors:
            raise self.submit_errors.pop(0)
        group = body.get("task_group_id")
        if group and group not in self.groups:
            error = NotFound(f"TASK_GROUP_NOT_FOUND: Task group {group} not found")
            error.service_code = "TASK_GROUP_NOT_FOUND"  # type: ignore[attr-defined]
            raise error
        self.bodies.append(body)
        n = len(self.bodies)
        if not group:
            group = f"tg{n}"
            self.groups.add(group)
        return {
            "request_id": f"r{n}",
            "task_group_id": group,
            "tasks": {g: [f"s{n}-{p}" for p in payloads] for g, payloads in body["tasks"].items()},
        }


@pytest.fixture
def piped(tmp_path: Path) -> Iterator[tuple[Pipeline, FakeService]]:
    """A pipeline on a fake service, a real store and ledger, a generous budget."""
    store = Store(tmp_path / "store", size_limit_bytes=1 << 30, retention_seconds=60)
    ledger = Ledger(store.table(LEDGER_TABLE))
    service = FakeService()
    registry = FunctionRegistry(
        store.table(FUNCTIONS_TABLE),
        service,  # type: ignore[arg-type]
        lambda caller: caller.key or "daemon",
    )
    pipeline = Pipeline(
        limiter=RateLimiter(1000, 1.0, 1000),
        registry=registry,
        ledger=ledger,
        window=0.005,
        max_tasks=10,
        max_bytes=1_000_000,
    )
    try:
        yield pipeline, service
    finally:
        store.close()


def run_async(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 10.0))


def test_a_function_without_tasks_gets_no_ids(piped: tuple[Pipeline, FakeService]) -> None:
    """make soak found a BatchRun with a client's token whose first function had no
    tasks answered UNAVAILABLE (KeyError: that function was never looked up)."""
    pipeline, service = piped
    empty, one = (
        stored_function(function_id="fa", function_name="a"),
        stored_function(function_id="fb", function_name="b"),
    )
    groups = [SubmitGroup(empty, []), SubmitGroup(one, ["p1"]), SubmitGroup(empty, [])]
    accepted = run_async(
        pipeline.submit(Caller("tok"), "ep", groups, SubmitOptions(task_group_id=""))
    )
    assert accepted.task_ids == [[], ["s1-p1"], []]
    assert (accepted.request_id, accepted.task_group_id) == ("r1", "tg1")
    # Only the function with a task was registered and sent, with the caller's token.
    assert service.registered == ["b"]
    assert [body["tasks"] for body in service.bodies] == [{"G-b": ["p1"]}]
    assert set(service.tokens) == {"tok"}


def test_a_waiting_caller_hears_its_requests_error(piped: tuple[Pipeline, FakeService]) -> None:
    pipeline, service = piped
    groups = [SubmitGroup(stored_function(), ["p1", "p2"])]
    options = SubmitOptions(task_group_id="")

    async def scenario() -> None:
        service.submit_errors = [
            NotFound("ENDPOINT_NOT_FOUND: no such endpoint"),
            AnswerLost("submitting 2 task(s): the answer was lost", "ReadTimeout"),
            ServiceUnavailable("Globus Compute is unavailable"),
        ]
        with pytest.raises(NotFound, match="ENDPOINT_NOT_FOUND"):
            await pipeline.submit(Caller("tok"), "ep", groups, options)
        with pytest.raises(AnswerLost, match="may have accepted and run these task"):
            await pipeline.submit(Caller("tok"), "ep", groups, options)
        with pytest.raises(ServiceUnavailable, match="unavailable"):
            await pipeline.submit(Caller("tok"), "ep", groups, options)
        accepted = await pipeline.submit(Caller("tok"), "ep", groups, options)
        assert accepted.task_ids == [["s1-p1", "s1-p2"]]

    run_async(scenario())
    assert (pipeline.requests, pipeline.tasks_submitted, pipeline.answers_lost) == (1, 2, 1)
    assert pipeline.waiting == 0


def test_the_daemons_tasks_wait_out_an_outage_and_are_never_resent_after_a_lost_answer(
    piped: tuple[Pipeline, FakeService], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, service = piped
    monkeypatch.setattr(pipeline_module, "RETRY_PAUSE", 0.05)
    sent: list[tuple[str, str, str]] = []
    failed: list[tuple[list[str], str]] = []
    pipeline.on_sent = sent.extend
    pipeline.on_failed = lambda ids, why: failed.append((ids, why))
    doc = lane_doc("ep", SubmitOptions(task_group_id=""))
    function = stored_function()

    async def scenario() -> None:
        service.submit_errors = [ServiceUnavailable("Globus Compute is unavailable")]
        pipeline.enqueue(doc, [Queued(f"d{n}", function, f"p{n}") for n in range(3)])
        while len(sent) < 3:
            await asyncio.sleep(0.01)
        service.submit_errors = [AnswerLost("the answer was lost", "ConnectionError")]
        pipeline.enqueue(doc, [Queued("d9", function, "p9")])
        while not failed:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)

    run_async(scenario())
    # Sent once the service was back, in order; the lost one failed, not resent.
    assert sent == [("d0", "s1-p0", "tg1"), ("d1", "s1-p1", "tg1"), ("d2", "s1-p2", "tg1")]
    assert failed == [(["d9"], MAY_HAVE_RUN.format(why="ConnectionError"))]
    assert len(service.bodies) == 1
    rows = pipeline.ledger.lookup(["d0", "d9"])
    assert rows == {
        "d0": {"state": "sent", "service_id": "s1-p0", "group": "tg1"},
        "d9": {"state": "sending"},
    }


def test_submits_join_their_callers_home_task_group(
    piped: tuple[Pipeline, FakeService],
) -> None:
    """Each caller's submits without a task group of the client's go to one service
    task group (one result queue); a client's group passes through; a home group
    the service forgot is replaced, the submit sent once more."""
    pipeline, service = piped
    function = stored_function()
    sent: list[tuple[str, str, str]] = []
    pipeline.on_sent = sent.extend
    plain = SubmitOptions(task_group_id="")
    doc = lane_doc("ep", plain)
    tok = Caller("tok")

    async def own(task_id: str) -> None:
        pipeline.enqueue(doc, [Queued(task_id, function, task_id)])
        while not any(t == task_id for t, _, _ in sent):
            await asyncio.sleep(0.005)

    async def scenario() -> list[str]:
        groups = [SubmitGroup(function, ["x"])]
        await own("d1")  # the first: the service makes tg1, the daemon's home
        await own("d2")
        mine = await pipeline.submit(tok, "ep", groups, plain)  # the token's own home
        again = await pipeline.submit(tok, "ep", groups, plain)
        given = await pipeline.submit(tok, "ep", groups, SubmitOptions(task_group_id="tg1"))
        service.groups.clear()  # the service forgot every group
        await own("d3")
        return [a.task_group_id for a in (mine, again, given)]

    token_groups = run_async(scenario())
    assert [group for _, _, group in sent] == ["tg1", "tg1", "tg6"]
    assert token_groups == ["tg3", "tg3", "tg1"]
    assert [b.get("task_group_id") for b in service.bodies] == [
        None,
        "tg1",
        None,
        "tg3",
        "tg1",
        None,  # after the refusal of tg1, without a group: a new home
    ]
    assert all(body["create_queue"] is True for body in service.bodies)
    assert pipeline.homes.get(DAEMON) == "tg6" and pipeline.homes.get(tok) == "tg3"
    assert pipeline.ledger.home_group("daemon") == "tg6"  # the login's, across restarts


# -------------------------------------------------------------- outcomes


def test_outcomes_from_task_documents() -> None:
    ok = outcome_from(
        "t1",
        {
            "status": "success",
            "result": "00\nabc",
            "completion_t": "1700000000.5",
            "details": {"os": "Linux"},
        },
    )
    assert ok is not None
    assert (ok.status, ok.result, ok.completion_t, ok.details) == (
        "success",
        "00\nabc",
        1700000000.5,
        {"os": "Linux"},
    )
    failed = outcome_from("t2", {"status": "failed", "exception": "Traceback ... ZeroDivision"})
    assert failed is not None and failed.status == "failed"
    assert failed.exception == "Traceback ... ZeroDivision"
    reason = outcome_from("t3", {"status": "FAILED", "reason": "endpoint lost"})
    assert reason is not None and reason.exception == "endpoint lost"
    empty = outcome_from("t4", {"status": "success"})
    assert empty is not None and empty.status == "failed"
    assert "no result" in (empty.exception or "")
    for pending in ("waiting-for-ep", "running", "waiting-for-launch", "unknown"):
        assert outcome_from("t5", {"status": pending}) is None


# ------------------------------------------------------------------ store


def open_store(path: Path) -> Store:
    return Store(path, size_limit_bytes=10**9, retention_seconds=60)


def test_the_registry_keeps_globus_function_ids_per_identity(tmp_path: Path) -> None:
    """Registered once per identity, ever: the ids are in the backend's own table."""

    def registry(store: Store, service: FakeService) -> FunctionRegistry:
        by_token = lambda caller: str(caller.token)  # noqa: E731
        return FunctionRegistry(store.table(FUNCTIONS_TABLE), service, by_token)  # type: ignore[arg-type]

    service = FakeService()
    store = open_store(tmp_path / "store")
    try:
        functions = registry(store, service)
        for who in ("alice", "alice", "bob"):
            assert run_async(functions.globus_id(Caller(who), stored_function())) == "G-double"
        assert service.registered == ["double", "double"]
        functions.forget("alice", FUNCTION)
        assert functions.known("alice", FUNCTION) is None
    finally:
        store.close()
    reopened = open_store(tmp_path / "store")
    try:
        functions = registry(reopened, service)
        assert functions.known("bob", FUNCTION) == "G-double"
        assert run_async(functions.globus_id(Caller("bob"), stored_function())) == "G-double"
        assert service.registered == ["double", "double"]
        assert reopened.counts()["functions"] == 0  # the backend's table, not the core's
    finally:
        reopened.close()


# ------------------------------------------------------------------ ledger


def test_the_ledger_keeps_each_tasks_state_across_a_reopen(tmp_path: Path) -> None:
    store = open_store(tmp_path / "store")
    ledger = Ledger(store.table(LEDGER_TABLE))
    lane = {"endpoint_id": "ep", "task_group_id": ""}
    ledger.queued([("t1", lane), ("t2", lane), ("t3", lane)], group="g1")
    ledger.sending(["t2", "t3"])
    ledger.sent([("t3", "s3", "g3")])
    store.close()
    store = open_store(tmp_path / "store")
    try:
        ledger = Ledger(store.table(LEDGER_TABLE))
        rows = ledger.lookup(["t1", "t2", "t3", "t4"])
        assert rows == {
            "t1": {"state": "queued", **lane},
            "t2": {"state": "sending"},
            "t3": {"state": "sent", "service_id": "s3", "group": "g3"},
        }
        assert ledger.is_group("g1") and not ledger.is_group("g2")
        ledger.forget(["t1", "t3"])
        assert list(ledger.lookup(["t1", "t2", "t3"])) == ["t2"]
    finally:
        store.close()


# ------------------------------------------------------------------ callers


def test_a_caller_never_shows_its_token() -> None:
    token = "Ag-secret-access-token-1234567890"
    caller = Caller.from_metadata([("user-agent", "x"), ("authorization", f"Bearer {token}")])
    assert caller.token == token
    assert caller.key.startswith("token:") and token not in caller.key
    for shown in (repr(caller), str(caller), f"{caller}", repr([caller]), repr({"c": caller})):
        assert token not in shown
    assert repr(DAEMON) == "Caller(daemon login)" and DAEMON.key == ""
    assert Caller.from_metadata([("authorization", "Basic abc")]) == DAEMON
    assert Caller.from_metadata(None) == DAEMON
