"""What the core's tables hold, for the store and its migration alike."""

from __future__ import annotations

#: The core's own tables; backends name theirs otherwise (``Store.table``):
#: ``functions`` (function id -> registration), ``tasks`` (task id -> record),
#: ``inflight`` (task id -> run data, while the task is not final), ``meta``
#: (the completion counters, ``count_key(status)`` -> tasks), ``reuse`` (reuse
#: key -> the task holding that result, see ``store.reuse``), ``forgotten`` (task
#: id -> tombstone of a task forgotten or purged, see ``lifecycle``).
CORE_TABLES = frozenset({"functions", "tasks", "inflight", "meta", "reuse", "forgotten"})
#: The ``meta`` key of the count of tasks that reused a stored result (they are
#: counted under "success" too).
REUSED_COUNT = "count:reused"
#: The key of a ``functions`` record whose function was deleted: when, Unix time.
#: The record stays, for the tasks accepted before (they run, and resume, with it).
DELETED_AT = "deleted_at"
#: What an unfinished task whose run data was lost fails with.
RUN_DATA_LOST = (
    "gcgate: this task's run data was in a damaged part of the daemon's store (moved"
    " aside at start: see the daemon's log); it cannot run again; submit it again"
)


def count_key(status: str) -> str:
    """The ``meta`` key of the counter of tasks completed with ``status``."""
    return f"count:{status}"
