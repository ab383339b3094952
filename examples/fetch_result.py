"""A second, separate process: fetch earlier results by task id from the daemon's store.

The process that submitted the tasks has exited; with the plain SDK its results
would be gone from memory. gcgate's daemon kept them on disk.
"""

from __future__ import annotations

import json
import sys

from gcgate import Client, TaskExecutionFailed


def main(ids_file: str) -> None:
    with open(ids_file) as f:
        ids = json.load(f)
    gcc = Client()
    print(f"hello task {ids['hello']} -> {gcc.get_result(ids['hello'])!r}")
    print(f"batch task {ids['batch_first']} -> {gcc.get_result(ids['batch_first'])!r}")
    try:
        gcc.get_result(ids["failing"])
    except TaskExecutionFailed as exc:
        print(f"failing task {ids['failing']} -> still failed: {str(exc).strip().splitlines()[-1]}")


if __name__ == "__main__":
    main(sys.argv[1])
