"""Cached results: gcgate's ``get_result`` from a fresh process against reading diskcache.

Every sample is a new process (:mod:`bench.store_reader`), as a user's script
that asks for a result computed earlier. The results are in the daemon's store
and have never been retrieved (a first retrieval also starts the result's
retention period, one write); the baseline opens the daemon's store database
with diskcache and reads the same records (keys ``tasks:<id>``), deserializing
the results with the same serializer. Each side reads different tasks per process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gcgate import Client
from gcgate.constants import LOCAL_ENDPOINT_ID
from harness import script_function

from bench.common import ROOT, WAIT, Row, Settings, Target, median, running_daemon, wait_idle
from bench.noop import noop

DISKCACHE = "diskcache reads"


def _read(side: str, source: Path, ids: list[str], ids_file: Path) -> dict[str, float]:
    ids_file.write_text("\n".join(ids))
    command = [sys.executable, "-m", "bench.store_reader", side, str(source), str(ids_file)]
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=WAIT)
    if out.returncode != 0:
        raise RuntimeError(f"cached figure: the {side} reader failed:\n{out.stderr}")
    return json.loads(out.stdout)


def cached(settings: Settings) -> list[Row]:
    singles = settings.pick(20, 3)
    batch_size = settings.pick(10_000, 1_000)
    reps = settings.pick(3, 1)
    with (
        running_daemon(settings, "cached") as daemon,
        Client(socket_path=daemon.socket_path) as client,
    ):
        function_id = client.register_function(script_function(noop))
        single_ids = [
            client.run(i, endpoint_id=LOCAL_ENDPOINT_ID, function_id=function_id)
            for i in range(singles)
        ]
        batches = []
        for _ in range(reps):
            b = client.create_batch()
            for i in range(batch_size):
                b.add(function_id, (i,))
            batches.append(client.batch_run(LOCAL_ENDPOINT_ID, b)["tasks"][function_id])
        wait_idle(client)

        tasks_db = daemon.state_dir / "store"
        ids_file = daemon.state_dir.parent / "ids.txt"
        samples: dict[tuple[str, str], list[dict[str, float]]] = {}
        for kind, id_sets in (("one", [[t] for t in single_ids]), ("batch", batches)):
            for ids in id_sets:
                for side, source in (("gcgate", daemon.socket_path), ("diskcache", tasks_db)):
                    samples.setdefault((kind, side), []).append(_read(side, source, ids, ids_file))

    def p50(kind: str, side: str, key: str) -> float:
        return median([s[key] for s in samples[(kind, side)]]) * 1e3

    target = Target("<=", 3.0)
    rows = []
    for kind, metric, n in (
        ("one", "get_result, fresh process", singles),
        ("batch", f"get_batch_result of {batch_size:,} ids, fresh process", reps),
    ):
        for key, what in (("call_s", "call alone"), ("open_s", "Client() + call")):
            rows.append(
                Row(
                    "cached",
                    f"{metric}: {what}, p50",
                    "ms",
                    p50(kind, "gcgate", key),
                    p50(kind, "diskcache", key),
                    target,
                    DISKCACHE,
                    f"{n} processes each",
                )
            )
    return rows
