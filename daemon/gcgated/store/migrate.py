"""A store in the old layout, a database per table, moved into the one database.

Until this layout the store was seven diskcache databases, one directory each
under the store directory (``LEGACY_DATABASES``), which shared no transaction:
completions were counted through a journal in ``meta`` (``counting:<batch>``
entries, each naming one task of its batch whose record says whether the batch
committed). Each old database becomes the table of the same name, with its
keys, values, expiry times and row order, so every owner finds its records
where it looks for them.

The move is one transaction of the new database, which also writes the
``MIGRATED`` mark; the old directories are removed only after it committed,
each first renamed into ``REMOVING`` (so none is ever half there). A kill
before the commit leaves the old layout as it was (the next start migrates
again, from scratch); a kill after it leaves the mark, and the next start only
finishes removing the old directories.

An old core database missing next to the others (moved aside as damaged by
:mod:`.recovery`, or lost) is made up for as the old store did: unfinished
tasks without run data fail saying so, and the counters are recounted from
the task records.
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import diskcache
from diskcache.core import DBNAME
from gcgate.constants import FINAL_STATUSES, TaskStatus

from . import sql
from .jsondisk import decode
from .schema import RUN_DATA_LOST, count_key

log = logging.getLogger(__name__)

#: The old layout's databases: each a directory under the store directory.
LEGACY_DATABASES = (
    "functions",
    "tasks",
    "inflight",
    "globus_functions",
    "globus_tasks",
    "globus_submits",
    "meta",
)
#: Those every old store had from its first start: one missing next to the
#: others was lost (the others came later, and may be missing).
LEGACY_CORE = frozenset({"functions", "tasks", "inflight", "meta"})
#: The ``meta`` key written by the migration's transaction.
MIGRATED = "migrated"
#: Where the old directories go to be removed, under the store directory.
REMOVING = "legacy.removing"
#: Key prefix, in the old ``meta``, of a completion batch being counted.
_COUNTING = "counting:"


def legacy_directories(directory: Path) -> list[Path]:
    """The old layout's database directories under the store ``directory``."""
    return [directory / name for name in LEGACY_DATABASES if (directory / name).is_dir()]


def migrate_legacy(directory: Path, cache: diskcache.Cache) -> None:
    """Move an old-layout store under ``directory`` into ``cache`` (see the module doc)."""
    old = legacy_directories(directory)
    if old and not sql.get_many(cache, "meta", [MIGRATED]):
        began = time.monotonic()
        rows = _move(cache, [path for path in old if (path / DBNAME).is_file()])
        log.info(
            "store: moved %d records from %d databases into one in %.1fs",
            rows,
            len(old),
            time.monotonic() - began,
        )
    removing = directory / REMOVING
    if old:
        removing.mkdir(mode=0o700, exist_ok=True)
    for path in old:
        path.rename(removing / path.name)
    if removing.exists():
        shutil.rmtree(removing)


def _key(key: str | bytes) -> str:
    """A key as the old layout stored it: text, or diskcache ``JSONDisk``'s zlib JSON."""
    return json.loads(zlib.decompress(key)) if isinstance(key, bytes) else key


def _move(cache: diskcache.Cache, databases: list[Path]) -> int:
    """Every row of ``databases`` into ``cache``, in one transaction; how many."""
    names = {path.name for path in databases}
    moved = 0
    with sql.transaction(cache):
        for path in databases:
            if path.name == "meta":
                continue
            for chunk in _batches(sql.legacy_rows(path)):
                items = [(_key(key), decode(value)) for key, value, _ in chunk]
                sql.set_many(cache, path.name, items)
                expiring = [
                    (key, expire_time)
                    for (key, _), (_, _, expire_time) in zip(items, chunk, strict=True)
                    if expire_time is not None
                ]
                sql.set_expiry(cache, path.name, expiring)
                moved += len(items)
        lost = LEGACY_CORE - names
        if "inflight" in lost and "tasks" in names:
            _fail_unfinished(cache)
        if lost:
            completed = _recount(cache)
            log.warning("store counters recounted from the task records: %s", completed)
        else:
            completed = _legacy_counters(cache, next(p for p in databases if p.name == "meta"))
        sql.set_many(
            cache,
            "meta",
            [(count_key(status), n) for status, n in completed.items()]
            + [(MIGRATED, {"from": "a database per table", "at": time.time()})],
        )
    return moved


def _batches(rows: Iterator[Any]) -> Iterator[list[Any]]:
    while chunk := list(itertools.islice(rows, sql.CHUNK)):
        yield chunk


def _fail_unfinished(cache: diskcache.Cache) -> None:
    """The run data of the unfinished tasks was lost: they fail, saying so."""
    now = repr(time.time())
    failed = [
        (
            task_id,
            {
                **record,
                "status": TaskStatus.FAILED,
                "exception": RUN_DATA_LOST,
                "completion_t": now,
            },
        )
        for task_id, record in sql.scan(cache, "tasks")
        if record is not None and record["status"] not in FINAL_STATUSES
    ]
    sql.set_many(cache, "tasks", failed)
    if failed:
        log.error("%d unfinished task(s) lost their run data; they fail", len(failed))


def _recount(cache: diskcache.Cache) -> dict[str, int]:
    """The completion counters from the task records (a scan)."""
    completed = dict.fromkeys(sorted(FINAL_STATUSES), 0)
    for _, record in sql.scan(cache, "tasks"):
        if record is not None and record["status"] in completed:
            completed[record["status"]] += 1
    return completed


def _legacy_counters(cache: diskcache.Cache, meta: Path) -> dict[str, int]:
    """The old ``meta``'s counters, with the completion batches a crash left in
    its journal added if their records committed (the probe's record names the
    batch), as the old store did when it next opened."""
    completed = dict.fromkeys(sorted(FINAL_STATUSES), 0)
    journal: dict[str, dict[str, Any]] = {}
    for key, value, _ in sql.legacy_rows(meta):
        if key.startswith(_COUNTING):
            journal[key] = json.loads(value)
        elif key in {count_key(status) for status in completed}:
            completed[key.partition(":")[2]] += int(value)
    probes = sql.get_many(cache, "tasks", [entry["probe"] for entry in journal.values()])
    for batch, entry in journal.items():
        record = probes.get(entry["probe"], ({},))[0]
        if record.get("completion_batch") == batch:
            for status, n in entry["counts"].items():
                completed[status] += n
    return completed
