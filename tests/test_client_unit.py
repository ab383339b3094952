"""The thin client without a real daemon.

- ``Batch`` against the SDK's ``Batch`` as the oracle: same argument checks and
  messages, same ``prepare()`` document, byte-identical task payloads;
- connection failures: a missing, dead or wedged socket gives DaemonUnavailable
  naming the socket and how to start the daemon;
- the TaskRecord -> task dict conversion and the Batch -> BatchRunRequest one;
- the Executor's result streams against a small in-test fake daemon: results
  and failures, submission errors, stream merging, re-opening after a daemon
  restart, giving up when it stays gone, cancellation and thread cleanup.

End-to-end behaviour against the real gcgated lives in other test modules; the
client installed alone, without the daemon's dependencies, in test_distributions.py.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from concurrent import futures as cf
from dataclasses import asdict
from pathlib import Path
from typing import Any

import gcgate
import grpc
import pytest
from gcgate import (
    LOCAL_ENDPOINT_ID,
    Batch,
    Client,
    DaemonUnavailable,
    Executor,
    NotFound,
    TaskExecutionFailed,
)
from gcgate import errors as gerrors
from gcgate.batch import create_user_runtime
from gcgate.client import batch_request, task_dict
from gcgate.serialize import Serializer
from gcgate.v1 import gateway_pb2 as pb
from gcgate.v1 import gateway_pb2_grpc as pb_grpc
from globus_compute_sdk.sdk.batch import Batch as SdkBatch
from globus_compute_sdk.sdk.batch import create_user_runtime as sdk_create_user_runtime
from globus_compute_sdk.sdk.client import FunctionRegistrationData

FN_ID = "0e8a1b2c-3d4e-4f50-8a6b-7c8d9e0f1a2b"
FN_ID_2 = "11111111-2222-4333-8444-555555555555"


def _outcome(call: Any) -> tuple[str, str] | None:
    """(exception class name, message) of ``call()``, or None if it succeeded."""
    try:
        call()
    except Exception as e:
        return type(e).__name__, str(e)
    return None


# ----------------------------------------------------------------- Batch vs SDK

BAD_ADDS: list[tuple[Any, Any, Any]] = [
    (FN_ID, 1, None),
    (FN_ID, "abc", None),
    (FN_ID, {1, 2}, None),
    (FN_ID, {"a": 1}, None),
    (FN_ID, None, [("a", 1)]),
    (FN_ID, None, "kw"),
    (FN_ID, None, {1: 2}),
    (FN_ID, (1,), {"a": 1, ("b",): 3}),
    ("not-a-uuid", (), {}),
    ("", (), {}),
    (123, (), {}),
    (None, (), {}),
    (FN_ID.replace("-", "")[:-1], (), {}),
    # Several problems at once: the SDK reports the argument ones first.
    ("not-a-uuid", 5, {1: 2}),
]


def _named(expected: tuple[str, str], name: str, value: Any) -> tuple[str, str]:
    """The SDK's outcome as gcgate's: a malformed id string is the same ValueError,
    its message naming the argument and the value (the SDK's names neither)."""
    if expected[0] == "ValueError" and isinstance(value, str):
        return expected[0], f"{name}: {value!r} is not a UUID"
    return expected


@pytest.mark.parametrize(("function_id", "args", "kwargs"), BAD_ADDS)
def test_batch_add_rejects_like_the_sdk(function_id: Any, args: Any, kwargs: Any) -> None:
    ours, theirs = Batch(None), SdkBatch(None)
    expected = _outcome(lambda: theirs.add(function_id, args, kwargs))
    assert expected is not None
    assert _outcome(lambda: ours.add(function_id, args, kwargs)) == _named(
        expected, "function_id", function_id
    )
    assert len(ours) == len(theirs) == 0


def test_batch_add_unserializable_argument_raises_serialization_error() -> None:
    with pytest.raises(gerrors.SerializationError):
        Batch(None).add(FN_ID, ((x for x in ()),))  # generators cannot be pickled


@pytest.mark.parametrize("task_group_id", ["nope", 42, "1234"])
def test_batch_task_group_id_checked_like_the_sdk(task_group_id: Any) -> None:
    expected = _outcome(lambda: SdkBatch(task_group_id))
    assert expected is not None
    assert _outcome(lambda: Batch(task_group_id)) == _named(
        expected, "task_group_id", task_group_id
    )


def _fill(batch: Any) -> None:
    batch.add(FN_ID, (1, "two", [3.0, None]), {"k": (4, 5), "nested": {"a": b"bytes"}})
    batch.add(FN_ID_2.upper())
    batch.add(uuid.UUID(FN_ID), [1, 2], None)
    batch.add(FN_ID_2, (), {"only": "kwargs"})


def test_batch_prepare_matches_the_sdk() -> None:
    kwargs: dict[str, Any] = dict(
        resource_specification={"num_nodes": 2},
        user_endpoint_config={"worker_init": "module load x"},
        request_queue=True,
        result_serializers=["globus_compute_sdk.serialize.JSONData"],
    )
    tg = uuid.uuid4()
    ours = Batch(tg, user_runtime=create_user_runtime(), **kwargs)
    theirs = SdkBatch(str(tg), user_runtime=sdk_create_user_runtime(), **kwargs)
    _fill(ours)
    _fill(theirs)
    mine, sdk = ours.prepare(), theirs.prepare()

    assert list(mine) == list(sdk)
    # Payloads are byte-identical, grouped and ordered the same way.
    assert mine["tasks"] == sdk["tasks"]
    assert list(mine["tasks"]) == [FN_ID, FN_ID_2]
    for key in ("create_queue", "task_group_id", "resource_specification"):
        assert mine[key] == sdk[key]
    assert mine["user_endpoint_config"] == sdk["user_endpoint_config"]
    assert mine["result_serializers"] == sdk["result_serializers"]
    assert (len(ours), bool(ours)) == (len(theirs), bool(theirs)) == (4, True)


def test_user_runtime_has_the_sdks_shape() -> None:
    ours, sdk = create_user_runtime(), asdict(sdk_create_user_runtime())

    def shape(d: dict[str, Any]) -> dict[str, Any]:
        return {k: shape(v) if isinstance(v, dict) else type(v) for k, v in d.items()}

    assert shape(ours) == shape(sdk)
    # Same process, so same values, except that the submitting library is gcgate.
    assert ours.pop("globus_compute_sdk_version") == gcgate.__version__
    sdk.pop("globus_compute_sdk_version")
    assert ours == sdk
    # A copy each time: callers may edit theirs.
    ours["python"]["version"] = "x"
    assert create_user_runtime()["python"]["version"] != "x"


def test_batch_minimal_prepare_repr_len_bool_match_the_sdk() -> None:
    ours, theirs = Batch(None), SdkBatch(None)
    assert ours.prepare() == theirs.prepare() == {"create_queue": False, "tasks": {}}
    assert (len(ours), bool(ours)) == (len(theirs), bool(theirs))
    ours.add(FN_ID, (1,))
    theirs.add(FN_ID, (1,))
    assert repr(ours) == repr(theirs)
    assert ours.prepare() == theirs.prepare()


def test_batch_request_carries_the_prepared_batch() -> None:
    batch = Batch(
        "8c5b3f4e-0000-4000-8000-000000000001",
        resource_specification={"num_nodes": 1},
        user_runtime=create_user_runtime(),
        result_serializers=["globus_compute_sdk.serialize.concretes.JSONData"],
    )
    _fill(batch)
    request = batch_request("local", batch.prepare())
    assert request.endpoint_id == "local"
    assert [(g.function_id, list(g.payloads)) for g in request.tasks] == [
        (fid, payloads) for fid, payloads in batch.prepare()["tasks"].items()
    ]
    assert request.options.task_group_id == "8c5b3f4e-0000-4000-8000-000000000001"
    assert request.options.resource_specification_json == '{"num_nodes": 1}'
    assert request.options.user_endpoint_config_json == ""
    assert list(request.options.result_serializers) == ["globus_compute_sdk.serialize.JSONData"]
    assert '"python"' in request.options.user_runtime_json

    # An SDK Batch converts the same way.
    sdk_batch = SdkBatch(None)
    _fill(sdk_batch)
    assert batch_request("local", sdk_batch.prepare()).tasks == request.tasks


def test_batch_run_refuses_an_empty_batch(fake: FakeDaemon) -> None:
    with Client(socket_path=fake.socket_path) as client, pytest.raises(ValueError) as info:
        client.batch_run(LOCAL_ENDPOINT_ID, client.create_batch())
    assert str(info.value) == "No tasks specified for batch run"


# ------------------------------------------------------------------ task dicts


def _record(**fields: Any) -> pb.TaskRecord:
    return pb.TaskRecord(task_id="t-1", function_id=FN_ID, **fields)


def test_task_dict_pending() -> None:
    task = task_dict(_record(status="waiting-for-ep", pending=True), Serializer())
    assert task == {"task_id": "t-1", "pending": True, "status": "waiting-for-ep"}


def test_task_dict_success_and_failure() -> None:
    serde = Serializer()
    ok = _record(
        status="success",
        result=serde.serialize({"x": 1}),
        completion_t="12.5",
        details_json='{"a":1}',
    )
    assert task_dict(ok, serde) == {
        "task_id": "t-1",
        "pending": False,
        "status": "success",
        "details": {"a": 1},
        "completion_t": "12.5",
        "result": {"x": 1},
    }

    failed = task_dict(
        _record(status="failed", exception="Traceback\nBoom", completion_t="3"), serde
    )
    exc = failed["exception"]
    assert isinstance(exc, TaskExecutionFailed)
    assert (exc.remote_data, exc.completion_t) == ("Traceback\nBoom", "3")

    garbled = task_dict(
        _record(status="success", result="zz\nnot a payload", completion_t="1"), serde
    )
    assert isinstance(garbled["exception"], gerrors.DeserializationError)
    assert "result" not in garbled


def test_task_dict_summary_without_bodies() -> None:
    task = task_dict(
        _record(status="success", completion_t="1", endpoint_id="e", created_at=2.0),
        Serializer(),
        summary=True,
    )
    assert task["endpoint_id"] == "e" and task["created_at"] == 2.0
    assert "result" not in task and "exception" not in task


# ---------------------------------------------------------- connection failures


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # Unix socket paths are limited to ~107 bytes; pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="gcgt-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _assert_helpful(exc: DaemonUnavailable, path: Path) -> None:
    message = str(exc)
    assert str(path) in message
    assert "gcgated" in message and "GCGATE_SOCKET" in message


def test_client_without_socket_says_how_to_start_the_daemon(sock_dir: Path) -> None:
    path = sock_dir / "missing" / "gcgate.sock"
    with pytest.raises(DaemonUnavailable) as info:
        Client(socket_path=path)
    _assert_helpful(info.value, path)
    assert "no such socket" in str(info.value)


def test_client_uses_gcgate_socket_env(sock_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = sock_dir / "from-env.sock"
    monkeypatch.setenv("GCGATE_SOCKET", str(path))
    with pytest.raises(DaemonUnavailable) as info:
        Client()
    _assert_helpful(info.value, path)


def test_client_with_dead_socket(sock_dir: Path) -> None:
    path = sock_dir / "dead.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))  # bound, never listening: connection refused
        with pytest.raises(DaemonUnavailable) as info:
            Client(socket_path=path)
    _assert_helpful(info.value, path)
    assert "nobody is listening" in str(info.value)


def test_client_with_wedged_daemon(sock_dir: Path) -> None:
    path = sock_dir / "wedged.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        s.listen()  # accepts connections into the backlog, never speaks HTTP/2
        with pytest.raises(DaemonUnavailable) as info:
            Client(socket_path=path, connect_timeout=0.5)
    # Something listens: starting a daemon is no advice; who listens, and how to check, is.
    pid = os.getpid()
    assert str(info.value) == (
        f"the gcgate daemon at {path} (pid {pid}) is not answering (no reply within 0.5 s):"
        f" it may be stopped (SIGSTOP) or overloaded; check it with `ps -o pid,stat,etime,cmd"
        f" -p {pid}` (STAT T: stopped, resume it with `kill -CONT {pid}`) and look at its log"
    )


@pytest.mark.skipif(os.getuid() != 0 or shutil.which("setpriv") is None, reason="needs root")
def test_client_permission_denied_is_explained(sock_dir: Path) -> None:
    path = sock_dir / "private.sock"
    sock_dir.chmod(0o755)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        s.listen()
        path.chmod(0o600)
        code = (
            "from gcgate import Client, DaemonUnavailable\n"
            f"try: Client(socket_path={str(path)!r})\n"
            "except DaemonUnavailable as e: print(e)\n"
        )
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        out = subprocess.run(
            [*as_nobody, sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
        )
    if "Permission denied" in out.stderr and "python" in out.stderr.lower():
        pytest.skip(f"the interpreter is not usable by nobody: {out.stderr}")
    assert "permission denied" in out.stdout, out.stderr
    assert str(path) in out.stdout


# ------------------------------------------------------------- the fake daemon


def add(a: int, b: int = 0) -> int:
    """Add two numbers."""
    return a + b


def divide(a: float, b: float) -> float:
    return a / b


class FakeGateway(pb_grpc.GatewayServicer):
    """Just enough of gcgated for the Executor: registration, BatchRun, the watch streams.

    Tasks run in-process at submission, or wait while ``hold`` is cleared. State
    lives on this object, so a restarted server (same object) keeps it, like the
    daemon's store.
    """

    def __init__(self) -> None:
        self.serde = Serializer()
        self.functions: dict[str, str] = {}
        self.registrations: list[pb.RegisterFunctionRequest] = []
        self.records: dict[str, pb.TaskRecord] = {}
        self.held: list[tuple[str, str, str]] = []
        self.hold = False
        self.batch_run_error: tuple[grpc.StatusCode, str] | None = None
        self.cond = threading.Condition()
        self.open_streams = 0
        self.watch_calls = 0

    def Status(self, request: Any, context: Any) -> pb.StatusResponse:
        return pb.StatusResponse(version=gcgate.__version__)

    def RegisterFunction(self, request: Any, context: Any) -> pb.RegisterFunctionResponse:
        self.registrations.append(request)
        fid = str(uuid.uuid5(uuid.NAMESPACE_URL, request.function_code))
        self.functions[fid] = request.function_code
        return pb.RegisterFunctionResponse(function_id=fid, created=True)

    def BatchRun(self, request: Any, context: Any) -> pb.BatchRunResponse:
        if self.batch_run_error:
            context.abort(*self.batch_run_error)
        response = pb.BatchRunResponse(
            request_id=str(uuid.uuid4()),
            task_group_id=request.options.task_group_id or str(uuid.uuid4()),
            endpoint_id=LOCAL_ENDPOINT_ID,
        )
        for group in request.tasks:
            if group.function_id not in self.functions:
                context.abort(grpc.StatusCode.NOT_FOUND, f"function {group.function_id} unknown")
        for group in request.tasks:
            ids = []
            for payload in group.payloads:
                tid = str(uuid.uuid4())
                with self.cond:
                    self.records[tid] = pb.TaskRecord(task_id=tid, status="received", pending=True)
                ids.append(tid)
                if self.hold:
                    self.held.append((tid, group.function_id, payload))
                else:
                    self._execute(tid, group.function_id, payload)
            response.tasks.add(function_id=group.function_id, task_ids=ids)
        return response

    def _execute(self, tid: str, fid: str, payload: str) -> None:
        record = pb.TaskRecord(task_id=tid, function_id=fid, completion_t=repr(time.time()))
        try:
            fn, args, kwargs = self.serde.unpack_task(self.functions[fid], payload)
            record.result = self.serde.serialize_from_list(fn(*args, **kwargs), ())
            record.status = "success"
        except Exception:
            record.exception = traceback.format_exc()
            record.status = "failed"
        with self.cond:
            self.records[tid] = record
            self.cond.notify_all()

    def release(self) -> None:
        self.hold = False
        held, self.held = self.held, []
        for task in held:
            self._execute(*task)

    def WatchTasks(self, request: Any, context: Any) -> Iterator[pb.TaskRecord]:
        for batch in self.WatchTaskBatches(request, context):
            yield from batch.tasks

    def WatchTaskBatches(self, request: Any, context: Any) -> Iterator[pb.TaskRecordBatch]:
        remaining = list(dict.fromkeys(request.task_ids))
        if any(t not in self.records for t in remaining):
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown task id")
        with self.cond:
            self.open_streams += 1
            self.watch_calls += 1
        try:
            while remaining and context.is_active():
                with self.cond:
                    ready = [t for t in remaining if not self.records[t].pending]
                    if not ready:
                        self.cond.wait(0.05)
                        continue
                for tid in ready:
                    remaining.remove(tid)
                yield pb.TaskRecordBatch(tasks=[self.records[tid] for tid in ready])
        finally:
            with self.cond:
                self.open_streams -= 1


class FakeDaemon:
    """A FakeGateway served on a Unix socket; can be stopped and restarted."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="gcgf-", dir="/tmp"))
        self.socket_path = self.dir / "fake.sock"
        self.gateway = FakeGateway()
        self.server: grpc.Server | None = None

    def start(self) -> FakeDaemon:
        self.server = grpc.server(cf.ThreadPoolExecutor(max_workers=64))
        pb_grpc.add_GatewayServicer_to_server(self.gateway, self.server)
        self.server.add_insecure_port(f"unix:{self.socket_path}")
        self.server.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(grace=None).wait()
            self.server = None
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def fake() -> Iterator[FakeDaemon]:
    daemon = FakeDaemon().start()
    yield daemon
    daemon.close()


def _gcgate_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("gcgate-")]


def _wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


# ------------------------------------------------------------ Client requests


def test_register_function_sends_what_the_sdk_sends(fake: FakeDaemon) -> None:
    sdk = FunctionRegistrationData(function=add).to_dict()
    with Client(socket_path=fake.socket_path) as client:
        fid = client.register_function(add)
        client.register_function(add, description="mine", public=True, group=FN_ID)
        with pytest.raises(ValueError, match="cannot also specify"):  # as the SDK
            client.register_function(add, metadata={"python_version": "3.9", "sdk_version": "x"})
        with pytest.raises(TypeError):
            client.register_function(add, metadata={"python_version": "3.9.1"})
        with pytest.raises(ValueError, match="mutually exclusive"):
            client.register_function(add, public=True, ha_endpoint_id=FN_ID)
        client.register_source_code(
            "def f():\n    return 1\n",
            "f",
            metadata={"python_version": "3.9.1", "sdk_version": "x"},
        )
        client.register_source_code("def f():\n    return 1\n", "f")
    plain, custom, meta, source = fake.gateway.registrations
    assert fid == str(uuid.uuid5(uuid.NAMESPACE_URL, sdk["function_code"]))
    assert (plain.function_name, plain.function_code, plain.serialized) == (
        sdk["function_name"],
        sdk["function_code"],
        sdk["serialized"],
    )
    assert plain.description == sdk["description"] == "Add two numbers."
    assert plain.meta.python_version == sdk["meta"]["python_version"]
    assert plain.meta.serde_identifier == sdk["meta"]["serde_identifier"] == "01"
    assert plain.meta.sdk_version == gcgate.__version__
    assert (plain.public, plain.group) == (False, "")
    assert (custom.description, custom.public, custom.group) == ("mine", True, FN_ID)
    assert (meta.meta.python_version, meta.meta.sdk_version, meta.meta.serde_identifier) == (
        "3.9.1",
        "x",
        "",
    )
    assert (source.serialized, source.function_name, source.meta.serde_identifier) == (
        False,
        "f",
        "",
    )


# ------------------------------------------------------------- Executor tests


def test_executor_results_failures_and_map(fake: FakeDaemon) -> None:
    with Client(socket_path=fake.socket_path) as client:
        with Executor("local", client=client) as ex:
            futs = [ex.submit(add, i, b=1) for i in range(300)]
            failing = ex.submit(divide, 1, 0)
            assert list(ex.map(add, range(4), range(4))) == [0, 2, 4, 6]
            assert [f.result(timeout=10) for f in futs] == list(range(1, 301))
            exc = failing.exception(timeout=10)
            assert isinstance(exc, TaskExecutionFailed)
            assert "ZeroDivisionError" in str(exc)
            assert all(f.task_id for f in futs) and failing.task_id
            assert ex.endpoint_id == uuid.UUID(LOCAL_ENDPOINT_ID)
            assert ex.task_group_id is not None
            # Each function is registered once per executor.
            assert len(fake.gateway.functions) == 2
        assert _gcgate_threads() == []
        _wait_until(lambda: fake.gateway.open_streams == 0)


def test_executor_argument_errors_raise_at_submit(fake: FakeDaemon) -> None:
    with Client(socket_path=fake.socket_path) as client, Executor("local", client=client) as ex:
        with pytest.raises(TypeError, match="kwargs: expected kwargs with `str` keys"):
            ex.submit_to_registered_function(FN_ID, (1,), {1: 2})
        with pytest.raises(ValueError):
            ex.submit_to_registered_function("not-a-uuid")
        ex.endpoint_id = None
        with pytest.raises(ValueError, match="No endpoint_id set"):
            ex.submit(add, 1)
    with pytest.raises(RuntimeError, match="is shutdown"):
        ex.submit(add, 1)


def test_executor_submission_errors_reach_the_futures(fake: FakeDaemon) -> None:
    with Client(socket_path=fake.socket_path) as client, Executor("local", client=client) as ex:
        unknown = ex.submit_to_registered_function(FN_ID, (1,))
        assert isinstance(unknown.exception(timeout=10), NotFound)

        fake.gateway.batch_run_error = (grpc.StatusCode.RESOURCE_EXHAUSTED, "store full")
        full = ex.submit(add, 1)
        exc = full.exception(timeout=10)
        assert isinstance(exc, gerrors.ResourceExhausted) and "store full" in str(exc)

        fake.gateway.batch_run_error = None  # the executor keeps working afterwards
        assert ex.submit(add, 2, 3).result(timeout=10) == 5


def test_executor_merges_streams(fake: FakeDaemon) -> None:
    fake.gateway.hold = True
    with (
        Client(socket_path=fake.socket_path) as client,
        Executor("local", client=client, batch_size=4) as ex,
    ):
        futs = []
        for i in range(400):
            futs.append(ex.submit(add, i))
            if i % 4 == 3:
                time.sleep(0.001)  # let the submitter flush many small batches
        _wait_until(lambda: all(f.task_id for f in futs))
        batches = 400 // 4
        # Streams stay logarithmic in the outstanding tasks, not one per batch.
        _wait_until(lambda: fake.gateway.open_streams <= 10)
        assert len(_gcgate_threads()) <= 11
        assert fake.gateway.watch_calls < batches * 3
        fake.gateway.release()
        assert [f.result(timeout=20) for f in futs] == list(range(400))


def test_executor_reopens_streams_after_a_daemon_restart(fake: FakeDaemon) -> None:
    fake.gateway.hold = True
    with Client(socket_path=fake.socket_path) as client, Executor("local", client=client) as ex:
        futs = [ex.submit(add, i, 1) for i in range(20)]
        _wait_until(lambda: all(f.task_id for f in futs) and fake.gateway.open_streams > 0)
        calls = fake.gateway.watch_calls
        fake.stop()
        time.sleep(0.5)
        assert not any(f.done() for f in futs)
        fake.start()
        _wait_until(lambda: fake.gateway.watch_calls > calls)
        fake.gateway.release()
        assert [f.result(timeout=20) for f in futs] == list(range(1, 21))
    assert _gcgate_threads() == []


def test_executor_fails_futures_when_the_daemon_stays_gone(fake: FakeDaemon) -> None:
    fake.gateway.hold = True
    with Client(socket_path=fake.socket_path) as client:
        ex = Executor("local", client=client)
        ex.reconnect_timeout = 1.0
        futs = [ex.submit(add, i) for i in range(5)]
        _wait_until(lambda: all(f.task_id for f in futs) and fake.gateway.open_streams > 0)
        fake.stop()
        started = time.monotonic()
        for f in futs:
            exc = f.exception(timeout=30)
            assert isinstance(exc, DaemonUnavailable)
            assert str(fake.socket_path) in str(exc) and "get_result" in str(exc)
        assert time.monotonic() - started < 15
        ex.shutdown()
    assert _gcgate_threads() == []


def test_executor_cancel_futures_and_wait_false(fake: FakeDaemon) -> None:
    fake.gateway.hold = True
    client = Client(socket_path=fake.socket_path)
    ex = Executor("local", client=client, batch_size=1)
    first = ex.submit(add, 1)
    _wait_until(lambda: first.task_id is not None)
    queued = [ex.submit(add, i) for i in range(50)]
    ex.shutdown(wait=False, cancel_futures=True)
    assert not first.cancel()  # sent already: cannot be cancelled
    assert sum(f.cancelled() for f in queued) > 0
    fake.gateway.release()
    assert first.result(timeout=10) == 1
    for f in queued:
        assert f.cancelled() or f.result(timeout=10) is not None
    ex.shutdown(wait=True)  # a second call waits for the threads
    assert _gcgate_threads() == []
    client.close()


def test_executor_shutdown_from_a_done_callback(fake: FakeDaemon) -> None:
    with Client(socket_path=fake.socket_path) as client:
        ex = Executor("local", client=client)
        called = threading.Event()
        fut = ex.submit(add, 2, 2)
        fut.add_done_callback(lambda _f: (ex.shutdown(wait=True), called.set()))
        assert fut.result(timeout=10) == 4
        assert called.wait(10)
        ex.shutdown()
    assert _gcgate_threads() == []


def test_executor_owns_its_client(fake: FakeDaemon, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GCGATE_SOCKET", str(fake.socket_path))
    ex = Executor(endpoint_id="local", amqp_port=443, api_burst_limit=2)
    assert ex.submit(add, 40, 2).result(timeout=10) == 42
    ex.shutdown()
    with pytest.raises(gerrors.GcgateError, match="closed"):
        ex.client.status()
    with pytest.raises(TypeError, match="'bogus' is an invalid argument for Executor"):
        Executor("local", client=Client(socket_path=fake.socket_path), bogus=1)


def test_executor_register_function_twice(fake: FakeDaemon) -> None:
    with Client(socket_path=fake.socket_path) as client, Executor("local", client=client) as ex:
        fid = ex.register_function(add)
        with pytest.raises(ValueError, match="already registered"):
            ex.register_function(add)
        assert ex.register_function(add, function_id=fid) == fid
        assert ex.submit(add, 1, 1).result(timeout=10) == 2


def test_get_batch_result_splits_oversized_answers(
    fake: FakeDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Client(socket_path=fake.socket_path) as client:
        sent: list[int] = []

        def call(method_name: str, request: Any, **kwargs: Any) -> Any:
            assert method_name == "GetBatchResult"
            sent.append(len(request.task_ids))
            if len(request.task_ids) > 3:
                raise gerrors.ResourceExhausted("Received message larger than max")
            return pb.GetBatchResultResponse(
                tasks=[
                    pb.TaskRecord(task_id=t, status="received", pending=True)
                    for t in request.task_ids
                ]
            )

        monkeypatch.setattr(client, "_call", call)
        ids = [str(uuid.uuid4()) for _ in range(10)]
        result = client.get_batch_result(ids + ids[:2])
        assert list(result) == ids
        assert all(t["pending"] for t in result.values())
        assert max(sent) == 10 and sum(n for n in sent if n <= 3) == 10


def test_futures_are_concurrent_futures(fake: FakeDaemon) -> None:
    with Client(socket_path=fake.socket_path) as client, Executor("local", client=client) as ex:
        futs = [ex.submit(add, i) for i in range(10)]
        done, not_done = concurrent.futures.wait(futs, timeout=10)
        assert len(done) == 10 and not not_done
        assert sorted(f.result() for f in concurrent.futures.as_completed(futs)) == list(range(10))
