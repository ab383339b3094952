"""The daemon's store (gcgated.store.Store), used directly on a temporary directory.

No daemon here: these pin down the store's own promises (content-addressed
functions, complete-once, each write one transaction, resume bookkeeping,
retention that starts at the first retrieval, the size limit, backends' tables,
JSON-only storage) so the life-cycle can rely on them.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import sqlite3
import stat
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from diskcache.core import MODE_PICKLE
from gcgated.store import NewTask, Store, function_id_for, records, sql
from gcgated.store.jsondisk import COMPRESS_MIN_CHARS
from gcgated.store.schema import DELETED_AT, RUN_DATA_LOST

pytestmark = pytest.mark.fast

ENDPOINT = "9c278244-27d0-5cb4-bbcf-085144a7a70e"
BIG = 1 << 40
#: Long enough that nothing expires in real time while a test runs; expiry is
#: then driven explicitly with ``expire(now=...)``.
RETENTION = 30.0


def registration(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "function_name": "double",
        "function_code": "def double(x):\n    return 2 * x\n",
        "serialized": False,
        "meta": {"python_version": "3.11.7", "sdk_version": "0.1.0", "serde_identifier": ""},
        "description": "doubles",
        "public": False,
        "group": "",
    }
    record.update(overrides)
    return record


def new_task(function_id: str = "f", payload: str = "2\n11\n[]2\n11\n{}") -> NewTask:
    return NewTask(
        task_id=str(uuid.uuid4()),
        function_id=function_id,
        endpoint_id=ENDPOINT,
        task_group_id=str(uuid.uuid4()),
        payload=payload,
        result_serializers=("globus_compute_sdk.serialize.JSONData",),
    )


def success(task_id: str, result: str = "11\n4") -> dict[str, Any]:
    return {"task_id": task_id, "status": "success", "result": result, "completion_t": "1.5"}


def failure(task_id: str) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "status": "failed",
        "exception": "Traceback ...",
        "completion_t": "2",
    }


def open_store(directory: Path, **kwargs: Any) -> Store:
    kwargs.setdefault("size_limit_bytes", BIG)
    kwargs.setdefault("retention_seconds", RETENTION)
    return Store(directory, **kwargs)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "store")
    try:
        yield s
    finally:
        s.close()


def retrieved_at(store: Store, task_id: str) -> float | None:
    """When the task's result was first retrieved (None: never)."""
    [(_, when)] = sql.get_many(store._cache, "tasks", [task_id], column="tag").values()
    return when


def expire(store: Store, now: float) -> int:
    """Sweep what retention lets go as if it were ``now``; how many results went."""
    gone, after = 0, ""
    while after is not None:
        page, after = store.purge_page(store.expired_filter(now), after, how="")
        gone += page.tasks
    return gone


# ------------------------------------------------------------------ functions


def test_store_directory_is_private(store: Store) -> None:
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700


def test_put_function_is_content_addressed(store: Store) -> None:
    fid, created = store.put_function(registration())
    assert created is True
    assert str(uuid.UUID(fid)) == fid
    assert fid == function_id_for(registration())

    # Same body and metadata (in any key order): same id, not created again.
    again = dict(reversed(list(registration().items())))
    assert store.put_function(again) == (fid, False)

    other, created = store.put_function(registration(description="doubles, twice"))
    assert created is True
    assert other != fid
    assert store.put_function(registration(public=True))[0] not in (fid, other)

    record = store.get_function(fid)
    assert record is not None
    assert record["function_id"] == fid
    assert record["description"] == "doubles"
    assert record["created_at"] <= time.time()
    assert store.get_function(str(uuid.uuid4())) is None
    assert store.counts()["functions"] == 3

    # Deleted: the record stays (tasks accepted before still run with its code),
    # marked; registering the same function again makes it a live record again.
    store.delete_function(fid)
    deleted = store.get_function(fid)
    assert deleted is not None and deleted["function_code"] == record["function_code"]
    assert deleted[DELETED_AT] >= record["created_at"]
    assert store.put_function(registration()) == (fid, True)
    assert DELETED_AT not in (store.get_function(fid) or {DELETED_AT: 0})
    assert store.counts()["functions"] == 3


# ---------------------------------------------------------------------- tasks


