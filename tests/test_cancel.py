"""Cancelling tasks (CancelTasks, Client.cancel_tasks, gcgate cancel, Future.cancel)
and the local endpoint's configurable size limits, against real daemons: real
worker processes, and the Compute stand-in for Globus tasks.

A task that must be running when it is cancelled writes a file when it starts;
the test waits for that file (never for time to pass).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from gcgate import Client, Executor
from gcgate.errors import InvalidArgument, NotFound, TaskCancelled, TaskExecutionFailed
from harness import ConfiguredDaemon, Daemon, GlobusDaemon, script_function, serve, wait_until
from standin import StandIn

WAIT = 60.0


@script_function
def block_until_released(marker: str, release: str) -> str:
    """Say it started (the marker file), then wait for the release file."""
    import os
    import time

    open(marker, "w").close()
    while not os.path.exists(release):
        time.sleep(0.05)
    return "released"


@script_function
def sleep_forever(marker: str) -> None:
    """What the user found holding a worker: a task that never ends."""
    import time

    open(marker, "w").close()
    time.sleep(10**6)


@script_function
def double(x: int) -> int:
    return 2 * x


@script_function
def worker_pid(marker: str) -> int:
    """The pid of the worker running this task (written at its start)."""
    import os

    with open(marker, "w") as f:
        f.write(str(os.getpid()))
    return os.getpid()


@script_function
def blob(n: int) -> bytes:
    return b"r" * n


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon with a single worker, so "queued behind a running task" is certain."""
    yield from serve(Daemon(tmp_path_factory.mktemp("cancel") / "state", workers=1).start())


@pytest.fixture
def gcc(one_worker: Daemon) -> Iterator[Client]:
    with Client(socket_path=one_worker.socket_path) as client:
        yield client


def cli_command(client: Client) -> list[str]:
    return [sys.executable, "-m", "gcgate.cli", "--socket", str(client.socket_path)]


def status_of(client: Client, task_id: str) -> str:
    """The task's status, also for a cancelled one (whose get_task raises)."""
    return str(client.get_tasks([task_id])[task_id]["status"])


def start_blocking(client: Client, tmp_path: Path, name: str = "a") -> tuple[str, Path, Path]:
    """A task running on the worker (its marker exists), and its release file."""
    marker, release = tmp_path / f"{name}.started", tmp_path / f"{name}.release"
    fid = client.register_function(block_until_released)
    task_id = client.run(str(marker), str(release), endpoint_id="local", function_id=fid)
    wait_until("the task to start", marker.exists)
    return task_id, marker, release


# ------------------------------------------------------------------ local endpoint


def test_a_running_task_shows_as_running_in_tasks_and_status(gcc: Client, tmp_path: Path) -> None:
    task_id, _, release = start_blocking(gcc, tmp_path)
    try:
        assert gcc.get_task(task_id)["status"] == "running"
        running = [t["task_id"] for t in gcc.list_tasks(status="running")]
        assert running == [task_id]
        local = next(b for b in gcc.status()["backends"] if b["name"] == "local")
        assert local["details"]["running"] == 1
        cli = subprocess.run(
            [*cli_command(gcc), "tasks", "--status", "running", "--json"],
            capture_output=True,
            text=True,
            timeout=WAIT,
        )
        assert [t["task_id"] for t in json.loads(cli.stdout)] == [task_id]
    finally:
        release.touch()
    assert gcc.get_result(task_id, wait=WAIT) == "released"


