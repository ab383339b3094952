"""What ``get_result``, ``get_task``, ``get_batch_result`` and futures return and raise,
with the real SDK as the oracle.

The same cases (a success, a failure, a result that cannot be deserialized, a task
still running, an id nobody submitted) run twice: through ``globus_compute_sdk.Client``
(and its ``Executor``) against the Compute stand-in (tests/standin), and through
``gcgate.Client`` (and ``gcgate.Executor``) against the module's daemon's local
endpoint. Each is read back the same way on both sides and the answers compared:
dict keys and their order, ``pending`` and ``status``, results, what is logged, and
which of the SDK's exception classes (as a ported script names them) catches what is
raised.

The differences that remain are the documented ones (docs/api.md, "Python: the SDK's
exceptions and result shapes"): an unknown id's ``reason`` is the daemon's text; an
undecodable result's message adds why; an ``Executor`` future of one fails with that
same ``SerializationError`` where the SDK's fails with a bare ``Exception``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import globus_compute_sdk
import globus_compute_sdk.errors as sdk_errors
import globus_sdk
import pytest
from gcgate import Client, Executor
from gcgate.client import UNKNOWN_TASK_REASON
from gcgate.errors import DeserializationError
from harness import Daemon, script_function
from standin import StandIn
from standin.sdk import client_app, compute_client

WAIT = 30.0
#: What either side may call a task that has not finished, here.
PENDING_STATUSES = {"waiting-for-ep", "running"}
#: The SDK classes a ported script catches, most specific first.
SDK_CATCHERS: list[tuple[str, type[BaseException]]] = [
    ("TaskPending", sdk_errors.TaskPending),
    ("TaskExecutionFailed", sdk_errors.TaskExecutionFailed),
    ("SerializationError", sdk_errors.SerializationError),
    ("GlobusAPIError", globus_sdk.GlobusAPIError),
]


@script_function
def double(x):
    return x * 2


@script_function
def failing(x):
    raise ValueError(f"deliberate failure for {x}")


@script_function
def undecodable():
    # Pickles fine where it runs; unpickling it calls int("not a number").
    class Unreadable:
        def __reduce__(self):
            return (int, ("not a number",))

    return Unreadable()


@script_function
def wait_for_file(path):
    import os
    import time

    while not os.path.exists(path):
        time.sleep(0.01)
    return path


#: name -> (function, args) of the cases that finish at once.
FINAL_CASES: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {
    "success": (double, (4,)),
    "failed": (failing, (7,)),
    "undecodable": (undecodable, ()),
}


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    """The file whose creation ends the "pending" case's task; made at teardown."""
    path = tmp_path / "go"
    yield path
    path.touch()


def submit(gcc: Any, endpoint_id: str, cases: dict[str, tuple[Callable[..., Any], tuple]]) -> dict:
    """Run each case once through ``gcc`` (either side's Client): task ids by case."""
    return {
        name: gcc.run(*args, endpoint_id=endpoint_id, function_id=gcc.register_function(fn))
        for name, (fn, args) in cases.items()
    }


@pytest.fixture
def sdk_client(standin: StandIn) -> Any:
    """The real SDK Client, logged in as the stand-in's service account."""
    return compute_client(standin, app=client_app(standin))


@pytest.fixture
def sdk_ids(sdk_client: Any, standin: StandIn, marker: Path) -> dict[str, str]:
    """Every case at the stand-in, the final ones final: waited for at the stand-in
    without fetching, as the service hands a final result out only once. Fresh
    per test for that reason."""
    ids = submit(sdk_client, standin.endpoint_id, FINAL_CASES)
    assert standin.compute.wait(ids.values(), timeout=WAIT)
    ids |= submit(sdk_client, standin.endpoint_id, {"pending": (wait_for_file, (str(marker),))})
    return ids | {"unknown": str(uuid.uuid4())}


@pytest.fixture
def our_ids(daemon: Daemon, marker: Path) -> dict[str, str]:
    """Every case at the daemon's local endpoint, the final ones final: waited for by
    another Client, so the test's ``client`` reads them from the daemon."""
    with Client(socket_path=daemon.socket_path) as gcc:
        ids = submit(gcc, "local", FINAL_CASES)
        gcc.get_tasks(list(ids.values()), wait=WAIT)
        ids |= submit(gcc, "local", {"pending": (wait_for_file, (str(marker),))})
    return ids | {"unknown": str(uuid.uuid4())}


def sdk_class(exc: BaseException) -> str:
    """Which of the SDK's classes an ``except`` clause catches ``exc`` with: ``except``
    matches by ``isinstance``, so this is what a ported script's handler sees."""
    return next((name for name, cls in SDK_CATCHERS if isinstance(exc, cls)), "none")


def caught_by(call: Callable[[], Any]) -> tuple[str, BaseException]:
    """:func:`sdk_class` of what ``call`` raises, and the exception."""
    try:
        call()
    except Exception as exc:
        return sdk_class(exc), exc
    raise AssertionError(f"{call} raised nothing")


