"""Many rows of one diskcache database per statement, for the store's batches.

diskcache's API is one call per key, and each call costs about 10-20 us of Python
(connection check, key and value encoding, a select before every write, a cull
after it) on top of SQLite's own work. The store reads and writes thousands of
records per batch, so these functions do the same with ``executemany`` and
``IN`` lists on the same connection and table, in diskcache's own row format
(values go through the cache's ``Disk``), so ``Cache`` reads the rows back
unchanged. Row layout, file clean-up and expiry follow ``diskcache.Cache.set``,
``delete``, ``get`` and ``touch`` (diskcache 5.x).

Keys must be text (the store's ``JSONTextDisk`` keys). Each function is one
transaction (or part of the caller's ``cache.transact()``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import diskcache

#: Keys per ``IN (...)`` list: far below SQLite's limit on bound parameters.
CHUNK = 500


def _chunks(keys: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(keys), CHUNK):
        yield keys[start : start + CHUNK]


def _connection(cache: diskcache.Cache) -> sqlite3.Connection:
    """The cache's own connection for this thread (so its transaction is ours)."""
    return cache._con  # type: ignore[no-any-return]  # diskcache has no public handle


def _rows(cache: diskcache.Cache, columns: str, keys: Sequence[str]) -> list[tuple[Any, ...]]:
    con = _connection(cache)
    found: list[tuple[Any, ...]] = []
    for chunk in _chunks(keys):
        marks = ",".join("?" * len(chunk))
        query = f"SELECT {columns} FROM Cache WHERE key IN ({marks}) AND raw = 1"
        found.extend(con.execute(query, chunk).fetchall())
    return found


def _remove_files(cache: diskcache.Cache, filenames: Iterable[str | None]) -> None:
    for filename in filenames:
        if filename:
            cache.disk.remove(filename)


def get_many(cache: diskcache.Cache, keys: Sequence[str]) -> dict[str, tuple[Any, float | None]]:
    """``{key: (value, expire_time)}`` for the keys present and not expired."""
    now = time.time()
    found: dict[str, tuple[Any, float | None]] = {}
    fetch = cache.disk.fetch
    for key, expire_time, mode, filename, value in _rows(
        cache, "key, expire_time, mode, filename, value", keys
    ):
        if expire_time is not None and expire_time < now:
            continue
        try:
            found[key] = (fetch(mode, filename, value, False), expire_time)
        except OSError:  # its file vanished: diskcache's get() treats that as absent
            continue
    return found


def set_many(cache: diskcache.Cache, items: Sequence[tuple[str, Any]]) -> None:
    """``cache.set(key, value)`` for each item (no expiry), in one transaction."""
    if not items:
        return
    now = time.time()
    encoded = []
    replaced: list[str | None] = []
    try:
        for key, value in items:
            size, mode, filename, db_value = cache.disk.store(value, False, key=key)
            encoded.append((key, size, mode, filename, db_value))
        with cache.transact():
            con = _connection(cache)
            existing = {
                key: (rowid, filename)
                for key, rowid, filename in _rows(
                    cache, "key, rowid, filename", [k for k, *_ in encoded]
                )
            }
            updates, inserts = [], []
            for key, size, mode, filename, db_value in encoded:
                if key in existing:
                    rowid, old_filename = existing[key]
                    replaced.append(old_filename)
                    updates.append((now, now, size, mode, filename, db_value, rowid))
                else:
                    inserts.append((key, now, now, size, mode, filename, db_value))
            con.executemany(
                "UPDATE Cache SET store_time = ?, expire_time = NULL, access_time = ?,"
                " access_count = 0, tag = NULL, size = ?, mode = ?, filename = ?, value = ?"
                " WHERE rowid = ?",
                updates,
            )
            con.executemany(
                "INSERT INTO Cache(key, raw, store_time, expire_time, access_time,"
                " access_count, tag, size, mode, filename, value)"
                " VALUES (?, 1, ?, NULL, ?, 0, NULL, ?, ?, ?, ?)",
                inserts,
            )
            # What set() culls as it goes: results whose retention ran out (in
            # the same transaction, as set() does: a commit of its own costs more).
            cache.expire(now)
    except BaseException:
        _remove_files(cache, (filename for _, _, _, filename, _ in encoded))
        raise
    _remove_files(cache, replaced)


def delete_many(cache: diskcache.Cache, keys: Sequence[str]) -> None:
    """``cache.delete(key)`` for each key, in one transaction."""
    if not keys:
        return
    with cache.transact():
        filenames = [filename for (filename,) in _rows(cache, "filename", keys)]
        _connection(cache).executemany(
            "DELETE FROM Cache WHERE key = ? AND raw = 1", [(key,) for key in keys]
        )
    _remove_files(cache, filenames)


def touch_many(cache: diskcache.Cache, keys: Sequence[str], expire: float) -> None:
    """``cache.touch(key, expire=expire)`` for each key, in one transaction."""
    if not keys:
        return
    expire_time = time.time() + expire
    with cache.transact():
        _connection(cache).executemany(
            "UPDATE Cache SET expire_time = ? WHERE key = ? AND raw = 1",
            [(expire_time, key) for key in keys],
        )
