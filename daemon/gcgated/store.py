"""The daemon's durable records: functions, tasks and results, in diskcache.

Diskcache databases under the store directory (plus ``meta`` for counters):

- ``functions``: function id -> registration record (content-addressed ids);
- ``tasks``: task id -> task record (status, ids, timestamps, result or exception);
- ``inflight``: task id -> what is needed to run the task again (payload,
  result serializers); present exactly while the task is not final, so a
  restarted daemon resumes by reading this one small table;
- ``globus_functions``: (Globus identity, local function id) -> the function id
  Globus Compute assigned when the daemon registered it for that identity, so
  a function is registered with the service once per identity, ever.
- ``globus_tasks``: task id -> the fingerprint of the client token a Globus
  task was created with (never the token) and the service task group it went
  to, while the task is in flight, so a restarted daemon knows to wait for
  that client's token before polling it.

Keys and values are stored as JSON text (``jsondisk.JSONTextDisk``): the
daemon never pickles or unpickles anything, so a result is always opaque text
here. Every write that a client is answered about happens inside one
transaction before the answer.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diskcache

from gcgated import bulk
from gcgated.errors import is_disk_full
from gcgated.jsondisk import JSONTextDisk, migrate_keys

#: Namespace for content-addressed function ids.
FUNCTION_ID_NAMESPACE = uuid.UUID("6f3c1a52-8d0e-4b7a-9a57-5bb1b4e6c0de")

FINAL_STATUSES = frozenset({"success", "failed"})
#: Free disk space a submission needs: its payloads written about this many
#: times (run data, record, SQLite's log, checkpoint), plus this many bytes.
DISK_ROOM_FACTOR, DISK_ROOM_SPARE = 4, 1 << 20
#: The diskcache databases under the store directory (see the module doc).
#: ``globus_submits`` belongs to the Globus backend's submit ledger, which opens it
#: itself; it is listed so a damaged one is moved aside like the others.
DATABASES = (
    "functions",
    "tasks",
    "inflight",
    "globus_functions",
    "globus_tasks",
    "globus_submits",
    "meta",
)
#: The fields of an unfinished task's record, as add_tasks writes them.
_PENDING_FIELDS = ("task_id", "function_id", "endpoint_id", "task_group_id", "status", "created_at")
_PENDING_KEYS = frozenset(_PENDING_FIELDS)
#: Key prefix, in ``meta``, of a completion batch being counted (see Store._settle_counts).
_COUNTING = "counting:"
#: Finished tasks' run data is deleted, and their completion batches counted, in
#: batches of up to this many tasks, or of whatever finished within this many
#: seconds (see Store._tidy).
RUN_DATA_DROP_BATCH, RUN_DATA_DROP_SECONDS = 4096, 0.25
#: What a record may add to the store beyond its largest text field (its other
#: fields, SQLite row, index entry, page slack); text is counted twice. An upper
#: bound of the growth since the store was last measured, so that has_room_for
#: measures (12 queries) only near the limit, or once this many seconds passed.
RECORD_OVERHEAD_BYTES, VOLUME_RECHECK_SECONDS = 4096, 1.0

_CACHE_SETTINGS: dict[str, Any] = {
    "disk": JSONTextDisk,
    "disk_compress_level": 1,
    # Nothing is ever evicted behind the daemon's back: retention is explicit
    # (expiry set when a result is first retrieved) and the size limit refuses
    # new work instead of dropping old results.
    "eviction_policy": "none",
    "size_limit": 2**62,
    "statistics": False,
    # SQLite's own memory per database (diskcache's defaults: a 64 MB memory map,
    # whose pages count in the daemon's RSS once read, and a 32 MB page cache):
    # reads are ~10% slower without the map; RSS with 100,000 tasks in flight
    # went from 193 to 139 MB.
    "sqlite_mmap_size": 0,
    "sqlite_cache_size": 2**10,
}


@dataclass(frozen=True)
class NewTask:
    """A task to record at submission."""

    task_id: str
    function_id: str
    endpoint_id: str
    task_group_id: str
    payload: str
    result_serializers: tuple[str, ...]


def function_id_for(registration: dict[str, Any]) -> str:
    """Content address of a registration: same body and metadata, same id."""
    canonical = json.dumps(registration, sort_keys=True, separators=(",", ":"))
    return str(uuid.uuid5(FUNCTION_ID_NAMESPACE, hashlib.sha256(canonical.encode()).hexdigest()))


def _count_entry(written: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A batch's journal: its counts per status, and one task id to test whether
    the batch's records committed (they commit together or not at all)."""
    counts = {status: sum(1 for r in written if r["status"] == status) for status in FINAL_STATUSES}
    return {"counts": counts, "probe": written[0]["task_id"] if written else ""}


