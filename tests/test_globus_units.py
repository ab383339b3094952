"""Units of the Globus backend that need no service: the rate limiter's arithmetic,
request bodies against the real SDK, answer splitting, outcome mapping, the store's
Globus function map, the submit ledger."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from gcgated.backends.base import SubmitGroup, SubmitOptions
from gcgated.backends.globus.http import AnswerLost
from gcgated.backends.globus.ledger import Ledger
from gcgated.backends.globus.limiter import RateLimiter
from gcgated.backends.globus.submit import (
    BODY_OVERHEAD,
    Coalescer,
    Waiting,
    _split_answer,
    json_size,
    queue_key,
    registration_body,
)
from gcgated.backends.globus.submitter import Lane, Queued, Submitter, _pair
from gcgated.backends.globus.tracker import outcome_from
from gcgated.caller import DAEMON, Caller
from gcgated.errors import ServiceUnavailable
from gcgated.store import Store
from globus_compute_sdk.sdk.client import (
    FunctionRegistrationData,
    FunctionRegistrationMetadata,
)

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


def stored_function(**overrides: object) -> dict:
    record = {
        "function_id": "7f0c3d1e-0000-5000-8000-000000000001",
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


# ------------------------------------------------------ coalescing pieces


def make_caller(loop: asyncio.AbstractEventLoop, groups: list[tuple[str, int]]) -> Waiting:
    submit_groups = [
        SubmitGroup(stored_function(function_id=fid), [f"p{fid}-{i}" for i in range(n)])
        for fid, n in groups
    ]
    return Waiting(
        groups=submit_groups,
        options=SubmitOptions(task_group_id=""),
        future=loop.create_future(),
        tasks=sum(n for _, n in groups),
        size=sum(n * 10 for _, n in groups),
    )


def test_answer_is_split_per_caller_in_order() -> None:
    loop = asyncio.new_event_loop()
    try:
        a = make_caller(loop, [("fa", 2), ("fb", 1)])
        b = make_caller(loop, [("fa", 1)])
        c = make_caller(loop, [("fb", 2), ("fa", 1)])
        globus = {"fa": "GA", "fb": "GB"}
        answer = {
            "request_id": "r1",
            "task_group_id": "tg",
            "tasks": {"GA": ["a1", "a2", "a3", "a4"], "GB": ["b1", "b2", "b3"]},
        }
        split = _split_answer(answer, [a, b, c], globus)
        assert [s.task_ids for s in split] == [
            [["a1", "a2"], ["b1"]],
            [["a3"]],
            [["b2", "b3"], ["a4"]],
        ]
        assert {s.request_id for s in split} == {"r1"}
        assert {s.task_group_id for s in split} == {"tg"}
        short = {"tasks": {"GA": ["a1"], "GB": ["b1", "b2", "b3"]}}
        with pytest.raises(ServiceUnavailable, match="fewer task ids"):
            _split_answer(short, [a, b, c], globus)
    finally:
        loop.close()


def test_packing_never_splits_a_caller() -> None:
    loop = asyncio.new_event_loop()
    try:
        coalescer = Coalescer(
            api=None,  # type: ignore[arg-type]
            limiter=RateLimiter(18, 10.0),
            registry=None,  # type: ignore[arg-type]
            window=0.02,
            max_tasks=5,
            max_bytes=BODY_OVERHEAD + 100,
        )
        callers = [make_caller(loop, [("f", n)]) for n in (3, 2, 1, 7, 4, 1)]
        packed = coalescer._pack(callers)
        assert [[c.tasks for c in request] for request in packed] == [[3, 2], [1], [7], [4, 1]]
        assert [c for request in packed for c in request] == callers
        # Bytes count too (each test caller is 10 bytes per task): 100 bytes of room.
        by_size = [make_caller(loop, [("f", 1)]) for _ in range(3)]
        for caller, size in zip(by_size, (60, 50, 40), strict=True):
            caller.size = size
        assert [len(r) for r in coalescer._pack(by_size)] == [1, 2]
    finally:
        loop.close()


def test_payload_size_is_counted_as_json() -> None:
    payload = "01\n" + 'ab"c' * 10
    assert json_size(payload) == len(json.dumps(payload)) + 2 > len(payload)


def test_queue_key_separates_what_cannot_share_a_request() -> None:
    base = SubmitOptions(task_group_id="", resource_specification={"a": 1, "b": 2})
    same = SubmitOptions(task_group_id="", resource_specification={"b": 2, "a": 1})
    assert queue_key(DAEMON, "ep", base) == queue_key(DAEMON, "ep", same)
    for other in (
        SubmitOptions(task_group_id="", resource_specification={"a": 2, "b": 2}),
        SubmitOptions(task_group_id="tg", resource_specification={"a": 1, "b": 2}),
        SubmitOptions(
            task_group_id="", resource_specification={"a": 1, "b": 2}, result_serializers=("x",)
        ),
        SubmitOptions(
            task_group_id="", resource_specification={"a": 1, "b": 2}, user_endpoint_config={}
        ),
    ):
        assert queue_key(DAEMON, "ep", other) != queue_key(DAEMON, "ep", base)
    assert queue_key(DAEMON, "ep2", base) != queue_key(DAEMON, "ep", base)
    # Two tokens never share a request, nor a token the daemon's login.
    alice, bob = Caller("alice-token"), Caller("bob-token")
    assert queue_key(alice, "ep", base) == queue_key(Caller("alice-token"), "ep", same)
    assert len({queue_key(c, "ep", base) for c in (DAEMON, alice, bob)}) == 3


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


def test_store_keeps_globus_function_ids_per_identity(tmp_path: Path) -> None:
    store = Store(tmp_path / "store", size_limit_bytes=10**9, retention_seconds=60)
    try:
        assert store.get_globus_function("alice", "f1") is None
        store.put_globus_function("alice", "f1", "G1")
        store.put_globus_function("bob", "f1", "G2")
        assert store.get_globus_function("alice", "f1") == "G1"
        assert store.get_globus_function("bob", "f1") == "G2"
        store.forget_globus_function("alice", "f1")
        assert store.get_globus_function("alice", "f1") is None
    finally:
        store.close()
    reopened = Store(tmp_path / "store", size_limit_bytes=10**9, retention_seconds=60)
    try:
        assert reopened.get_globus_function("bob", "f1") == "G2"
    finally:
        reopened.close()


# ------------------------------------------------- background submission


def queued(task_id: str, function_id: str, payload: str = "p") -> Queued:
    return Queued(task_id, {"function_id": function_id}, payload)


def test_service_ids_pair_with_the_daemons_in_order() -> None:
    batch = [queued("d1", "fa"), queued("d2", "fb"), queued("d3", "fa")]
    answer = {"tasks": {"GA": ["s1", "s3"], "GB": ["s2"]}}
    globus = {"fa": "GA", "fb": "GB"}
    assert _pair(answer, batch, globus) == [("d1", "s1"), ("d2", "s2"), ("d3", "s3")]
    # Fewer ids than tasks: the service may have created them; not resent.
    with pytest.raises(AnswerLost, match="fewer task ids"):
        _pair({"tasks": {"GA": ["s1"], "GB": ["s2"]}}, batch, globus)


def test_a_request_takes_what_fits() -> None:
    submitter = Submitter(
        api=None,  # type: ignore[arg-type]
        limiter=RateLimiter(18, 10.0),
        registry=None,  # type: ignore[arg-type]
        ledger=None,  # type: ignore[arg-type]
        window=0.02,
        max_tasks=3,
        max_bytes=BODY_OVERHEAD + 100,
    )
    lane = Lane("ep", SubmitOptions(task_group_id=""))
    lane.items = [queued(f"t{n}", "f") for n in range(7)]
    assert [len(submitter._take(lane)) for _ in range(3)] == [3, 3, 1]
    assert not lane.items
    # By bytes (as JSON in the body): 60 + 50 > 100, so one each; a task larger
    # than a request still goes, alone.
    lane.items = [
        queued("a", "f", "x" * 56),
        queued("b", "f", "x" * 46),
        queued("c", "f", "x" * 500),
    ]
    assert [[q.task_id for q in submitter._take(lane)] for _ in range(3)] == [["a"], ["b"], ["c"]]


def test_the_ledger_keeps_each_tasks_state_across_a_reopen(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    lane = {"endpoint_id": "ep", "task_group_id": ""}
    ledger.queued([("t1", lane), ("t2", lane), ("t3", lane)], group="g1")
    ledger.sending(["t2", "t3"])
    ledger.sent([("t3", "s3")])
    ledger.close()
    ledger = Ledger(tmp_path)
    try:
        rows = ledger.lookup(["t1", "t2", "t3", "t4"])
        assert rows == {
            "t1": {"state": "queued", **lane},
            "t2": {"state": "sending"},
            "t3": {"state": "sent", "service_id": "s3"},
        }
        assert ledger.is_group("g1") and not ledger.is_group("g2")
        ledger.forget(["t1", "t3"])
        assert list(ledger.lookup(["t1", "t2", "t3"])) == ["t2"]
    finally:
        ledger.close()


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