def test_add_complete_get_round_trip(store: Store) -> None:
    a, b = new_task(), new_task()
    records = store.add_tasks([a, b], "waiting-for-ep")
    assert [r["task_id"] for r in records] == [a.task_id, b.task_id]

    pending = store.get_task(a.task_id)
    assert pending is not None
    assert pending["status"] == "waiting-for-ep"
    assert pending["function_id"] == a.function_id
    assert pending["endpoint_id"] == ENDPOINT
    assert pending["task_group_id"] == a.task_group_id
    assert "result" not in pending
    assert retrieved_at(store, a.task_id) is None  # a pending read starts no clock

    written = store.complete_tasks([success(a.task_id), failure(b.task_id)])
    assert [r["task_id"] for r in written] == [a.task_id, b.task_id]

    done = store.get_tasks([a.task_id, b.task_id, "nope"])
    assert done["nope"] is None
    assert done[a.task_id] == {**pending, **success(a.task_id)}
    assert done[b.task_id]["status"] == "failed"
    assert done[b.task_id]["exception"] == "Traceback ..."
    assert store.counts() == {
        "pending": 0,
        "success": 1,
        "failed": 1,
        "cancelled": 0,
        "reused": 0,
        "functions": 0,
        "task_records": 2,
    }


def test_complete_twice_is_ignored(store: Store) -> None:
    t = new_task()
    store.add_tasks([t], "waiting-for-ep")
    assert len(store.complete_tasks([success(t.task_id, "11\n1")])) == 1

    # A duplicate report (e.g. after a resume) neither overwrites nor counts again,
    # even when it disagrees; an unknown task id is ignored too.
    assert store.complete_tasks([success(t.task_id, "11\n2"), failure(t.task_id)]) == []
    assert store.complete_tasks([success(str(uuid.uuid4()))]) == []
    # Reported twice in one batch: written and counted once, as first reported.
    u = new_task()
    store.add_tasks([u], "waiting-for-ep")
    assert len(store.complete_tasks([failure(u.task_id), success(u.task_id)])) == 1

    record = store.get_task(t.task_id)
    assert record is not None
    assert record["result"] == "11\n1"
    counts = store.counts()
    assert (counts["success"], counts["failed"], counts["pending"]) == (1, 1, 0)
    failed = store.get_task(u.task_id)
    assert failed is not None and failed["status"] == "failed"


def test_resumable_yields_unfinished_and_drops_crash_leftovers(store: Store) -> None:
    running, waiting, done = new_task(), new_task(), new_task()
    store.add_tasks([running, waiting, done], "waiting-for-ep")
    store.complete_tasks([success(done.task_id)])

    # The final task's run data is still there (dropped with a later completion,
    # or at resume after a crash). A store migrated from the old layout (a
    # database per table, which shared no transaction) may also hold run data
    # whose task record was never written (the client was never answered).
    assert store._inflight.get(done.task_id) is not None
    never_acknowledged = new_task()
    run_data = {"endpoint_id": ENDPOINT, "function_id": "f", "payload": "x"}
    store._inflight.set(never_acknowledged.task_id, {**run_data, "result_serializers": []})
    assert len(store._inflight) == 4

    resumed = {record["task_id"]: (record, run) for record, run in store.resumable()}
    assert set(resumed) == {running.task_id, waiting.task_id}
    record, run = resumed[running.task_id]
    assert record["status"] == "waiting-for-ep"
    assert run == {
        "endpoint_id": ENDPOINT,
        "function_id": running.function_id,
        "payload": running.payload,
        "result_serializers": list(running.result_serializers),
    }
    # The leftovers are gone; the final task keeps its record.
    assert store._inflight.get(never_acknowledged.task_id) is None
    assert store._inflight.get(done.task_id) is None
    assert store.counts()["pending"] == 2
    final = store.get_task(done.task_id)
    assert final is not None
    assert final["status"] == "success"
    assert store.get_task(never_acknowledged.task_id) is None


# ------------------------------------------------------------------ retention


