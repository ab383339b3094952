"""Tasks the test holds running: the "running" status, and delete_function meanwhile.

Each held task connects to a Unix socket of the test, says its name and waits
for a line back. So the test knows a task is running when it accepts its
connection, and decides when it ends, with no sleeping on either side.
"""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from gcgate import Client, NotFound
from harness import Daemon, script_function

WAIT = 60.0


@script_function
def hold(address, name):
    import socket

    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(address)
        conn.sendall(name.encode() + b"\n")
        return conn.makefile().readline().strip()


class Holder:
    """The test's side: accepts held tasks and releases them by name."""

    def __init__(self) -> None:
        self.address = str(Path(tempfile.mkdtemp(prefix="gcg-hold-", dir="/tmp")) / "hold.sock")
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(self.address)
        self.server.listen(16)
        self.server.settimeout(WAIT)
        self.held: dict[str, socket.socket] = {}

    def accept(self) -> str:
        """Wait for the next task to start running; its name."""
        conn, _ = self.server.accept()
        name = conn.makefile().readline().strip()
        self.held[name] = conn
        return name

    def release(self, name: str) -> None:
        conn = self.held.pop(name)
        conn.sendall(f"released {name}\n".encode())
        conn.close()

    def close(self) -> None:
        for conn in self.held.values():
            conn.close()
        self.server.close()
        Path(self.address).unlink(missing_ok=True)
        Path(self.address).parent.rmdir()


@pytest.fixture
def holder() -> Iterator[Holder]:
    h = Holder()
    try:
        yield h
    finally:
        h.close()


@pytest.fixture(scope="module")
def gcc(daemon: Daemon) -> Iterator[Client]:
    with Client(socket_path=daemon.socket_path) as client:
        yield client


def running_ids(client: Client) -> set[str]:
    return {t["task_id"] for t in client.list_tasks(limit=1000, status="running")}


def local_running(client: Client) -> int:
    """Tasks running on the local endpoint, as ``gcgate status`` shows them."""
    local = next(b for b in client.status()["backends"] if b["name"] == "local")
    return int(local["details"]["running"])


def test_a_task_is_running_while_a_worker_runs_it(gcc: Client, holder: Holder) -> None:
    """Two workers: two tasks run, the third waits, and starts when one ends;
    get_task, list_tasks(status=...) and the local backend's count agree."""
    fid = gcc.register_function(hold)
    ids = {n: gcc.run(holder.address, n, endpoint_id="local", function_id=fid) for n in "abc"}

    started = {holder.accept(), holder.accept()}
    (waiting,) = set(ids) - started
    statuses = {n: gcc.get_task(t)["status"] for n, t in ids.items()}
    assert statuses == {**dict.fromkeys(started, "running"), waiting: "waiting-for-ep"}
    assert all(gcc.get_task(t)["pending"] for t in ids.values())
    assert running_ids(gcc) == {ids[n] for n in started}
    assert local_running(gcc) == 2
    pending = {t["task_id"] for t in gcc.list_tasks(limit=1000, status="pending")}
    assert set(ids.values()) <= pending

    first = sorted(started)[0]
    holder.release(first)
    assert gcc.get_result(ids[first], wait=WAIT) == f"released {first}"
    assert holder.accept() == waiting  # it starts once a worker is free
    assert gcc.get_task(ids[waiting])["status"] == "running"
    assert running_ids(gcc) == {ids[n] for n in (started | {waiting}) - {first}}

    for name in sorted(holder.held):
        holder.release(name)
    results = gcc.get_batch_result(ids.values(), wait=WAIT)
    assert {n: results[t]["status"] for n, t in ids.items()} == dict.fromkeys("abc", "success")
    assert running_ids(gcc) == set()
    assert local_running(gcc) == 0


def test_a_deleted_function_runs_no_more_but_its_tasks_finish(gcc: Client, holder: Holder) -> None:
    script: dict[str, object] = {"__name__": "__main__", "hold": hold}
    exec("def hold_again(address, name):\n    return hold(address, name)\n", script)
    fid = gcc.register_function(script["hold_again"])  # a function of this test's own
    task_id = gcc.run(holder.address, "before", endpoint_id="local", function_id=fid)
    assert holder.accept() == "before"

    assert gcc.delete_function(fid) == {}  # never registered at Globus: nothing sent

    with pytest.raises(NotFound, match=f"function {fid} was deleted"):
        gcc.run(holder.address, "after", endpoint_id="local", function_id=fid)
    batch = gcc.create_batch()
    batch.add(fid, args=(holder.address, "after"))
    with pytest.raises(NotFound, match="was deleted"):
        gcc.batch_run("local", batch)
    with pytest.raises(NotFound, match="was deleted"):
        gcc.get_function(fid)
    with pytest.raises(NotFound, match="was deleted"):
        gcc.delete_function(fid)
    holder.release("before")
    assert gcc.get_result(task_id, wait=WAIT) == "released before"

    # Registered again, it runs again.
    assert gcc.register_function(script["hold_again"]) == fid
    task_id = gcc.run(holder.address, "again", endpoint_id="local", function_id=fid)
    assert holder.accept() == "again"
    holder.release("again")
    assert gcc.get_result(task_id, wait=WAIT) == "released again"
