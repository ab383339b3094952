"""A damaged store: the daemon moves the damage aside, says so, and keeps serving.

One store is made by a real daemon (20 finished tasks whose results were read,
5 unfinished ones, whose payloads are large enough to live in files of their
own) and left by a clean stop; each test copies it, damages it the way a disk
or a person would, and starts a daemon on it:

- a damaged database: it starts, logs one ERROR line naming the database, why,
  and where it went; the store is moved to ``<state>/store.damaged-<time>/``,
  bytes intact (never deleted), and ``Status`` names that directory; it serves
  new work with an empty store, and every old id is unknown, said plainly;
- lost files of large values: it keeps every record it can read, fails the
  unfinished tasks it can no longer run with a message that says why, and its
  counters agree with its task records.

A deleted or cut write-ahead log is damage SQLite cannot see (the database is
an older, consistent one than the daemon answered clients about); the log's
index left by the crash shows it, and it is handled like the rest. (Damaged
databases of a store in the old layout, a database per table, are in
``test_store_migration.py``.)
"""

from __future__ import annotations

import base64
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from gcgate import Client, NotFound, TaskExecutionFailed
from gcgated.store.schema import RUN_DATA_LOST
from harness import Daemon, script_function

WAIT = 60.0
FINISHED, UNFINISHED = 20, 5
#: Random bytes in each unfinished task's payload: over diskcache's 32 KiB
#: compressed, so the run data is a file next to the database.
BALLAST = 60_000


@script_function
def triple(x):
    return x * 3


@script_function
def hold(x, marker, ballast):
    """Wait for ``marker`` (or for the daemon to die: our parent changes); 3x.
    ``ballast`` makes the payload large: stored in a file of its own."""
    import os
    import time

    parent = os.getppid()
    while not os.path.exists(marker) and os.getppid() == parent:
        time.sleep(0.01)
    return x * 3


@dataclass(frozen=True)
class Golden:
    """A store left by a stopped daemon, and what is in it."""

    state: Path
    finished: dict[str, int]  # task id -> x, result read
    unfinished: dict[str, int]  # task id -> x, not final at the kill
    marker: Path  # lets the unfinished tasks finish once it exists


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Golden]:
    base = tmp_path_factory.mktemp("golden")
    marker = base / "release"
    daemon = Daemon(base / "state").start()
    try:
        with Client(socket_path=daemon.socket_path) as gcc:
            fid = gcc.register_function(triple)
            finished = {
                gcc.run(x, endpoint_id="local", function_id=fid): x for x in range(FINISHED)
            }
            for task_id, x in finished.items():
                assert gcc.get_result(task_id, wait=WAIT) == 3 * x
            hid = gcc.register_function(hold)
            ballast = base64.b64encode(os.urandom(BALLAST)).decode()
            unfinished = {
                gcc.run(x, str(marker), ballast, endpoint_id="local", function_id=hid): x
                for x in range(100, 100 + UNFINISHED)
            }
        assert daemon.stop() == 0, daemon.log()  # the unfinished ones are resumed later
    finally:
        daemon.close()
    yield Golden(base / "state", finished, unfinished, marker)


class Case:
    """A copy of the golden store for one test to damage, then serve."""

    def __init__(self, golden: Golden, tmp_path: Path) -> None:
        self.golden = golden
        self.state = tmp_path / "state"
        shutil.copytree(golden.state, self.state)
        self.daemon: Daemon | None = None

    @property
    def db(self) -> Path:
        return self.state / "store" / "cache.db"

    def start(self) -> Daemon:
        self.golden.marker.touch()  # resumed unfinished tasks may finish at once
        self.daemon = Daemon(self.state).start()
        return self.daemon


@pytest.fixture
def case(golden: Golden, tmp_path: Path) -> Iterator[Case]:
    made = Case(golden, tmp_path)
    try:
        yield made
    finally:
        if made.daemon is not None:
            made.daemon.close()


def garbage_header(path: Path) -> None:
    with open(path, "r+b") as f:
        f.write(b"\xde\xad\xbe\xef" * 25)


