"""Which task records a listing (ListTasks) wants, as SQLite and Python test them.

The task records are not indexed by function, endpoint, status or time: every
filter here is checked twice, first by SQLite on the stored JSON text (the
record's ``"function_id":"<uuid>"`` fragment; the row's last write time, which
is never before the task was accepted), which skips the rows that cannot match
without decoding them, then exactly on the decoded record. A filter that
matches a few of 100,000 records so costs one pass of SQLite over the table
(tens of milliseconds), not 100,000 JSON decodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gcgate.constants import FINAL_STATUSES, PENDING_FILTER, TaskStatus

from .jsondisk import encode

#: The statuses a record not final may be stored with: a task running now may be
#: stored as any of them (the store knows "running" from memory).
_UNFINISHED = tuple(s.value for s in TaskStatus if s not in FINAL_STATUSES)


def fragment(key: str, value: str) -> str:
    """``"key":"value"`` exactly as a stored record's JSON text holds it."""
    return encode({key: value})[1:-1]


@dataclass(frozen=True)
class TaskFilter:
    """Every filter given must hold ("" and 0: no filter); ids are canonical."""

    #: A task status, or ``PENDING_FILTER`` for every unfinished one.
    status: str = ""
    function_id: str = ""
    endpoint_id: str = ""
    #: Accepted at or after this Unix time.
    since: float = 0.0

    def texts(self) -> list[list[str]]:
        """For each filter, the texts of which a matching record's JSON holds one."""
        groups = [
            [fragment(key, value)]
            for key, value in (("function_id", self.function_id), ("endpoint_id", self.endpoint_id))
            if value
        ]
        if self.status in FINAL_STATUSES:
            groups.append([fragment("status", self.status)])
        elif self.status:
            groups.append([fragment("status", status) for status in _UNFINISHED])
        return groups

    @property
    def stored_since(self) -> float | None:
        """The row-time bound SQLite can test: a record is written after its task
        was accepted, so one accepted since ``since`` was last written since then."""
        return self.since or None

    def matches(self, record: dict[str, Any]) -> bool:
        """Whether a decoded record (with its live status) passes every filter."""
        if self.status == PENDING_FILTER:
            if record["status"] in FINAL_STATUSES:
                return False
        elif self.status and record["status"] != self.status:
            return False
        return (
            (not self.function_id or record["function_id"] == self.function_id)
            and (not self.endpoint_id or record["endpoint_id"] == self.endpoint_id)
            and record.get("created_at", 0.0) >= self.since
        )
