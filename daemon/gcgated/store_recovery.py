"""Opening the store when part of it is damaged: move the damage aside, keep serving.

A daemon that cannot open its store cannot serve anything, and a store is a
handful of SQLite databases (one per diskcache directory, see ``store.py``)
that a failing disk, a full disk at the wrong moment, or a person can damage.
Before the store is opened, each database gets SQLite's ``PRAGMA quick_check``
(about 60 ms for 100,000 tasks, so a healthy start stays fast). A database that
fails it, cannot be opened, lost the write-ahead log a crash left (deleted or
cut: SQLite itself cannot tell), or is missing while its siblings exist is moved
aside, never deleted, to ``<state dir>/store.damaged-<UTC time>/<database>``,
with one ERROR log line naming each database, why, and where it went. The
readable databases stay in place and keep their records.

The store is then made consistent again, since its databases refer to each other:

- run data lost (``inflight``): unfinished tasks cannot run again; they fail
  with a message that says so, instead of staying pending forever;
- task records or counters lost (``tasks``, ``meta``): the completion counters
  are recounted from the task records that remain.

``Status`` reports where the damaged part went (``StoreStatus.damaged_moved_to``).
"""

from __future__ import annotations

import logging
import sqlite3
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from gcgated.store import DATABASES, Store

log = logging.getLogger(__name__)

#: Databases every store has had since the first release: one of them missing
#: next to the others means it was lost (later additions may be missing).
CORE_DATABASES = ("functions", "tasks", "inflight", "meta")
#: SQLite's WAL formats (sqlite.org/walformat.html): the index header in the
#: ``-shm`` file, the log's own header, and each frame's header.
WAL_INDEX_HEADER, WAL_HEADER, WAL_FRAME_HEADER = 48, 32, 24
#: What an unfinished task whose run data was lost fails with.
RUN_DATA_LOST = (
    "gcgate: this task's run data was in a damaged part of the daemon's store (moved"
    " aside at start: see the daemon's log); it cannot run again; submit it again"
)


@dataclass(frozen=True)
class Damage:
    """One database found unusable, and why."""

    database: str
    reason: str


def check_database(directory: Path) -> str | None:
    """Why the diskcache database in ``directory`` is unusable, or None if it is fine."""
    db = directory / "cache.db"
    try:
        if not db.exists():
            return "its cache.db file is missing"
        if db.stat().st_size == 0:
            return "its cache.db file is empty, truncated to zero bytes"
        if (lost := lost_log(db)) is not None:
            return lost
        connection = sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=10)
        try:
            rows = connection.execute("PRAGMA quick_check").fetchall()
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:  # not a database, malformed, cannot open
        return f"SQLite: {exc}"
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"
    if rows != [("ok",)]:
        return "SQLite quick_check: " + "; ".join(str(row[0]) for row in rows[:3])
    return None


def lost_log(db: Path) -> str | None:
    """Whether the write-ahead log a crash left next to ``db`` was deleted or cut.

    SQLite cannot see this itself: without its log the database is an older,
    consistent one, which no longer agrees with the store's other databases.
    The log's index (``-shm``, left by a crash) still says how many frames
    the log held; a log shorter than that lost committed transactions.
    """
    try:
        header = db.with_name(db.name + "-shm").read_bytes()[:WAL_INDEX_HEADER]
    except FileNotFoundError:
        return None
    if len(header) < WAL_INDEX_HEADER or not header[12]:  # not initialised
        return None
    (page_size,) = struct.unpack_from("=H", header, 14)
    (frames,) = struct.unpack_from("=I", header, 16)
    if frames == 0:
        return None
    needed = WAL_HEADER + frames * (WAL_FRAME_HEADER + (65536 if page_size == 1 else page_size))
    wal = db.with_name(db.name + "-wal")
    size = wal.stat().st_size if wal.exists() else 0
    if size >= needed:
        return None
    return (
        f"its write-ahead log {'is missing' if not wal.exists() else 'was cut short'}:"
        f" {size:,} of {needed:,} bytes, so committed writes are lost"
    )


def find_damage(store_dir: Path) -> list[Damage]:
    """Every database of the store that is damaged, or lost next to its siblings."""
    found = []
    existing = {name for name in DATABASES if (store_dir / name).exists()}
    for name in DATABASES:
        if name in existing:
            reason = check_database(store_dir / name)
            if reason is not None:
                found.append(Damage(name, reason))
        elif name in CORE_DATABASES and existing & set(CORE_DATABASES):
            found.append(Damage(name, "its directory is missing"))
    return found


def move_aside(store_dir: Path, damage: list[Damage]) -> Path:
    """Move the damaged databases into a new ``store.damaged-*`` directory; return it."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = store_dir.with_name(f"{store_dir.name}.damaged-{stamp}")
    suffix = 1
    while aside.exists():  # two recoveries within one second
        suffix += 1
        aside = store_dir.with_name(f"{store_dir.name}.damaged-{stamp}-{suffix}")
    aside.mkdir(mode=0o700)
    for item in damage:
        where = store_dir / item.database
        if where.exists():
            where.rename(aside / item.database)
            what = f"moved {where} aside to {aside / item.database}"
        else:
            what = f"nothing to move, recorded under {aside}"
        log.error(
            "the result store's %r database is damaged (%s): %s; the daemon starts"
            " without it and keeps the store's other databases",
            item.database,
            item.reason,
            what,
        )
    return aside


def repair(store: Store, lost: set[str]) -> None:
    """Make the remaining databases consistent after ``lost`` ones were moved aside."""
    if "inflight" in lost:
        now = repr(time.time())
        orphans = [
            {
                "task_id": record["task_id"],
                "status": "failed",
                "exception": RUN_DATA_LOST,
                "completion_t": now,
            }
            for record in store.recent_tasks(limit=2**62, status="pending")
        ]
        if orphans:
            store.complete_tasks(orphans)
            log.error("%d unfinished task(s) lost their run data; they fail", len(orphans))
    if lost & {"tasks", "meta", "inflight"}:
        counts = store.recount()
        log.warning("store counters recounted from the task records: %s", counts)


def open_store(store_dir: Path, *, size_limit_bytes: int, retention_seconds: float) -> Store:
    """The store, with any damaged database moved aside first (see the module doc)."""

    def store() -> Store:
        return Store(
            store_dir, size_limit_bytes=size_limit_bytes, retention_seconds=retention_seconds
        )

    damage = find_damage(store_dir)
    aside = move_aside(store_dir, damage) if damage else None
    try:
        opened = store()
    except sqlite3.DatabaseError as exc:  # damage quick_check cannot see
        damage = [Damage(name, f"opening the store failed: SQLite: {exc}") for name in DATABASES]
        aside = move_aside(store_dir, damage)
        opened = store()
    if aside is not None:
        repair(opened, {d.database for d in damage})
        opened.damaged_moved_to = str(aside)
    return opened