def test_retention_clock_starts_at_first_retrieval(store: Store) -> None:
    retrieved, unretrieved, pending = new_task(), new_task(), new_task()
    store.add_tasks([retrieved, unretrieved, pending], "waiting-for-ep")
    store.complete_tasks([success(retrieved.task_id), failure(unretrieved.task_id)])

    # Final but never read: nothing expires, however far in the future.
    assert expire(store, time.time() + 10 * 365 * 86400) == 0

    before = time.time()
    assert store.get_task(retrieved.task_id) is not None
    assert store.get_task(pending.task_id) is not None
    first = retrieved_at(store, retrieved.task_id)
    assert first is not None
    assert before <= first <= time.time()
    assert retrieved_at(store, pending.task_id) is None

    # Later reads do not push the clock back.
    assert store.get_task(retrieved.task_id) is not None
    assert retrieved_at(store, retrieved.task_id) == first

    # Not culled before its retention ran out...
    assert expire(store, first + RETENTION - 1) == 0
    assert store.get_task(retrieved.task_id) is not None
    # ...and culled after it; the unretrieved and the pending one stay.
    assert expire(store, first + RETENTION + 1) == 1
    assert store.get_task(retrieved.task_id) is None
    assert store.get_task(unretrieved.task_id) is not None
    assert store.get_task(pending.task_id) is not None
    assert store.counts()["task_records"] == 2
    # The counters are history: expiry does not undo them.
    assert (store.counts()["success"], store.counts()["failed"]) == (1, 1)


def test_a_swept_retrieved_result_frees_its_room(tmp_path: Path) -> None:
    # Retention 0: a result goes once retrieved.
    store = open_store(tmp_path / "store", retention_seconds=0)
    try:
        t = new_task()
        store.add_tasks([t], "waiting-for-ep")
        # Incompressible, so it takes real room on disk.
        big = "00\n" + base64.b64encode(os.urandom(300_000)).decode()
        store.complete_tasks([success(t.task_id, big)])
        store.release_space()
        store.size_limit_bytes = store.size_bytes() + 1000
        assert store.has_room_for(100)
        assert not store.has_room_for(200_000)
        assert expire(store, time.time()) == 0  # never retrieved: kept

        record = store.get_task(t.task_id)
        assert record is not None
        assert record["result"] == big
        assert store.get_task(t.task_id) is None  # retrieved once: gone for readers
        assert expire(store, time.time()) == 1  # and swept
        store.release_space()
        assert store.has_room_for(200_000)
        assert store.size_bytes() < store.size_limit_bytes - 200_000
    finally:
        store.close()


# --------------------------------------------------------------- listing, counts


def test_recent_tasks_filters_by_function_endpoint_and_time(store: Store) -> None:
    """Each filter, alone and together, on plain records and on one stored
    compressed (a large result), which SQLite cannot search and Python checks."""
    other_endpoint = str(uuid.uuid4())
    f, g = str(uuid.uuid4()), str(uuid.uuid4())
    early = [new_task(f), new_task(g)]
    store.add_tasks(early, "waiting-for-ep")
    cut = max(r["created_at"] for r in store.recent_tasks(10))
    late_f, late_g = new_task(f), dataclasses.replace(new_task(g), endpoint_id=other_endpoint)
    wait_for_clock_after(cut)
    store.add_tasks([late_f, late_g], "waiting-for-ep")
    big = base64.b64encode(os.urandom(COMPRESS_MIN_CHARS)).decode()
    store.complete_tasks([success(late_f.task_id, "00\n" + big), failure(early[1].task_id)])
    (kind,) = store._cache._con.execute(
        "SELECT typeof(value) FROM Cache WHERE key = ?", (f"tasks:{late_f.task_id}",)
    ).fetchone()
    assert kind == "blob"  # compressed: SQLite cannot search it, Python checks it

    def ids(**filters: Any) -> set[str]:
        return {r["task_id"] for r in store.recent_tasks(10, **filters)}

    assert ids(function_id=f) == {early[0].task_id, late_f.task_id}
    assert ids(function_id=g) == {early[1].task_id, late_g.task_id}
    assert ids(endpoint_id=other_endpoint) == {late_g.task_id}
    assert ids(endpoint_id=ENDPOINT, function_id=g) == {early[1].task_id}
    later = {late_f.task_id, late_g.task_id}
    assert ids(since=cut + 1e-6) == later
    assert ids(since=cut + 1e-6, status="success") == {late_f.task_id}
    assert ids(function_id=g, status="failed") == {early[1].task_id}
    assert ids(function_id=g, status="pending") == {late_g.task_id}
    assert ids(function_id=str(uuid.uuid4())) == set()
    assert [r["task_id"] for r in store.recent_tasks(1, function_id=f)] == [late_f.task_id]


def wait_for_clock_after(moment: float) -> None:
    """Return once time.time() is past ``moment`` (a few microseconds at most)."""
    while time.time() <= moment:
        pass


