"""The store's one database, and the named tables in it.

All of the daemon's records live in one diskcache ``Cache`` (one SQLite
database), so that one transaction can span them: a task's record, its run data
and the counters change together or not at all. A :class:`Table` is one named
part of it (the keys under ``<name>:``), the interface through which the core
and each backend read and write their own records: JSON values, many rows per
statement (:mod:`.sql`), each call one transaction or part of an enclosing
:meth:`Table.transact`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import diskcache

from . import sql
from .jsondisk import JSONTextDisk

_CACHE_SETTINGS: dict[str, Any] = {
    "disk": JSONTextDisk,
    "disk_compress_level": 1,
    # Nothing is ever evicted behind the daemon's back: retention is explicit
    # (expiry set when a result is first retrieved) and the size limit refuses
    # new work instead of dropping old results.
    "eviction_policy": "none",
    "size_limit": 2**62,
    "statistics": False,
    # SQLite's own memory (diskcache's defaults: a 64 MB memory map, whose pages
    # count in the daemon's RSS once read, and a 32 MB page cache): reads are
    # ~10% slower without the map; RSS with 100,000 tasks in flight went from
    # 193 to 139 MB (with a database per table).
    "sqlite_mmap_size": 0,
    "sqlite_cache_size": 2**10,
}


def open_database(directory: Path) -> diskcache.Cache:
    """The store's database in ``directory`` (created if new)."""
    cache = diskcache.Cache(str(directory), **_CACHE_SETTINGS)
    sql.prepare(cache)
    return cache


class Table:
    """One named table of the store's database (see the module doc)."""

    def __init__(self, cache: diskcache.Cache, name: str) -> None:
        if not name or ":" in name or ";" in name:
            raise ValueError(f"not a table name: {name!r}")
        self._cache = cache
        self.name = name

    def transact(self) -> contextlib.AbstractContextManager[Any]:
        """One transaction for every write inside it, to this table or any other
        of the same store: all committed together, or none."""
        return sql.transaction(self._cache)

    def get(self, key: str) -> Any | None:
        found = sql.get_many(self._cache, self.name, [key])
        return found[key][0] if key in found else None

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        """The values of those of ``keys`` that are present."""
        return {key: value for key, (value, _) in self.get_many_expiring(keys).items()}

    def get_many_expiring(self, keys: Sequence[str]) -> dict[str, tuple[Any, float | None]]:
        """``{key: (value, expire time or None)}`` of those of ``keys`` present."""
        return sql.get_many(self._cache, self.name, keys)

    def set(self, key: str, value: Any, expire: float | None = None) -> None:
        self.set_many([(key, value)], expire)

    def set_many(self, items: Sequence[tuple[str, Any]], expire: float | None = None) -> None:
        """Write ``(key, value)`` pairs; with ``expire``, they go after that many seconds."""
        expire_time = None if expire is None else time.time() + expire
        sql.set_many(self._cache, self.name, items, expire_time)

    def expire_after(self, keys: Sequence[str], seconds: float) -> None:
        """Let rows that are there go ``seconds`` from now."""
        expire_time = time.time() + seconds
        sql.set_expiry(self._cache, self.name, [(key, expire_time) for key in keys])

    def delete(self, key: str) -> None:
        self.delete_many([key])

    def delete_many(self, keys: Sequence[str]) -> None:
        sql.delete_many(self._cache, self.name, keys)

    def items(self, *, newest_first: bool = False) -> Iterator[tuple[str, Any]]:
        """Every row: by key, or newest first (a value whose file was lost: None)."""
        return sql.scan(self._cache, self.name, newest_first=newest_first)

    def items_containing(self, text: str) -> Iterator[tuple[str, Any]]:
        """Oldest first, the rows whose value may hold ``text`` in its JSON text
        (a superset: check the values), found by SQLite without decoding the others."""
        return sql.scan_matching(self._cache, self.name, [[text]])

    def items_matching(
        self, texts: Sequence[Sequence[str]], *, stored_since: float | None = None
    ) -> Iterator[tuple[str, Any]]:
        """Newest first, the rows whose JSON text may hold one text of each group of
        ``texts`` and that were last written at or after ``stored_since`` (a
        superset: check the values), found by SQLite without decoding the others."""
        return sql.scan_matching(
            self._cache, self.name, texts, newest_first=True, stored_since=stored_since
        )

    def __len__(self) -> int:
        return sql.count(self._cache, self.name)
