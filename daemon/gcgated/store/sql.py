"""Every SQL statement the store runs on diskcache's database: the one place that
knows diskcache's table layout (``tests/test_store_sql.py`` pins what it relies on).

The store is one diskcache ``Cache`` (one SQLite database) holding several
*tables*: a table is the set of keys that start with ``<table>:``. Why SQL at all:

- diskcache's API is one call per key, and each call costs about 10-20 us of
  Python (connection check, key and value encoding, a select before every write,
  a cull after it) on top of SQLite's own work. The store reads and writes
  thousands of records per batch, so these functions do the same with
  ``executemany`` and ``IN`` lists, in diskcache's own row format (values go
  through the cache's ``Disk``), so ``Cache`` reads the rows back unchanged;
- ``len(cache)`` counts every table together, and counting one table's keys is
  a scan (about 20 ms per 100,000 rows). Each table's row count is kept in a
  small table of ours in the same database (``TABLE_ROWS``), changed by the
  statement that inserts or deletes the rows, in its transaction: exact after
  any crash, read in one lookup. (A per-row trigger, as diskcache keeps its own
  count, costs about as much again as the insert it follows.) So every write to
  the store goes through this module, never through ``Cache.set``/``delete``/
  ``expire``, which would not count.

Row layout and expiry follow diskcache 5.x's ``Cache.set``, ``delete``,
``get``, ``touch`` and ``expire``. Keys are text (the store's ``JSONTextDisk``
keys). Each writing function is one transaction, or part of the caller's
:func:`transaction`, which an inner one joins. Files of large values follow
the outermost transaction, unlike diskcache's own nested ``transact()``: a file
a write replaces or deletes is removed only once the outermost transaction
committed (a rollback restores the row, which still needs it), and a file it
wrote is removed if the outermost transaction rolls back.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import diskcache
from diskcache.core import DBNAME, MODE_PICKLE

#: Keys per ``IN (...)`` list, rows per scan query: far below SQLite's limit on
#: bound parameters.
CHUNK = 500
#: Our table of per-table row counts, next to diskcache's ``Cache`` and ``Settings``.
TABLE_ROWS = "GcgateTableRows"
#: Our index of rows by retrieval time (diskcache's ``tag`` column, see ``mark_retrieved``).
RETRIEVED_INDEX = "GcgateCacheRetrieved"


@dataclass
class _Files:
    """The files of large values an open transaction leaves to be removed."""

    if_committed: list[str | None] = field(default_factory=list)
    if_rolled_back: list[str | None] = field(default_factory=list)


#: The open outermost transactions: (cache, thread) -> their files.
_open: dict[tuple[int, int], _Files] = {}


@contextlib.contextmanager
def transaction(cache: diskcache.Cache) -> Iterator[_Files]:
    """One SQLite transaction (diskcache's ``transact()``), or the open one this
    thread holds on ``cache``; files removed as the module doc says."""
    key = (id(cache), threading.get_ident())
    files = _open.get(key)
    if files is not None:  # within it already: its commit or rollback is the one
        yield files
        return
    files = _open[key] = _Files()
    try:
        with cache.transact():
            yield files
    except BaseException:
        _remove_files(cache, files.if_rolled_back)
        raise
    finally:
        del _open[key]
    _remove_files(cache, files.if_committed)


def _connection(cache: diskcache.Cache) -> sqlite3.Connection:
    """The cache's own connection for this thread (so its transaction is ours)."""
    return cache._con  # type: ignore[no-any-return]  # diskcache has no public handle


def _chunks(keys: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(keys), CHUNK):
        yield keys[start : start + CHUNK]


def _bounds(table: str) -> tuple[str, str]:
    """The key range of ``table``: ``<table>:`` up to ``<table>;`` (';' follows ':')."""
    return f"{table}:", f"{table};"


def _rows(
    cache: diskcache.Cache, columns: str, table: str, keys: Sequence[str]
) -> list[tuple[Any, ...]]:
    """``columns`` of the rows of ``keys`` in ``table`` (the key column first, unprefixed)."""
    con = _connection(cache)
    prefix = f"{table}:"
    cut = len(prefix)
    found: list[tuple[Any, ...]] = []
    for chunk in _chunks(keys):
        marks = ",".join("?" * len(chunk))
        query = f"SELECT key, {columns} FROM Cache WHERE key IN ({marks}) AND raw = 1"
        found.extend(
            (key[cut:], *rest) for key, *rest in con.execute(query, [prefix + key for key in chunk])
        )
    return found


def _remove_files(cache: diskcache.Cache, filenames: Iterable[str | None]) -> None:
    for filename in filenames:
        if filename:
            cache.disk.remove(filename)


def _count(con: sqlite3.Connection, changes: dict[str, int]) -> None:
    """Add ``changes`` (table -> rows inserted minus deleted) to the row counts."""
    rows = [(table, change) for table, change in changes.items() if change]
    if rows:
        con.executemany(
            f"INSERT INTO {TABLE_ROWS}(name, count) VALUES (?, ?)"
            " ON CONFLICT(name) DO UPDATE SET count = count + excluded.count",
            rows,
        )


def prepare(cache: diskcache.Cache) -> None:
    """Create the row-count table in a new database, counting what is there."""
    con = _connection(cache)
    # Rows by retrieval time (``mark_retrieved``), for retention and eviction;
    # partial, so rows never retrieved cost nothing in it.
    con.execute(f"CREATE INDEX IF NOT EXISTS {RETRIEVED_INDEX} ON Cache(tag) WHERE tag IS NOT NULL")
    if con.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE_ROWS,)
    ).fetchone():
        return
    with transaction(cache):
        con.execute(f"CREATE TABLE {TABLE_ROWS}(name TEXT PRIMARY KEY, count INTEGER NOT NULL)")
        con.execute(
            f"INSERT INTO {TABLE_ROWS}(name, count)"
            " SELECT substr(key, 1, instr(key, ':') - 1), COUNT(*) FROM Cache GROUP BY 1"
        )


