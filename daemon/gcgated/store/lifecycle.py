"""Which results leave the store, and what is told about them afterwards.

The store keeps a final result until one of these removes it (docs/configuration.md,
"The result cache's life-cycle"):

- retention: a retrieved result ``retention_seconds`` after its first retrieval
  (0: once retrieved), a result nobody retrieved ``unread_retention_seconds``
  after it was stored (infinity: until it is read). Both are computed from the
  current settings at every look, from the stored retrieval and store times, so a
  changed setting applies to every record at once;
- eviction, when a submission would not fit under the size limit: first what
  retention already let go, then retrieved results, longest retrieved first;
  never an unread result or a task in flight;
- ``forget`` (by id) and ``purge`` (by :class:`PurgeFilter`), asked by a client.

A forgotten or purged id keeps a tombstone (``TOMBSTONE_SECONDS``, at most
``TOMBSTONE_MAX`` of them, the oldest dropped first), so asking for it says what
happened rather than "unknown".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from gcgate.constants import FINAL_STATUSES

#: A tombstone is kept this long (a diskcache expire time on its row)...
TOMBSTONE_SECONDS = 30 * 86400.0
#: ... and at most this many are kept (about 100 bytes each, 10 MB at most): when
#: a write leaves more than this plus TOMBSTONE_SLACK, the oldest are dropped to it.
TOMBSTONE_MAX, TOMBSTONE_SLACK = 100_000, 10_000
#: Records a purge (or the retention sweep) reads per transaction. Small, so that
#: other calls wait little for each one (at 500, about 60 ms each, a get_result
#: during a purge of 100,000 records took 430 ms at the median: bench ``purge``).
PURGE_PAGE = 100
#: The most task ids a purge answer shows of what it removed.
SAMPLE_IDS = 20


@dataclass(frozen=True)
class PurgeFilter:
    """What a purge removes: final results matching every field that is set.

    ``stored_before`` (Unix time; the results written before it), ``status``,
    ``endpoint_id``, ``function_id``, ``task_group_id``, ``retrieved`` (only those
    retrieved at least once). ``expired`` is the store's own sweep: what the
    retention settings let go, as ``(retrieved_before, unread_stored_before)``.
    """

    stored_before: float | None = None
    status: str = ""
    endpoint_id: str = ""
    function_id: str = ""
    task_group_id: str = ""
    retrieved: bool = False
    expired: tuple[float, float] | None = None

    def is_empty(self) -> bool:
        """Whether no field is set (a purge of everything, which is refused)."""
        return self == PurgeFilter()

    def matches(self, record: dict[str, Any] | None) -> bool:
        """Whether a record SQLite already let through (see ``sql.sweep_page``)
        also matches the fields only its JSON holds. Unfinished tasks never do."""
        if record is None or record.get("status") not in FINAL_STATUSES:
            return False
        return all(
            not wanted or record.get(name) == wanted
            for name, wanted in (
                ("status", self.status),
                ("endpoint_id", self.endpoint_id),
                ("function_id", self.function_id),
                ("task_group_id", self.task_group_id),
            )
        )


@dataclass
class Removal:
    """What a forget, purge, sweep or eviction removed (or, dry, would remove)."""

    tasks: int = 0
    in_flight: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    record_bytes: int = 0
    sample_task_ids: list[str] = field(default_factory=list)
    unknown_task_ids: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    size_bytes: int = 0

    def count(self, task_id: str, status: str, size: int) -> None:
        self.tasks += 1
        self.by_status[status] = self.by_status.get(status, 0) + 1
        self.record_bytes += size
        if len(self.sample_task_ids) < SAMPLE_IDS:
            self.sample_task_ids.append(task_id)

    def add(self, other: Removal) -> None:
        """Add a later chunk's counts to these."""
        self.tasks += other.tasks
        self.in_flight += other.in_flight
        for status, n in other.by_status.items():
            self.by_status[status] = self.by_status.get(status, 0) + n
        self.record_bytes += other.record_bytes
        room = SAMPLE_IDS - len(self.sample_task_ids)
        self.sample_task_ids.extend(other.sample_task_ids[:room])
        self.unknown_task_ids.extend(other.unknown_task_ids)


def retention_cutoffs(
    now: float, retention_seconds: float, unread_retention_seconds: float
) -> tuple[float, float]:
    """``(retrieved_before, unread_stored_before)``: results retrieved before the
    first, or never retrieved and stored before the second, are past retention."""
    unread = -math.inf if math.isinf(unread_retention_seconds) else now - unread_retention_seconds
    retrieved = -math.inf if math.isinf(retention_seconds) else now - retention_seconds
    return retrieved, unread


def tombstone_message(task_id: str, tombstone: dict[str, Any]) -> str:
    """What NOT_FOUND says about an id that was forgotten or purged."""
    how = tombstone.get("how", "forgotten")
    when = tombstone.get("at")
    at = (
        datetime.fromtimestamp(float(when), timezone.utc).isoformat(timespec="seconds")
        if isinstance(when, (int, float))
        else "earlier"
    )
    command = "gcgate forget / forget_tasks" if how == "forgotten" else "gcgate purge / purge_tasks"
    return (
        f"task {task_id} was {how} ({command}) at {at}: its record and result are gone"
        " from this daemon's store"
    )
