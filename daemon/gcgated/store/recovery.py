"""Opening the store when it is damaged: move the damage aside, keep serving.

A daemon that cannot open its store cannot serve anything, and the store is a
SQLite database (``cache.db`` in the store directory, with its write-ahead log
and the files of large values) that a failing disk, a full disk at the wrong
moment, or a person can damage. Before the store is opened, the database gets
SQLite's ``PRAGMA quick_check`` (about 60 ms for 100,000 tasks, so a healthy
start stays fast). A database that fails it, cannot be opened, lost the
write-ahead log a crash left (deleted or cut: SQLite itself cannot tell, and
the database would be an older one than the daemon answered clients about), or
is missing while the rest of the store is there, is moved aside, never deleted:
the whole store directory, to ``<state dir>/store.damaged-<UTC time>/store``,
with one ERROR log line saying why and where it went. The daemon then starts
with an empty store. (Its records depend on each other, and on what the
backends did with them; none is kept from a database that cannot be trusted.)

A store still in the old layout (a database per table, see :mod:`.migrate`)
has each of its databases checked the same way before it is migrated; a
damaged one is moved aside alone, to ``store.damaged-<time>/<database>``, and
the migration makes up for it.

``Status`` reports where the damaged part went (``StoreStatus.damaged_moved_to``).
"""

from __future__ import annotations

import logging
import math
import sqlite3
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from diskcache.core import DBNAME

from .migrate import REMOVING, legacy_directories
from .records import Store

log = logging.getLogger(__name__)

#: SQLite's WAL formats (sqlite.org/walformat.html): the index header in the
#: ``-shm`` file, the log's own header, and each frame's header.
WAL_INDEX_HEADER, WAL_HEADER, WAL_FRAME_HEADER = 48, 32, 24


@dataclass(frozen=True)
class Damage:
    """One database found unusable (its directory), and why."""

    path: Path
    reason: str


def check_database(directory: Path) -> str | None:
    """Why the diskcache database in ``directory`` is unusable, or None if it is fine."""
    db = directory / DBNAME
    try:
        if not db.exists():
            return f"its {DBNAME} file is missing"
        if db.stat().st_size == 0:
            return f"its {DBNAME} file is empty, truncated to zero bytes"
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
    consistent one, which no longer agrees with what the daemon answered.
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
    """The store's database if it is damaged; else the old layout's damaged databases."""
    if (store_dir / DBNAME).exists() or _holds_a_database(store_dir):
        reason = check_database(store_dir)
        if reason is not None:
            return [Damage(store_dir, reason)]
    found = []
    for path in legacy_directories(store_dir):
        reason = check_database(path)
        if reason is not None:
            found.append(Damage(path, reason))
    return found


def _holds_a_database(store_dir: Path) -> bool:
    """Whether ``store_dir`` holds what the database leaves next to it (its log,
    files of large values): its ``cache.db`` was there and is gone."""
    if not store_dir.is_dir():
        return False
    old = {path.name for path in legacy_directories(store_dir)} | {REMOVING}
    return any(path.name not in old for path in store_dir.iterdir())


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
        item.path.rename(aside / item.path.name)
        log.error(
            "the result store's database %s is damaged (%s): moved it aside to %s;"
            " the daemon starts without it",
            item.path,
            item.reason,
            aside / item.path.name,
        )
    return aside


def open_store(
    store_dir: Path,
    *,
    size_limit_bytes: int,
    retention_seconds: float,
    unread_retention_seconds: float = math.inf,
) -> Store:
    """The store, with any damaged database moved aside first (see the module doc)."""

    def store() -> Store:
        return Store(
            store_dir,
            size_limit_bytes=size_limit_bytes,
            retention_seconds=retention_seconds,
            unread_retention_seconds=unread_retention_seconds,
        )

    damage = find_damage(store_dir)
    aside = move_aside(store_dir, damage) if damage else None
    try:
        opened = store()
    except sqlite3.DatabaseError as exc:  # damage quick_check cannot see
        aside = move_aside(store_dir, [Damage(store_dir, f"opening it failed: SQLite: {exc}")])
        opened = store()
    if aside is not None:
        opened.damaged_moved_to = str(aside)
    return opened
