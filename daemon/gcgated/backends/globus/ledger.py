"""Where each Globus task accepted with the daemon's own ids stands, on disk.

The daemon answers a submission with task ids of its own, before anything is
sent to Globus Compute (:mod:`.pipeline` sends later, many submissions per
request). So that no accepted task is lost or sent twice across a restart,
every such task has a row here, in the backend's own table of the store
(``globus_submits``), keyed ``t:<daemon task id>``:

- ``{"state": "queued", ...lane}``: written before the client is answered,
  with what the submit needs beyond the store's run data (endpoint, task
  group, options); a restarted daemon sends it (it never reached the service);
- ``{"state": "sending"}``: written before the submit request goes out; a
  restarted daemon does not send it again (the request may have reached the
  service), the task fails saying so: at most once at the service;
- ``{"state": "sent", "service_id": ..., "group": ...}``: the id Globus
  assigned, which the tracker polls, and the service task group the task went
  to (whose result queue carries its result); the task's outcome is reported
  under the daemon's id.

The row goes once the core has stored the task's outcome (``Outcome.on_stored``):
a crash before that resumes the task from its row, a crash after it leaves the
row of a final task, which is never read. Tasks with no row are polled under
their own id: those created with a client's own token (their ids come from the
service, see :mod:`gcgated.caller`).

Task groups the daemon made up for its answers (``g:<id>``, kept 30 days)
are recognised when a client submits to them again: the service never heard
of them, so such submissions go without a task group of the client's, instead
of being refused as ``TASK_GROUP_NOT_FOUND``.

The daemon login's *home* task group (``h:<identity>``, see :mod:`.groups`): the
service task group that its submissions without a task group of the client's
join, so that one result queue serves them all.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from gcgated.store import Table

#: The ledger's table in the store.
TABLE = "globus_submits"
#: Seconds a task group the daemon made up stays recognised after it was made.
GROUP_SECONDS = 30 * 24 * 3600.0

QUEUED, SENDING, SENT = "queued", "sending", "sent"


def _task_key(task_id: str) -> str:
    return f"t:{task_id}"


class Ledger:
    """The persisted submit state of daemon-id Globus tasks (see the module doc)."""

    def __init__(self, table: Table) -> None:
        self._table = table
        #: Groups made up by this process (most lookups; the rest read the disk).
        self._groups: set[str] = set()

    def queued(self, rows: Sequence[tuple[str, dict[str, Any]]], group: str = "") -> None:
        """Record accepted tasks (``(task id, lane)``), and a new task group, at once."""
        items = [(_task_key(task_id), {"state": QUEUED, **lane}) for task_id, lane in rows]
        with self._table.transact():
            self._table.set_many(items)
            if group:
                self._table.set(f"g:{group}", {"made_at": time.time()}, expire=GROUP_SECONDS)
        if group:
            self._groups.add(group)

    def sending(self, task_ids: Iterable[str]) -> None:
        """Before a submit request goes out: it will never be sent again."""
        self._table.set_many([(_task_key(t), {"state": SENDING}) for t in task_ids])

    def sent(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """The service's answer: (daemon task id, service task id, service task group)."""
        self._table.set_many(
            [
                (_task_key(task), {"state": SENT, "service_id": sid, "group": group})
                for task, sid, group in rows
            ],
        )

    def forget(self, task_ids: Iterable[str]) -> None:
        """The tasks' outcomes are with the core: their rows are no longer needed."""
        self._table.delete_many([_task_key(t) for t in task_ids])

    def lookup(self, task_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The rows of those of ``task_ids`` that have one."""
        found = self._table.get_many([_task_key(t) for t in task_ids])
        return {key[2:]: value for key, value in found.items()}

    def home_group(self, identity: str) -> str:
        """The home task group of the daemon's login as ``identity`` ("" if none yet)."""
        entry = self._table.get(f"h:{identity}")
        return "" if entry is None else str(entry["group"])

    def set_home_group(self, identity: str, group: str) -> None:
        self._table.set(f"h:{identity}", {"group": group, "since": time.time()})

    def forget_home_group(self, identity: str) -> None:
        self._table.delete(f"h:{identity}")

    def is_group(self, task_group_id: str) -> bool:
        """Whether the daemon made this task group up (the service does not know it)."""
        if task_group_id in self._groups:
            return True
        if self._table.get(f"g:{task_group_id}") is not None:
            self._groups.add(task_group_id)
            return True
        return False
