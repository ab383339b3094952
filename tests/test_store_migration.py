"""A store in the old layout (a diskcache database per table) is moved into the one
database when it is opened, and a kill -9 at any point of the move loses nothing.

The old layout is built here as the previous release wrote it: JSON text keys
and values (diskcache's ``JSONDisk`` before that: zlib-compressed keys and
values, which it must read too), counters as plain integers in ``meta``, and
a completion batch's journal entry left by a crash between its records and
its counters.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diskcache
import pytest
from gcgated.store import Store, function_id_for, sql
from gcgated.store.jsondisk import JSONTextDisk
from gcgated.store.migrate import LEGACY_DATABASES, MIGRATED, REMOVING
from gcgated.store.recovery import open_store
from gcgated.store.schema import RUN_DATA_LOST

pytestmark = pytest.mark.fast

RETENTION = 3600.0
JSON_TEXT = {"disk": JSONTextDisk, "eviction_policy": "none"}
JSON_ZLIB = {"disk": diskcache.JSONDisk, "disk_compress_level": 1, "eviction_policy": "none"}
#: A result large enough to live in a file of its own.
LARGE = "00\n" + "x" * 50_000 + os.urandom(20_000).hex()


@dataclass
class Legacy:
    """What an old-layout store holds, to check the migrated one against."""

    function_id: str
    done: list[str]  # final task ids, oldest first; the first one's result was read
    pending: str  # unfinished: record and run data
    journaled: str  # final; its batch's journal entry is in meta, counters not yet added
    uncommitted: str  # pending; a journal entry for it whose records never committed
    leftover: str  # run data only: the client was never answered


def build_legacy(directory: Path, settings: dict[str, Any] = JSON_TEXT) -> Legacy:
    """An old-layout store, as the previous release left it at a kill -9."""
    registration = {"function_name": "double", "function_code": "def double(x): ..."}
    fid = function_id_for(registration)
    ids = [str(uuid.uuid4()) for _ in range(7)]
    legacy = Legacy(fid, ids[:3], ids[3], ids[4], ids[5], ids[6])
    db = {
        name: diskcache.Cache(str(directory / name), **settings)
        for name in LEGACY_DATABASES
        if name != "meta"
    }
    # Counters only, in diskcache's default Disk: plain SQLite integers.
    db["meta"] = diskcache.Cache(str(directory / "meta"), eviction_policy="none")

    def record(task_id: str, status: str, **more: Any) -> dict[str, Any]:
        return {"task_id": task_id, "function_id": fid, "status": status, **more}

    db["functions"].set(fid, {**registration, "function_id": fid, "created_at": 1.0})
    for n, task_id in enumerate(legacy.done):
        result = LARGE if n == 1 else f"11\n{n}"
        done = record(task_id, "success", result=result, completion_batch="counting:old")
        db["tasks"].set(task_id, done, expire=RETENTION if n == 0 else None)
    db["tasks"].set(legacy.pending, record(legacy.pending, "waiting-for-ep"))
    db["tasks"].set(
        legacy.journaled,
        record(legacy.journaled, "failed", exception="boom", completion_batch="counting:b1"),
    )
    db["tasks"].set(legacy.uncommitted, record(legacy.uncommitted, "waiting-for-ep"))
    for task_id in (legacy.pending, legacy.uncommitted, legacy.leftover):
        db["inflight"].set(task_id, {"payload": f"p-{task_id}", "result_serializers": []})
    db["meta"].set("count:success", 3)
    db["meta"].set("counting:b1", json.dumps({"counts": {"failed": 1}, "probe": legacy.journaled}))
    db["meta"].set(
        "counting:b2", json.dumps({"counts": {"success": 1}, "probe": legacy.uncommitted})
    )
    db["globus_functions"].set(f"alice/{fid}", {"globus_function_id": "G1"})
    db["globus_tasks"].set(legacy.pending, {"owner": "token:abc", "group": "g"})
    db["globus_submits"].set(f"t:{legacy.uncommitted}", {"state": "sending"})
    db["globus_submits"].set("g:made-up", {"made_at": 1.0}, expire=RETENTION)
    for cache in db.values():
        cache.close()
    return legacy


def open_plain(directory: Path) -> Store:
    return Store(directory, size_limit_bytes=2**40, retention_seconds=RETENTION)


def check_migrated(store: Store, legacy: Legacy) -> None:
    """Everything the old layout held, where its owners look for it, counted once."""
    directory = store.directory
    assert sorted(p.name for p in directory.iterdir() if p.is_dir() and len(p.name) > 2) == []
    assert store.get_function(legacy.function_id) is not None
    first, big, last = (store.get_task(t) for t in legacy.done)
    assert first is not None and first["result"] == "11\n0"
    assert big is not None and big["result"] == LARGE
    assert last is not None and last["status"] == "success"
    # Read before: its expire time became a retrieval time (minus the retention).
    [(_, retrieved_at)] = sql.get_many(
        store._cache, "tasks", [legacy.done[0]], column="tag"
    ).values()
    assert retrieved_at == pytest.approx(time.time(), abs=600)
    assert store._tasks.get_many_expiring([legacy.done[0]])[legacy.done[0]][1] is None
    resumed = {record["task_id"]: run for record, run in store.resumable()}
    assert set(resumed) == {legacy.pending, legacy.uncommitted}
    assert resumed[legacy.pending]["payload"] == f"p-{legacy.pending}"
    assert store._inflight.get(legacy.leftover) is None  # dropped on resume
    counts = store.counts()
    # 3 counted before the kill, plus the journaled batch that committed; the
    # journal entry whose records never committed is not counted.
    assert (counts["success"], counts["failed"]) == (3, 1)
    assert (counts["pending"], counts["functions"], counts["task_records"]) == (2, 1, 6)
    assert [r["task_id"] for r in store.recent_tasks(3, "success")] == legacy.done[::-1]
    assert store.table("globus_functions").get(f"alice/{legacy.function_id}") == {
        "globus_function_id": "G1"
    }
    assert store.table("globus_tasks").get(legacy.pending) == {"owner": "token:abc", "group": "g"}
    submits = store.table("globus_submits")
    assert submits.get(f"t:{legacy.uncommitted}") == {"state": "sending"}
    [(_, group_clock)] = submits.get_many_expiring(["g:made-up"]).values()
    assert group_clock is not None


@pytest.mark.parametrize("settings", [JSON_TEXT, JSON_ZLIB], ids=["json-text", "jsondisk"])
def test_an_old_layout_store_is_migrated_on_open(tmp_path: Path, settings: dict) -> None:
    directory = tmp_path / "store"
    legacy = build_legacy(directory, settings)
    store = open_plain(directory)
    try:
        assert store._meta.get(MIGRATED) is not None
        check_migrated(store, legacy)
    finally:
        store.close()
    reopened = open_plain(directory)  # nothing moved twice, nothing counted twice
    try:
        counts = reopened.counts()
        assert (counts["success"], counts["failed"], counts["task_records"]) == (3, 1, 6)
    finally:
        reopened.close()


#: Runs the migration in a child process that SIGKILLs itself at one point:
#: ``rows`` (the transaction has written part of the rows), ``commit`` (it
#: committed, no old directory removed), ``removal`` (two old directories
#: moved to be removed, one of them half removed).
KILL_SCRIPT = """
import os, signal, sys
from pathlib import Path
from gcgated.store import Store, sql

