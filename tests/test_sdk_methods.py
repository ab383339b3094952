"""The SDK methods issue 13 found missing, on a real daemon: ``Executor.reload_tasks``,
``get_worker_hardware_details``, ``version_check``, ``logout``, the endpoint
operations, and the SDK's Executor settings gcgate keeps.

Local-endpoint tests share one daemon; the Globus path runs against the
Compute/Auth stand-in with one daemon logged in as its service account.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import globus_sdk
import grpc
import pytest
from gcgate import Client, Executor
from gcgate.constants import LOCAL_ENDPOINT_ID
from gcgate.errors import (
    FailedPrecondition,
    NotFound,
    Unauthenticated,
    VersionMismatch,
)
from gcgate.v1 import gateway_pb2 as pb
from gcgate.versions import check_daemon, check_minimum
from globus_compute_sdk.errors import VersionMismatch as SdkVersionMismatch
from globus_compute_sdk.sdk.hardware_report import run_hardware_report
from globus_compute_sdk.version import compare_versions
from harness import Daemon, GlobusDaemon, script_function
from standin import StandIn

WAIT = 60.0


@script_function
def double(x):
    return 2 * x


@script_function
def read_fifo(path):
    with open(path) as fifo:  # blocks until the test opens it for writing
        return fifo.read()


def release(fifo: Path, text: str) -> None:
    """Open ``fifo`` for writing (waits for the task to open it) and write ``text``."""
    with open(fifo, "w") as f:
        f.write(text)


def report_headings(report: str) -> list[str]:
    """The ``== ... ==`` headings of a hardware report (its values vary by the run)."""
    return re.findall(r"^== .* ==$", report, re.MULTILINE)


def batch_group(client: Client, endpoint_id: str, function_id: str, xs: list[int]) -> dict:
    """``batch_run`` of ``function_id(x)`` for each x, in a task group of its own."""
    batch = client.create_batch()
    for x in xs:
        batch.add(function_id, args=(x,))
    return client.batch_run(endpoint_id, batch)


# --------------------------------------------------------------- local endpoint


def test_reload_tasks_reattaches_to_a_task_group(client: Client, tmp_path: Path) -> None:
    function_id = client.register_function(double)
    done = batch_group(client, "local", function_id, [1, 2, 3])
    group, finished = done["task_group_id"], done["tasks"][function_id]
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    blocking = client.create_batch(task_group_id=group)
    blocker_id = client.register_function(read_fifo)
    blocking.add(blocker_id, args=(str(fifo),))
    [blocked] = client.batch_run("local", blocking)["tasks"][blocker_id]

    with Executor("local", client=client) as first:
        reloaded = first.reload_tasks(group)
        assert first.task_group_id == uuid.UUID(group)
        assert [f.task_id for f in reloaded] == [*finished, blocked]
        assert [f.result(timeout=WAIT) for f in reloaded[:3]] == [2, 4, 6]
        assert not reloaded[3].done()  # (cancel() would cancel it: test_cancel)
        # Tasks this executor has an unresolved future for are left out.
        assert [f.task_id for f in first.reload_tasks()] == finished

        with (
            Client(socket_path=client.socket_path) as other_client,
            Executor("local", client=other_client) as second,
        ):
            again = second.reload_tasks(group)
            assert [f.task_id for f in again] == [*finished, blocked]
            release(fifo, "released")
            assert [f.result(timeout=WAIT) for f in again] == [2, 4, 6, "released"]
        assert reloaded[3].result(timeout=WAIT) == "released"


def test_reload_tasks_needs_a_group_the_daemon_knows(client: Client) -> None:
    with Executor("local", client=client) as ex:
        ex.task_group_id = None
        with pytest.raises(ValueError, match="must specify a task_group_id"):
            ex.reload_tasks()
        unknown = str(uuid.uuid4())
        with pytest.raises(NotFound, match=unknown):
            ex.reload_tasks(unknown)
    with pytest.raises(RuntimeError, match="shutdown"):
        ex.reload_tasks(unknown)


def test_worker_hardware_details_on_the_local_endpoint(client: Client) -> None:
    task_id = client.get_worker_hardware_details("local")
    report = client.get_result(task_id, wait=WAIT)
    assert report_headings(report) == report_headings(run_hardware_report())
    assert "python: python_runtime_host_info" in report
    with Executor("local", client=client) as ex:
        report = ex.get_worker_hardware_details()
    headings = report_headings(run_hardware_report("Compute Endpoint worker"))
    assert report_headings(report) == headings
    assert headings[0].startswith("== Compute Endpoint worker == ")


def test_local_endpoint_operations(client: Client) -> None:
    allowed = client.get_allowed_functions("local")
    assert allowed == {"endpoint_id": LOCAL_ENDPOINT_ID, "restricted": False, "functions": []}
    with pytest.raises(FailedPrecondition, match="stop the daemon"):
        client.stop_endpoint(LOCAL_ENDPOINT_ID)
    with pytest.raises(FailedPrecondition, match="cannot be deleted"):
        client.delete_endpoint("local")
    assert client.get_endpoint_status("local")["status"] == "online"  # still there


def test_version_check_of_client_and_daemon(client: Client) -> None:
    assert client.version_check() is None
    with pytest.raises(Unauthenticated, match="gcgate login"):
        client.version_check(endpoint_version="2.0.0")  # the service needs a login


def test_client_takes_the_sdks_positional_arguments(daemon: Daemon) -> None:
    with pytest.warns(UserWarning, match="ignores 'environment'"):
        Client("production", socket_path=daemon.socket_path).close()
    with pytest.raises(TypeError, match="socket_path="):
        Client(str(daemon.socket_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Client(None, False, False, socket_path=daemon.socket_path) as client:
            assert client.status()["socket_path"] == str(daemon.socket_path)
            assert (client.web_service_address or "").startswith("https://")


def test_executor_keeps_the_sdks_settings(client: Client) -> None:
    with Executor("local", client, None, None, None, "", 16, 5671, 100, 0) as ex:
        assert (ex.batch_size, ex.amqp_port) == (16, 5671)
        assert (ex.api_burst_limit, ex.api_burst_window_s) == (8, 1)  # the SDK's clamps
        ex.amqp_port = 443
        assert ex.amqp_port == 443
        assert ex.submit(double, 4).result(timeout=WAIT) == 8
    with Executor("local", client=client) as ex:
        assert (ex.amqp_port, ex.api_burst_limit, ex.api_burst_window_s) == (None, 4, 16)


class RecordingApp:
    """The part of a ``globus_sdk.GlobusApp`` a Client uses, recording ``logout``."""

    def __init__(self) -> None:
        self.logged_out = False

    def add_scope_requirements(self, requirements: dict[str, Any]) -> None:
        pass

    def get_authorizer(self, resource_server: str) -> globus_sdk.NullAuthorizer:
        return globus_sdk.NullAuthorizer()

    def logout(self) -> None:
        self.logged_out = True


def test_logout_ends_the_login_the_client_uses(
    daemon: Daemon, client: Client, stub: Any, caplog: pytest.LogCaptureFixture
) -> None:
    assert client.logout() is None  # the daemon's login (nobody logged in: no error)
    assert client.status()["login"]["state"] == "logged_out"
    with pytest.raises(grpc.RpcError) as refused:
        stub.Logout(pb.LogoutRequest())
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert str(daemon.state_dir / "owner.key") in (refused.value.details() or "")

    app = RecordingApp()
    with Client(socket_path=daemon.socket_path, app=app) as with_app:
        with_app.logout()
    assert app.logged_out

    authorizer = globus_sdk.AccessTokenAuthorizer("a-token")
    with (
        Client(socket_path=daemon.socket_path, authorizer=authorizer) as with_token,
        caplog.at_level(logging.WARNING, logger="gcgate.client"),
    ):
        with_token.logout()
    assert "Logout is not supported" in caplog.text and "a-token" not in caplog.text


# ---------------------------------------------------------------- Globus path


@pytest.fixture
def gcc(remote: GlobusDaemon, standin: StandIn) -> Iterator[Client]:
    with Client(socket_path=remote.socket_path) as client:
        yield client


def test_globus_endpoint_operations(gcc: Client, standin: StandIn) -> None:
    allowed = gcc.get_allowed_functions(standin.endpoint_id)
    assert allowed == {"endpoint_id": standin.endpoint_id, "restricted": False, "functions": []}

    endpoint = standin.compute.add_endpoint().uuid
    stopped = gcc.stop_endpoint(endpoint)
    assert set(stopped) == {"endpoint_id", "lock_expiration_timestamp"}
    assert gcc.get_endpoint_status(endpoint)["status"] == "offline"
    assert gcc.delete_endpoint(endpoint) == {"result": 302}
    assert endpoint not in standin.compute.endpoints
    with pytest.raises(NotFound, match="ENDPOINT_NOT_FOUND"):
        gcc.get_endpoint_metadata(endpoint)
    with pytest.raises(NotFound):
        gcc.stop_endpoint(endpoint)
    requests = standin.stats.by_path("compute")
    assert requests[f"DELETE /v2/endpoints/{endpoint}"] == 1
    assert requests[f"POST /v3/endpoints/{endpoint}/lock"] == 2  # the second: 404


def test_version_check_against_the_service(gcc: Client) -> None:
    gcc.version_check(endpoint_version="2.31.0")  # the stand-in's minimum is 1.0.0
    with pytest.raises(VersionMismatch) as ours:
        gcc.version_check(endpoint_version="0.9.1")
    with pytest.raises(SdkVersionMismatch) as sdks:
        compare_versions("0.9.1", "1.0.0", package_name="globus-compute-endpoint")
    assert str(ours.value) == str(sdks.value)
    assert ours.value.version_message == sdks.value.version_message


def test_reload_tasks_of_a_globus_task_group(gcc: Client, standin: StandIn) -> None:
    function_id = gcc.register_function(double)
    submitted = batch_group(gcc, standin.endpoint_id, function_id, [5, 6])
    with Executor(standin.endpoint_id, client=gcc) as ex:
        futures = ex.reload_tasks(submitted["task_group_id"])
        assert [f.task_id for f in futures] == submitted["tasks"][function_id]
        assert [f.result(timeout=WAIT) for f in futures] == [10, 12]


def test_worker_hardware_details_on_a_globus_endpoint(gcc: Client, standin: StandIn) -> None:
    with Executor(standin.endpoint_id, client=gcc) as ex:
        report = ex.get_worker_hardware_details()
    assert report_headings(report) == report_headings(
        run_hardware_report("Compute Endpoint worker")
    )


# ------------------------------------------------------------- version rules


@pytest.mark.fast
@pytest.mark.parametrize(
    ("current", "minimum"),
    [
        ("2.31.0", "1.0.0"),
        ("1.0.0", "1.0.0"),
        ("1.0", "1.0.0"),
        ("0.9.9", "1.0.0"),
        ("1.0.0a6", "1.0.0"),
        ("1.0.0rc1", "1.0.0a0"),
        ("1.0.0", "1.0.0a6"),
        ("1.0.0.post1", "1.0.0"),
        ("1.0.0.dev3", "2.0.0"),
        ("2.0.0", "2.0.0.dev1"),
        ("1.9.0", "2.0.0.dev1"),
        ("10.0.0", "9.9.9"),
    ],
)
def test_minimum_versions_as_the_sdk_compares_them(current: str, minimum: str) -> None:
    try:
        compare_versions(current, minimum, package_name="globus-compute-endpoint")
    except SdkVersionMismatch as exc:
        with pytest.raises(VersionMismatch) as ours:
            check_minimum(current, minimum, package_name="globus-compute-endpoint")
        assert str(ours.value) == str(exc)
    else:
        check_minimum(current, minimum, package_name="globus-compute-endpoint")


@pytest.mark.fast
def test_a_client_newer_than_its_daemon_is_a_mismatch() -> None:
    check_daemon("0.1.0", "0.1.0", "/s.sock")
    check_daemon("0.1.0", "0.2.0", "/s.sock")
    check_daemon("0.2.0rc1", "0.2.0", "/s.sock")
    with pytest.raises(VersionMismatch, match=r"newer than the gcgate daemon at /s\.sock"):
        check_daemon("0.2.0", "0.1.9", "/s.sock")
    with pytest.raises(VersionMismatch, match="not a version"):
        check_daemon("0.1.0", "fake", "/s.sock")