def test_functions_listed_newest_first_by_name_and_deleted_on_request(store: Store) -> None:
    first, _ = store.put_function(registration(function_name="double"))
    other, _ = store.put_function(registration(function_name="other", function_code="x = 1\n"))
    second, _ = store.put_function(
        registration(function_name="double", function_code="def double(x):\n    return x + x\n")
    )
    store.delete_function(first)

    def ids(limit: int = 10, name: str = "", **kw: Any) -> list[str]:
        return [r["function_id"] for r in store.functions(limit, name, **kw)]

    assert ids() == [second, other]
    assert ids(deleted=True) == [second, other, first]
    assert ids(name="double", deleted=True) == [second, first]
    assert ids(name="double") == [second]
    assert ids(name="doub") == []
    assert ids(1) == [second]
    assert store.function_names([first, other, "unknown"]) == {first: "double", other: "other"}


def test_recent_tasks_newest_first_with_status_filter(store: Store) -> None:
    first, second, third = new_task(), new_task(), new_task()
    for t in (first, second, third):
        store.add_tasks([t], "waiting-for-ep")
    store.complete_tasks([success(first.task_id)])
    store.complete_tasks([failure(second.task_id)])

    def ids(*args: Any) -> list[str]:
        return [r["task_id"] for r in store.recent_tasks(*args)]

    # Completing (an update) does not move a task up the list.
    assert ids(10) == [third.task_id, second.task_id, first.task_id]
    assert ids(2) == [third.task_id, second.task_id]
    assert ids(10, "pending") == [third.task_id]
    assert ids(10, "waiting-for-ep") == [third.task_id]
    assert ids(10, "success") == [first.task_id]
    assert ids(10, "failed") == [second.task_id]
    assert ids(10, "running") == []
    assert store.counts() == {
        "pending": 1,
        "success": 1,
        "failed": 1,
        "cancelled": 0,
        "reused": 0,
        "functions": 0,
        "task_records": 3,
    }


def test_task_ids_in_group_oldest_first_however_results_are_stored(store: Store) -> None:
    group = str(uuid.uuid4())
    tasks = [replace_group(new_task(), group) for _ in range(sql.CHUNK + 100)]
    other = new_task()
    store.add_tasks([tasks[0], other], "waiting-for-ep")
    store.add_tasks(tasks[1:], "waiting-for-ep")
    random_text = base64.b64encode(os.urandom(60_000)).decode()  # does not compress
    store.complete_tasks(
        [
            success(tasks[0].task_id, "00\n" + random_text[:20_000]),  # compressed, in the row
            success(tasks[1].task_id, "00\n" + random_text),  # compressed, in a file
            success(other.task_id, f"11\n{json.dumps(group)}"),  # names the group, not in it
            failure(tasks[2].task_id),
        ]
    )
    assert store.task_ids_in_group(group) == [t.task_id for t in tasks]
    assert store.task_ids_in_group(other.task_group_id) == [other.task_id]
    assert store.task_ids_in_group(str(uuid.uuid4())) == []

    # A result expired after it was read is no longer in its group.
    store.get_task(tasks[2].task_id)
    assert expire(store, time.time() + 2 * RETENTION) == 1
    assert store.task_ids_in_group(group) == [t.task_id for t in tasks if t is not tasks[2]]


def replace_group(task: NewTask, task_group_id: str) -> NewTask:
    return dataclasses.replace(task, task_group_id=task_group_id)


def test_running_is_a_live_status_never_written(tmp_path: Path) -> None:
    """A backend's "it runs now" shows in every read of the record until the task
    is final, costs no write, and is gone after a restart (the task then waits)."""
    store = open_store(tmp_path / "store")
    running, waiting, done = new_task(), new_task(), new_task()
    store.add_tasks([running, waiting, done], "waiting-for-ep")
    store.complete_tasks([success(done.task_id)])
    changes = store._cache._con.total_changes  # rows written on this connection

    store.mark_running(running.task_id)
    store.mark_running(done.task_id)  # final: ignored
    store.mark_running(str(uuid.uuid4()))  # unknown: ignored

    assert store._cache._con.total_changes == changes
    assert store.get_task(running.task_id)["status"] == "running"  # type: ignore[index]
    assert [r["status"] for r in store.get_tasks([waiting.task_id, done.task_id]).values()] == [
        "waiting-for-ep",
        "success",
    ]
    assert [r["task_id"] for r in store.recent_tasks(10, "running")] == [running.task_id]
    assert {r["task_id"] for r in store.recent_tasks(10, "pending")} == {
        running.task_id,
        waiting.task_id,
    }
    store.complete_tasks([success(running.task_id)])
    assert store.get_task(running.task_id)["status"] == "success"  # type: ignore[index]
    assert store.recent_tasks(10, "running") == []

    store.mark_running(waiting.task_id)
    store.close()
    reopened = open_store(tmp_path / "store")
    try:
        assert reopened.get_task(waiting.task_id)["status"] == "waiting-for-ep"  # type: ignore[index]
        assert [r["task_id"] for r, _ in reopened.resumable()] == [waiting.task_id]
    finally:
        reopened.close()


