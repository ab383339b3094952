"""Purging the result store: how fast, and what it costs the daemon's other clients.

The store holds ``records`` final results of one task group (written with the
store's own API before the daemon starts, as a daemon that ran them leaves them)
and 1,000 of another group. ``Client.purge_tasks(task_group_id=...)`` deletes the
first group (every record is read: the group is in the record's JSON). Meanwhile
another client process (:mod:`bench.purge_reader`) calls ``get_result`` on the
other group's results one at a time; its latencies during the purge are compared
with the same calls, from the same process, with no purge running (the baseline).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from gcgate import Client
from gcgate.constants import LOCAL_ENDPOINT_ID
from gcgated.store import NewTask, Store

from bench.common import ROOT, WAIT, BenchDaemon, Row, Settings, median, percentile

#: Results the reader reads (another task group, not purged).
READER_RECORDS = 1_000
#: Records written per transaction when seeding.
SEED_CHUNK = 5_000


def seed(store_dir: Path, n: int, task_group_id: str) -> list[str]:
    """``n`` final results of ``task_group_id``, small (JSON), never retrieved."""
    store = Store(store_dir, size_limit_bytes=1 << 40, retention_seconds=30 * 86400)
    function_id, ids = str(uuid.uuid4()), []
    try:
        for start in range(0, n, SEED_CHUNK):
            tasks = [
                NewTask(str(uuid.uuid4()), function_id, LOCAL_ENDPOINT_ID, task_group_id, "p", ())
                for _ in range(min(SEED_CHUNK, n - start))
            ]
            store.add_tasks(tasks, "waiting-for-ep")
            store.complete_tasks(
                {"task_id": t.task_id, "status": "success", "result": f"11\n{start + i}"}
                for i, t in enumerate(tasks)
            )
            ids.extend(t.task_id for t in tasks)
    finally:
        store.close()
    return ids


class Reader:
    """One :mod:`bench.purge_reader` process, ready once constructed."""

    def __init__(self, socket: Path, ids_file: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.purge_reader", str(socket), str(ids_file)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._until_told = False
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("purge figure: the reader did not start")

    def _say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{line}\n")
        self.proc.stdin.flush()

    def start(self) -> None:
        """Call until :meth:`calls` is asked for."""
        self._say("go")
        self._until_told = True

    def count(self, n: int) -> None:
        """Make ``n`` calls, then stop."""
        self._say(str(n))

    def calls(self) -> list[tuple[float, float]]:
        """Its calls, ``(start, seconds)``, once it stopped (told to, if started)."""
        if self._until_told:
            self._say("stop")
        out, _ = self.proc.communicate(timeout=WAIT)
        if self.proc.returncode != 0:
            raise RuntimeError("purge figure: the reader failed")
        return [(start, seconds) for start, seconds in json.loads(out)]


def purge(settings: Settings) -> list[Row]:
    records = settings.pick(100_000, 5_000)
    state = Path(tempfile.mkdtemp(prefix="purge-", dir=settings.work_dir)) / "state"
    doomed, kept = str(uuid.uuid4()), str(uuid.uuid4())
    seed(state / "store", records, doomed)
    reader_ids = seed(state / "store", READER_RECORDS, kept)
    ids_file = state.parent / "ids.txt"
    ids_file.write_text("\n".join(reader_ids))
    daemon = BenchDaemon(state, workers=settings.workers).start()
    try:
        with Client(socket_path=daemon.socket_path) as client:
            assert client.status()["store"]["task_records"] == records + READER_RECORDS
            # During the purge.
            reader = Reader(daemon.socket_path, ids_file)
            reader.start()
            began = time.time()
            answer = client.purge_tasks(task_group_id=doomed)
            ended = time.time()
            calls = reader.calls()
            if answer["tasks"] != records:
                raise RuntimeError(f"purge figure: {answer['tasks']} purged of {records}")
            during = [s for start, s in calls if began <= start <= ended]
            if not during:
                raise RuntimeError("purge figure: no get_result call during the purge")
            # The same calls with no purge running, as many as during it.
            reader = Reader(daemon.socket_path, ids_file)
            reader.count(len(during))
            idle = [s for _, s in reader.calls()]
            assert client.status()["store"]["task_records"] == READER_RECORDS
    finally:
        daemon.close()
    seconds = ended - began
    n_during = len(during)
    return [
        Row(
            "purge",
            f"PurgeTasks of {records:,} records (by task group)",
            "s",
            seconds,
            note=f"{records / seconds:,.0f} records/s; {answer['bytes_freed'] / 1e6:.1f} MB freed",
        ),
        Row(
            "purge",
            "get_result from another client during the purge, p99",
            "ms",
            percentile(during, 99) * 1e3,
            percentile(idle, 99) * 1e3,
            baseline_name="same calls, no purge",
            note=f"{n_during} calls each, one at a time",
        ),
        Row(
            "purge",
            "get_result from another client during the purge, p50",
            "ms",
            median(during) * 1e3,
            median(idle) * 1e3,
            baseline_name="same calls, no purge",
            note=f"{n_during} calls each",
        ),
    ]