def _open_json_cache(directory: Path) -> diskcache.Cache:
    """One JSON database, its keys migrated if a previous version wrote it."""
    cache = diskcache.Cache(str(directory), **_CACHE_SETTINGS)
    migrate_keys(directory)
    return cache


class Store:
    """Durable records of the daemon, shared by every client."""

    def __init__(self, directory: Path, *, size_limit_bytes: int, retention_seconds: float):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory = directory
        self.size_limit_bytes = size_limit_bytes
        self.retention_seconds = retention_seconds
        #: Where damaged databases were moved when this store was opened, if any
        #: (set by gcgated.store_recovery; shown by Status).
        self.damaged_moved_to = ""
        #: Records of the unfinished tasks this daemon knows (submitted, or
        #: resumed), as written: completing one then writes without reading it
        #: back, and asking about one reads nothing. Each changes once, when final.
        #: Values are the record's other fields as a tuple (_PENDING_FIELDS): a
        #: third of a dict's memory, with 100,000 tasks in flight.
        self._pending: dict[str, tuple[Any, ...]] = {}
        #: Final tasks whose run data (``inflight``) is still to be deleted. A
        #: delete costs a commit that rewrites the pages it touches whatever its
        #: size, so they are deleted together; a crash before that only leaves
        #: entries that resume drops (their task records are final).
        self._finished_runs: set[str] = set()
        #: Completion batches committed and journaled but not yet added to the
        #: counters (one ``meta`` commit for many; counts() adds them meanwhile).
        self._uncounted: dict[str, dict[str, Any]] = {}
        self._tidied_at = time.monotonic()
        #: The store's size when last measured (-1: never), when, and an upper
        #: bound of what was written since (see RECORD_OVERHEAD_BYTES).
        self._volume, self._volume_at, self._growth = -1, 0.0, 0
        self._functions = _open_json_cache(directory / "functions")
        self._tasks = _open_json_cache(directory / "tasks")
        self._inflight = _open_json_cache(directory / "inflight")
        self._globus_functions = _open_json_cache(directory / "globus_functions")
        self._globus_tasks = _open_json_cache(directory / "globus_tasks")
        # Counters only: plain integers, which diskcache's default Disk stores as
        # SQLite integers (no pickling), so incr() works.
        plain = {k: v for k, v in _CACHE_SETTINGS.items() if not k.startswith("disk")}
        self._meta = diskcache.Cache(str(directory / "meta"), **plain)
        self._settle_counts()

    def close(self) -> None:
        self._tidy()
        for cache in (
            self._functions,
            self._tasks,
            self._inflight,
            self._meta,
            self._globus_functions,
            self._globus_tasks,
        ):
            cache.close()

    # ------------------------------------------------------------ functions

    def put_function(self, registration: dict[str, Any]) -> tuple[str, bool]:
        """Record a function; return its id and whether it was new."""
        function_id = function_id_for(registration)
        if function_id in self._functions:
            return function_id, False
        record = {**registration, "function_id": function_id, "created_at": time.time()}
        self._grew(len(record.get("function_code") or ""), 1)
        created = self._functions.add(function_id, record)
        return function_id, created

    def get_function(self, function_id: str) -> dict[str, Any] | None:
        return self._functions.get(function_id)

    def has_function(self, function_id: str) -> bool:
        return function_id in self._functions

    # ------------------------------------------------- Globus function ids

    def get_globus_function(self, identity: str, function_id: str) -> str | None:
        """The Globus function id registered for ``function_id`` as ``identity``."""
        entry = self._globus_functions.get(f"{identity}/{function_id}")
        return None if entry is None else entry["globus_function_id"]

    def put_globus_function(self, identity: str, function_id: str, globus_id: str) -> None:
        """Remember that ``identity`` registered ``function_id`` as ``globus_id``."""
        self._grew(0, 1)
        self._globus_functions.set(
            f"{identity}/{function_id}",
            {"globus_function_id": globus_id, "registered_at": time.time()},
        )

    def forget_globus_function(self, identity: str, function_id: str) -> None:
        """Drop a mapping the service no longer honours (the function was deleted)."""
        self._globus_functions.delete(f"{identity}/{function_id}")

    def put_passthrough_tasks(self, task_ids: Iterable[str], owner: str, group: str) -> None:
        """Mark Globus tasks created with a client's token (``owner``: its
        fingerprint) and sent to the service task group ``group``."""
        task_ids = list(task_ids)
        self._grew(0, len(task_ids))
        with self._globus_tasks.transact():
            for task_id in task_ids:
                self._globus_tasks.set(task_id, {"owner": owner, "group": group})

    def passthrough_task(self, task_id: str) -> tuple[str, str] | None:
        """(owner fingerprint, service task group) of a client-token task, if marked."""
        entry = self._globus_tasks.get(task_id)
        return None if entry is None else (entry["owner"], entry.get("group", ""))

    def forget_passthrough_task(self, task_id: str) -> None:
        self._globus_tasks.delete(task_id)

    # ---------------------------------------------------------------- tasks

    def add_tasks(self, tasks: Sequence[NewTask], status: str) -> list[dict[str, Any]]:
        """Record newly accepted tasks and their run data.

        Two databases, written in an order that a crash between them cannot
        corrupt: run data first, then the task records. A run entry without a
        task record (the client was never answered) is dropped on resume.
        """
        now = time.time()
        records = [
            {
                "task_id": task.task_id,
                "function_id": task.function_id,
                "endpoint_id": task.endpoint_id,
                "task_group_id": task.task_group_id,
                "status": status,
                "created_at": now,
            }
            for task in tasks
        ]
        run_data = [
            (
                task.task_id,
                {
                    "endpoint_id": task.endpoint_id,
                    "function_id": task.function_id,
                    "payload": task.payload,
                    "result_serializers": list(task.result_serializers),
                },
            )
            for task in tasks
        ]
        self._grew(sum(len(task.payload) for task in tasks), 2 * len(tasks))
        bulk.set_many(self._inflight, run_data)
        bulk.set_many(self._tasks, [(record["task_id"], record) for record in records])
        for record in records:
            self._remember_pending(record)
        return records

    def complete_tasks(self, outcomes: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Write final outcomes; return the full records written.

        The final record is committed before the run data is deleted, so a
        crash in between leaves a run entry whose task is already final, which
        resume drops. An outcome for a task that is already final (a duplicate
        report after a resume) is ignored: each task completes once.
        """
        written = []
        batch = f"{_COUNTING}{uuid.uuid4()}"
        with self._tasks.transact():
            for outcome in outcomes:
                task_id = outcome["task_id"]
                # Not in memory: a task whose run data was lost, or a duplicate.
                record = self._pending_record(task_id) or self._tasks.get(task_id)
                if record is None or record["status"] in FINAL_STATUSES:
                    continue
                written.append({**record, **outcome, "completion_batch": batch})
            self._grew(
                sum(len(r.get("result") or "") + len(r.get("exception") or "") for r in written),
                len(written) + 1,
            )
            bulk.set_many(self._tasks, [(record["task_id"], record) for record in written])
            entry = _count_entry(written)
            if written:  # journaled before the records commit: see _settle_counts
                self._meta.set(batch, json.dumps(entry))
        unknown = []  # no in-memory record: whether run data exists is not known
        for record in written:
            task_id = record["task_id"]
            if self._pending.pop(task_id, None) is None:
                unknown.append(task_id)
            else:
                self._finished_runs.add(task_id)
        bulk.delete_many(self._inflight, unknown)
        if written:
            self._uncounted[batch] = entry
        if (
            len(self._finished_runs) >= RUN_DATA_DROP_BATCH
            or time.monotonic() - self._tidied_at >= RUN_DATA_DROP_SECONDS
        ):
            self._tidy()
        return written

    def _tidy(self) -> None:
        """Count the completion batches and delete the run data of the tasks that
        became final since the last time (each a commit that costs about the same
        for one task as for thousands)."""
        self._tidied_at = time.monotonic()
        if self._uncounted:
            self._apply_counts(self._uncounted)
            self._uncounted = {}
        if self._finished_runs:
            bulk.delete_many(self._inflight, list(self._finished_runs))
            self._finished_runs = set()

    def _apply_counts(self, batches: dict[str, dict[str, Any]]) -> None:
        """Add completion batches to the counters and drop their journals, atomically."""
        totals = dict.fromkeys(sorted(FINAL_STATUSES), 0)
        for entry in batches.values():
            for status, count in entry["counts"].items():
                totals[status] += count
        with self._meta.transact():
            for status, count in totals.items():
                if count:
                    self._meta.incr(f"count:{status}", count)
            bulk.delete_many(self._meta, list(batches))

    def _settle_counts(self) -> None:
        """Finish counting completion batches a crash interrupted.

        The counters live in another database than the task records, so a
        batch is journaled (in ``meta``) before its records commit, and counted
        together with the journal's removal in one ``meta`` transaction. A
        journal a crash left is counted now if its records committed (they name
        the batch), dropped if they did not: each completion counts once.
        """
        for key in list(self._meta.iterkeys()):
            if not (isinstance(key, str) and key.startswith(_COUNTING)):
                continue
            entry = json.loads(self._meta.get(key) or "{}")
            record = self._tasks.get(entry.get("probe") or "")
            if record is not None and record.get("completion_batch") == key:
                self._apply_counts({key: entry})
            else:
                self._meta.delete(key)

    def recount(self) -> dict[str, int]:
        """Set the completion counters from the task records, a full scan: for
        after a damaged part of the store was moved aside (store_recovery)."""
        counts = dict.fromkeys(sorted(FINAL_STATUSES), 0)
        for task_id in list(self._tasks):
            record = self._tasks.get(task_id)
            if record is not None and record["status"] in counts:
                counts[record["status"]] += 1
        with self._meta.transact():
            for status, count in counts.items():
                self._meta.set(f"count:{status}", count)
            bulk.delete_many(self._meta, list(self._uncounted))  # in the scan already
        self._uncounted = {}
        return counts

    def get_task(self, task_id: str) -> dict[str, Any] | None:
        """A task record; a final one starts its retention clock when first read."""
        return self.get_tasks([task_id])[task_id]

    def get_tasks(self, task_ids: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """Records by task id (None: unknown); see :meth:`get_task`."""
        task_ids = list(task_ids)
        stored = bulk.get_many(self._tasks, [t for t in task_ids if t not in self._pending])
        first_reads = [
            task_id
            for task_id, (record, expire_time) in stored.items()
            if expire_time is None and record["status"] in FINAL_STATUSES
        ]
        if first_reads:
            self._start_retention(first_reads)
        found: dict[str, dict[str, Any] | None] = {}
        for task_id in task_ids:
            pending = self._pending_record(task_id)
            found[task_id] = pending if pending is not None else stored.get(task_id, (None,))[0]
        return found

    def _start_retention(self, task_ids: Sequence[str]) -> None:
        """Start the retention clocks of results read for the first time, in one
        transaction. Losing this write to a crash only keeps the results longer."""
        try:
            bulk.touch_many(self._tasks, task_ids, self.retention_seconds)
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            # A full disk must not hide results: the clock starts at a later read.

    def resumable(self) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """Every accepted, unfinished task as (record, run data), for resuming.

        Also drops run entries a crash left behind: those whose task record was
        never written (never acknowledged) or is already final.
        """
        for task_id in list(self._inflight):
            run = self._inflight.get(task_id)
            record = self._tasks.get(task_id)
            if run is None:
                continue
            if record is None or record["status"] in FINAL_STATUSES:
                self._inflight.delete(task_id)
                self._finished_runs.discard(task_id)
                continue
            self._remember_pending(record)
            yield record, run

    def _remember_pending(self, record: dict[str, Any]) -> None:
        """Keep an unfinished task's record in memory, if it has the usual fields
        (one that does not is read from the database when needed)."""
        if record.keys() == _PENDING_KEYS:
            self._pending[record["task_id"]] = tuple(record[f] for f in _PENDING_FIELDS[1:])

    def is_pending(self, task_id: str) -> bool:
        """Whether the task is known here and unfinished (answered from memory)."""
        return task_id in self._pending

    def _pending_record(self, task_id: str) -> dict[str, Any] | None:
        values = self._pending.get(task_id)
        if values is None:
            return None
        return dict(zip(_PENDING_FIELDS, (task_id, *values), strict=True))

    def recent_tasks(self, limit: int, status: str = "") -> list[dict[str, Any]]:
        """Newest first; ``status="pending"`` matches every non-final status."""
        found: list[dict[str, Any]] = []
        for task_id in reversed(self._tasks):
            record = self._tasks.get(task_id)
            if record is None:
                continue
            if status == "pending" and record["status"] in FINAL_STATUSES:
                continue
            if status and status != "pending" and record["status"] != status:
                continue
            found.append(record)
            if len(found) >= limit:
                break
        return found

    # ------------------------------------------------------------- capacity

    def size_bytes(self) -> int:
        caches = (
            self._functions,
            self._tasks,
            self._inflight,
            self._meta,
            self._globus_functions,
            self._globus_tasks,
        )
        self._volume = sum(c.volume() for c in caches)
        self._volume_at, self._growth = time.monotonic(), 0
        return self._volume

    def _grew(self, text_bytes: int, records: int) -> None:
        """Count a write in the bound of the growth since the last measurement."""
        self._growth += 2 * text_bytes + records * RECORD_OVERHEAD_BYTES

    def has_room_for(self, incoming_bytes: int) -> bool:
        """Whether ``incoming_bytes`` more fit, after dropping expired results.

        Far from the limit, the last measurement plus the bound of the growth
        since answers without measuring (the check precedes every submission).
        """
        if (
            self._volume >= 0
            and time.monotonic() - self._volume_at < VOLUME_RECHECK_SECONDS
            and self._volume + self._growth + incoming_bytes <= self.size_limit_bytes
        ):
            return True
        if self.size_bytes() + incoming_bytes <= self.size_limit_bytes:
            return True
        self._tasks.expire()
        return self.size_bytes() + incoming_bytes <= self.size_limit_bytes

    def disk_has_room_for(self, incoming_bytes: int) -> bool:
        """Whether the filesystem under the store can take ``incoming_bytes`` more,
        with room to spare for SQLite's log and pages (checked before a submission
        is sent anywhere: a Globus submit cannot be taken back)."""
        free = shutil.disk_usage(self.directory).free
        return free >= DISK_ROOM_FACTOR * incoming_bytes + DISK_ROOM_SPARE

    def counts(self) -> dict[str, int]:
        return {
            "pending": len(self._inflight) - len(self._finished_runs),
            "success": int(self._meta.get("count:success", 0)) + self._uncounted_of("success"),
            "failed": int(self._meta.get("count:failed", 0)) + self._uncounted_of("failed"),
            "functions": len(self._functions),
            "task_records": len(self._tasks),
        }

    def _uncounted_of(self, status: str) -> int:
        return sum(entry["counts"][status] for entry in self._uncounted.values())