def test_reopened_store_keeps_everything(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    store = open_store(directory)
    fid, _ = store.put_function(registration())
    deleted, _ = store.put_function(registration(function_name="gone"))
    store.delete_function(deleted)
    done, retrieved, pending = new_task(fid), new_task(fid), new_task(fid)
    store.add_tasks([done, retrieved, pending], "waiting-for-ep")
    store.complete_tasks([success(done.task_id), failure(retrieved.task_id)])
    store.get_task(retrieved.task_id)
    clock = retrieved_at(store, retrieved.task_id)
    counts = store.counts()
    store.close()

    reopened = open_store(directory)
    try:
        assert reopened.counts() == counts
        assert reopened.put_function(registration()) == (fid, False)
        assert DELETED_AT in (reopened.get_function(deleted) or {})
        assert retrieved_at(reopened, retrieved.task_id) == clock
        assert retrieved_at(reopened, done.task_id) is None
        record = reopened.get_task(done.task_id)
        assert record is not None
        assert record["result"] == "11\n4"
        assert [r["task_id"] for r, _ in reopened.resumable()] == [pending.task_id]
        assert [r["task_id"] for r in reopened.recent_tasks(10)] == [
            pending.task_id,
            retrieved.task_id,
            done.task_id,
        ]
    finally:
        reopened.close()


# ---------------------------------------------------------------- transactions


@contextlib.contextmanager
def disk_full_at(monkeypatch: pytest.MonkeyPatch, full: str) -> Iterator[None]:
    """Writes to the ``full`` table fail as on a full disk, while inside."""
    write = sql.set_many

    def set_many(cache: Any, table: str, *args: Any, **kwargs: Any) -> None:
        if table == full:
            raise sqlite3.OperationalError("database or disk is full")
        write(cache, table, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(sql, "set_many", set_many)
        yield


def test_a_failed_completion_writes_nothing(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Records, run data and counters are one transaction: the counters' write
    failing (a full disk, say) takes the records and the run data's deletion
    with it, and the tasks stay pending in memory too. A payload large enough to
    live in a file keeps its file (its run data deleted in this transaction)."""
    monkeypatch.setattr(records, "RUN_DATA_DROP_BATCH", 1)
    big = "00\n" + base64.b64encode(os.urandom(100_000)).decode()
    a, b = new_task(), new_task(payload=big)
    store.add_tasks([a, b], "waiting-for-ep")
    store.complete_tasks([success(a.task_id)])
    before = store.counts()
    with disk_full_at(monkeypatch, "meta"), pytest.raises(sqlite3.OperationalError):
        store.complete_tasks([failure(b.task_id)])

    assert store.counts() == before
    assert store.is_pending(b.task_id)
    run = store._inflight.get(b.task_id)
    assert run is not None and run["payload"] == big
    record = store._tasks.get(b.task_id)
    assert record is not None and record["status"] == "waiting-for-ep"
    # It completes once the store takes writes again, counted once.
    assert len(store.complete_tasks([failure(b.task_id)])) == 1
    assert store.counts() == {**before, "pending": 0, "failed": 1}
    assert list(store.directory.rglob("*.val")) == []


def test_a_failed_submission_writes_nothing(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run data and task records are one transaction: no run entry without its record."""
    t = new_task()
    with disk_full_at(monkeypatch, "tasks"), pytest.raises(sqlite3.OperationalError):
        store.add_tasks([t], "waiting-for-ep")
    assert store._inflight.get(t.task_id) is None
    assert store.get_task(t.task_id) is None
    assert store.counts()["pending"] == 0


def test_lost_run_data_fails_its_task_at_resume(tmp_path: Path) -> None:
    """A payload large enough to live in a file of its own, the file lost: the
    task cannot run again, and fails saying so instead of staying pending."""
    directory = tmp_path / "store"
    store = open_store(directory)
    big = "00\n" + base64.b64encode(os.urandom(100_000)).decode()
    lost, kept = new_task(payload=big), new_task()
    store.add_tasks([lost, kept], "waiting-for-ep")
    store.close()
    [value_file] = directory.rglob("*.val")
    value_file.unlink()

    reopened = open_store(directory)
    try:
        assert [r["task_id"] for r, _ in reopened.resumable()] == [kept.task_id]
        record = reopened.get_task(lost.task_id)
        assert record is not None
        assert (record["status"], record["exception"]) == ("failed", RUN_DATA_LOST)
        counts = reopened.counts()
        assert (counts["pending"], counts["failed"]) == (1, 1)
    finally:
        reopened.close()


# ------------------------------------------------------------ backends' tables


def test_backend_tables_are_their_own_and_share_transactions(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    store = open_store(directory)
    for core in ("functions", "tasks", "inflight", "meta", "reuse"):
        with pytest.raises(ValueError):
            store.table(core)
    with pytest.raises(ValueError):
        store.table("a:b")
    ledger, owners = store.table("backend_ledger"), store.table("backend_owners")
    t = new_task()
    store.add_tasks([t], "waiting-for-ep")
    # A key equal to a core record's lands in the backend's table only.
    ledger.set_many([(t.task_id, {"state": "queued"}), ("other", {"state": "sent"})])
    with pytest.raises(RuntimeError), ledger.transact():
        ledger.delete(t.task_id)
        owners.set(t.task_id, {"owner": "fingerprint"})
        raise RuntimeError("neither write happens")
    assert ledger.get(t.task_id) == {"state": "queued"}
    assert owners.get(t.task_id) is None
    owners.set("g", {"made_at": 1.0}, expire=-1)  # gone at once
    assert owners.get("g") is None
    store.close()

    reopened = open_store(directory)
    try:
        again = reopened.table("backend_ledger")
        assert dict(again.items()) == {t.task_id: {"state": "queued"}, "other": {"state": "sent"}}
        assert len(again) == 2
        assert again.get_many([t.task_id, "absent"]) == {t.task_id: {"state": "queued"}}
        assert reopened.counts() == {
            "pending": 1,
            "success": 0,
            "failed": 0,
            "cancelled": 0,
            "reused": 0,
            "functions": 0,
            "task_records": 1,
        }
    finally:
        reopened.close()


# --------------------------------------------------------------------- no pickle


def test_everything_is_stored_as_json_text_never_pickled(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    store = open_store(directory)
    fid, _ = store.put_function(registration())
    small, large, pending = new_task(fid), new_task(fid), new_task(fid)
    store.add_tasks([small, large, pending], "waiting-for-ep")
    # Large values live in files next to the database, not in it: check both.
    large_result = "00\n" + base64.b64encode(os.urandom(100_000)).decode()
    store.complete_tasks([success(small.task_id), success(large.task_id, large_result)])
    store.close()

    db = sqlite3.connect(directory / "cache.db")
    db.row_factory = sqlite3.Row
    try:
        rows = db.execute("SELECT key, raw, mode, filename, value FROM Cache").fetchall()
    finally:
        db.close()

    decoded: dict[str, Any] = {}
    for row in rows:
        assert row["raw"] == 1 and isinstance(row["key"], str), row["key"]
        key = row["key"]
        assert row["mode"] != MODE_PICKLE, key
        if row["filename"]:  # large: compressed JSON in a file
            text = zlib.decompress((directory / row["filename"]).read_bytes())
        else:  # small: plain JSON text, readable with any SQLite tool
            assert isinstance(row["value"], str), key
            text = row["value"]
        decoded[key] = json.loads(text)

    assert decoded[f"functions:{fid}"]["function_code"] == registration()["function_code"]
    assert decoded[f"tasks:{small.task_id}"]["result"] == "11\n4"
    assert decoded[f"tasks:{large.task_id}"]["result"] == large_result
    assert decoded[f"inflight:{pending.task_id}"]["payload"] == pending.payload
    # The counters too: JSON numbers.
    assert decoded["meta:count:success"] == 2
    assert decoded["meta:count:failed"] == decoded["meta:count:cancelled"] == 0
    assert len(decoded) == 1 + 3 + 1 + 3
