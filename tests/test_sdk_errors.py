"""What code written against the Globus SDKs catches and reads from gcgate.

- A fresh interpreter (``sdk_catch_client.py``) against the module's daemon, with
  ``globus_compute_sdk`` and ``globus_sdk`` imported before gcgate, after it, or
  never: a failed task (``get_result``, an Executor future, a batch task), a
  pending one, an undecodable result and a refusal are caught by gcgate's classes
  and, with the SDKs imported, by the SDKs' classes; without, nothing of them is
  imported.
- In this process (which imported both SDKs): every public name of
  ``globus_compute_sdk.errors`` is in ``gcgate.errors``, built from the same
  arguments with the same attributes and text; refusals are ``GlobusAPIError``
  with every attribute readable.
- The SDK's task dict shapes: ``get_task``, ``get_batch_result`` (failures left
  out, unknown ids answered per id).
"""

from __future__ import annotations

import copy
import json
import logging
import pickle
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import globus_compute_sdk.errors as sdk_errors
import globus_sdk
import pytest
from gcgate import Client
from gcgate import errors as gerrors
from gcgate.client import UNKNOWN_TASK_REASON
from harness import Daemon, script_function

WAIT = 30.0
SCRIPT = Path(__file__).with_name("sdk_catch_client.py")

TASK_FAILED = [
    "gcgate.TaskExecutionFailed",
    "gcgate.GcgateError",
    "globus_compute_sdk.errors.TaskExecutionFailed",
]
#: case -> (type name, the except clauses that must catch it).
CASES: dict[str, tuple[str, list[str]]] = {
    "get_result": ("TaskExecutionFailed", TASK_FAILED),
    "future": ("TaskExecutionFailed", TASK_FAILED),
    "batch": ("TaskExecutionFailed", TASK_FAILED),
    "pending": (
        "TaskPending",
        [
            "gcgate.TaskPending",
            "gcgate.errors.ComputeError",
            "globus_compute_sdk.errors.TaskPending",
            "globus_compute_sdk.errors.ComputeError",
        ],
    ),
    "undecodable": (
        "ResultDeserializationError",
        [
            "gcgate.DeserializationError",
            "gcgate.SerializationError",
            "globus_compute_sdk.errors.SerializationError",
            "globus_compute_sdk.errors.SerdeError",
        ],
    ),
    "not_found": (
        "NotFound",
        ["gcgate.NotFound", "globus_sdk.GlobusAPIError", "globus_sdk.ComputeAPIError"],
    ),
}

#: Arguments for each public class of globus_compute_sdk.errors.
SDK_ERROR_ARGS: dict[str, tuple[Any, ...]] = {
    "ComputeError": ("something broke",),
    "VersionMismatch": ("endpoint 2.0 vs sdk 3.0",),
    "SerdeError": ("why",),
    "SerializationError": ("why",),
    "DeserializationError": ("why",),
    "TaskPending": ("waiting-for-ep",),
    "MaxResultSizeExceeded": (20, 10),
    "TaskExecutionFailed": ("Traceback\n  ValueError: pickle this", "12.5", {"k": 1}),
}

#: gRPC status of each refusal -> the HTTP status the web service refuses with.
REFUSALS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "UNKNOWN": 500,
    "INTERNAL": 500,
    "DATA_LOSS": 500,
    "UNIMPLEMENTED": 501,
}


@script_function
def double(x):
    return x * 2


@script_function
def fail(x):
    raise ValueError(f"no good: {x}")


@script_function
def wait_for_file(path):
    import os
    import time

    while not os.path.exists(path):
        time.sleep(0.01)
    return path


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    """A file whose creation lets ``wait_for_file`` tasks finish; made at the end."""
    path = tmp_path / "go"
    yield path
    path.touch()


# ------------------------------------------------------------ fresh interpreters