def count(cache: diskcache.Cache, table: str) -> int:
    """How many rows ``table`` has (expired ones included until they are culled)."""
    row = (
        _connection(cache)
        .execute(f"SELECT count FROM {TABLE_ROWS} WHERE name = ?", (table,))
        .fetchone()
    )
    return 0 if row is None else int(row[0])


def get_many(
    cache: diskcache.Cache, table: str, keys: Sequence[str], *, column: str = "expire_time"
) -> dict[str, tuple[Any, float | None]]:
    """``{key: (value, column)}`` for the keys present and not expired: by default
    each row's expire time; ``column="tag"``: its retrieval time (``mark_retrieved``)."""
    if column not in ("expire_time", "tag"):
        raise ValueError(f"not a column get_many reads: {column!r}")
    now = time.time()
    found: dict[str, tuple[Any, float | None]] = {}
    fetch = cache.disk.fetch
    for key, expire_time, extra, mode, filename, value in _rows(
        cache, f"expire_time, {column}, mode, filename, value", table, keys
    ):
        if expire_time is not None and expire_time < now:
            continue
        try:
            found[key] = (fetch(mode, filename, value, False), extra)
        except OSError:  # its file vanished: diskcache's get() treats that as absent
            continue
    return found


def mark_retrieved(cache: diskcache.Cache, table: str, keys: Sequence[str], when: float) -> None:
    """Record ``when`` as the first retrieval of the rows of ``keys`` not yet marked,
    in diskcache's ``tag`` column (application metadata, unused by the store
    otherwise; indexed by ``RETRIEVED_INDEX``), in one transaction."""
    if not keys:
        return
    prefix = f"{table}:"
    with transaction(cache):
        con = _connection(cache)
        for chunk in _chunks(keys):
            marks = ",".join("?" * len(chunk))
            con.execute(
                f"UPDATE Cache SET tag = ? WHERE key IN ({marks}) AND raw = 1 AND tag IS NULL",
                [when, *(prefix + key for key in chunk)],
            )


def clocks_from_expiry(cache: diskcache.Cache, table: str, retention_seconds: float) -> int:
    """Rows of ``table`` whose retention an older store kept as an expire time
    (first read + the retention then) get a retrieval time instead: the expire time
    minus ``retention_seconds`` (the setting then is not known; the current one is
    the best guess), and no expire time. One transaction; how many rows."""
    low, high = _bounds(table)
    with transaction(cache):
        cursor = _connection(cache).execute(
            "UPDATE Cache SET tag = expire_time - ?, expire_time = NULL"
            " WHERE expire_time IS NOT NULL AND key >= ? AND key < ?",
            (retention_seconds, low, high),
        )
        return int(cursor.rowcount)


#: A row's stored bytes: diskcache's ``size`` counts only a value kept in a file
#: of its own (0 for one in the database, most records); the value's length in
#: the database is added.
_STORED_BYTES = "size + IFNULL(length(value), 0)"


