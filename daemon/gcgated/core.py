"""The task life-cycle: accept, persist, dispatch, complete, notify.

Every path of a task runs through here, on the daemon's event loop:

1. ``submit`` validates a submission, writes its task records to the store and
   only then hands the tasks to their backend and answers the client (with
   ``reuse_results``, tasks identical to one that succeeded before are written
   final at once with a copy of its result and never reach a backend);
2. backends report each final outcome through ``_on_outcome``; outcomes are
   written to the store in batches (one transaction per loop turn) and only
   then handed back to their backend (``Outcome.on_stored``, which may now drop
   its own record of the task) and pushed to waiting ``wait_for``/``watch``
   callers;
3. ``start`` resumes every task that was accepted but not final when the
   daemon last stopped (at-least-once: a local task may run a second time);
4. results leave the store by retention (a sweep every ``SWEEP_SECONDS``), by
   eviction when a submission would not fit, or when a client forgets or purges
   them (``forget``, ``purge``): in chunks of one short transaction each, the
   loop free in between so other calls are served (store/lifecycle.py).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import asdict, replace
from typing import Any

from gcgate.constants import FINAL_STATUSES, PENDING_FILTER, TaskStatus

from gcgated.backends.base import Backend, Outcome, SubmitGroup, TaskSpec
from gcgated.caller import DAEMON, Caller
from gcgated.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ShuttingDown,
    StoreFull,
)
from gcgated.logs import log_task_failure
from gcgated.model import (
    CancelResult,
    PurgeRequest,
    Receipt,
    Registration,
    Submission,
    SubmitOptions,
    TaskQuery,
)
from gcgated.routing import Router
from gcgated.store import (
    DELETED_AT,
    NewTask,
    PurgeFilter,
    Removal,
    ReusedTask,
    Store,
    reuse_keys,
    tombstone_message,
)
from gcgated.strict_json import non_json_result
from gcgated.timeouts import within
from gcgated.validation import check_function_code, check_task_payload, parse_uuid, shown

log = logging.getLogger(__name__)

#: Seconds between attempts to write outcomes when the store refused them.
STORE_RETRY_SECONDS = 1.0
#: During a burst of completions, the shortest time between two outcome writes.
#: A write costs a few SQLite commits whatever its size, so under load outcomes
#: gather for this long and share them; a lone outcome is written at once.
FLUSH_INTERVAL = 0.003
#: A cancelled task's exception text when its backend said nothing more.
CANCELLED_REASON = "Cancelled at a client's request before it finished."
#: Queued to every watcher when the daemon shuts down.
_SHUTDOWN: dict[str, Any] = {"task_id": None}
#: Seconds between two sweeps of the results retention lets go (and one at start).
SWEEP_SECONDS = 600.0
#: Eviction frees room for a refused submission and this share of the limit more,
#: so the next submissions do not each evict a chunk.
EVICT_HEADROOM = 0.05
#: The status a task answered from a stored result is counted under in ``completions``.
REUSED = "reused"
#: The one command that frees a full store, named in its error.
PURGE_HINT = "gcgate purge --older-than 7d (--dry-run first shows what would go)"


class TaskLifecycle:
    """Owns the path of every task from acceptance to its stored result."""

    def __init__(self, store: Store, router: Router):
        self.store = store
        self.router = router
        self.started_at = time.time()
        self._waiters: dict[str, list[asyncio.Queue[dict[str, Any]]]] = defaultdict(list)
        self._outcomes: list[dict[str, Any]] = []
        #: The ``on_stored`` callbacks of the queued outcomes that have one.
        self._on_stored: list[Callable[[], None]] = []
        self._flush_scheduled = False
        #: Loop time of the last outcome write, and whether it wrote more than
        #: one outcome (a burst, as opposed to tasks completing one at a time).
        self._last_flush = 0.0
        self._bursting = False
        self._accepting = False
        #: One eviction at a time (concurrent submissions wait for its outcome).
        self._making_room = asyncio.Lock()
        self._sweeper: asyncio.Task[None] | None = None
        #: Tasks that became final since the start, by (backend name, status), the
        #: status "reused" for those answered from the store (for the metrics).
        self.completions: Counter[tuple[str, str]] = Counter()

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        for backend in self.router.backends:
            await backend.start(self._on_outcome, self.store.mark_running)
        resumed = self._resume()
        self._accepting = True
        if resumed:
            log.info("resumed %d unfinished task(s) from the store", resumed)
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    def begin_shutdown(self) -> None:
        """Refuse new work and end every wait/watch with UNAVAILABLE, so streams
        close at once instead of holding the shutdown grace period."""
        self._accepting = False
        for queues in self._waiters.values():
            for queue in queues:
                queue.put_nowait(_SHUTDOWN)

    async def stop(self) -> None:
        """Stop backends and persist outcomes already reported."""
        self.begin_shutdown()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for backend in self.router.backends:
            await backend.stop()
        self._flush()

    def _resume(self) -> int:
        by_backend: dict[int, tuple[Backend, list[TaskSpec]]] = {}
        functions: dict[str, dict[str, Any] | None] = {}
        orphans = []
        for record, run in self.store.resumable():
            function_id = record["function_id"]
            if function_id not in functions:
                functions[function_id] = self.store.get_function(function_id)
            function = functions[function_id]
            if function is None:
                orphans.append(record["task_id"])
                continue
            _, backend = self.router.resolve(record["endpoint_id"])
            spec = _task_spec(
                record["task_id"], function, run["payload"], tuple(run["result_serializers"])
            )
            by_backend.setdefault(id(backend), (backend, []))[1].append(spec)
        for task_id in orphans:
            self._on_outcome(
                Outcome(
                    task_id,
                    TaskStatus.FAILED,
                    exception=(
                        "gcgate: the task's function record is missing from the store;"
                        " the task cannot be resumed"
                    ),
                    completion_t=time.time(),
                )
            )
        for backend, specs in by_backend.values():
            # The tokens of a previous run are gone: the backend tells its
            # client-token tasks apart by what it stored of them.
            backend.dispatch(specs, DAEMON)
        return sum(len(specs) for _, specs in by_backend.values()) + len(orphans)

    # ------------------------------------------------------------ functions

    def register_function(self, registration: Registration) -> tuple[str, bool]:
        """(function id, whether this call created the record)."""
        check_function_code(
            registration.function_code, registration.serialized, registration.function_name
        )
        group = parse_uuid(registration.group, "group") if registration.group else ""
        return self.store.put_function({**asdict(registration), "group": group})

    def get_function(self, function_id: str, what: str = "function_id") -> dict[str, Any]:
        """A function's record; NOT_FOUND when unknown or deleted (no new tasks then,
        as the service answers a deleted function with 404). ``what``: the
        request's field that holds the id, for a malformed one."""
        function_id = parse_uuid(function_id, what)
        record = self.store.get_function(function_id)
        if record is None:
            # Ported SDK code often holds ids registered at Globus Compute directly
            # (saved from an earlier SDK run, or a public function): say why those
            # are unknown here and what gives a usable id.
            raise NotFound(
                f"function {function_id} is not registered with this daemon. Function ids"
                " are the daemon's own: one registered at Globus Compute directly (by the"
                " SDK, or another user's public function) is not known here; register the"
                " function through gcgate (Client.register_function or"
                " register_source_code) and use the id it returns"
            )
        if DELETED_AT in record:
            raise NotFound(
                f"function {function_id} was deleted (delete_function); register it again to run it"
            )
        return record

    def delete_function(self, function_id: str) -> None:
        """No new tasks of the function (tasks accepted before still run)."""
        self.store.delete_function(parse_uuid(function_id, "function_id"))

    # ---------------------------------------------------------------- tasks

    async def submit(self, submission: Submission) -> Receipt:
        """Validate, let the backend assign ids, persist, dispatch; the ids are durable."""
        if not self._accepting:
            raise ShuttingDown("gcgated is shutting down; retry once it is back")
        endpoint_id, backend = self.router.resolve(submission.endpoint_id)
        options = submission.options
        if options.task_group_id:
            options = replace(
                options, task_group_id=parse_uuid(options.task_group_id, "task_group_id")
            )
        groups = self._validated_groups(submission, backend)
        await self._check_room(sum(len(p) for _, payloads in submission.groups for p in payloads))
        keys = _reuse_keys(endpoint_id, groups, options, submission.caller)
        # Looked up before anything is sent: a reused task never reaches its backend.
        sources = self.store.reuse.lookup([k for group in keys for k in group if k])
        to_run = [_unanswered(g, ks, sources) for g, ks in zip(groups, keys, strict=True)]
        if any(group.payloads for group in to_run):
            accepted = await backend.accept(
                endpoint_id, [g for g in to_run if g.payloads], options, submission.caller
            )
            request_id, task_group_id = accepted.request_id, accepted.task_group_id
            assigned = iter(accepted.task_ids)
            run_ids = [iter(next(assigned) if g.payloads else ()) for g in to_run]
        else:
            # Nothing to send: without a group of its own, the submission joins the
            # group of the first task it reuses, one its backend already knows.
            request_id, run_ids = str(uuid.uuid4()), []
            task_group_id = options.task_group_id or next(iter(sources.values()))["task_group_id"]

        receipt = Receipt(request_id, task_group_id, endpoint_id)
        new_tasks: list[NewTask] = []
        reused: list[ReusedTask] = []
        specs: list[TaskSpec] = []
        for index, (group, group_keys) in enumerate(zip(groups, keys, strict=True)):
            function = group.function
            function_id = function["function_id"]
            task_ids = []
            for payload, key in zip(group.payloads, group_keys, strict=True):
                source = sources.get(key) if key else None
                if source is not None:
                    task_id = str(uuid.uuid4())
                    reused.append(
                        ReusedTask(task_id, function_id, endpoint_id, task_group_id, key, source)
                    )
                else:
                    task_id = next(run_ids[index])
                    new_tasks.append(
                        NewTask(
                            task_id,
                            function_id,
                            endpoint_id,
                            task_group_id,
                            payload,
                            options.result_serializers,
                            key,
                        )
                    )
                    specs.append(_task_spec(task_id, function, payload, options.result_serializers))
                task_ids.append(task_id)
            receipt.tasks.append((function_id, task_ids))
        self.store.add_tasks(new_tasks, TaskStatus.WAITING_FOR_EP, reused)
        log.debug(
            "accepted %d task(s) for endpoint %s (request %s, %s)",
            len(new_tasks) + len(reused),
            endpoint_id,
            request_id,
            submission.caller,
        )
        self.completions[(backend.name, REUSED)] += len(reused)
        if reused:
            log.debug("%d task(s) reused a stored result", len(reused))
        if specs:
            log.debug("dispatching %d task(s) to the %s backend", len(specs), backend.name)
            backend.dispatch(specs, submission.caller)
        return receipt

    def _validated_groups(self, submission: Submission, backend: Backend) -> list[SubmitGroup]:
        """Every check that can refuse a submission, before anything is sent or stored."""
        if not any(payloads for _, payloads in submission.groups):
            raise InvalidArgument("no tasks specified for this submission")
        groups = []
        all_payloads: list[str] = []
        several = len(submission.groups) > 1
        for index, (function_id, payloads) in enumerate(submission.groups):
            # Payloads come before JSON-framed ones (which always pass), so a
            # batch's j-th payload here is its request's tasks[index].payloads[j].
            named = several or len(payloads) > 1
            for j, payload in enumerate(payloads):
                check_task_payload(payload, f"tasks[{index}].payloads[{j}]" if named else "payload")
            what = f"tasks[{index}].function_id" if several else "function_id"
            groups.append(SubmitGroup(self.get_function(function_id, what), payloads))
            all_payloads.extend(payloads)
        backend.check_submission(all_payloads)
        return groups

    async def _check_room(self, size: int) -> None:
        """StoreFull unless ``size`` more bytes fit, after evicting what may go."""
        if not self.store.has_room_for(size):
            async with self._making_room:
                if not self.store.has_room_for(size):
                    await self._make_room(size)
            if not self.store.has_room_for(size):
                unread = self.store.unread_retention_seconds
                kept = "until read" if math.isinf(unread) else f"for {unread / 86400:g} days"
                raise StoreFull(
                    f"the result store at {self.store.directory} is full (limit"
                    f" {self.store.size_limit_bytes:,} bytes) with results nobody has"
                    f" retrieved (kept {kept}: unread_retention_days) and tasks in flight;"
                    f" free it with `{PURGE_HINT}`, or raise store_size_limit_mb"
                )
        if not self.store.disk_has_room_for(size):
            raise StoreFull(
                f"the disk holding the result store at {self.store.directory} is full;"
                " free space there, then retry"
            )

    def get_task(self, task_id: str) -> dict[str, Any]:
        task_id = parse_uuid(task_id, "task_id")
        record = self.store.get_task(task_id)
        if record is None:
            tombstone = self.store.tombstones([task_id]).get(task_id)
            if tombstone is not None:
                raise NotFound(tombstone_message(task_id, tombstone))
            raise NotFound(
                f"task {task_id} is not known to this daemon (never submitted here,"
                " or its result expired after retrieval, or was evicted)"
            )
        return record

    def get_tasks(self, task_ids: Iterable[str]) -> list[dict[str, Any]]:
        """Records in request order, duplicates collapsed; NOT_FOUND names the unknown."""
        return self._records(_wanted_task_ids(task_ids))

    def find_tasks(self, task_ids: Iterable[str]) -> tuple[list[dict[str, Any]], list[str]]:
        """The records of the known ids and the unknown ids, each in request order
        (duplicates collapsed): for callers that report unknown ids per id rather
        than fail on them."""
        return self._found(_wanted_task_ids(task_ids))

    def _found(self, wanted: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
        """``find_tasks`` of ids already parsed and deduplicated."""
        records = self.store.get_tasks(wanted)
        known = [r for r in records.values() if r is not None]
        return known, [t for t, r in records.items() if r is None]

    def _records(self, wanted: list[str]) -> list[dict[str, Any]]:
        """``get_tasks`` of ids already parsed and deduplicated."""
        records, missing = self._found(wanted)
        if missing:
            tombstones = self.store.tombstones(missing)
            if tombstones:
                task_id, tombstone = next(iter(tombstones.items()))
                more = f" ({len(missing)} id(s) unknown in all)" if len(missing) > 1 else ""
                raise NotFound(tombstone_message(task_id, tombstone) + more)
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise NotFound(f"{len(missing)} task id(s) are not known to this daemon: {shown}")
        return records

    async def wait_for(self, task_id: str, timeout: float) -> dict[str, Any]:
        """The task record once final, or as it is when ``timeout`` runs out."""
        record = self.get_task(task_id)
        if record["status"] in FINAL_STATUSES or timeout <= 0:
            return record
        async for final in self.watch([record["task_id"]], timeout=timeout):
            return final
        return self.get_task(task_id)

    async def watch(
        self, task_ids: Iterable[str], timeout: float | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield each task's final record once, as it completes."""
        async for batch in self.watch_batches(task_ids, timeout):
            for record in batch:
                yield record

    async def watch_batches(
        self, task_ids: Iterable[str], timeout: float | None = None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield the tasks' final records, each once: first those already final,
        then, as they complete, those written by one store flush together.

        The queue is registered before the store is read, so a task finishing
        between the two is seen by one path or the other (duplicates dropped).
        """
        wanted = _wanted_task_ids(task_ids)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for task_id in wanted:
            self._waiters[task_id].append(queue)
        try:
            if not self._accepting:  # shut down before this call registered
                raise ShuttingDown("gcgated is shutting down; reconnect once it is back")
            remaining = set(wanted)
            # Tasks unfinished in memory need no record built: by far the most.
            stored = [t for t in wanted if not self.store.is_pending(t)]
            final = [r for r in self._records(stored) if r["status"] in FINAL_STATUSES]
            if final:
                remaining.difference_update(r["task_id"] for r in final)
                yield final
            loop = asyncio.get_running_loop()
            deadline = None if timeout is None else loop.time() + timeout
            while remaining:
                left = None if deadline is None else deadline - loop.time()
                record = await within(queue.get(), left)
                batch, stopping = [], False
                while True:  # everything queued by now: one flush's worth, or more
                    if record is _SHUTDOWN:
                        stopping = True
                    elif record.get("forgotten") and record["task_id"] in remaining:
                        raise NotFound(tombstone_message(record["task_id"], record))
                    elif record["task_id"] in remaining:
                        remaining.discard(record["task_id"])
                        batch.append(record)
                    try:
                        record = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                if batch:
                    # Handed to a client now, as a read would be: retention starts.
                    self.store.note_delivered([r["task_id"] for r in batch])
                    yield batch
                if stopping:
                    raise ShuttingDown("gcgated is shutting down; reconnect once it is back")
        except asyncio.TimeoutError:
            return
        finally:
            for task_id in wanted:
                queues = self._waiters.get(task_id)
                if queues is not None:
                    queues.remove(queue)
                    if not queues:
                        del self._waiters[task_id]

    def cancel(self, task_ids: Iterable[str]) -> list[CancelResult]:
        """Cancel the unfinished tasks among ``task_ids``; one result per id, in
        request order (duplicates collapsed). NOT_FOUND, cancelling nothing, when
        an id is unknown.

        The backends stop their work first (drop, kill, or stop waiting), then
        the cancelled records are written in one transaction before this returns:
        answered, a cancel holds across a restart (a final task is not resumed).
        Outcomes already reported and not yet written are written first, so a
        task that finished just before is answered as final, not cancelled.
        """
        wanted = _wanted_task_ids(task_ids)
        if self._outcomes:
            self._flush()
        records = {r["task_id"]: r for r in self._records(wanted)}
        reasons = self._stop_work(records.values())
        now = repr(time.time())
        written = self.store.complete_tasks(
            {
                "task_id": task_id,
                "status": TaskStatus.CANCELLED,
                "exception": reason,
                "completion_t": now,
            }
            for task_id, reason in reasons.items()
        )
        self._count_completions(written)
        for record in written:
            records[record["task_id"]] = record
            for queue in self._waiters.get(record["task_id"], ()):
                queue.put_nowait(record)
        if written:
            log.info("cancelled %d task(s) at a client's request", len(written))
        return [_cancel_result(records[t], t in reasons) for t in wanted]

    def _stop_work(self, records: Iterable[Mapping[str, Any]]) -> dict[str, str]:
        """Have the backends stop the unfinished tasks among ``records`` (drop,
        kill, or stop waiting); what each did, by task id, as a record's text."""
        reasons: dict[str, str] = {}
        for backend, tasks in self._unfinished_by_backend(records):
            said = backend.cancel(list(tasks))
            reasons.update((task_id, said.get(task_id) or CANCELLED_REASON) for task_id in tasks)
        return reasons

    def pending_reasons(self, records: Iterable[Mapping[str, Any]]) -> dict[str, str]:
        """Why each unfinished one of ``records`` is not final yet, in words, by
        task id: its backend's account (Backend.pending_reasons), asked once per
        backend however many records there are."""
        reasons: dict[str, str] = {}
        for backend, tasks in self._unfinished_by_backend(records):
            reasons.update(backend.pending_reasons(tasks))
        return reasons

    def _unfinished_by_backend(
        self, records: Iterable[Mapping[str, Any]]
    ) -> list[tuple[Backend, dict[str, str]]]:
        """The unfinished tasks among ``records`` by backend: task id -> endpoint id."""
        by_backend: dict[int, tuple[Backend, dict[str, str]]] = {}
        for record in records:
            if record["status"] not in FINAL_STATUSES:
                endpoint_id, backend = self.router.resolve(record["endpoint_id"])
                tasks = by_backend.setdefault(id(backend), (backend, {}))[1]
                tasks[record["task_id"]] = endpoint_id
        return list(by_backend.values())

    def recent_tasks(self, query: TaskQuery) -> list[dict[str, Any]]:
        """Newest first, at most ``query.limit`` (at least 1), passing its filters;
        INVALID_ARGUMENT naming a malformed filter."""
        records = self.store.recent_tasks(
            max(query.limit, 1),
            _task_status(query.status),
            function_id=parse_uuid(query.function_id, "function_id") if query.function_id else "",
            endpoint_id=self.router.resolve(query.endpoint_id)[0] if query.endpoint_id else "",
            since=_since(query.since),
        )
        names = self.store.function_names(r["function_id"] for r in records)
        return [{**r, "function_name": names.get(r["function_id"], "")} for r in records]

    def functions(self, limit: int, name: str, *, deleted: bool) -> list[dict[str, Any]]:
        """Registered functions, newest first (deleted ones only with ``deleted``)."""
        return self.store.functions(max(limit, 1), name, deleted=deleted)

    def task_ids_in_group(self, task_group_id: str) -> tuple[str, list[str]]:
        """(canonical group id, its recorded tasks oldest first); NOT_FOUND when
        there are none (the daemon knows a group only by its tasks)."""
        task_group_id = parse_uuid(task_group_id, "task_group_id")
        task_ids = self.store.task_ids_in_group(task_group_id)
        if not task_ids:
            raise NotFound(
                f"task group {task_group_id} has no tasks in this daemon's store (none"
                " was submitted here, or their results expired after retrieval)"
            )
        return task_group_id, task_ids

    # ------------------------------------------------- forget, purge, sweep

    async def forget(self, task_ids: Iterable[str], *, in_flight: bool) -> Removal:
        """Forget tasks by id (see ForgetTasks in gateway.proto): FAILED_PRECONDITION
        naming the tasks still in flight unless ``in_flight``; their waiters end
        with NOT_FOUND "forgotten"."""
        wanted = _wanted_task_ids(task_ids)
        running = self.store.in_flight(wanted)
        if running and not in_flight:
            shown = ", ".join(running[:5]) + (" ..." if len(running) > 5 else "")
            raise FailedPrecondition(
                f"{len(running)} task(s) are still in flight: {shown}; nothing was forgotten."
                " To forget them anyway pass in_flight=True (gcgate forget --in-flight):"
                " their work is stopped as a cancel would, and they are not run again"
            )
        if running:  # stopped first: no worker keeps running a task nobody can ask about
            self._stop_work(self._records(running))
        before = self.store.size_bytes()
        removal = Removal()
        for start in range(0, len(wanted), _CHUNK):
            removal.add(self.store.forget(wanted[start : start + _CHUNK]))
            await _let_others_run()
        self._settle(removal, before)
        gone = [t for t in wanted if t not in set(removal.unknown_task_ids)]
        tombstones = self.store.tombstones(gone)
        for task_id in gone:
            marker = {**tombstones.get(task_id, {}), "task_id": task_id, "forgotten": True}
            for queue in self._waiters.get(task_id, ()):
                queue.put_nowait(marker)
        if removal.in_flight:
            log.info("forgot %d task(s) in flight; their results are discarded", removal.in_flight)
        return removal

    async def purge(self, request: PurgeRequest) -> Removal:
        """Delete (or with ``dry_run`` count) the final results matching every
        filter given; INVALID_ARGUMENT for none or a malformed one."""
        endpoint_id, function_id = request.endpoint_id, request.function_id
        task_group_id, dry_run = request.task_group_id, request.dry_run
        what = PurgeFilter(
            stored_before=_stored_before(request.older_than_seconds),
            status=_final_status(request.status),
            endpoint_id=self.router.resolve(endpoint_id)[0] if endpoint_id else "",
            function_id=parse_uuid(function_id, "function_id") if function_id else "",
            task_group_id=parse_uuid(task_group_id, "task_group_id") if task_group_id else "",
            retrieved=request.retrieved,
        )
        if what.is_empty():
            raise InvalidArgument(
                "name at least one filter (older_than_seconds, status, endpoint_id,"
                " function_id, task_group_id, retrieved); older_than_seconds=0 matches"
                " every final result"
            )
        removal = await self._purge_pages(what, dry_run=dry_run, how="purged")
        log.info("purge %s: %d result(s)%s", what, removal.tasks, " (dry run)" if dry_run else "")
        return removal

    async def sweep(self) -> Removal:
        """Drop what the retention settings let go (and expired rows of any table)."""
        removal = await self._purge_pages(self.store.expired_filter(), dry_run=False, how="")
        self.store.drop_expired_rows()
        return removal

    async def _purge_pages(self, what: PurgeFilter, *, dry_run: bool, how: str) -> Removal:
        """Every page of a purge, each one short transaction, the loop free between."""
        before = self.store.size_bytes()
        removal = Removal()
        after: str | None = ""
        while after is not None:
            page, after = self.store.purge_page(what, after, dry_run=dry_run, how=how)
            removal.add(page)
            await _let_others_run()
        if dry_run:
            removal.size_bytes = before
        else:
            self._settle(removal, before)
        return removal

    def _settle(self, removal: Removal, before: int) -> None:
        """Return freed pages to the file system; note the size and what it freed."""
        removal.size_bytes = self.store.release_space() if removal.tasks else before
        removal.bytes_freed = max(0, before - removal.size_bytes)

    async def _make_room(self, incoming: int) -> None:
        """Evict for a submission of ``incoming`` bytes (and EVICT_HEADROOM): first
        what retention lets go, then retrieved results, retrieved longest ago
        first. Unread results and tasks in flight are never evicted."""
        swept = await self.sweep()
        target = self.store.size_limit_bytes * (1 - EVICT_HEADROOM) - incoming
        evicted = Removal()
        # Measured with SQLite's log checkpointed: a log full of recent writes (a
        # copy of pages the database holds too) would make each page evict far
        # more than the room needs.
        size = self.store.release_space()
        while size > target:
            page = self.store.evict_page(int(size - target))
            if not page.tasks:
                break
            evicted.add(page)
            size = self.store.release_space()
            await _let_others_run()
        if swept.tasks or evicted.tasks:
            log.warning(
                "store near its limit: %d result(s) past retention dropped, %d retrieved"
                " result(s) evicted; now %d of %d bytes",
                swept.tasks,
                evicted.tasks,
                self.store.size_bytes(),
                self.store.size_limit_bytes,
            )

    async def _sweep_forever(self) -> None:
        """Sweep at start and every SWEEP_SECONDS; a failed sweep is logged and retried."""
        while True:
            try:
                removal = await self.sweep()
                if removal.tasks:
                    log.info("retention: dropped %d result(s)", removal.tasks)
            except Exception:
                log.exception("the retention sweep failed; it runs again later")
            await asyncio.sleep(SWEEP_SECONDS)

    # ------------------------------------------------------------ outcomes

    def _on_outcome(self, outcome: Outcome) -> None:
        """Backend callback: queue for the next batched store write."""
        document = dict(vars(outcome))  # shallow: the backend hands each outcome over once
        on_stored = document.pop("on_stored")  # the backend's, not part of the record
        document["completion_t"] = repr(outcome.completion_t or time.time())
        problem = non_json_result(outcome.result or "")
        if problem:
            document.update(status=TaskStatus.FAILED, result=None, exception=problem)
        self._outcomes.append(document)
        if on_stored is not None:
            self._on_stored.append(on_stored)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop = asyncio.get_running_loop()
            delay = self._last_flush + FLUSH_INTERVAL - loop.time() if self._bursting else 0.0
            if delay > 0:
                loop.call_later(delay, self._flush)
            else:
                loop.call_soon(self._flush)

    def _count_completions(self, records: Iterable[dict[str, Any]]) -> None:
        name_of = self.router.name_of
        self.completions.update((name_of(r.get("endpoint_id", "")), r["status"]) for r in records)

    def _flush(self) -> None:
        """Persist queued outcomes, then tell their backends (``on_stored``) and
        whoever waits on them."""
        self._flush_scheduled = False
        outcomes, self._outcomes = self._outcomes, []
        on_stored, self._on_stored = self._on_stored, []
        if not outcomes:
            return
        loop = asyncio.get_running_loop()
        self._last_flush = loop.time()
        self._bursting = len(outcomes) > 1
        try:
            written = self.store.complete_tasks(outcomes)
        except Exception:
            # Keep them: the store may recover (disk space freed); the tasks stay
            # in flight meanwhile, so even a crash now only re-runs them.
            log.exception(
                "could not write %d outcome(s); retrying in %.0fs",
                len(outcomes),
                STORE_RETRY_SECONDS,
            )
            self._outcomes[:0] = outcomes
            self._on_stored[:0] = on_stored
            self._flush_scheduled = True
            asyncio.get_running_loop().call_later(STORE_RETRY_SECONDS, self._flush)
            return
        log.debug("stored %d outcome(s)", len(written))
        for record in written:
            if record["status"] == TaskStatus.FAILED:
                backend = self.router.backend_of(record.get("endpoint_id", ""))
                log_task_failure(log, record, backend.name)
        for callback in on_stored:
            try:
                callback()
            except Exception:  # a backend's bookkeeping must not stop the others'
                log.exception("a backend's on_stored callback failed")
        self._count_completions(written)
        for record in written:
            for queue in self._waiters.get(record["task_id"], ()):
                queue.put_nowait(record)


def _cancel_result(record: dict[str, Any], cancelled: bool) -> CancelResult:
    """What ``cancel`` answers for one task, given its record after the cancel."""
    status = TaskStatus(record["status"])
    if cancelled:
        message = str(record.get("exception") or CANCELLED_REASON)
    else:
        message = f"the task was already final ({status}); nothing to cancel"
    return CancelResult(record["task_id"], cancelled, status, message)


def _task_spec(
    task_id: str, function: dict[str, Any], payload: str, result_serializers: tuple[str, ...]
) -> TaskSpec:
    return TaskSpec(
        task_id=task_id,
        function_id=function["function_id"],
        function_code=function["function_code"],
        payload=payload,
        serialized=function["serialized"],
        function_name=function["function_name"],
        result_serializers=result_serializers,
    )


def _unanswered(
    group: SubmitGroup, keys: list[str], reused: dict[str, dict[str, Any]]
) -> SubmitGroup:
    """``group`` with only the tasks whose reuse key found no stored result."""
    payloads = [p for p, k in zip(group.payloads, keys, strict=True) if k not in reused]
    return SubmitGroup(group.function, payloads)


def _reuse_keys(
    endpoint_id: str, groups: list[SubmitGroup], options: SubmitOptions, caller: Caller
) -> list[list[str]]:
    """Per group, each task's reuse key, or "" for every task when the submission
    did not ask for reuse."""
    if not options.reuse_results:
        return [[""] * len(group.payloads) for group in groups]
    return [
        reuse_keys(
            group.payloads,
            endpoint_id=endpoint_id,
            function_id=group.function["function_id"],
            result_serializers=options.result_serializers,
            resource_specification=options.resource_specification,
            user_endpoint_config=options.user_endpoint_config,
            caller_key=caller.key,
        )
        for group in groups
    ]


#: Task ids per forget transaction (about as long as a purge's page).
_CHUNK = 100
#: How long a forget, purge or eviction leaves the loop to other calls after
#: each of its transactions. ``sleep(0)`` gives it one turn, and a call takes
#: several (the request read, the handler, the answer written): a get_result
#: then waited one page per turn (bench ``purge``: p50 430 ms, p99 1.4 s during
#: a purge of 100,000 records; 7 and 39 ms with this and PURGE_PAGE).
PAUSE_SECONDS = 0.001


async def _let_others_run() -> None:
    """Between two transactions of a long removal: other calls are served."""
    await asyncio.sleep(PAUSE_SECONDS)


def _stored_before(older_than_seconds: float | None) -> float | None:
    """The Unix time before which results are older than ``older_than_seconds``."""
    if older_than_seconds is None:
        return None
    if not math.isfinite(older_than_seconds) or older_than_seconds < 0:
        raise InvalidArgument(
            f"older_than_seconds must be a finite number >= 0, not {older_than_seconds}"
        )
    return time.time() - older_than_seconds


def _final_status(status: str) -> str:
    """``status`` if it is a final status or empty; INVALID_ARGUMENT otherwise."""
    if status and status not in FINAL_STATUSES:
        raise InvalidArgument(
            f"status must be one of {', '.join(sorted(FINAL_STATUSES))} (a purge never"
            f" touches tasks in flight), not {status!r}"
        )
    return status


def _task_status(status: str) -> str:
    """``status`` if it is a task status, "pending" or empty; INVALID_ARGUMENT otherwise."""
    allowed = (PENDING_FILTER, *(s.value for s in TaskStatus))
    if status and status not in allowed:
        raise InvalidArgument(f"status must be one of {', '.join(allowed)}, not {shown(status)}")
    return status


def _since(since: float) -> float:
    """``since`` if it is a Unix time (0: no bound); INVALID_ARGUMENT otherwise."""
    if not math.isfinite(since) or since < 0:
        raise InvalidArgument(f"since must be a Unix time >= 0 (0: any time), not {since}")
    return since


def _wanted_task_ids(task_ids: Iterable[str]) -> list[str]:
    """Task ids parsed (INVALID_ARGUMENT naming ``task_ids[i]`` for one that is not
    a UUID), duplicates collapsed."""
    return list(dict.fromkeys(parse_uuid(t, f"task_ids[{i}]") for i, t in enumerate(task_ids)))
