"""The result cache's life-cycle: forget, purge, retention, size (issue 14).

Against a real daemon (one local worker, so tasks run in the order sent) and,
for the retention rules, a real store on a temporary directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from gcgate import Client
from gcgate.constants import LOCAL_ENDPOINT_ID
from gcgate.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from gcgated.store import NewTask, Store
from harness import ConfiguredDaemon, Daemon, script_function, serve, wait_until

WAIT = 60.0
#: The installed console script, as a person runs it.
GCGATE = shutil.which("gcgate", path=os.path.dirname(sys.executable)) or "gcgate"


@script_function
def echo(x):
    return x


@script_function
def fail(x):
    raise ValueError(f"no {x}")


@script_function
def wait_for_file(path):
    import os
    import time

    while not os.path.exists(path):  # the test creates it: the task's own work
        time.sleep(0.01)
    return path


@pytest.fixture(scope="module")
def lone_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One worker: a task sent after another runs after it."""
    yield from serve(Daemon(tmp_path_factory.mktemp("cache") / "state", workers=1).start())


@pytest.fixture
def gcc(lone_daemon: Daemon) -> Iterator[Client]:
    with Client(socket_path=lone_daemon.socket_path) as c:
        yield c


def settle(gcc: Client) -> None:
    """Wait until no task is pending, without retrieving any result (a retrieval
    would start its retention clock)."""
    wait_until("every task final", lambda: not gcc.list_tasks(status="pending"), WAIT)


def store_files_bytes(daemon: Daemon) -> int:
    """What ``du --apparent-size`` says of the store directory."""
    return sum(
        (Path(root) / name).stat().st_size
        for root, _, files in os.walk(daemon.state_dir / "store")
        for name in files
    )


def test_a_forgotten_task_answers_not_found_saying_so(gcc: Client) -> None:
    fid = gcc.register_function(echo)
    tid = gcc.run(7, endpoint_id="local", function_id=fid)
    assert gcc.get_result(tid, wait=WAIT) == 7
    unknown = str(uuid.uuid4())

    answer = gcc.forget_tasks([tid, unknown])

    assert (answer["forgotten"], answer["in_flight"]) == (1, 0)
    assert answer["unknown_task_ids"] == [unknown]
    with pytest.raises(NotFound, match="was forgotten"):
        gcc.get_result(tid)
    with pytest.raises(NotFound, match="was forgotten"):
        gcc.get_tasks([tid])
    assert gcc.forget_tasks([tid])["unknown_task_ids"] == [tid]