@dataclass(frozen=True)
class Row:
    """A row as a sweep sees it: key (unprefixed), rowid, retrieval time (None:
    never retrieved), when it was last written, stored size, decoded value."""

    key: str
    rowid: int
    retrieved_at: float | None
    stored_at: float
    size: int
    value: Any


def sweep_page(
    cache: diskcache.Cache,
    table: str,
    after: str,
    *,
    stored_before: float | None = None,
    retrieved_only: bool = False,
    expired: tuple[float, float] | None = None,
    limit: int = CHUNK,
) -> tuple[list[Row], str | None]:
    """Up to ``limit`` rows of ``table`` after key ``after``, in key order, that
    pass the filters SQLite can apply (written before ``stored_before``; retrieved;
    ``expired=(retrieved_before, unread_stored_before)``: retrieved before the first
    or, never retrieved, written before the second) and the key to resume from
    (None: the table's end). Values are decoded here (a vanished file: None)."""
    low, high = _bounds(table)
    where, params = (
        ["key > ?", "key >= ?", "key < ?", "raw = 1"],
        [prefix_key(table, after), low, high],
    )
    if stored_before is not None:
        where.append("store_time < ?")
        params.append(stored_before)
    if retrieved_only:
        where.append("tag IS NOT NULL")
    if expired is not None:
        where.append("((tag IS NOT NULL AND tag < ?) OR (tag IS NULL AND store_time < ?))")
        params.extend(expired)
    query = (
        f"SELECT key, rowid, tag, store_time, {_STORED_BYTES}, mode, filename, value FROM Cache"
        f" WHERE {' AND '.join(where)} ORDER BY key LIMIT ?"
    )
    rows = _connection(cache).execute(query, (*params, limit)).fetchall()
    return _decoded(cache, rows, len(low)), (
        rows[-1][0][len(low) :] if len(rows) == limit else None
    )


def oldest_retrieved(cache: diskcache.Cache, table: str, limit: int = CHUNK) -> list[Row]:
    """The ``limit`` rows of ``table`` retrieved longest ago (by ``RETRIEVED_INDEX``)."""
    low, high = _bounds(table)
    rows = (
        _connection(cache)
        .execute(
            f"SELECT key, rowid, tag, store_time, {_STORED_BYTES}, mode, filename, value FROM Cache"
            " WHERE tag IS NOT NULL AND key >= ? AND key < ? ORDER BY tag LIMIT ?",
            (low, high, limit),
        )
        .fetchall()
    )
    return _decoded(cache, rows, len(low))


def _decoded(cache: diskcache.Cache, rows: list[tuple[Any, ...]], cut: int) -> list[Row]:
    fetch = cache.disk.fetch
    found = []
    for key, rowid, tag, store_time, size, mode, filename, value in rows:
        try:
            decoded = fetch(mode, filename, value, False)
        except OSError:
            decoded = None
        found.append(Row(key[cut:], rowid, tag, store_time, size, decoded))
    return found


def prefix_key(table: str, key: str) -> str:
    """``key`` of ``table`` as the ``Cache`` table holds it (``""``: before every key)."""
    return f"{table}:{key}"


def delete_rows(cache: diskcache.Cache, table: str, rowids: Sequence[int]) -> int:
    """Delete rows of ``table`` by rowid, in one transaction (or the caller's); how many."""
    if not rowids:
        return 0
    low, high = _bounds(table)
    with transaction(cache) as files:
        con = _connection(cache)
        found = []
        for chunk in _chunks(rowids):  # type: ignore[arg-type]
            marks = ",".join("?" * len(chunk))
            found.extend(
                con.execute(
                    f"SELECT rowid, filename FROM Cache WHERE rowid IN ({marks})"
                    " AND key >= ? AND key < ?",
                    (*chunk, low, high),
                ).fetchall()
            )
        con.executemany("DELETE FROM Cache WHERE rowid = ?", [(rowid,) for rowid, _ in found])
        _count(con, {table: -len(found)})
        files.if_committed.extend(filename for _, filename in found)
        return len(found)


def trim_oldest(cache: diskcache.Cache, table: str, keep: int) -> int:
    """Delete the oldest rows of ``table`` (by rowid) beyond the newest ``keep``; how many."""
    excess = count(cache, table) - keep
    if excess <= 0:
        return 0
    low, high = _bounds(table)
    rowids = [
        rowid
        for (rowid,) in _connection(cache).execute(
            "SELECT rowid FROM Cache WHERE key >= ? AND key < ? ORDER BY rowid LIMIT ?",
            (low, high, excess),
        )
    ]
    return delete_rows(cache, table, rowids)