point, directory = sys.argv[1], Path(sys.argv[2])

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if point == "rows":
    written = sql.set_many
    def set_many(cache, table, *args, **kwargs):
        written(cache, table, *args, **kwargs)
        if table == "inflight":
            die()
    sql.set_many = set_many
elif point == "commit":
    Path.rename = lambda self, target: die()
else:
    removed = []
    renamed = Path.rename
    def rename(self, target):
        renamed(self, target)
        removed.append(self)
        if len(removed) == 2:
            for child in sorted(Path(target).iterdir())[:1]:
                child.unlink()
            die()
    Path.rename = rename
Store(directory, size_limit_bytes=2**40, retention_seconds=3600.0)
"""


@pytest.mark.parametrize("point", ["rows", "commit", "removal"])
def test_a_kill_during_the_migration_loses_nothing(tmp_path: Path, point: str) -> None:
    directory = tmp_path / "store"
    legacy = build_legacy(directory)
    child = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, point, str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    left = {name for name in LEGACY_DATABASES if (directory / name).is_dir()}
    if point == "removal":
        assert len(left) == len(LEGACY_DATABASES) - 2
        assert (directory / REMOVING).is_dir()
    else:
        assert left == set(LEGACY_DATABASES)  # killed before any was touched

    store = open_store(directory, size_limit_bytes=2**40, retention_seconds=RETENTION)
    try:
        assert store.damaged_moved_to == ""  # a killed migration is no damage
        check_migrated(store, legacy)
        assert not (directory / REMOVING).exists()
    finally:
        store.close()


def test_a_damaged_old_database_is_moved_aside_and_made_up_for(tmp_path: Path) -> None:
    """The old layout's run data damaged: moved aside alone; its unfinished
    tasks fail saying so, and the counters are recounted from the records."""
    directory = tmp_path / "store"
    legacy = build_legacy(directory)
    with open(directory / "inflight" / "cache.db", "r+b") as db:
        db.write(b"\xde\xad\xbe\xef" * 25)

    store = open_store(directory, size_limit_bytes=2**40, retention_seconds=RETENTION)
    try:
        aside = Path(store.damaged_moved_to)
        assert (aside / "inflight" / "cache.db").is_file()
        assert aside.name.startswith("store.damaged-")
        assert list(store.resumable()) == []
        for task_id in (legacy.pending, legacy.uncommitted):
            record = store.get_task(task_id)
            assert record is not None
            assert (record["status"], record["exception"]) == ("failed", RUN_DATA_LOST)
        counts = store.counts()
        assert (counts["success"], counts["failed"], counts["pending"]) == (3, 3, 0)
        assert counts["task_records"] == 6
    finally:
        store.close()


def test_damaged_old_counters_are_recounted(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    legacy = build_legacy(directory)
    (directory / "meta" / "cache.db").write_bytes(b"")

    store = open_store(directory, size_limit_bytes=2**40, retention_seconds=RETENTION)
    try:
        assert (Path(store.damaged_moved_to) / "meta").is_dir()
        counts = store.counts()
        assert (counts["success"], counts["failed"]) == (3, 1)  # from the records
        assert {r["task_id"] for r, _ in store.resumable()} == {
            legacy.pending,
            legacy.uncommitted,
        }
    finally:
        store.close()
