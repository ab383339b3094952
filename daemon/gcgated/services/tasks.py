"""Tasks: submit, read, wait for and watch them, as any client may."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from gcgated.backends.globus import GlobusBackend
from gcgated.caller import Caller
from gcgated.core import TaskLifecycle
from gcgated.errors import InvalidArgument
from gcgated.model import (
    CancelResult,
    PurgeRequest,
    Receipt,
    Submission,
    TaskQuery,
    TaskRecord,
)
from gcgated.store import Removal

#: The longest a GetResult call may hold a connection waiting for a result.
MAX_WAIT_SECONDS = 300.0
#: Bounds on ListTasks, so one call cannot read the whole store.
DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT = 50, 10_000


class TaskService:
    """The task life-cycle as clients see it.

    A client that passes its own Globus token and asks about tasks lets the Globus
    backend poll those of its tasks that wait for a token (``adopt``), so every
    read takes the caller.
    """

    def __init__(self, core: TaskLifecycle, remote: GlobusBackend) -> None:
        self._core = core
        self._remote = remote

    async def submit(self, submission: Submission) -> Receipt:
        """Validate, persist and dispatch; the ids in the receipt are durable."""
        return await self._core.submit(submission)

    async def wait_for(self, task_id: str, wait_seconds: float, caller: Caller) -> TaskRecord:
        """The task's record once final, or as it is after ``wait_seconds`` (capped
        at MAX_WAIT_SECONDS; 0 or less answers at once)."""
        if math.isnan(wait_seconds):
            # min/max pass NaN through, and a NaN timeout never runs out: the call
            # would outlast the cap, held until the task ends or the client gives up.
            raise InvalidArgument(
                f"wait_seconds must be a number of seconds (0 answers at once; at most"
                f" {MAX_WAIT_SECONDS:g} are waited), not {wait_seconds}"
            )
        self._adopt([task_id], caller)
        wait = min(max(wait_seconds, 0.0), MAX_WAIT_SECONDS)
        return self._explained([await self._core.wait_for(task_id, wait)])[0]

    def get_many(
        self, task_ids: Sequence[str], caller: Caller, *, skip_unknown: bool = False
    ) -> tuple[list[TaskRecord], list[str]]:
        """The records of the known ids and the unknown ids, each in request order,
        duplicates collapsed. Without ``skip_unknown`` any unknown id is NOT_FOUND
        for the whole call (naming them), as before the flag existed, so clients
        that do not send it see no change."""
        self._adopt(task_ids, caller)
        if skip_unknown:
            records, unknown = self._core.find_tasks(task_ids)
        else:
            records, unknown = self._core.get_tasks(task_ids), []
        return self._explained(records), unknown

    async def watch(self, task_ids: Sequence[str], caller: Caller) -> AsyncIterator[TaskRecord]:
        """Each task's final record once, as it completes."""
        self._adopt(task_ids, caller)
        async for record in self._core.watch(task_ids):
            yield TaskRecord.from_stored(record)

    async def watch_batches(
        self, task_ids: Sequence[str], caller: Caller
    ) -> AsyncIterator[list[TaskRecord]]:
        """Final records in the batches the store wrote them in."""
        self._adopt(task_ids, caller)
        async for records in self._core.watch_batches(task_ids):
            yield [TaskRecord.from_stored(r) for r in records]

    def cancel(self, task_ids: Sequence[str]) -> list[CancelResult]:
        """Cancel the unfinished ones; per id what happened (NOT_FOUND for an
        unknown id, cancelling nothing). Durable once answered."""
        return self._core.cancel(task_ids)

    def recent(self, query: TaskQuery) -> list[TaskRecord]:
        """Newest first, at most ``query.limit`` (0: the default; capped at
        MAX_LIST_LIMIT), with their functions' names and pending reasons;
        INVALID_ARGUMENT naming a malformed filter."""
        query = replace(query, limit=min(query.limit or DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT))
        return self._explained(self._core.recent_tasks(query))

    def in_group(self, task_group_id: str) -> tuple[str, list[str]]:
        """(canonical task group id, its tasks' ids oldest first); NOT_FOUND for none."""
        return self._core.task_ids_in_group(task_group_id)

    async def forget(self, task_ids: Sequence[str], *, in_flight: bool) -> Removal:
        """Forget tasks by id; those in flight only with ``in_flight``."""
        return await self._core.forget(task_ids, in_flight=in_flight)

    async def purge(self, request: PurgeRequest) -> Removal:
        """Delete (or count) the final results matching every filter given."""
        return await self._core.purge(request)

    def _explained(self, records: Sequence[Mapping[str, Any]]) -> list[TaskRecord]:
        """Stored records as TaskRecords, the unfinished ones with their pending reason."""
        reasons = self._core.pending_reasons(records)
        return [
            replace(TaskRecord.from_stored(r), pending_reason=reasons.get(r["task_id"], ""))
            for r in records
        ]

    def _adopt(self, task_ids: Iterable[str], caller: Caller) -> None:
        if caller.token is not None:
            self._remote.adopt([str(t).lower() for t in task_ids], caller)
