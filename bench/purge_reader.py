"""The other client of the purge figure: ``get_result`` in a loop, each call timed.

``python -m bench.purge_reader SOCKET IDS_FILE``: opens a ``Client``, reads every
id once (their first retrieval, a write, stays out of the timings), prints
``ready``, waits for a line on stdin, then calls ``get_result`` on the ids in turn,
one at a time: until a second line arrives on stdin if the first was ``go``, or
as many times as the first line says. Prints one JSON line: per call,
``[start, seconds]`` (``start`` by ``time.time()``, the bench's clock too).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from gcgate import Client


def main(argv: list[str]) -> int:
    socket, ids_file = argv
    ids = Path(ids_file).read_text().split()
    stop = threading.Event()
    calls: list[tuple[float, float]] = []
    with Client(socket_path=socket) as client:
        client.get_batch_result(ids)
        print("ready", flush=True)
        order = sys.stdin.readline().strip()
        if order == "go":
            threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
        limit = int(order) if order != "go" else -1
        i = 0
        while not stop.is_set() and i != limit:
            task_id = ids[i % len(ids)]
            # Each call asks the daemon (a Client keeps the final results it got).
            client._task_status_table.pop(task_id, None)
            started, t0 = time.time(), time.perf_counter()
            client.get_result(task_id)
            calls.append((started, time.perf_counter() - t0))
            i += 1
    print(json.dumps(calls))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
