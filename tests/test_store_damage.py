"""A damaged store: the daemon moves the damage aside, says so, and keeps serving.

One store is made by a real daemon (20 finished tasks whose results were read,
5 unfinished ones) and left by a clean stop; each test copies it, damages one
database the way a disk or a person would, and starts a daemon on it:

- it starts, logs one ERROR line naming the database, why, and where it went;
- the damaged files are moved to ``<state>/store.damaged-<time>/``, bytes intact
  (never deleted), and ``Status`` names that directory;
- it serves new work, keeps the records of the databases that were fine, fails
  unfinished tasks it can no longer run with a message that says why, and its
  counters agree with its task records.

A deleted or cut write-ahead log is damage SQLite cannot see (the database is
an older, consistent one that no longer agrees with its siblings); the log's
index left by the crash shows it, and it is handled like the rest.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from gcgate import Client, NotFound, TaskExecutionFailed
from gcgated.store_recovery import RUN_DATA_LOST
from harness import Daemon, script_function

WAIT = 60.0
FINISHED, UNFINISHED = 20, 5


@script_function
def triple(x):
    return x * 3


@script_function
def hold(x, marker):
    """Wait for ``marker`` (or for the daemon to die: our parent changes); 3x."""
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
            unfinished = {
                gcc.run(x, str(marker), endpoint_id="local", function_id=hid): x
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

    def db(self, name: str) -> Path:
        return self.state / "store" / name / "cache.db"

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


def moved_aside(daemon: Daemon, database: str, reason: str) -> Path:
    """The aside directory the log and Status name; checks both agree."""
    log = daemon.log()
    pattern = (
        rf"ERROR .*the result store's '{database}' database is damaged \((?P<why>.*)\):"
        rf" (moved \S+ aside to (?P<to>\S+)/{database}|nothing to move, recorded under"
        rf" (?P<under>\S+));"
    )
    found = re.search(pattern, log)
    assert found, f"no damage line for {database}:\n{log[-3000:]}"
    assert reason in found["why"], found["why"]
    aside = Path(found["to"] or found["under"])
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
def test_damaged_task_database_is_moved_aside(case: Case, damage, reason: str) -> None:
    damage(case.db("tasks"))
    left = case.db("tasks").read_bytes() if case.db("tasks").is_file() else None
    daemon = case.start()

    aside = moved_aside(daemon, "tasks", reason)
    kept = aside / "tasks" / "cache.db"
    assert (kept.read_bytes() if kept.is_file() else None) == left  # moved, never rewritten
    serves_and_consistent(daemon)
    # The records went with the database: their ids are unknown now, said plainly.
    for task_id, outcome in results(daemon, case.golden.finished).items():
        assert isinstance(outcome, NotFound), (task_id, outcome)
        assert "not known to this daemon" in str(outcome)


def test_damaged_counters_are_recounted(case: Case) -> None:
    garbage_header(case.db("meta"))
    daemon = case.start()

    moved_aside(daemon, "meta", "file is not a database")
    counts = serves_and_consistent(daemon)
    assert counts["success"] == FINISHED + UNFINISHED + 1
    everything = {**case.golden.finished, **case.golden.unfinished}
    assert results(daemon, everything) == {t: 3 * x for t, x in everything.items()}


def test_damaged_globus_submit_ledger_is_moved_aside(case: Case) -> None:
    """The Globus backend's own database is checked like the store's: a damaged
    one must not stop the daemon (it opens it at every start, logged in or not)."""
    garbage_header(case.db("globus_submits"))
    daemon = case.start()

    moved_aside(daemon, "globus_submits", "file is not a database")
    serves_and_consistent(daemon)
    everything = {**case.golden.finished, **case.golden.unfinished}
    assert results(daemon, everything) == {t: 3 * x for t, x in everything.items()}


def test_lost_run_data_fails_unfinished_tasks_clearly(case: Case) -> None:
    shutil.rmtree(case.state / "store" / "inflight")
    daemon = case.start()

    moved_aside(daemon, "inflight", "its directory is missing")
    counts = serves_and_consistent(daemon)
    assert counts["failed"] == UNFINISHED
    for task_id, outcome in results(daemon, case.golden.unfinished).items():
        assert isinstance(outcome, TaskExecutionFailed), (task_id, outcome)
        assert RUN_DATA_LOST in str(outcome)
    finished = case.golden.finished
    assert results(daemon, finished) == {t: 3 * x for t, x in finished.items()}


def test_lost_functions_fail_unfinished_tasks_and_keep_results(case: Case) -> None:
    replace_by_directory(case.db("functions"))
    daemon = case.start()

    moved_aside(daemon, "functions", "SQLite: unable to open")
    serves_and_consistent(daemon)  # registers the function again
    for task_id, outcome in results(daemon, case.golden.unfinished).items():
        assert isinstance(outcome, TaskExecutionFailed), (task_id, outcome)
        assert "function record is missing" in str(outcome)
    finished = case.golden.finished
    assert results(daemon, finished) == {t: 3 * x for t, x in finished.items()}


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
    wal = case.db("tasks").with_name("cache.db-wal")
    assert wal.stat().st_size > cut  # the kill left committed transactions there
    if cut:
        os.truncate(wal, cut)
    else:
        wal.unlink()
    daemon.start()

    moved_aside(daemon, "tasks", "write-ahead log")
    serves_and_consistent(daemon)
    everything = {**case.golden.finished, **case.golden.unfinished, **recent}
    for task_id, outcome in results(daemon, everything).items():
        assert isinstance(outcome, NotFound), (task_id, outcome)