def test_queued_task_is_dropped_and_a_running_one_killed_and_replaced(
    gcc: Client, tmp_path: Path
) -> None:
    marker = tmp_path / "sleeping.started"
    sleeper_fid = gcc.register_function(sleep_forever)
    pid_fid = gcc.register_function(worker_pid)
    before = gcc.status()["tasks"]["cancelled"]
    sleeper = gcc.run(str(marker), endpoint_id="local", function_id=sleeper_fid)
    wait_until("the sleeper to start", marker.exists)
    # Behind it on the only worker: prefetched by that worker, or in the queue.
    queued = gcc.run(str(tmp_path / "never"), endpoint_id="local", function_id=pid_fid)
    assert gcc.get_task(queued)["status"] == "waiting-for-ep"

    answer = gcc.cancel_tasks([queued])

    assert answer[queued]["cancelled"] is True
    assert answer[queued]["status"] == "cancelled"
    assert "did not run" in answer[queued]["message"]
    assert gcc.get_task(sleeper)["status"] == "running"  # untouched

    answer = gcc.cancel_tasks([sleeper])
    assert answer[sleeper]["cancelled"] is True
    assert "was killed" in answer[sleeper]["message"]
    with pytest.raises(TaskCancelled) as info:
        gcc.get_result(sleeper)
    assert info.value.task_id == sleeper and "killed" in info.value.reason
    assert isinstance(info.value, concurrent.futures.CancelledError)
    # The replacement worker runs later tasks; the dropped one never ran.
    later = gcc.run(str(tmp_path / "later.pid"), endpoint_id="local", function_id=pid_fid)
    assert gcc.get_result(later, wait=WAIT) == int((tmp_path / "later.pid").read_text())
    assert not (tmp_path / "never").exists()
    assert gcc.status()["tasks"]["cancelled"] == before + 2
    listed = {t["task_id"] for t in gcc.list_tasks(status="cancelled")}
    assert {queued, sleeper} <= listed


def test_a_skipped_task_that_brought_its_function_leaves_the_worker_able_to_run_it(
    gcc: Client, tmp_path: Path
) -> None:
    """The first task of a function carries its code to the worker; cancelled
    while the worker holds it, the worker still caches that code (the daemon
    counts it as sent), so the function's next task runs on that same worker."""
    marker, release = tmp_path / "started", tmp_path / "release"
    blocker = gcc.register_function(block_until_released)
    # A function no worker has seen: its first task carries the code.
    name = f"fresh_{uuid.uuid4().hex}"
    fresh = gcc.register_source_code(f"def {name}(x):\n    return x + 1\n", name)
    running = gcc.run(str(marker), str(release), endpoint_id="local", function_id=blocker)
    wait_until("the blocker to start", marker.exists)
    held = gcc.run(1, endpoint_id="local", function_id=fresh)
    assert gcc.cancel_tasks([held])[held]["cancelled"] is True
    release.touch()
    assert gcc.get_result(running, wait=WAIT) == "released"
    again = gcc.run(2, endpoint_id="local", function_id=fresh)
    assert gcc.get_result(again, wait=WAIT) == 3


def test_cancelling_a_final_task_says_so_and_unknown_ids_are_not_found(gcc: Client) -> None:
    fid = gcc.register_function(double)
    done = gcc.run(4, endpoint_id="local", function_id=fid)
    assert gcc.get_result(done, wait=WAIT) == 8

    answer = gcc.cancel_tasks([done, done])

    assert list(answer) == [done]
    assert answer[done]["cancelled"] is False
    assert answer[done]["status"] == "success"
    assert "already final" in answer[done]["message"]
    assert gcc.get_result(done) == 8
    unknown = str(uuid.uuid4())
    with pytest.raises(NotFound, match=unknown):
        gcc.cancel_tasks([done, unknown])
    with pytest.raises(InvalidArgument, match="not a UUID"):
        gcc.cancel_tasks(["nope"])


def test_future_cancel_cancels_the_task_at_the_daemon(gcc: Client, tmp_path: Path) -> None:
    marker = tmp_path / "future.started"
    with Executor(endpoint_id="local", client=gcc) as ex:
        future = ex.submit(sleep_forever, str(marker))
        # The worker may start the task before the submitter thread has read
        # BatchRun's answer (the daemon dispatches, then answers): wait for both.
        wait_until("the task to start", lambda: marker.exists() and future.task_id is not None)
        assert future.running()

        assert future.cancel() is True

        assert future.cancelled()
        with pytest.raises(concurrent.futures.CancelledError):
            future.result(timeout=WAIT)
        assert status_of(gcc, future.task_id) == "cancelled"
        # A finished future cannot be cancelled, as in concurrent.futures.
        finished = ex.submit(double, 21)
        assert finished.result(timeout=WAIT) == 42
        assert finished.cancel() is False


def test_a_future_of_a_task_cancelled_elsewhere_reports_cancelled(
    gcc: Client, tmp_path: Path
) -> None:
    marker = tmp_path / "elsewhere.started"
    with Executor(endpoint_id="local", client=gcc) as ex:
        future = ex.submit(sleep_forever, str(marker))
        wait_until("the task to start", lambda: marker.exists() and future.task_id is not None)
        with Client(socket_path=gcc.socket_path) as other:
            other.cancel_tasks([future.task_id])
        wait_until("the future to learn it", future.done)
        assert future.cancelled()