@pytest.mark.parametrize("mode", ["never", "before", "after"])
def test_except_clauses_in_a_fresh_interpreter(mode: str, daemon: Daemon, marker: Path) -> None:
    spec = {
        "mode": mode,
        "marker": str(marker),
        "catchers": {case: catchers for case, (_, catchers) in CASES.items()},
    }
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), json.dumps(spec)],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    cases = report["cases"]

    assert {case: c["type"] for case, c in cases.items()} == {
        case: name for case, (name, _) in CASES.items()
    }
    for case, (_, catchers) in CASES.items():
        tried = [c for c in catchers if mode != "never" or c.startswith("gcgate.")]
        assert cases[case]["caught"] == dict.fromkeys(tried, True), case
    assert cases["not_found"]["http_status"] == 404
    if mode == "never":
        assert report["globus_modules"] == []
    else:
        assert "globus_compute_sdk.errors" in report["globus_modules"]


# ------------------------------------------------------------------ in-process


@pytest.mark.fast
def test_gcgate_errors_has_every_public_name_of_the_sdks() -> None:
    assert set(SDK_ERROR_ARGS) == set(sdk_errors.__all__)
    assert set(sdk_errors.__all__) <= set(gerrors.__all__)


@pytest.mark.fast
@pytest.mark.parametrize("name", sorted(SDK_ERROR_ARGS))
def test_each_error_is_also_the_sdk_class(name: str) -> None:
    ours_cls, sdk_cls = getattr(gerrors, name), getattr(sdk_errors, name)
    args = SDK_ERROR_ARGS[name]
    ours, theirs = ours_cls(*args), sdk_cls(*args)

    assert isinstance(ours, ours_cls) and isinstance(ours, sdk_cls)
    assert (type(ours).__name__, type(ours).__module__) == (name, "gcgate.errors")
    assert {k: getattr(ours, k) for k in vars(theirs)} == vars(theirs)
    if name != "ComputeError":  # the SDK's str() of its base class is its repr()
        assert str(ours) == str(theirs)
    with pytest.raises(sdk_cls):
        raise ours
    for again in (pickle.loads(pickle.dumps(ours)), copy.copy(ours)):
        assert type(again) is type(ours)
        assert (again.args, str(again)) == (ours.args, str(ours))


@pytest.mark.fast
def test_an_undecodable_result_is_the_sdks_serialization_error() -> None:
    exc = gerrors.ResultDeserializationError("No module named 'mine'")
    assert isinstance(exc, gerrors.DeserializationError)
    assert isinstance(exc, gerrors.SerializationError)
    assert isinstance(exc, sdk_errors.SerializationError)
    # The SDK Client's text for it (str of SerializationError("Result Object
    # Deserialization")), then why.
    sdk_text = str(sdk_errors.SerializationError("Result Object Deserialization"))
    assert str(exc) == f"{sdk_text}: No module named 'mine'"
    assert exc.reason == "No module named 'mine'"


@pytest.mark.fast
@pytest.mark.parametrize("code", sorted(REFUSALS))
def test_refusals_are_globus_api_errors(code: str) -> None:
    exc = gerrors.error_for(code, "it is refused")
    assert isinstance(exc, globus_sdk.ComputeAPIError)
    assert (exc.http_status, exc.code, exc.message) == (REFUSALS[code], code, "it is refused")
    assert str(exc) == f"{code}: it is refused"
    assert repr(exc).startswith(type(exc).__name__ + "(")
    # What the SDK's own properties and the helpers on them read, as for a
    # type-zero error document from the service.
    assert exc.raw_json == {"code": code, "message": "it is refused"}
    assert json.loads(exc.text) == exc.raw_json
    assert exc.messages == ["it is refused"]
    assert [e.code for e in exc.errors] == [code]
    assert exc.content_type == "application/json"
    assert exc.http_reason and exc.request_id is None
    assert not exc.info.consent_required
    for name in dir(globus_sdk.GlobusAPIError):
        if not name.startswith("_"):
            getattr(exc, name)


