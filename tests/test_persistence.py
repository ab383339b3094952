"""Results outlive clients, processes and daemons.

Each test gets a daemon of its own (``fresh_daemon``) to stop, kill and restart:

- a result is fetched by a second, new Python process after the submitting
  client closed (single results and ``get_batch_result``);
- results survive a clean restart (SIGTERM) and a crash (kill -9);
- tasks in flight when the daemon is killed are resumed after the restart and
  every task id resolves to its result;
- SIGTERM exits 0, removes the socket and leaves no worker process behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gcgate import Client, Executor, GcgateError, TaskExecutionFailed
from harness import Daemon, script_function

WAIT = 30.0

#: Runs in a new interpreter: prints {task_id: [status, result]} of the given ids.
FETCH_SCRIPT = """
import json, sys
from gcgate import Client

with Client() as gcc:  # the socket comes from GCGATE_SOCKET
    ids = json.loads(sys.argv[1])
    if sys.argv[2] == "batch":
        tasks = gcc.get_batch_result(ids, wait=30)
    else:
        tasks = {t: gcc.get_task(t, wait=30) for t in ids}
    print(json.dumps({t: [task["status"], task.get("result")] for t, task in tasks.items()}))
"""


@script_function
def square(x):
    return x * x


@script_function
def fail(x):
    raise RuntimeError(f"failure number {x}")


@script_function
def report_then_wait(fifo, marker, i):
    """Tell the test this task started (a line on ``fifo``), then block until
    ``marker`` exists; returns ``i * i``."""
    import os
    import time

    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        pass  # nobody reading any more: nothing to report to
    else:
        os.write(fd, f"{i}\n".encode())
        os.close(fd)
    while not os.path.exists(marker):
        time.sleep(0.01)
    return i * i


# -------------------------------------------------------------------------- helpers


def fetch_in_new_process(daemon: Daemon, task_ids: list[str], how: str) -> dict[str, list[Any]]:
    """{task_id: [status, result]} as a separate Python process sees them."""
    proc = subprocess.run(
        [sys.executable, "-c", FETCH_SCRIPT, json.dumps(task_ids), how],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def daemon_pid(daemon: Daemon) -> int:
    assert daemon.process is not None
    return daemon.process.pid


def worker_pids(parent: int) -> set[int]:
    """Pids of the local-endpoint workers whose parent is ``parent`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue  # gone meanwhile
        ppid = int(stat.rpartition(")")[2].split()[1])
        if ppid == parent and b"gcgated.backends.local.worker" in cmdline:
            found.add(int(entry.name))
    return found


@contextlib.contextmanager
def pidfds(pids: set[int]) -> Iterator[dict[int, int]]:
    """Process fds (pidfd_open): readable once the process has exited, even when it
    is not our child; held open, they also keep a reused pid from fooling us."""
    fds = {pid: os.pidfd_open(pid) for pid in pids}
    try:
        yield fds
    finally:
        for fd in fds.values():
            os.close(fd)


def exited(fds: dict[int, int], timeout: float) -> set[int]:
    """The pids among ``fds`` that have exited within ``timeout`` seconds."""
    by_fd = {fd: pid for pid, fd in fds.items()}
    readable, _, _ = select.select(list(by_fd), [], [], timeout)
    done = {by_fd[fd] for fd in readable}
    if len(done) < len(fds) and timeout > 0:
        # select returns at the first exit; wait for the others one by one.
        for fd, pid in by_fd.items():
            if pid not in done and select.select([fd], [], [], timeout)[0]:
                done.add(pid)
    return done


def read_lines(fd: int) -> list[str]:
    """Every complete line available on the non-blocking ``fd`` right now."""
    data = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError as exc:
            if exc.errno == errno.EAGAIN:
                break
            raise
        if not chunk:
            break
        data += chunk
    return data.decode().splitlines()


def read_line_blocking(fd: int, timeout: float) -> str:
    """One line from the fifo, waiting (select, no polling) at most ``timeout``."""
    buffer = b""
    while not buffer.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, "no task reported that it started"
        buffer += os.read(fd, 1)
    return buffer.decode().strip()


@contextlib.contextmanager
def start_reports(fifo: Path) -> Iterator[int]:
    """A fifo on which :func:`report_then_wait` tasks announce that they started;
    yields its non-blocking read end.

    The read end is opened first, then a write end held by the test, so a reader
    always exists for the tasks and select() never sees end-of-file.
    """
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    keep_open = os.open(fifo, os.O_WRONLY)
    try:
        yield reader
    finally:
        # Unblock whatever still waits, so no worker stays busy after the test.
        (fifo.parent / "go").touch()
        os.close(keep_open)
        os.close(reader)


# --------------------------------------------------------------------------- tests


def test_result_fetched_from_a_new_process_after_the_client_closed(
    fresh_daemon: Daemon,
) -> None:
    with Client(socket_path=fresh_daemon.socket_path) as gcc:
        square_id = gcc.register_function(square)
        fail_id = gcc.register_function(fail)
        task_ids = [gcc.run(i, endpoint_id="local", function_id=square_id) for i in range(3)]
        failed = gcc.run(5, endpoint_id="local", function_id=fail_id)
    # Closed: this client can do nothing more; the daemon keeps the tasks.
    with pytest.raises(GcgateError, match="closed"):
        gcc.get_result(task_ids[0])

    seen = fetch_in_new_process(fresh_daemon, task_ids, "single")

    assert seen == {t: ["success", square(i)] for i, t in enumerate(task_ids)}
    with (
        Client(socket_path=fresh_daemon.socket_path) as other,
        pytest.raises(TaskExecutionFailed, match="RuntimeError: failure number 5"),
    ):
        other.get_result(failed, wait=WAIT)


def test_batch_result_fetched_from_a_new_process(fresh_daemon: Daemon) -> None:
    with Client(socket_path=fresh_daemon.socket_path) as gcc:
        square_id = gcc.register_function(square)
        batch = gcc.create_batch()
        for i in range(10):
            batch.add(square_id, args=(i,))
        task_ids = gcc.batch_run("local", batch)["tasks"][square_id]

    seen = fetch_in_new_process(fresh_daemon, task_ids, "batch")

    assert seen == {t: ["success", square(i)] for i, t in enumerate(task_ids)}


@pytest.mark.parametrize("how", ["sigterm", "kill -9"])
def test_results_survive_a_daemon_restart(how: str, fresh_daemon: Daemon) -> None:
    with Client(socket_path=fresh_daemon.socket_path) as gcc:
        square_id = gcc.register_function(square)
        fail_id = gcc.register_function(fail)
        task_ids = [gcc.run(i, endpoint_id="local", function_id=square_id) for i in range(5)]
        failed = gcc.run(3, endpoint_id="local", function_id=fail_id)
        before = gcc.get_batch_result([*task_ids, failed], wait=WAIT)
        assert [before[t]["result"] for t in task_ids] == [square(i) for i in range(5)]

    if how == "sigterm":
        assert fresh_daemon.stop() == 0
    else:
        fresh_daemon.kill()
    fresh_daemon.start()

    with Client(socket_path=fresh_daemon.socket_path) as gcc:
        after = gcc.get_batch_result([*task_ids, failed])
        for t in task_ids:
            assert after[t]["status"] == "success"
            assert after[t]["result"] == before[t]["result"]
            assert after[t]["completion_t"] == before[t]["completion_t"]
        with pytest.raises(TaskExecutionFailed, match="RuntimeError: failure number 3"):
            gcc.get_result(failed)
        # The function registrations survived too: new tasks run under the same ids.
        assert gcc.get_function(square_id)["function_name"] == "square"
        again = gcc.run(12, endpoint_id="local", function_id=square_id)
        assert gcc.get_result(again, wait=WAIT) == square(12)
    seen = fetch_in_new_process(fresh_daemon, task_ids, "batch")
    assert seen == {t: ["success", square(i)] for i, t in enumerate(task_ids)}


def test_guide_example_results_fetched_after_a_crash(fresh_daemon: Daemon, tmp_path: Path) -> None:
    """examples/seed_guide.py submits, the daemon is killed, examples/fetch_result.py
    (another process) still gets every result."""
    examples = Path(__file__).resolve().parent.parent / "examples"
    ids_file = tmp_path / "ids.json"
    seed = subprocess.run(
        [sys.executable, str(examples / "seed_guide.py"), str(ids_file)],
        env=fresh_daemon.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert seed.returncode == 0, seed.stderr
    assert set(json.loads(ids_file.read_text())) == {"hello", "batch_first", "failing"}

    fresh_daemon.kill()
    fresh_daemon.start()

    fetch = subprocess.run(
        [sys.executable, str(examples / "fetch_result.py"), str(ids_file)],
        env=fresh_daemon.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert fetch.returncode == 0, fetch.stderr
    assert repr("Hello Bob Smith") in fetch.stdout
    [batch_line] = [line for line in fetch.stdout.splitlines() if line.startswith("batch task")]
    assert batch_line.endswith(f"-> {0 * 2!r}")  # noisy_multiply(0, 2)
    assert "deterministic failure" in fetch.stdout


def test_tasks_in_flight_at_kill_9_resolve_after_restart(
    fresh_daemon: Daemon, tmp_path: Path
) -> None:
    """Accepted tasks are never lost; the ones that were running run again.

    Delivery is at-least-once: a task that had started on a worker when the
    daemon was killed has no stored outcome, so the restarted daemon runs it
    again from the start (its side effects, here the "started" line, happen
    twice). Tasks that finish have exactly one stored result.
    """
    fifo = tmp_path / "started.fifo"
    marker = tmp_path / "go"
    with start_reports(fifo) as reader:
        with Client(socket_path=fresh_daemon.socket_path) as gcc:
            fid = gcc.register_function(report_then_wait)
            batch = gcc.create_batch()
            for i in range(20):
                batch.add(fid, args=(str(fifo), str(marker), i))
            task_ids = gcc.batch_run("local", batch)["tasks"][fid]
            # Every worker is now blocked inside a task (one each), the other
            # tasks are queued or prefetched.
            started_before = [read_line_blocking(reader, WAIT) for _ in range(fresh_daemon.workers)]
            assert all(t["pending"] for t in gcc.get_batch_result(task_ids).values())
            workers = worker_pids(daemon_pid(fresh_daemon))
            assert len(workers) == fresh_daemon.workers

        with pidfds(workers) as fds:
            fresh_daemon.kill()
            # The workers die with the daemon (no orphan keeps running a task).
            assert exited(fds, WAIT) == workers
        marker.touch()
        fresh_daemon.start()

        with Client(socket_path=fresh_daemon.socket_path) as gcc:
            results = gcc.get_batch_result(task_ids, wait=WAIT)
            assert [results[t]["status"] for t in task_ids] == ["success"] * 20
            assert [results[t]["result"] for t in task_ids] == [i * i for i in range(20)]

        started = started_before + read_lines(reader)
        assert sorted(started, key=int) == sorted(
            [str(i) for i in range(20)] + started_before, key=int
        )


def test_executor_futures_resolve_across_a_daemon_crash(
    fresh_daemon: Daemon, tmp_path: Path
) -> None:
    """The Executor's result streams reconnect to the restarted daemon."""
    fifo = tmp_path / "started.fifo"
    marker = tmp_path / "go"
    with (
        start_reports(fifo) as reader,
        Client(socket_path=fresh_daemon.socket_path) as gcc,
        Executor(endpoint_id="local", client=gcc) as gce,
    ):
        futures = [gce.submit(report_then_wait, str(fifo), str(marker), i) for i in range(6)]
        for _ in range(fresh_daemon.workers):
            read_line_blocking(reader, WAIT)
        assert not any(f.done() for f in futures)

        fresh_daemon.kill()
        marker.touch()
        fresh_daemon.start()

        assert [f.result(timeout=WAIT) for f in futures] == [i * i for i in range(6)]


def test_sigterm_exits_cleanly(fresh_daemon: Daemon) -> None:
    socket_path = fresh_daemon.socket_path
    pid = daemon_pid(fresh_daemon)
    with Client(socket_path=socket_path) as gcc:
        square_id = gcc.register_function(square)
        task_ids = [gcc.run(i, endpoint_id="local", function_id=square_id) for i in range(4)]
        tasks = gcc.get_batch_result(task_ids, wait=WAIT)
        ran_on = {tasks[t]["details"]["worker_pid"] for t in task_ids}
        status = gcc.status()
    assert status["pid"] == pid
    workers = worker_pids(pid)
    assert len(workers) == fresh_daemon.workers
    assert ran_on <= workers
    assert socket_path.is_socket()

    with pidfds(workers) as fds:
        assert fresh_daemon.stop() == 0, fresh_daemon.log()
        # The daemon stopped and reaped its workers before exiting.
        assert exited(fds, 0) == workers
    assert not socket_path.exists()
    assert not any(Path(f"/proc/{p}").exists() for p in workers)
    assert worker_pids(pid) == set()

    # And it comes back on the same socket and store.
    fresh_daemon.start()
    with Client(socket_path=socket_path) as gcc:
        assert gcc.get_result(task_ids[3]) == square(3)