def test_gcgate_cancel_command(gcc: Client, tmp_path: Path) -> None:
    task_id, _, release = start_blocking(gcc, tmp_path, "cli")
    fid = gcc.register_function(double)
    done = gcc.run(1, endpoint_id="local", function_id=fid)
    release_later = release  # released only after the cancel: the task must be running
    command = [*cli_command(gcc), "cancel"]
    try:
        text = subprocess.run(
            [*command, task_id], capture_output=True, text=True, timeout=WAIT, check=True
        ).stdout
        assert task_id in text and "cancelled" in text and "killed" in text
        assert gcc.get_result(done, wait=WAIT) == 2
        as_json = subprocess.run(
            [*command, "--json", task_id, done], capture_output=True, text=True, timeout=WAIT
        )
        assert as_json.returncode == 0
        doc = json.loads(as_json.stdout)
        assert doc[task_id] == {
            "cancelled": False,
            "status": "cancelled",
            "message": "the task was already final (cancelled); nothing to cancel",
        }
        assert doc[done]["status"] == "success" and doc[done]["cancelled"] is False
        unknown = subprocess.run(
            [*command, str(uuid.uuid4())], capture_output=True, text=True, timeout=WAIT
        )
        assert unknown.returncode == 5 and "not known" in unknown.stderr
        result = subprocess.run(
            [*cli_command(gcc), "result", task_id],
            capture_output=True,
            text=True,
            timeout=WAIT,
        )
        assert result.returncode == 1 and "was cancelled" in result.stderr
        status = subprocess.run(
            [*cli_command(gcc), "status"],
            capture_output=True,
            text=True,
            timeout=WAIT,
        )
        assert "cancelled" in status.stdout
    finally:
        release_later.touch()


def test_a_cancel_holds_across_a_kill_9_and_restart(fresh_daemon: Daemon, tmp_path: Path) -> None:
    marker = tmp_path / "restart.started"
    with Client(socket_path=fresh_daemon.socket_path) as client:
        fid = client.register_function(sleep_forever)
        task_id = client.run(str(marker), endpoint_id="local", function_id=fid)
        wait_until("the task to start", marker.exists)
        assert client.cancel_tasks([task_id])[task_id]["cancelled"]
    fresh_daemon.kill()  # right after the answer: nothing flushed on the way out
    marker.unlink()
    fresh_daemon.start()
    with Client(socket_path=fresh_daemon.socket_path) as client:
        assert status_of(client, task_id) == "cancelled"
        pid_fid = client.register_function(worker_pid)
        probe = client.run(str(tmp_path / "probe"), endpoint_id="local", function_id=pid_fid)
        assert client.get_result(probe, wait=WAIT) > 0
    assert not marker.exists()  # not resumed
    assert "resumed" not in fresh_daemon.log().split("gcgated stopped")[-1]


# --------------------------------------------------------------------------- Globus


def test_a_globus_task_is_no_longer_waited_for_and_its_late_result_dropped(
    remote: GlobusDaemon, pushing: StandIn
) -> None:
    standin = pushing
    with Client(socket_path=remote.socket_path) as client:
        fid = client.register_function(double)
        warm = client.run(0, endpoint_id=standin.endpoint_id, function_id=fid)
        assert client.get_result(warm, wait=WAIT) == 0
        standin.compute.set_endpoint_status(standin.endpoint_id, "offline")
        try:
            known = set(standin.compute.tasks)
            task_id = client.run(21, endpoint_id=standin.endpoint_id, function_id=fid)
            wait_until("the task at the service", lambda: len(set(standin.compute.tasks) - known))
            [service_id] = set(standin.compute.tasks) - known
            wait_until("the submit answered", lambda: globus(client)["waiting_to_submit"] == 0)
            repeats = globus(client)["pushes_ignored_as_repeats"]

            answer = client.cancel_tasks([task_id])[task_id]

            assert answer["cancelled"] is True
            assert "may still run" in answer["message"]
            assert "result, if one comes, is ignored" in answer["message"]
            assert globus(client)["in_flight"] == 0
        finally:
            standin.compute.set_endpoint_status(standin.endpoint_id, "online")
        assert standin.compute.wait([service_id], timeout=WAIT)  # it ran there anyway
        wait_until(
            "the late result acknowledged and dropped",
            lambda: globus(client)["pushes_ignored_as_repeats"] > repeats,
        )
        with pytest.raises(TaskCancelled, match="may still run"):
            client.get_result(task_id)
        assert (
            client.get_result(
                client.run(5, endpoint_id=standin.endpoint_id, function_id=fid), wait=WAIT
            )
            == 10
        )


