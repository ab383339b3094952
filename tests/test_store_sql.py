"""gcgated.store.sql against diskcache itself.

The module runs its own SQL on diskcache's table, so these pin what it relies
on: the ``Cache`` table's columns and indexes, that ``transact()`` is one SQLite
transaction on the connection the module writes through (nested ones joining
it, an exception rolling all of it back), and that rows written in bulk read
back through the ``Cache`` API exactly as if written one by one, and the other
way round (counts, sizes, expiry, the files of large values). A diskcache
release that changes any of it fails here, not in the daemon.
"""

from __future__ import annotations

import base64
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import diskcache
import pytest
from diskcache.core import DBNAME
from gcgated.store import sql
from gcgated.store.jsondisk import JSONTextDisk

pytestmark = pytest.mark.fast

SETTINGS = {"disk": JSONTextDisk, "eviction_policy": "none", "size_limit": 2**62}
#: JSON that stays too long, even compressed, to live in the database: in a file.
LARGE = base64.b64encode(os.urandom(150_000)).decode()


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[diskcache.Cache]:
    c = diskcache.Cache(str(tmp_path / "db"), **SETTINGS)
    sql.prepare(c)
    try:
        yield c
    finally:
        c.close()


def files(cache: diskcache.Cache) -> list[Path]:
    return [p for p in Path(cache.directory).rglob("*.val")]


def counted(cache: diskcache.Cache, *tables: str) -> dict[str, int]:
    return {table: sql.count(cache, table) for table in tables}


# ------------------------------------------------------------- diskcache's layout


def test_diskcache_table_layout_is_what_the_module_writes(cache: diskcache.Cache) -> None:
    db = sqlite3.connect(Path(cache.directory) / DBNAME)
    try:
        columns = [row[1] for row in db.execute("PRAGMA table_info(Cache)")]
        indexes = {
            name: [row[2] for row in db.execute(f"PRAGMA index_info({name})")]
            for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
            if name.startswith("Cache_")
        }
    finally:
        db.close()
    assert columns == [
        "rowid",
        "key",
        "raw",
        "store_time",
        "expire_time",
        "access_time",
        "access_count",
        "tag",
        "size",
        "mode",
        "filename",
        "value",
    ]
    # Keys are looked up and ranged over through this index, expiry through that one.
    assert indexes == {"Cache_key_raw": ["key", "raw"], "Cache_expire_time": ["expire_time"]}


def test_transaction_is_one_on_the_modules_connection(cache: diskcache.Cache) -> None:
    with pytest.raises(RuntimeError), sql.transaction(cache):
        sql.set_many(cache, "a", [("1", {"v": 1})])
        with sql.transaction(cache):  # nested: joins the outer one
            sql.set_many(cache, "b", [("2", {"v": 2})])
        assert sql.get_many(cache, "b", ["2"])  # seen inside, not committed
        raise RuntimeError("rolled back")
    assert len(cache) == 0
    assert counted(cache, "a", "b") == {"a": 0, "b": 0}
    with sql.transaction(cache):
        sql.set_many(cache, "a", [("1", {"v": 1})])
        sql.delete_many(cache, "a", ["1"])
        sql.set_many(cache, "b", [("2", {"v": 2})])
    assert counted(cache, "a", "b") == {"a": 0, "b": 1}
    assert cache.get("b:2") == {"v": 2}
    # diskcache's own transact() is the same SQLite transaction.
    with pytest.raises(RuntimeError), cache.transact():
        with sql.transaction(cache):
            sql.set_many(cache, "b", [("3", 3)])
        raise RuntimeError("rolled back")
    assert cache.get("b:3") is None


def test_files_follow_the_outermost_transaction(cache: diskcache.Cache) -> None:
    """A rolled-back delete or replacement keeps the file its row needs; a
    rolled-back write leaves no file behind."""
    sql.set_many(cache, "t", [("old", {"v": LARGE}), ("gone", {"v": LARGE})])
    kept = files(cache)
    with pytest.raises(RuntimeError), sql.transaction(cache):
        sql.delete_many(cache, "t", ["gone"])
        sql.set_many(cache, "t", [("old", {"v": "small"}), ("new", {"v": LARGE})])
        assert len(files(cache)) == 3  # nothing removed before the commit
        raise RuntimeError("rolled back")
    assert sorted(files(cache)) == sorted(kept)
    assert cache.get("t:gone") == {"v": LARGE} and cache.get("t:old") == {"v": LARGE}
    with sql.transaction(cache):
        sql.delete_many(cache, "t", ["gone"])
        sql.set_many(cache, "t", [("old", {"v": "small"})])
    assert files(cache) == []


# ----------------------------------------------------- bulk rows, as the Cache API


def test_set_many_inserts_and_updates_like_set(cache: diskcache.Cache) -> None:
    cache.set("t:old", {"v": 0})
    cache.set("t:big", {"v": LARGE})
    assert len(files(cache)) == 1
    items = [("old", {"v": 1}), ("new", {"v": [1, "two"]}), ("big", {"v": "small now"})]
    items += [(f"k{i}", {"i": i}) for i in range(1200)]  # over one IN-list chunk
    sql.set_many(cache, "t", items)

    assert len(cache) == 3 + 1200  # diskcache's count trigger saw each insert once
    assert cache.get("t:old") == {"v": 1}
    assert cache.get("t:new") == {"v": [1, "two"]}
    assert cache.get("t:big") == {"v": "small now"}
    assert cache.get("t:k1199") == {"i": 1199}
    assert cache.get("t:old", expire_time=True)[1] is None
    assert files(cache) == []  # the replaced large value's file is gone

    sql.set_many(cache, "t", [("big", {"v": LARGE})], expire_time=time.time() + 60)
    assert cache.get("t:big") == {"v": LARGE}
    assert cache.get("t:big", expire_time=True)[1] == pytest.approx(time.time() + 60, abs=30)
    assert len(files(cache)) == 1


