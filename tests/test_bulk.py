"""gcgated.bulk against diskcache itself: rows written in bulk read back through
the Cache API exactly as if written one by one, and the other way round
(counts, sizes, expiry, and the files of large values)."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from pathlib import Path

import diskcache
import pytest
from gcgated import bulk
from gcgated.jsondisk import JSONTextDisk

pytestmark = pytest.mark.fast

SETTINGS = {"disk": JSONTextDisk, "eviction_policy": "none", "size_limit": 2**62}
#: JSON that stays too long, even compressed, to live in the database: in a file.
LARGE = base64.b64encode(os.urandom(150_000)).decode()


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[diskcache.Cache]:
    c = diskcache.Cache(str(tmp_path / "db"), **SETTINGS)
    try:
        yield c
    finally:
        c.close()


def files(cache: diskcache.Cache) -> list[Path]:
    return [p for p in Path(cache.directory).rglob("*.val")]


def test_set_many_inserts_and_updates_like_set(cache: diskcache.Cache) -> None:
    cache.set("old", {"v": 0})
    cache.set("big", {"v": LARGE})
    assert len(files(cache)) == 1
    items = [("old", {"v": 1}), ("new", {"v": [1, "two"]}), ("big", {"v": "small now"})]
    items += [(f"k{i}", {"i": i}) for i in range(1200)]  # over one IN-list chunk
    bulk.set_many(cache, items)

    assert len(cache) == 3 + 1200  # diskcache's count trigger saw each insert once
    assert cache.get("old") == {"v": 1}
    assert cache.get("new") == {"v": [1, "two"]}
    assert cache.get("big") == {"v": "small now"}
    assert cache.get("k1199") == {"i": 1199}
    assert cache.get("old", expire_time=True)[1] is None
    assert files(cache) == []  # the replaced large value's file is gone

    bulk.set_many(cache, [("big", {"v": LARGE})])
    assert cache.get("big") == {"v": LARGE}
    assert len(files(cache)) == 1


def test_get_many_reads_what_set_wrote_and_skips_missing_and_expired(
    cache: diskcache.Cache,
) -> None:
    cache.set("a", {"a": 1})
    cache.set("big", {"v": LARGE})
    cache.set("gone", {"g": 1}, expire=-1)  # expired a second ago
    cache.set("later", {"l": 1}, expire=3600)
    found = bulk.get_many(cache, ["a", "big", "gone", "later", "missing"])
    assert set(found) == {"a", "big", "later"}
    assert found["a"] == ({"a": 1}, None)
    assert found["big"][0] == {"v": LARGE}
    assert found["later"][1] == pytest.approx(time.time() + 3600, abs=60)


def test_delete_many_removes_rows_and_files(cache: diskcache.Cache) -> None:
    bulk.set_many(cache, [("a", 1), ("big", {"v": LARGE}), ("keep", 3)])
    volume = cache.volume()
    bulk.delete_many(cache, ["a", "big", "never-there"])
    assert list(cache) == ["keep"]
    assert files(cache) == []
    assert cache.volume() < volume


def test_touch_many_starts_expiry_like_touch(cache: diskcache.Cache) -> None:
    bulk.set_many(cache, [("a", 1), ("b", 2), ("c", 3)])
    bulk.touch_many(cache, ["a", "b"], 100.0)
    assert cache.get("a", expire_time=True)[1] == pytest.approx(time.time() + 100, abs=30)
    assert cache.get("c", expire_time=True)[1] is None
    assert cache.expire(now=time.time() + 1000) == 2
    assert list(cache) == ["c"]


def test_a_failed_batch_writes_nothing(cache: diskcache.Cache) -> None:
    cache.set("a", 1)
    with pytest.raises(TypeError):
        bulk.set_many(cache, [("b", {"v": LARGE}), ("c", object())])
    assert list(cache) == ["a"]
    assert files(cache) == []
