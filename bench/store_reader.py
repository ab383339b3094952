"""One fresh process of the cached-result figure: read results, print the timings.

``python -m bench.store_reader gcgate|diskcache SOURCE IDS_FILE``: SOURCE is the
daemon's socket (gcgate) or its store directory (diskcache). With
one id in IDS_FILE the process reads it with ``get_result`` (or one diskcache
lookup); with more, all of them with ``get_batch_result`` (or a lookup each).
Both sides end with deserialized results. Imports come before the clock starts;
``open_s`` is from before ``Client()`` (or opening the cache) to having every
result, ``call_s`` the reading alone.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

# gcgate imports dill on first use (a no-op result is pickled by dill's strategy);
# imported here, before either clock, so neither side's read pays an import.
import dill  # noqa: F401
import diskcache
from gcgate import Client
from gcgate.serialize import Serializer
from gcgated.store.jsondisk import JSONTextDisk


def _gcgate(source: str, ids: list[str]) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    with Client(socket_path=source) as client:
        t1 = time.perf_counter()
        if len(ids) == 1:
            results: Any = [client.get_result(ids[0])]
        else:
            results = [t["result"] for t in client.get_batch_result(ids).values()]
        t2 = time.perf_counter()
    return t2 - t0, t2 - t1, len(results)


def _diskcache(source: str, ids: list[str]) -> tuple[float, float, int]:
    # The daemon's own Disk class, so the records decode exactly as the daemon
    # wrote them; its task records are the keys ``tasks:<task id>``.
    serializer = Serializer()
    t0 = time.perf_counter()
    cache = diskcache.Cache(source, disk=JSONTextDisk)
    t1 = time.perf_counter()
    results = [serializer.deserialize(cache[f"tasks:{task_id}"]["result"]) for task_id in ids]
    t2 = time.perf_counter()
    cache.close()
    return t2 - t0, t2 - t1, len(results)


def main(argv: list[str]) -> int:
    side, source, ids_file = argv
    ids = Path(ids_file).read_text().split()
    open_s, call_s, n = {"gcgate": _gcgate, "diskcache": _diskcache}[side](source, ids)
    if n != len(ids):
        raise SystemExit(f"{side}: {n} results for {len(ids)} ids")
    print(json.dumps({"open_s": open_s, "call_s": call_s}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