@pytest.mark.fast
def test_client_side_and_connection_errors_are_not_globus_api_errors() -> None:
    for exc in (
        gerrors.error_for("CANCELLED", "m"),
        gerrors.error_for("DEADLINE_EXCEEDED", "m"),
        gerrors.error_for("UNAVAILABLE", "m"),
        gerrors.DaemonUnavailable("m"),
    ):
        assert not isinstance(exc, globus_sdk.GlobusAPIError), type(exc).__name__


def test_a_daemon_refusal_is_caught_as_globus_api_error(client: Client, tmp_path: Path) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(globus_sdk.GlobusAPIError) as info:
        client.get_function(missing)
    assert isinstance(info.value, gerrors.NotFound)
    assert info.value.http_status == 404 and missing in info.value.message
    with pytest.raises(globus_sdk.GlobusAPIError) as info:
        client.get_function("not-a-uuid")
    assert info.value.http_status == 400
    with pytest.raises(gerrors.DaemonUnavailable) as unreachable:
        Client(socket_path=tmp_path / "nobody.sock")
    assert not isinstance(unreachable.value, globus_sdk.GlobusAPIError)


# ----------------------------------------------------------------------- shapes


def test_get_task_shapes_are_the_sdks(client: Client, marker: Path) -> None:
    done = client.run(4, endpoint_id="local", function_id=client.register_function(double))
    assert client.get_result(done, wait=WAIT) == 8
    task = client.get_task(done)
    # The SDK's keys, in its order: pending, status, details, result, completion_t.
    assert list(task) == ["pending", "status", "details", "result", "completion_t"]
    assert task["result"] == 8 and task["status"] == "success" and not task["pending"]
    assert float(task["completion_t"]) > 0

    failed = client.run(1, endpoint_id="local", function_id=client.register_function(fail))
    with pytest.raises(sdk_errors.TaskExecutionFailed, match="no good: 1"):
        client.get_task(failed, wait=WAIT)

    # Last: it holds its worker (and what is queued behind it) until the marker exists.
    pending = client.run(
        str(marker), endpoint_id="local", function_id=client.register_function(wait_for_file)
    )
    assert set(client.get_task(pending)) <= {"pending", "status", "details"}
    assert client.get_batch_result([pending])[pending]["pending"] is True


def test_get_batch_result_is_the_sdks(
    client: Client, marker: Path, caplog: pytest.LogCaptureFixture
) -> None:
    double_id = client.register_function(double)
    ok = client.run(2, endpoint_id="local", function_id=double_id)
    failed = client.run(2, endpoint_id="local", function_id=client.register_function(fail))
    unknown = [str(uuid.uuid4()) for _ in range(3)]
    wanted = [unknown[0], ok, failed, unknown[1], unknown[2]]
    # Waiting through unknown ids: the daemon's watch refuses them, so the client
    # finds the ones it knows and waits for those.
    with caplog.at_level(logging.ERROR, logger="gcgate.client"):
        results = client.get_batch_result(wanted, wait=WAIT)

    # A failed task is left out, and logged, as by the SDK's get_batch_result.
    assert list(results) == [unknown[0], ok, unknown[1], unknown[2]]
    assert results[ok] == client.get_task(ok)
    assert results[ok]["result"] == 4
    for tid in unknown:
        entry = results[tid]
        assert entry.keys() == {"pending", "status", "reason"}
        assert (entry["pending"], entry["status"]) == (False, "failed")
        assert entry["reason"] == UNKNOWN_TASK_REASON.format(tid)
    [logged] = caplog.records
    assert logged.getMessage() == "Failure while unpacking results from get_batch_result"
    assert isinstance(logged.exc_info[1], sdk_errors.TaskExecutionFailed)

    # Without waiting (ids not yet in the client's table): the same answer.
    with Client(socket_path=client.socket_path) as fresh:
        assert fresh.get_batch_result(wanted) == results