def checkpoint(cache: diskcache.Cache) -> None:
    """Copy SQLite's write-ahead log into the database and truncate it to zero
    bytes, so pages freed by deletions (returned to the file system at each commit:
    the database's ``auto_vacuum`` is FULL) leave the files' size now."""
    _connection(cache).execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


def set_many(
    cache: diskcache.Cache,
    table: str,
    items: Sequence[tuple[str, Any]],
    expire_time: float | None = None,
) -> None:
    """``cache.set(key, value, expire=...)`` for each item (``expire_time``
    absolute, None: never), in one transaction; also culls expired rows, as
    ``set`` does."""
    if not items:
        return
    now = time.time()
    prefix = f"{table}:"
    with transaction(cache) as files:
        encoded = []
        for key, value in items:
            size, mode, filename, db_value = cache.disk.store(value, False, key=key)
            files.if_rolled_back.append(filename)
            encoded.append((key, size, mode, filename, db_value))
        con = _connection(cache)
        existing = {
            key: (rowid, filename)
            for key, rowid, filename in _rows(
                cache, "rowid, filename", table, [k for k, *_ in encoded]
            )
        }
        updates, inserts = [], []
        for key, size, mode, filename, db_value in encoded:
            if key in existing:
                rowid, old_filename = existing[key]
                files.if_committed.append(old_filename)
                updates.append((now, expire_time, now, size, mode, filename, db_value, rowid))
            else:
                row = (prefix + key, now, expire_time, now, size, mode, filename, db_value)
                inserts.append(row)
        if updates:
            con.executemany(
                "UPDATE Cache SET store_time = ?, expire_time = ?, access_time = ?,"
                " access_count = 0, tag = NULL, size = ?, mode = ?, filename = ?, value = ?"
                " WHERE rowid = ?",
                updates,
            )
        if inserts:
            con.executemany(
                "INSERT INTO Cache(key, raw, store_time, expire_time, access_time,"
                " access_count, tag, size, mode, filename, value)"
                " VALUES (?, 1, ?, ?, ?, 0, NULL, ?, ?, ?, ?)",
                inserts,
            )
        _count(con, {table: len(inserts)})
        # What set() culls as it goes: rows whose time ran out (in the same
        # transaction, as set() does: a commit of its own costs more).
        _expire(cache, now, files)


def delete_many(cache: diskcache.Cache, table: str, keys: Sequence[str]) -> None:
    """``cache.delete(key)`` for each key, in one transaction."""
    if not keys:
        return
    with transaction(cache) as files:
        found = _rows(cache, "rowid, filename", table, keys)
        con = _connection(cache)
        con.executemany("DELETE FROM Cache WHERE rowid = ?", [(rowid,) for _, rowid, _ in found])
        _count(con, {table: -len(found)})
        files.if_committed.extend(filename for _, _, filename in found)


def set_expiry(cache: diskcache.Cache, table: str, items: Sequence[tuple[str, float]]) -> None:
    """``cache.touch(key, ...)`` for each ``(key, absolute expire time)``, in one transaction."""
    if not items:
        return
    prefix = f"{table}:"
    with transaction(cache):
        _connection(cache).executemany(
            "UPDATE Cache SET expire_time = ? WHERE key = ? AND raw = 1",
            [(expire_time, prefix + key) for key, expire_time in items],
        )


def _expire(cache: diskcache.Cache, now: float, files: _Files) -> int:
    """Delete the rows whose expire time is before ``now``, inside the caller's
    transaction (``files``); how many."""
    con = _connection(cache)
    rows = con.execute(
        "SELECT rowid, key, filename FROM Cache WHERE expire_time < ?", (now,)
    ).fetchall()
    if not rows:
        return 0
    con.executemany("DELETE FROM Cache WHERE rowid = ?", [(rowid,) for rowid, _, _ in rows])
    gone = Counter(key.partition(":")[0] for _, key, _ in rows)
    _count(con, {table: -n for table, n in gone.items()})
    files.if_committed.extend(filename for _, _, filename in rows)
    return len(rows)


def expire(cache: diskcache.Cache, now: float | None = None) -> int:
    """Delete every row whose expire time is before ``now`` (default: now), in
    one transaction; how many."""
    with transaction(cache) as files:
        return _expire(cache, time.time() if now is None else now, files)