def test_get_batch_result_matches_the_sdk(
    sdk_client: Any,
    sdk_ids: dict[str, str],
    client: Client,
    our_ids: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR):
        theirs = sdk_client.get_batch_result(list(sdk_ids.values()))
        their_log = [r for r in caplog.records if r.name.startswith("globus_compute_sdk")]
        caplog.clear()
        ours = client.get_batch_result(list(our_ids.values()))
        our_log = [r for r in caplog.records if r.name.startswith("gcgate")]
    theirs = {name: theirs.get(tid) for name, tid in sdk_ids.items()}
    ours = {name: ours.get(tid) for name, tid in our_ids.items()}

    # A failure, and a result that cannot be read here, are left out and logged.
    assert theirs["failed"] is ours["failed"] is None
    assert theirs["undecodable"] is ours["undecodable"] is None
    for log in (their_log, our_log):
        assert [r.getMessage() for r in log] == [
            "Failure while unpacking results from get_batch_result"
        ] * 2
    # (in any order: the SDK's loop runs over a set of ids)
    logged = sorted(sdk_class(r.exc_info[1]) for r in their_log)
    assert sorted(sdk_class(r.exc_info[1]) for r in our_log) == logged
    assert logged == ["SerializationError", "TaskExecutionFailed"]

    # The others key for key, in the same order.
    for name in ("success", "pending", "unknown"):
        assert list(ours[name]) == list(theirs[name]), name
        assert ours[name]["pending"] is theirs[name]["pending"], name
    assert ours["success"]["result"] == theirs["success"]["result"] == 8
    assert ours["success"]["status"] == theirs["success"]["status"] == "success"
    assert {ours["pending"]["status"], theirs["pending"]["status"]} <= PENDING_STATUSES
    # An unknown id as the service answers one; the reason is the daemon's words.
    assert (ours["unknown"]["status"], theirs["unknown"]["status"]) == ("failed", "failed")
    assert ours["unknown"]["reason"] == UNKNOWN_TASK_REASON.format(our_ids["unknown"])


@pytest.mark.parametrize("method", ["get_result", "get_task"])
def test_get_result_and_get_task_raise_what_the_sdk_raises(
    method: str,
    sdk_client: Any,
    sdk_ids: dict[str, str],
    client: Client,
    our_ids: dict[str, str],
) -> None:
    # Each case is read once per side (the service hands a final result out once).
    ours_ok = getattr(client, method)(our_ids["success"])
    theirs_ok = getattr(sdk_client, method)(sdk_ids["success"])
    if method == "get_result":
        assert ours_ok == theirs_ok == 8
    else:  # the same keys in the same order; details and completion_t are each side's
        assert list(ours_ok) == list(theirs_ok)
        for task in (ours_ok, theirs_ok):
            assert (task["pending"], task["status"], task["result"]) == (False, "success", 8)
    names = ["failed", "undecodable", "unknown"] + (["pending"] if method == "get_result" else [])
    for name in names:
        their_class, theirs = caught_by(lambda n=name: getattr(sdk_client, method)(sdk_ids[n]))
        our_class, ours = caught_by(lambda n=name: getattr(client, method)(our_ids[n]))
        assert our_class == their_class, name
        if name == "failed":
            assert "deliberate failure for 7" in str(theirs)
            assert "deliberate failure for 7" in str(ours)
        elif name == "undecodable":
            # The SDK's words, then why (which the SDK's leaves out).
            assert str(theirs) == "Serialization failed: Result Object Deserialization"
            assert str(ours).startswith(f"{theirs}: ") and "not a number" in str(ours)
            assert isinstance(ours.__cause__, DeserializationError)
        elif name == "unknown":
            assert ours.http_status == theirs.http_status == 404
        else:
            assert ours.reason in PENDING_STATUSES and theirs.reason in PENDING_STATUSES
    if method == "get_task":
        task = client.get_task(our_ids["pending"])
        assert task["pending"] is True and set(task) <= {"pending", "status", "details"}


def test_executor_futures_fail_as_the_sdks(
    pushing: StandIn, executor_state: None, client: Client
) -> None:
    gcc = compute_client(pushing, app=client_app(pushing))
    with globus_compute_sdk.Executor(endpoint_id=pushing.endpoint_id, client=gcc) as sdk_ex:
        futures = {n: sdk_ex.submit(fn, *args) for n, (fn, args) in FINAL_CASES.items()}
        theirs = {n: f.exception(timeout=WAIT) for n, f in futures.items()}
        assert futures["success"].result() == 8
    with Executor(endpoint_id="local", client=client) as ex:
        futures = {n: ex.submit(fn, *args) for n, (fn, args) in FINAL_CASES.items()}
        ours = {n: f.exception(timeout=WAIT) for n, f in futures.items()}
        assert futures["success"].result() == 8

    assert sdk_class(ours["failed"]) == sdk_class(theirs["failed"]) == "TaskExecutionFailed"
    assert "deliberate failure for 7" in str(ours["failed"])
    # The SDK's Executor fails this future with a bare Exception (the deserializer's
    # error its cause), its Client with SerializationError; gcgate's future with
    # what its Client raises: an Exception too, so ``except Exception`` catches both.
    assert type(theirs["undecodable"]) is Exception
    assert str(theirs["undecodable"]).startswith("Malformed or unexpected data structure")
    assert sdk_class(ours["undecodable"]) == "SerializationError"
    assert str(ours["undecodable"]).startswith(
        "Serialization failed: Result Object Deserialization: "
    )
    assert isinstance(ours["undecodable"].__cause__, DeserializationError)