def globus(client: Client) -> dict:
    return next(b for b in client.status()["backends"] if b["name"] == "globus")["details"]


# --------------------------------------------------------------------------- limits


def test_nine_megabytes_pass_the_default_local_limits_measured_in_user_bytes(
    gcc: Client,
) -> None:
    """A 9 MB argument is 12.2 MB of base64 text on the wire; the local endpoint
    counts the 9 MB the user passed, and the result likewise."""
    fid = gcc.register_function(blob)
    data = os.urandom(9_000_000)
    echo_fid = gcc.register_function(echo)
    payload = gcc.fx_serializer.task_payload((data,), {})
    assert len(payload) > 12_000_000  # what the service would count
    task_id = gcc.run(data, endpoint_id="local", function_id=echo_fid)
    assert gcc.get_result(task_id, wait=WAIT) == data
    assert (
        gcc.get_result(gcc.run(9_000_000, endpoint_id="local", function_id=fid), wait=WAIT)
        == b"r" * 9_000_000
    )


@script_function
def echo(x: object) -> object:
    return x


def test_over_the_local_limits_names_the_limit_and_the_setting(gcc: Client) -> None:
    echo_fid = gcc.register_function(echo)
    before = gcc.status()["store"]["task_records"]
    with pytest.raises(InvalidArgument) as info:
        gcc.run(b"x" * 10_100_000, endpoint_id="local", function_id=echo_fid)
    message = info.value.message
    assert "10.1 MB" in message and "limit of 10 MB" in message
    assert "local_max_payload_mb" in message
    assert gcc.status()["store"]["task_records"] == before  # nothing stored

    fid = gcc.register_function(blob)
    with pytest.raises(TaskExecutionFailed) as failed:
        gcc.get_result(gcc.run(10_100_000, endpoint_id="local", function_id=fid), wait=WAIT)
    text = str(failed.value)
    assert "MaxResultSizeExceeded" in text and "limit of 10 MB" in text
    assert "local_max_result_mb" in text


def test_raised_local_limits_let_larger_payloads_and_results_through(tmp_path: Path) -> None:
    settings = {"local_max_payload_mb": 20, "local_max_result_mb": 20, "workers": 1}
    daemon = ConfiguredDaemon(tmp_path / "state", settings).start()
    try:
        with Client(socket_path=daemon.socket_path) as client:
            data = b"y" * 15_000_000
            echo_fid = client.register_function(echo)
            assert (
                client.get_result(
                    client.run(data, endpoint_id="local", function_id=echo_fid), wait=WAIT
                )
                == data
            )
            with pytest.raises(InvalidArgument, match="limit of 20 MB"):
                client.run(b"z" * 21_000_000, endpoint_id="local", function_id=echo_fid)
    finally:
        daemon.close()


def test_lowered_local_limit_and_a_bad_setting(tmp_path: Path) -> None:
    daemon = ConfiguredDaemon(
        tmp_path / "state", {"local_max_payload_mb": 1, "local_max_result_mb": 1}
    ).start()
    try:
        with Client(socket_path=daemon.socket_path) as client:
            fid = client.register_function(blob)
            with pytest.raises(TaskExecutionFailed, match="limit of 1 MB"):
                client.get_result(
                    client.run(1_200_000, endpoint_id="local", function_id=fid), wait=WAIT
                )
            assert (
                client.get_result(
                    client.run(900_000, endpoint_id="local", function_id=fid), wait=WAIT
                )
                == b"r" * 900_000
            )
    finally:
        daemon.close()
    bad = subprocess.run(
        [str(Path(sys.executable).parent / "gcgated"), "--state-dir", str(tmp_path / "bad")],
        env={**os.environ, "GCGATE_LOCAL_MAX_RESULT_MB": "100"},
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert bad.returncode == 2
    assert "local_max_result_mb must be > 0 and at most 45" in bad.stderr