def truncate_half(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def truncate_zero(path: Path) -> None:
    os.truncate(path, 0)


def replace_by_directory(path: Path) -> None:
    """Unreadable even for root (the suite may run as root, where chmod 000 is not)."""
    path.unlink()
    path.mkdir()


# ---------------------------------------------------------------------- checks


def moved_aside(daemon: Daemon, reason: str) -> Path:
    """The aside directory the log and Status name; checks both agree."""
    log = daemon.log()
    found = re.search(
        r"ERROR .*the result store's database (?P<path>\S+) is damaged \((?P<why>.*)\):"
        r" moved it aside to (?P<to>\S+); the daemon starts without it",
        log,
    )
    assert found, f"no damage line:\n{log[-3000:]}"
    assert reason in found["why"], found["why"]
    assert found["path"] == str(daemon.state_dir / "store")
    moved = Path(found["to"])
    aside = moved.parent
    assert moved.name == "store"
    assert aside.parent == daemon.state_dir and aside.name.startswith("store.damaged-")
    with Client(socket_path=daemon.socket_path) as gcc:
        assert gcc.status()["store"]["damaged_moved_to"] == str(aside)
    return aside


def serves_and_consistent(daemon: Daemon) -> dict[str, int]:
    """New work runs; nothing is left pending; counters match the records."""
    with Client(socket_path=daemon.socket_path) as gcc:
        fid = gcc.register_function(triple)
        assert gcc.get_result(gcc.run(7, endpoint_id="local", function_id=fid), wait=WAIT) == 21
        for _ in gcc.watch([t["task_id"] for t in gcc.list_tasks(1000, "pending")], timeout=WAIT):
            pass
        status = gcc.status()
    counts = status["tasks"]
    assert counts["pending"] == 0
    assert counts["success"] + counts["failed"] == status["store"]["task_records"]
    return counts


def results(daemon: Daemon, task_ids: dict[str, int]) -> dict[str, object]:
    """{task id: result, or the exception raised for it}."""
    found: dict[str, object] = {}
    with Client(socket_path=daemon.socket_path) as gcc:
        for task_id in task_ids:
            try:
                found[task_id] = gcc.get_result(task_id, wait=WAIT)
            except (NotFound, TaskExecutionFailed) as exc:
                found[task_id] = exc
    return found


# ----------------------------------------------------------------------- tests


@pytest.mark.parametrize(
    "damage,reason",
    [
        (garbage_header, "file is not a database"),
        (truncate_half, "SQLite"),
        (truncate_zero, "empty, truncated to zero bytes"),
        (replace_by_directory, "SQLite: unable to open"),
    ],
)
def test_damaged_database_is_moved_aside(case: Case, damage, reason: str) -> None:
    damage(case.db)
    left = case.db.read_bytes() if case.db.is_file() else None
    daemon = case.start()

    aside = moved_aside(daemon, reason)
    kept = aside / "store" / "cache.db"
    assert (kept.read_bytes() if kept.is_file() else None) == left  # moved, never rewritten
    assert len(list(aside.rglob("*.val"))) == UNFINISHED  # the run data's files went along
    counts = serves_and_consistent(daemon)
    assert (counts["pending"], counts["success"], counts["failed"]) == (0, 1, 0)
    # The records went with the database: their ids are unknown now, said plainly.
    everything = {**case.golden.finished, **case.golden.unfinished}
    for task_id, outcome in results(daemon, everything).items():
        assert isinstance(outcome, NotFound), (task_id, outcome)
        assert "not known to this daemon" in str(outcome)


def test_lost_run_data_fails_unfinished_tasks_clearly(case: Case) -> None:
    values = list((case.state / "store").rglob("*.val"))
    assert len(values) == UNFINISHED
    for path in values:
        path.unlink()
    daemon = case.start()

    assert "damaged" not in daemon.log()
    counts = serves_and_consistent(daemon)
    assert counts["failed"] == UNFINISHED
    for task_id, outcome in results(daemon, case.golden.unfinished).items():
        assert isinstance(outcome, TaskExecutionFailed), (task_id, outcome)
        assert RUN_DATA_LOST in str(outcome)
    finished = case.golden.finished
    assert results(daemon, finished) == {t: 3 * x for t, x in finished.items()}


def test_missing_database_file_is_seen(case: Case) -> None:
    """Its log and the files of large values still there: the database was lost,
    not never made (a store directory with nothing in it is a new store)."""
    daemon = case.start()
    daemon.kill()
    case.db.unlink()
    daemon.start()

    aside = moved_aside(daemon, "its cache.db file is missing")
    assert (aside / "store" / "cache.db-wal").exists()
    serves_and_consistent(daemon)


@pytest.mark.parametrize(
    "cut", [0, pytest.param(4096, marks=pytest.mark.soak)], ids=["deleted", "cut"]
)
def test_lost_write_ahead_log_is_seen(case: Case, cut: int) -> None:
    """Without its log the database is older but consistent: SQLite sees nothing,
    the log's index left by the crash does."""
    daemon = case.start()
    with Client(socket_path=daemon.socket_path) as gcc:
        fid = gcc.register_function(triple)
        recent = {gcc.run(x, endpoint_id="local", function_id=fid): x for x in range(10)}
        for task_id, x in recent.items():
            assert gcc.get_result(task_id, wait=WAIT) == 3 * x
    daemon.kill()
    wal = case.db.with_name("cache.db-wal")
    assert wal.stat().st_size > cut  # the kill left committed transactions there
    if cut:
        os.truncate(wal, cut)
    else:
        wal.unlink()
    daemon.start()

    moved_aside(daemon, "write-ahead log")
    serves_and_consistent(daemon)
    everything = {**case.golden.finished, **case.golden.unfinished, **recent}
    for task_id, outcome in results(daemon, everything).items():
        assert isinstance(outcome, NotFound), (task_id, outcome)
