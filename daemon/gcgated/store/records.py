"""The daemon's durable records: functions, tasks and results.

One database (``table.open_database``) under the store directory, holding the
core's tables and those the backends own (:meth:`Store.table`):

- ``functions``: function id -> registration record (content-addressed ids);
- ``tasks``: task id -> task record (status, ids, timestamps, result or exception);
- ``inflight``: task id -> what is needed to run the task again (payload,
  result serializers); present exactly while the task is not final, so a
  restarted daemon resumes by reading this one table;
- ``meta``: ``count:<status>`` -> completed tasks (and ``count:reused``), for ``Status``;
- ``reuse``: reuse key -> the task holding that result (:mod:`.reuse`).

Each logical write is one transaction: a submission writes the records and run
data of its tasks together; a completion writes the final records and the
counters together. So no crash can leave a run entry without its record, or a
completion counted twice or not at all. The run data of final tasks is
dropped in batches, with a later completion (``RUN_DATA_DROP_BATCH``): a crash
before that leaves run entries whose records are final, which resume drops.

Keys and values are stored as JSON text (``jsondisk.JSONTextDisk``): the
daemon never pickles or unpickles anything, so a result is always opaque text
here. Every write that a client is answered about commits before the answer.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gcgate.constants import FINAL_STATUSES, TaskStatus

from gcgated.errors import is_disk_full

from . import migrate, sql
from .jsondisk import encode
from .lifecycle import (
    PURGE_PAGE,
    TOMBSTONE_MAX,
    TOMBSTONE_SECONDS,
    TOMBSTONE_SLACK,
    PurgeFilter,
    Removal,
    retention_cutoffs,
)
from .query import TaskFilter, fragment
from .reuse import REUSE_TABLE, ReuseIndex
from .schema import CORE_TABLES, DELETED_AT, REUSED_COUNT, RUN_DATA_LOST, count_key
from .table import Table, open_database

log = logging.getLogger(__name__)

#: Namespace for content-addressed function ids.
FUNCTION_ID_NAMESPACE = uuid.UUID("6f3c1a52-8d0e-4b7a-9a57-5bb1b4e6c0de")

#: Free disk space a submission needs: its payloads written about this many
#: times (run data, record, SQLite's log, checkpoint), plus this many bytes.
DISK_ROOM_FACTOR, DISK_ROOM_SPARE = 4, 1 << 20
#: The fields of an unfinished task's record, as add_tasks writes them.
_PENDING_FIELDS = ("task_id", "function_id", "endpoint_id", "task_group_id", "status", "created_at")
_PENDING_KEYS = frozenset(_PENDING_FIELDS)
#: What a record may add to the store beyond its largest text field (its other
#: fields, SQLite row, index entry, page slack); text is counted twice. An upper
#: bound of the growth since the store was last measured, so that has_room_for
#: measures (12 queries) only near the limit, or once this many seconds passed.
RECORD_OVERHEAD_BYTES, VOLUME_RECHECK_SECONDS = 4096, 1.0
#: Final tasks' run data is deleted in the transaction of the completion that
#: finds this many waiting, or this many seconds since the last deletion: a
#: commit rewrites every page it touches, and the run data of a few tasks
#: (random keys) touches about a page each; deleting it at every completion
#: slowed completions by about a half.
RUN_DATA_DROP_BATCH, RUN_DATA_DROP_SECONDS = 4096, 0.25


@dataclass(frozen=True)
class NewTask:
    """A task to record at submission."""

    task_id: str
    function_id: str
    endpoint_id: str
    task_group_id: str
    payload: str
    result_serializers: tuple[str, ...]
    #: Its reuse key (``store.reuse``) when submitted with ``reuse_results``: the
    #: task is entered in the reuse index if it succeeds. "" otherwise.
    reuse_key: str = ""


@dataclass(frozen=True)
class ReusedTask:
    """A task accepted as a copy of a stored successful one (it does not run)."""

    task_id: str
    function_id: str
    endpoint_id: str
    task_group_id: str
    reuse_key: str
    #: The stored record whose result this task copies.
    source: dict[str, Any]


def function_id_for(registration: dict[str, Any]) -> str:
    """Content address of a registration: same body and metadata, same id."""
    canonical = json.dumps(registration, sort_keys=True, separators=(",", ":"))
    return str(uuid.uuid5(FUNCTION_ID_NAMESPACE, hashlib.sha256(canonical.encode()).hexdigest()))


class Store:
    """Durable records of the daemon, shared by every client."""

    def __init__(
        self,
        directory: Path,
        *,
        size_limit_bytes: int,
        retention_seconds: float,
        unread_retention_seconds: float = math.inf,
    ):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory = directory
        self.size_limit_bytes = size_limit_bytes
        #: Seconds a result is kept after its first retrieval (0: dropped once
        #: retrieved), and one nobody retrieved after it was stored (inf: kept).
        #: Read at every look, so a change (SIGHUP) applies to every record.
        self.retention_seconds = retention_seconds
        self.unread_retention_seconds = unread_retention_seconds
        #: Where a damaged database was moved when this store was opened, if any
        #: (set by gcgated.store.recovery; shown by Status).
        self.damaged_moved_to = ""
        #: Records of the unfinished tasks this daemon knows (submitted, or
        #: resumed), as written: completing one then writes without reading it
        #: back, and asking about one reads nothing. Each changes once, when final.
        #: Values are the record's other fields as a tuple (_PENDING_FIELDS): a
        #: third of a dict's memory, with 100,000 tasks in flight.
        self._pending: dict[str, tuple[Any, ...]] = {}
        #: Unfinished tasks running right now (their backend said so): their
        #: records read "running". In memory only, never written: a task running
        #: when the daemon stopped is not running after a restart (it waits to be
        #: dispatched again), and a start costs no transaction.
        self._running: set[str] = set()
        #: Final tasks whose run data is still to be deleted, and when it last was.
        self._finished_runs: list[str] = []
        self._dropped_at = time.monotonic()
        #: The store's size when last measured (-1: never), when, and an upper
        #: bound of what was written since (see RECORD_OVERHEAD_BYTES).
        self._volume, self._volume_at, self._growth = -1, 0.0, 0
        self._cache = open_database(directory)
        migrate.migrate_legacy(directory, self._cache)
        # Results whose retention an older store kept as an expire time.
        sql.clocks_from_expiry(self._cache, "tasks", retention_seconds)
        self._functions = Table(self._cache, "functions")
        self._forgotten = Table(self._cache, "forgotten")
        self._tasks = Table(self._cache, "tasks")
        self._inflight = Table(self._cache, "inflight")
        self._meta = Table(self._cache, "meta")
        self.reuse = ReuseIndex(Table(self._cache, REUSE_TABLE), self._kept_records)
        #: Reuse keys of the unfinished tasks submitted with reuse_results (also
        #: in their run data, for resuming): entered in the index if they succeed.
        self._reuse_keys: dict[str, str] = {}
        #: The completion counters as committed (written in each completion's
        #: transaction). A store written before a status existed has no counter
        #: for it: it counts from 0.
        counters = self._meta.get_many([*(count_key(s) for s in FINAL_STATUSES), REUSED_COUNT])
        self._completed = {s: int(counters.get(count_key(s), 0)) for s in FINAL_STATUSES}
        self._reused = int(counters.get(REUSED_COUNT, 0))

    def close(self) -> None:
        self._inflight.delete_many(self._finished_runs)
        self._cache.close()

    def table(self, name: str) -> Table:
        """A table of a backend's own, in the store's database: its writes can share
        a transaction with each other (``Table.transact``), never with the core's."""
        if name in CORE_TABLES:
            raise ValueError(f"{name!r} is one of the core's tables")
        return Table(self._cache, name)

    # ------------------------------------------------------------ functions

    def put_function(self, registration: dict[str, Any]) -> tuple[str, bool]:
        """Record a function; return its id and whether it was new (or deleted:
        registering a deleted function again makes it runnable again)."""
        function_id = function_id_for(registration)
        existing = self.get_function(function_id)
        if existing is not None and DELETED_AT not in existing:
            return function_id, False
        record = {**registration, "function_id": function_id, "created_at": time.time()}
        self._grew(len(record.get("function_code") or ""), 1)
        self._functions.set(function_id, record)
        return function_id, True

    def get_function(self, function_id: str) -> dict[str, Any] | None:
        """The record as registered, deleted or not (a deleted one has ``DELETED_AT``:
        its tasks still run, and resume, with its code)."""
        return self._functions.get(function_id)  # type: ignore[no-any-return]

    def delete_function(self, function_id: str) -> None:
        """Mark a function deleted (``DELETED_AT``): no new tasks, the record stays
        for the tasks already accepted."""
        record = self.get_function(function_id)
        if record is not None:
            self._functions.set(function_id, {**record, DELETED_AT: time.time()})

    # ---------------------------------------------------------------- tasks

    def add_tasks(
        self, tasks: Sequence[NewTask], status: str, reused: Sequence[ReusedTask] = ()
    ) -> list[dict[str, Any]]:
        """Record newly accepted tasks and their run data, and the tasks of the same
        submission that reuse a stored result (final at once), in one transaction;
        the records of ``tasks``."""
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
                    **({"reuse_key": task.reuse_key} if task.reuse_key else {}),
                },
            )
            for task in tasks
        ]
        copies = [_reused_record(task, now) for task in reused]
        self._grew(
            sum(len(task.payload) for task in tasks) + sum(len(r["result"]) for r in copies),
            2 * len(tasks) + len(copies),
        )
        with self._tasks.transact():
            self._inflight.set_many(run_data)
            self._tasks.set_many([(record["task_id"], record) for record in records])
            if copies:
                self._tasks.set_many([(copy["task_id"], copy) for copy in copies])
                # The newest copy holds the result longest: later lookups find it
                # after the source's retention ran out.
                self.reuse.point([(task.reuse_key, task.task_id) for task in reused])
                success = self._completed[TaskStatus.SUCCESS] + len(copies)
                self._meta.set_many(
                    [
                        (count_key(TaskStatus.SUCCESS), success),
                        (REUSED_COUNT, self._reused + len(copies)),
                    ]
                )
        if copies:
            self._completed[TaskStatus.SUCCESS] += len(copies)
            self._reused += len(copies)
        for record in records:
            self._remember_pending(record)
        self._reuse_keys.update((task.task_id, task.reuse_key) for task in tasks if task.reuse_key)
        return records

    def complete_tasks(self, outcomes: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Write final outcomes; return the full records written.

        One transaction: the final records and the counters (and, now and then,
        the deletion of the run data of the tasks completed since the last one).
        An outcome for a task that is already final (a duplicate report after a
        resume) is ignored: each task completes once.
        """
        written: dict[str, dict[str, Any]] = {}
        for outcome in outcomes:
            task_id = outcome["task_id"]
            if task_id in written:  # reported twice in one batch: the first counts
                continue
            # Not in memory: a task resumed without the usual fields, or a duplicate.
            record = self._pending_record(task_id) or self._tasks.get(task_id)
            if record is None or record["status"] in FINAL_STATUSES:
                continue
            written[task_id] = {**record, **outcome}
        if not written:
            return []
        completed = dict(self._completed)
        for record in written.values():
            completed[record["status"]] += 1
        self._grew(
            sum(
                len(r.get("result") or "") + len(r.get("exception") or "") for r in written.values()
            ),
            len(written),
        )
        drop = (
            len(self._finished_runs) + len(written) >= RUN_DATA_DROP_BATCH
            or time.monotonic() - self._dropped_at >= RUN_DATA_DROP_SECONDS
        )
        reusable = self._reusable(written.values()) if self._reuse_keys else []
        with self._tasks.transact():
            self._tasks.set_many(list(written.items()))
            if drop:
                self._inflight.delete_many([*self._finished_runs, *written])
            self._meta.set_many([(count_key(s), n) for s, n in completed.items()])
            if reusable:
                self.reuse.point(reusable)
        self._completed = completed
        if drop:
            self._finished_runs, self._dropped_at = [], time.monotonic()
        else:
            self._finished_runs.extend(written)
        for task_id in written:
            self._pending.pop(task_id, None)
            self._running.discard(task_id)
            self._reuse_keys.pop(task_id, None)
        return list(written.values())

    def _reusable(self, records: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
        """``(reuse key, task id)`` of the successful ones among final ``records``
        that were submitted with reuse_results (failures are never reused)."""
        keys = self._reuse_keys
        return [
            (keys[r["task_id"]], r["task_id"])
            for r in records
            if r["status"] == TaskStatus.SUCCESS and r["task_id"] in keys
        ]

    def mark_running(self, task_id: str) -> None:
        """An unfinished task started to run: its record reads "running" (see
        ``_running``) until it is final. Unknown or final tasks are ignored."""
        if task_id not in self._pending:
            record = self._tasks.get(task_id)
            if record is None or record["status"] in FINAL_STATUSES:
                return
        self._running.add(task_id)

    def _live(self, record: dict[str, Any]) -> dict[str, Any]:
        """A record read from memory or the database, with the status "running"
        if its task runs now (``record`` is the caller's own copy: changed in place)."""
        if record["task_id"] in self._running and record["status"] not in FINAL_STATUSES:
            record["status"] = TaskStatus.RUNNING
        return record

    def get_task(self, task_id: str) -> dict[str, Any] | None:
        """A task record; a final one starts its retention clock when first read."""
        return self.get_tasks([task_id])[task_id]

    def get_tasks(self, task_ids: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """Records by task id (None: unknown, or retrieved longer ago than the
        retention now allows); see :meth:`get_task`."""
        task_ids = list(task_ids)
        stored = self._kept_with_retrieval([t for t in task_ids if t not in self._pending])
        first_reads = [
            task_id
            for task_id, (record, retrieved_at) in stored.items()
            if retrieved_at is None and record["status"] in FINAL_STATUSES
        ]
        if first_reads:
            self._start_retention(first_reads)
        found: dict[str, dict[str, Any] | None] = {}
        running = self._running
        for task_id in task_ids:
            record = self._pending_record(task_id)
            if record is None:
                record = stored.get(task_id, (None,))[0]
            found[task_id] = self._live(record) if record and task_id in running else record
        return found

    def _kept_with_retrieval(
        self, task_ids: list[str]
    ) -> dict[str, tuple[dict[str, Any], float | None]]:
        """Stored records and their first-retrieval times, without those retrieved
        longer ago than the retention now allows (gone, though not yet swept)."""
        stored = sql.get_many(self._cache, "tasks", task_ids, column="tag")
        kept_since = time.time() - self.retention_seconds
        return {
            task_id: (record, retrieved_at)
            for task_id, (record, retrieved_at) in stored.items()
            if retrieved_at is None or retrieved_at >= kept_since
        }

    def _kept_records(self, task_ids: list[str]) -> dict[str, dict[str, Any]]:
        """:meth:`_kept_with_retrieval`'s records (for the reuse index)."""
        return {t: record for t, (record, _) in self._kept_with_retrieval(task_ids).items()}

    def note_delivered(self, task_ids: Sequence[str]) -> None:
        """Start the retention clock of final results a client got as they
        completed (a waiting GetResult, a watch stream: an Executor's futures),
        not through :meth:`get_tasks`; else they would be kept as never read."""
        self._start_retention(task_ids)

    def _start_retention(self, task_ids: Sequence[str]) -> None:
        """Record the first retrieval of results read for the first time, in one
        transaction. Losing this write to a crash only keeps the results longer."""
        try:
            sql.mark_retrieved(self._cache, "tasks", task_ids, time.time())
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            # A full disk must not hide results: the clock starts at a later read.

    def resumable(self) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """Every accepted, unfinished task as (record, run data), for resuming.

        Drops run data whose task record is final (a crash came before it was
        deleted, see RUN_DATA_DROP_BATCH) or missing (a store migrated from the
        old layout may hold some). A task whose run data cannot be read (its
        file was lost) fails, saying so.
        """
        leftovers, lost = [], []
        runs = self._inflight.items()
        while chunk := list(itertools.islice(runs, sql.CHUNK)):
            records = self._tasks.get_many([task_id for task_id, _ in chunk])
            for task_id, run in chunk:
                record = records.get(task_id)
                if record is None or record["status"] in FINAL_STATUSES:
                    leftovers.append(task_id)
                elif run is None:
                    lost.append(task_id)
                else:
                    self._remember_pending(record)
                    if run.get("reuse_key"):
                        self._reuse_keys[task_id] = run["reuse_key"]
                    yield record, run
        self._inflight.delete_many(leftovers)  # the finished runs among them
        self._finished_runs = []
        if lost:
            log.error("%d unfinished task(s) lost their run data; they fail", len(lost))
            now = repr(time.time())
            self.complete_tasks(
                {
                    "task_id": t,
                    "status": TaskStatus.FAILED,
                    "exception": RUN_DATA_LOST,
                    "completion_t": now,
                }
                for t in lost
            )

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

    def task_ids_in_group(self, task_group_id: str) -> list[str]:
        """Ids of the recorded tasks of a task group, oldest first. The records are
        not indexed by group (a rare question: an Executor reattaching); SQLite
        picks the records whose text names the group, so only those are decoded."""
        fragment = encode({"task_group_id": task_group_id})[1:-1]
        return [
            task_id
            for task_id, record in self._tasks.items_containing(fragment)
            if record is not None and record.get("task_group_id") == task_group_id
        ]

    def recent_tasks(
        self,
        limit: int,
        status: str = "",
        *,
        function_id: str = "",
        endpoint_id: str = "",
        since: float = 0.0,
    ) -> list[dict[str, Any]]:
        """Newest first, at most ``limit``, those passing every filter given
        (``status="pending"`` matches every non-final status; ids canonical; since:
        accepted at or after, Unix time). SQLite skips most records that cannot
        match, undecoded (see :mod:`.query`)."""
        what = TaskFilter(status, function_id, endpoint_id, since)
        found: list[dict[str, Any]] = []
        for _, record in self._tasks.items_matching(what.texts(), stored_since=what.stored_since):
            if record is None or not what.matches(self._live(record)):
                continue
            found.append(record)
            if len(found) >= limit:
                break
        return found

    def function_names(self, function_ids: Iterable[str]) -> dict[str, str]:
        """Each known function's registered name, by id (one lookup for them all)."""
        records = self._functions.get_many(list(dict.fromkeys(function_ids)))
        return {fid: record.get("function_name", "") for fid, record in records.items()}

    def functions(
        self, limit: int, name: str = "", *, deleted: bool = False
    ) -> list[dict[str, Any]]:
        """Registered functions, newest registration first, at most ``limit``:
        those named ``name`` (any: ""), deleted ones only with ``deleted``."""
        texts = [[fragment("function_name", name)]] if name else []
        found: list[dict[str, Any]] = []
        for _, record in self._functions.items_matching(texts):
            if record is None or (name and record.get("function_name") != name):
                continue
            if DELETED_AT in record and not deleted:
                continue
            found.append(record)
            if len(found) >= limit:
                break
        return found

    # ------------------------------------------------------------- capacity

    def size_bytes(self) -> int:
        """Bytes of every file under the store directory: the database, SQLite's
        write-ahead log and its index, the files of large values (what ``du``
        sees; diskcache's ``volume()`` leaves out the log, often the largest)."""
        total = 0
        for root, _, files in os.walk(self.directory):
            for name in files:
                try:
                    total += os.stat(os.path.join(root, name)).st_size
                except FileNotFoundError:  # removed while we looked
                    continue
        self._volume = total
        self._volume_at, self._growth = time.monotonic(), 0
        return total

    def _grew(self, text_bytes: int, records: int) -> None:
        """Count a write in the bound of the growth since the last measurement."""
        self._growth += 2 * text_bytes + records * RECORD_OVERHEAD_BYTES

    def has_room_for(self, incoming_bytes: int) -> bool:
        """Whether ``incoming_bytes`` more fit (making room is the caller's:
        :meth:`purge_page` with the retention cut-offs, :meth:`evict_page`).

        Far from the limit, the last measurement plus the bound of the growth
        since answers without measuring (the check precedes every submission).
        """
        if (
            self._volume >= 0
            and time.monotonic() - self._volume_at < VOLUME_RECHECK_SECONDS
            and self._volume + self._growth + incoming_bytes <= self.size_limit_bytes
        ):
            return True
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
            "success": self._completed[TaskStatus.SUCCESS],
            "failed": self._completed[TaskStatus.FAILED],
            "cancelled": self._completed[TaskStatus.CANCELLED],
            "reused": self._reused,
            "functions": len(self._functions),
            "task_records": len(self._tasks),
        }

    # ---------------------------------------------------- forget and purge

    def in_flight(self, task_ids: Iterable[str]) -> list[str]:
        """Those of ``task_ids`` known here and not final, in the order given."""
        task_ids = list(task_ids)
        stored = self._tasks.get_many([t for t in task_ids if t not in self._pending])
        return [
            t
            for t in task_ids
            if t in self._pending or (t in stored and stored[t]["status"] not in FINAL_STATUSES)
        ]

    def forget(self, task_ids: Sequence[str]) -> Removal:
        """Delete the records (and run data) of ``task_ids``, final or not, leaving
        tombstones, in one transaction. The caller decided about tasks in flight
        (an outcome that arrives for one later finds no record and is dropped)."""
        stored = self._tasks.get_many([t for t in task_ids if t not in self._pending])
        removal = Removal()
        gone = []
        for task_id in task_ids:
            record = self._pending_record(task_id) or stored.get(task_id)
            if record is None:
                removal.unknown_task_ids.append(task_id)
                continue
            gone.append(task_id)
            removal.count(task_id, record["status"], 0)
            if record["status"] not in FINAL_STATUSES:
                removal.in_flight += 1
        with self._tasks.transact():
            self._tasks.delete_many(gone)
            self._inflight.delete_many(gone)
            self._bury(gone, "forgotten")
        finished = set(gone)
        self._finished_runs = [t for t in self._finished_runs if t not in finished]
        for task_id in gone:
            self._pending.pop(task_id, None)
            self._running.discard(task_id)
        return removal

    def purge_page(
        self, what: PurgeFilter, after: str, *, dry_run: bool = False, how: str = "purged"
    ) -> tuple[Removal, str | None]:
        """One short transaction of a purge: the matching final records among the
        next ``PURGE_PAGE`` candidates after key ``after`` (see ``sql.sweep_page``),
        deleted with tombstones (``how``: "purged"; "" for the store's own
        retention sweep, which leaves none). Returns what went and where to resume
        (None: done). Tasks in flight are never touched."""
        rows, resume = sql.sweep_page(
            self._cache,
            "tasks",
            after,
            stored_before=what.stored_before,
            retrieved_only=what.retrieved,
            expired=what.expired,
            limit=PURGE_PAGE,
        )
        removal = Removal()
        chosen = []
        for row in rows:
            if row.key in self._pending or not what.matches(row.value):
                continue
            chosen.append(row.rowid)
            removal.count(row.key, row.value["status"], row.size)
        if chosen and not dry_run:
            with self._tasks.transact():
                sql.delete_rows(self._cache, "tasks", chosen)
                if how:
                    self._bury(removal_ids(rows, chosen), how)
        return removal, resume

    def evict_page(self, want_bytes: int) -> Removal:
        """Delete the retrieved results retrieved longest ago, oldest first, until
        their stored bytes reach ``want_bytes`` (at least one, at most ``sql.CHUNK``),
        in one transaction (no tombstones: eviction is the store's own, like
        retention). Stopping at ``want_bytes`` keeps eviction to what the room needs:
        a whole page of large results could be far more."""
        rows = sql.oldest_retrieved(self._cache, "tasks")
        removal = Removal()
        chosen = []
        for row in rows:  # retrieved, so final (a value whose file was lost: None)
            if chosen and removal.record_bytes >= want_bytes:
                break
            chosen.append(row.rowid)
            removal.count(row.key, (row.value or {}).get("status", "unreadable"), row.size)
        sql.delete_rows(self._cache, "tasks", chosen)
        return removal

    def expired_filter(self, now: float | None = None) -> PurgeFilter:
        """What the retention settings let go at ``now`` (default: now), for
        :meth:`purge_page`."""
        cutoffs = retention_cutoffs(
            time.time() if now is None else now,
            self.retention_seconds,
            self.unread_retention_seconds,
        )
        return PurgeFilter(expired=cutoffs)

    def drop_expired_rows(self) -> int:
        """Rows of any table whose diskcache expire time passed (backends' records,
        tombstones); how many."""
        return sql.expire(self._cache)

    def release_space(self) -> int:
        """Return the pages deletions freed to the file system now (SQLite's log
        checkpointed and truncated); the store's size afterwards."""
        sql.checkpoint(self._cache)
        return self.size_bytes()

    def tombstones(self, task_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The tombstones of those of ``task_ids`` forgotten or purged (and still kept)."""
        return self._forgotten.get_many(task_ids)

    def _bury(self, task_ids: Sequence[str], how: str) -> None:
        """Tombstones for ``task_ids`` (inside the caller's transaction), keeping
        at most TOMBSTONE_MAX once TOMBSTONE_SLACK more piled up."""
        if not task_ids:
            return
        now = time.time()
        self._forgotten.set_many(
            [(t, {"at": now, "how": how}) for t in task_ids], TOMBSTONE_SECONDS
        )
        if len(self._forgotten) > TOMBSTONE_MAX + TOMBSTONE_SLACK:
            sql.trim_oldest(self._cache, "forgotten", TOMBSTONE_MAX)


def removal_ids(rows: Sequence[sql.Row], rowids: Sequence[int]) -> list[str]:
    """The keys of those of ``rows`` whose rowid is in ``rowids``."""
    wanted = set(rowids)
    return [row.key for row in rows if row.rowid in wanted]


def _reused_record(task: ReusedTask, now: float) -> dict[str, Any]:
    """The final record of a task that copies ``task.source``'s result: its own ids
    and times, the source's result and details, and ``reused_from`` naming the task
    that ran (the source's own ``reused_from`` when the source is a copy too)."""
    source = task.source
    record = {
        "task_id": task.task_id,
        "function_id": task.function_id,
        "endpoint_id": task.endpoint_id,
        "task_group_id": task.task_group_id,
        "status": TaskStatus.SUCCESS,
        "created_at": now,
        "completion_t": repr(now),
        "result": source["result"],
        "reused_from": source.get("reused_from") or source["task_id"],
    }
    if source.get("details"):
        record["details"] = source["details"]
    return record