def test_row_counts_follow_every_write(tmp_path: Path) -> None:
    cache = diskcache.Cache(str(tmp_path / "db"), **SETTINGS)
    try:
        cache.set("a:before", 1)  # a database with rows when the count table is made
        sql.prepare(cache)
        sql.set_many(cache, "a", [("x", 1), ("y", 2), ("before", 3)])  # one update
        sql.set_many(cache, "ab", [("x", 1)])  # a longer name sharing a prefix
        sql.delete_many(cache, "a", ["x", "absent"])
        assert counted(cache, "a", "ab", "none") == {"a": 2, "ab": 1, "none": 0}
        sql.set_expiry(cache, "a", [("y", time.time() - 1)])
        assert sql.expire(cache) == 1
        assert counted(cache, "a", "ab") == {"a": 1, "ab": 1}
        assert len(cache) == 2
    finally:
        cache.close()


def test_get_many_reads_what_set_wrote_and_skips_missing_and_expired(
    cache: diskcache.Cache,
) -> None:
    cache.set("t:a", {"a": 1})
    cache.set("t:big", {"v": LARGE})
    cache.set("t:gone", {"g": 1}, expire=-1)  # expired a second ago
    cache.set("t:later", {"l": 1}, expire=3600)
    cache.set("u:a", {"other": "table"})
    found = sql.get_many(cache, "t", ["a", "big", "gone", "later", "missing"])
    assert set(found) == {"a", "big", "later"}
    assert found["a"] == ({"a": 1}, None)
    assert found["big"][0] == {"v": LARGE}
    assert found["later"][1] == pytest.approx(time.time() + 3600, abs=60)


def test_delete_many_removes_rows_and_files(cache: diskcache.Cache) -> None:
    sql.set_many(cache, "t", [("a", 1), ("big", {"v": LARGE}), ("keep", 3)])
    sql.set_many(cache, "u", [("a", 1)])
    volume = cache.volume()
    sql.delete_many(cache, "t", ["a", "big", "never-there"])
    assert list(cache) == ["t:keep", "u:a"]
    assert files(cache) == []
    assert cache.volume() < volume


def test_set_expiry_and_expire_like_touch_and_expire(cache: diskcache.Cache) -> None:
    sql.set_many(cache, "t", [("a", 1), ("b", 2), ("c", {"v": LARGE})])
    sql.set_expiry(cache, "t", [("a", time.time() + 100), ("c", time.time() + 100)])
    assert cache.get("t:a", expire_time=True)[1] == pytest.approx(time.time() + 100, abs=30)
    assert cache.get("t:b", expire_time=True)[1] is None
    assert sql.expire(cache, now=time.time() + 50) == 0
    assert sql.expire(cache, now=time.time() + 1000) == 2
    assert list(cache) == ["t:b"]
    assert files(cache) == []


def test_a_failed_batch_writes_nothing(cache: diskcache.Cache) -> None:
    cache.set("t:a", 1)
    with pytest.raises(TypeError):
        sql.set_many(cache, "t", [("b", {"v": LARGE}), ("c", object())])
    assert list(cache) == ["t:a"]
    assert files(cache) == []


def test_scan_by_key_and_newest_first(cache: diskcache.Cache) -> None:
    names = [f"{i:04d}" for i in range(1200)]  # over one chunk
    sql.set_many(cache, "t", [(name, {"n": name}) for name in reversed(names)])
    sql.set_many(cache, "u", [("0000", "another table")])
    sql.set_many(cache, "t", [("0600", {"n": "updated"})])  # keeps its place
    sql.set_expiry(cache, "t", [("0001", time.time() - 1)])
    by_key = list(sql.scan(cache, "t"))
    assert [key for key, _ in by_key] == [n for n in names if n != "0001"]
    assert dict(by_key)["0600"] == {"n": "updated"}
    newest = [key for key, _ in sql.scan(cache, "t", newest_first=True)]
    assert newest == [n for n in names if n != "0001"]  # written last-name-first


def test_scan_reads_a_value_whose_file_vanished_as_none(cache: diskcache.Cache) -> None:
    sql.set_many(cache, "t", [("big", {"v": LARGE}), ("small", 1)])
    [path] = files(cache)
    path.unlink()
    assert dict(sql.scan(cache, "t")) == {"big": None, "small": 1}
    assert sql.get_many(cache, "t", ["big"]) == {}  # as diskcache's get(): absent


def test_legacy_rows_read_an_old_database_oldest_first(tmp_path: Path) -> None:
    old = diskcache.Cache(str(tmp_path / "old"), disk=diskcache.JSONDisk)
    old.set("b", {"v": LARGE})
    old.set("a", {"a": 1}, expire=60)
    old.close()
    plain = diskcache.Cache(str(tmp_path / "plain"))
    plain.set("count:success", 3)
    plain.set("pickled", {"a": "dict"})  # diskcache pickles it: never read back
    plain.close()

    rows = list(sql.legacy_rows(tmp_path / "old"))
    assert [type(key) for key, _, _ in rows] == [bytes, bytes]  # JSONDisk: zlib JSON
    assert rows[0][2] is None and rows[1][2] == pytest.approx(time.time() + 60, abs=30)
    assert [(key, value) for key, value, _ in sql.legacy_rows(tmp_path / "plain")] == [
        ("count:success", 3)
    ]