def scan(
    cache: diskcache.Cache, table: str, *, newest_first: bool = False
) -> Iterator[tuple[str, Any]]:
    """Every ``(key, value)`` of ``table`` not expired, a chunk of rows per query:
    by key, or newest row first (the order rows were first written; an update
    keeps a row's place). A value whose file vanished reads as None.

    Newest first walks the table by rowid and skips other tables' rows (the key
    index cannot give rowid order without sorting the whole table first).
    """
    low, high = _bounds(table)
    if newest_first:
        query = (
            "SELECT rowid, key, expire_time, mode, filename, value FROM Cache NOT INDEXED"
            " WHERE rowid < ? AND key >= ? AND key < ? ORDER BY rowid DESC LIMIT ?"
        )
        position: Any = (1 << 63) - 1  # above any rowid
    else:
        query = (
            "SELECT key, key, expire_time, mode, filename, value FROM Cache"
            " WHERE key > ? AND key >= ? AND key < ? AND raw = 1 ORDER BY key LIMIT ?"
        )
        position = ""
    yield from _pages(cache, query, position, (low, high), len(low))


def scan_matching(
    cache: diskcache.Cache,
    table: str,
    texts: Sequence[Sequence[str]],
    *,
    newest_first: bool = False,
    stored_since: float | None = None,
) -> Iterator[tuple[str, Any]]:
    """``(key, value)`` of the rows of ``table`` not expired, oldest (or newest)
    row first, whose value may hold, for each group of ``texts``, one of the
    group's texts, and (``stored_since``) was last written at or after that time:
    SQLite skips the values stored as text that fail, and every other value
    (compressed, or in a file) is read for the caller to check. A superset, so
    the caller checks each value; a value whose file vanished reads as None.

    Walks the table by rowid, like :func:`scan` newest first, but only the rows
    that pass the tests are decoded in Python: a filter that matches few of
    100,000 records costs one pass of SQLite, not 100,000 JSON decodes.
    """
    low, high = _bounds(table)
    where, params = ["key >= ?", "key < ?"], [low, high]
    for group in texts:
        where.append(
            "(typeof(value) != 'text' OR " + " OR ".join("instr(value, ?) > 0" for _ in group) + ")"
        )
        params.extend(group)
    if stored_since is not None:
        where.append("store_time >= ?")
        params.append(stored_since)
    order, position = ("<", "DESC"), (1 << 63) - 1  # above any rowid
    if not newest_first:
        order, position = (">", ""), 0
    query = (
        "SELECT rowid, key, expire_time, mode, filename, value FROM Cache NOT INDEXED"
        f" WHERE rowid {order[0]} ? AND {' AND '.join(where)} ORDER BY rowid {order[1]} LIMIT ?"
    )
    yield from _pages(cache, query, position, tuple(params), len(low))


def _pages(
    cache: diskcache.Cache, query: str, position: Any, params: tuple[Any, ...], cut: int
) -> Iterator[tuple[str, Any]]:
    """Run ``query`` a CHUNK of rows at a time, each page resuming after the last
    row's first column (its ``?`` parameters: that position, ``params``, CHUNK),
    and yield ``(key without its first cut characters, decoded value)`` of the
    rows not expired. A value whose file vanished reads as None."""
    con = _connection(cache)
    fetch = cache.disk.fetch
    while True:
        rows = con.execute(query, (position, *params, CHUNK)).fetchall()
        now = time.time()
        for _, key, expire_time, mode, filename, value in rows:
            if expire_time is not None and expire_time < now:
                continue
            try:
                decoded = fetch(mode, filename, value, False)
            except OSError:
                decoded = None
            yield key[cut:], decoded
        if len(rows) < CHUNK:
            return
        position = rows[-1][0]


def legacy_rows(directory: Path) -> Iterator[tuple[Any, Any, float | None]]:
    """``(key, value, expire_time)`` of every row of a database the store's old
    layout wrote (one diskcache directory), oldest first: keys and values as
    stored (text, integers, or bytes that the caller decodes), large values read
    from their files. Pickled rows (never written by the daemon) are skipped:
    the daemon never unpickles."""
    disk = diskcache.Disk(str(directory))
    con = sqlite3.connect(str(directory / DBNAME), timeout=60)
    try:
        position = 0
        while True:
            rows = con.execute(
                "SELECT rowid, key, expire_time, mode, filename, value FROM Cache"
                " WHERE rowid > ? AND raw = 1 ORDER BY rowid LIMIT ?",
                (position, CHUNK),
            ).fetchall()
            for _, key, expire_time, mode, filename, value in rows:
                if mode != MODE_PICKLE:
                    yield key, disk.fetch(mode, filename, value, False), expire_time
            if len(rows) < CHUNK:
                return
            position = rows[-1][0]
    finally:
        con.close()