def test_a_task_in_flight_is_forgotten_only_when_asked_and_its_result_is_dropped(
    gcc: Client, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    blocked = gcc.run(
        str(release), endpoint_id="local", function_id=gcc.register_function(wait_for_file)
    )
    after = gcc.run(8, endpoint_id="local", function_id=gcc.register_function(echo))

    with pytest.raises(FailedPrecondition, match=r"in flight.*--in-flight"):
        gcc.forget_tasks([blocked])
    assert gcc.get_task(blocked)["pending"]  # refused: nothing was forgotten

    answer = gcc.forget_tasks([blocked], in_flight=True)
    assert (answer["forgotten"], answer["in_flight"]) == (1, 1)
    # Never released: the lone worker runs the next task only because the
    # forgotten one's work was stopped (its worker killed and replaced).
    assert gcc.get_result(after, wait=WAIT) == 8
    assert not release.exists()
    with pytest.raises(NotFound, match="was forgotten"):
        gcc.get_result(blocked)
    assert gcc.status()["tasks"]["pending"] == 0


def test_a_result_handed_over_by_a_stream_counts_as_retrieved(
    gcc: Client, lone_daemon: Daemon, tmp_path: Path
) -> None:
    """A result a client got as it completed (a watch stream, as an Executor's
    futures get theirs, or a waiting GetResult) starts its retention clock as a
    plain read does; else it would be kept as never read and never evicted."""
    gate = tmp_path / "gate"
    quick, gated = gcc.register_function(echo), gcc.register_function(wait_for_file)
    batch = gcc.create_batch()
    batch.add(quick, args=(1,))
    batch.add(gated, args=(str(gate),))  # one worker: runs after quick
    answer = gcc.batch_run("local", batch)
    group = answer["task_group_id"]
    done, later = answer["tasks"][quick][0], answer["tasks"][gated][0]
    wait_until(
        "the quick task final",
        lambda: done not in {t["task_id"] for t in gcc.list_tasks(status="pending")},
        WAIT,
    )
    with Client(socket_path=lone_daemon.socket_path) as watcher:  # no cached results
        stream = watcher.watch([done, later], timeout=WAIT)
        assert next(stream)["task_id"] == done  # read from the store: the stream is set up
        gate.touch()
        assert next(stream)["task_id"] == later  # handed over as it completed
    retrieved = gcc.purge_tasks(task_group_id=group, retrieved=True, dry_run=True)
    assert retrieved["tasks"] == 2, retrieved


def test_purge_by_each_filter_with_a_dry_run_first(gcc: Client, lone_daemon: Daemon) -> None:
    ok, bad = gcc.register_function(echo), gcc.register_function(fail)
    group = str(uuid.uuid4())
    batch = gcc.create_batch(task_group_id=group)
    for x in range(4):
        batch.add(ok, args=(x,))
    batch.add(bad, args=(1,))
    ids = [t for ts in gcc.batch_run("local", batch)["tasks"].values() for t in ts]
    settle(gcc)
    retrieved = ids[0]
    assert gcc.get_result(retrieved) == 0  # retrieved: starts its retention
    before = gcc.status()

    with pytest.raises(InvalidArgument, match="at least one filter"):
        gcc.purge_tasks()
    with pytest.raises(InvalidArgument, match="status must be one of"):
        gcc.purge_tasks(status="waiting-for-ep")

    dry = gcc.purge_tasks(task_group_id=group, dry_run=True)
    assert (dry["tasks"], dry["succeeded"], dry["failed"], dry["bytes_freed"]) == (5, 4, 1, 0)
    assert sorted(dry["sample_task_ids"]) == sorted(ids)
    assert gcc.purge_tasks(task_group_id=group, older_than=3600, dry_run=True)["tasks"] == 0

    assert gcc.purge_tasks(task_group_id=group, status="failed")["tasks"] == 1
    assert gcc.purge_tasks(task_group_id=group, retrieved=True)["tasks"] == 1
    with pytest.raises(NotFound, match="was purged"):
        gcc.get_result(retrieved)
    assert gcc.purge_tasks(function_id=bad, dry_run=True)["tasks"] == 0
    left = gcc.purge_tasks(task_group_id=group, endpoint_id="local", function_id=ok)
    assert left["tasks"] == 3
    assert gcc.purge_tasks(task_group_id=group, dry_run=True)["tasks"] == 0
    # The task counts are running totals of how tasks ended (docs/api.md#taskcounts):
    # purging lowers the records kept, not them.
    after = gcc.status()
    assert after["store"]["task_records"] == before["store"]["task_records"] - 5
    assert after["tasks"] == before["tasks"]


def test_a_purge_frees_space_at_once_and_the_size_counts_every_file(
    gcc: Client, lone_daemon: Daemon
) -> None:
    fid = gcc.register_function(echo)
    group = str(uuid.uuid4())
    batch = gcc.create_batch(task_group_id=group)
    for _ in range(20):
        batch.add(fid, args=(os.urandom(60_000).hex(),))  # incompressible, in files
    gcc.batch_run("local", batch)
    settle(gcc)
    before = gcc.status()["store"]["size_bytes"]
    assert before == store_files_bytes(lone_daemon)  # the WAL and value files too

    answer = gcc.purge_tasks(task_group_id=group)

    assert answer["tasks"] == 20
    assert answer["bytes_freed"] > 20 * 60_000
    after = gcc.status()["store"]["size_bytes"]
    assert after == answer["size_bytes"] == store_files_bytes(lone_daemon)
    assert after < before - 20 * 60_000


# ----------------------------------------------------------- retention rules


def _store(tmp_path: Path, **kwargs: float) -> Store:
    return Store(
        tmp_path / "store",
        size_limit_bytes=1 << 40,
        retention_seconds=kwargs.get("retention", 3600.0),
        unread_retention_seconds=kwargs.get("unread", float("inf")),
    )


def _final(store: Store, n: int) -> list[str]:
    tasks = [NewTask(str(uuid.uuid4()), "f", "e", "g", "p", ("s",)) for _ in range(n)]
    store.add_tasks(tasks, "waiting-for-ep")
    store.complete_tasks(
        {"task_id": t.task_id, "status": "success", "result": "11\n1", "completion_t": "1"}
        for t in tasks
    )
    return [t.task_id for t in tasks]


def _sweep(store: Store, now: float) -> int:
    gone, after = 0, ""
    while after is not None:
        page, after = store.purge_page(store.expired_filter(now), after, how="")
        gone += page.tasks
    return gone


@pytest.mark.fast
def test_a_retention_change_applies_to_results_already_retrieved(tmp_path: Path) -> None:
    store = _store(tmp_path, retention=30 * 86400)
    try:
        [a, b] = _final(store, 2)
        assert store.get_task(a) is not None  # retrieved: its clock starts now
        store.retention_seconds = 0  # as a SIGHUP reload sets it
        assert store.get_task(a) is None  # retrieved before: gone for readers...
        assert _sweep(store, time.time()) == 1  # ...and swept
        assert store.get_task(b) is not None  # unread: kept, and now retrieved once
        assert store.get_task(b) is None  # retention 0: dropped once retrieved
    finally:
        store.close()


@pytest.mark.fast
def test_unread_results_go_after_their_own_retention_but_tasks_in_flight_never(
    tmp_path: Path,
) -> None:
    store = _store(tmp_path, unread=86400)
    try:
        [done] = _final(store, 1)
        pending = NewTask(str(uuid.uuid4()), "f", "e", "g", "p", ("s",))
        store.add_tasks([pending], "waiting-for-ep")
        assert _sweep(store, time.time() + 3600) == 0
        assert _sweep(store, time.time() + 2 * 86400) == 1
        assert store.get_task(done) is None
        assert store.get_task(pending.task_id) is not None
    finally:
        store.close()


# ------------------------------------------------ kill -9 during a purge


def _seed(store_dir: Path, n: int) -> list[str]:
    """``n`` final results (``11\\n<i>``: JSON ``i``) written with the store's own API
    before any daemon opens it, as a daemon that ran them would have left them."""
    store = Store(store_dir, size_limit_bytes=1 << 40, retention_seconds=30 * 86400)
    function_id, ids = str(uuid.uuid4()), []
    try:
        for start in range(0, n, 5_000):
            tasks = [
                NewTask(str(uuid.uuid4()), function_id, LOCAL_ENDPOINT_ID, "", "p", ("s",))
                for _ in range(min(5_000, n - start))
            ]
            store.add_tasks(tasks, "waiting-for-ep")
            store.complete_tasks(
                {
                    "task_id": t.task_id,
                    "status": "success",
                    "result": f"11\n{start + i}",
                    "completion_t": "1",
                }
                for i, t in enumerate(tasks)
            )
            ids.extend(t.task_id for t in tasks)
    finally:
        store.close()
    return ids


def _kill_during_purge(tmp_path: Path, records: int, kill_below: int) -> None:
    """Seed ``records`` results, start ``gcgate purge --older-than 0`` (the real CLI),
    kill -9 the daemon once Status counts fewer than ``kill_below`` records (the
    purge is under way: chunks commit one by one), then check the store it left."""
    daemon = Daemon(tmp_path / "state", workers=1)
    ids = _seed(daemon.state_dir / "store", records)
    daemon.start()
    try:
        with Client(socket_path=daemon.socket_path) as gcc:
            assert gcc.status()["store"]["task_records"] == records
            purge = subprocess.Popen(
                [GCGATE, "purge", "--older-than", "0"],
                env=daemon.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            wait_until(
                f"the purge below {kill_below} records",
                lambda: gcc.status()["store"]["task_records"] < kill_below,
                WAIT,
            )
        daemon.kill()
        out, err = purge.communicate(timeout=WAIT)
        assert purge.returncode == 3, (out, err)  # unreachable: the daemon went mid-call

        # The store as the killed daemon left it: every id kept, or gone with its
        # tombstone (a chunk deletes and buries in one transaction).
        store = Store(daemon.state_dir / "store", size_limit_bytes=1 << 40, retention_seconds=1e9)
        try:
            kept = {t for t, r in store.get_tasks(ids).items() if r is not None}
            buried = set(store.tombstones([t for t in ids if t not in kept]))
            on_disk = store.counts()["task_records"]
        finally:
            store.close()
        assert 0 < len(kept) < records, "the kill came before or after the purge, not during"
        assert on_disk == len(kept)
        assert kept | buried == set(ids) and not kept & buried

        daemon.start()  # the same state dir
        with Client(socket_path=daemon.socket_path) as gcc:
            status = gcc.status()
            assert status["tasks"]["pending"] == 0
            assert status["store"]["task_records"] == len(kept)
            assert status["store"]["damaged_moved_to"] == ""
            results = gcc.get_batch_result(ids)
            expected = {t: i for i, t in enumerate(ids) if t in kept}
            assert {t: r["result"] for t, r in results.items() if "result" in r} == expected
            for task_id in sorted(buried)[:50]:
                with pytest.raises(NotFound, match="was purged"):
                    gcc.get_result(task_id)

            again = gcc.purge_tasks(older_than=0)  # finishes the job

            assert again["tasks"] == len(kept)
            assert gcc.status()["store"]["task_records"] == 0
            assert gcc.purge_tasks(older_than=0, dry_run=True)["tasks"] == 0
            with pytest.raises(NotFound, match="was purged"):
                gcc.get_result(next(iter(kept)))
        assert daemon.stop() == 0, daemon.log()
    finally:
        daemon.close()


@pytest.mark.slow
def test_a_purge_killed_midway_leaves_each_record_whole_or_gone(tmp_path: Path) -> None:
    """kill -9 as soon as the first chunks committed (20,000 records, 40 chunks)."""
    _kill_during_purge(tmp_path, 20_000, 20_000)


@pytest.mark.soak
def test_a_purge_killed_halfway_through_50k_records(tmp_path: Path) -> None:
    _kill_during_purge(tmp_path, 50_000, 25_000)


# ------------------------------------------- a full store recovers by itself


@script_function
def blob(n):
    import os

    return os.urandom(n)  # incompressible: each result takes about n bytes stored


#: Each result's size (about 106 KB stored) and the store's limit (2 MiB).
BLOB, LIMIT_MB = 100_000, 2


def _present(gcc: Client) -> set[str]:
    """Ids of the records the store holds, read without retrieving any result."""
    return {t["task_id"] for t in gcc.list_tasks(limit=1000)}


def test_a_full_store_evicts_retrieved_results_oldest_first_and_never_unread_ones(
    tmp_path: Path,
) -> None:
    daemon = ConfiguredDaemon(tmp_path / "state", {"store_size_limit_mb": LIMIT_MB}, workers=1)
    limit = LIMIT_MB * 1024 * 1024
    for _ in serve(daemon.start()):
        with Client(socket_path=daemon.socket_path) as gcc:
            big, small = gcc.register_function(blob), gcc.register_function(echo)

            def fill(n: int, function_id: str = big) -> list[str]:
                batch = gcc.create_batch()
                for _ in range(n):
                    batch.add(function_id, args=(BLOB,))
                ids = gcc.batch_run("local", batch)["tasks"][function_id]
                settle(gcc)
                return ids

            # One submission into an empty store; the results then pass the limit.
            ids = fill(22)
            retrieved, unread = ids[:16], ids[16:]  # retrieved: oldest first
            for task_id in retrieved:  # first retrievals, in this order
                assert len(gcc.get_result(task_id)) == BLOB
            assert gcc.status()["store"]["size_bytes"] > limit

            # A small submission that does not fit: room is made, and it runs.
            first = gcc.run(1, endpoint_id="local", function_id=small)
            assert gcc.get_result(first, wait=WAIT) == 1
            kept = _present(gcc)
            evicted = [t for t in retrieved if t not in kept]
            assert evicted, "nothing was evicted"
            assert evicted == retrieved[: len(evicted)]  # retrieved longest ago first
            assert len(evicted) < len(retrieved)  # only what the room needed
            assert set(unread) <= kept
            assert gcc.status()["store"]["size_bytes"] <= limit

            # Unread results alone fill it: eviction cannot help, the submission is
            # refused, naming the way out.
            more = fill(25)
            with pytest.raises(ResourceExhausted) as refused:
                gcc.run(2, endpoint_id="local", function_id=small)
            assert "gcgate purge" in refused.value.message
            assert "store_size_limit_mb" in refused.value.message
            kept = _present(gcc)
            assert set(unread + more) <= kept  # unread: never evicted
            assert not {*retrieved, first} & kept  # every retrieved one went first

            purge = subprocess.run(
                [GCGATE, "purge", "--older-than", "0", "--json"],
                env=daemon.env,
                capture_output=True,
                text=True,
                timeout=WAIT,
            )
            assert purge.returncode == 0, purge.stderr
            assert json.loads(purge.stdout)["tasks"] == len(unread) + len(more)
            assert (
                gcc.get_result(gcc.run(3, endpoint_id="local", function_id=small), wait=WAIT) == 3
            )
