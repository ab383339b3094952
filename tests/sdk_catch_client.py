"""Which ``except`` clauses catch what gcgate raises, in a fresh interpreter.

Run by ``test_sdk_errors.py`` against a daemon (``GCGATE_SOCKET``), with the
Globus SDKs' modules imported before ``import gcgate``, after it (before any
error is built), or never. Argument: a JSON object ``{"mode": "before" | "after"
| "never", "marker": path, "catchers": {case: [class paths]}}``; ``marker`` is
the file whose creation lets the pending task finish. Prints a JSON object:
``{"cases": {case: {"type", "http_status", "caught": {class path: bool}}},
"globus_modules": [...]}``, the class paths of the SDKs left out in mode
``never`` (naming them would import them).
"""

from __future__ import annotations

import importlib
import json
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

SDK_PACKAGES = ("globus_compute_sdk", "globus_sdk")
WAIT = 30.0

spec = json.loads(sys.argv[1])


def import_sdks() -> None:
    importlib.import_module("globus_compute_sdk.errors")
    importlib.import_module("globus_sdk")


if spec["mode"] == "before":
    import_sdks()

from gcgate import Client, Executor  # noqa: E402


def fail(x):
    raise ValueError(f"no good: {x}")


def wait_for_file(path):
    import os
    import time

    while not os.path.exists(path):
        time.sleep(0.01)
    return path


def unreadable():
    # Pickles fine on the worker; unpickling it calls int("not a number").
    class Unreadable:
        def __reduce__(self):
            return (int, ("not a number",))

    return Unreadable()


def resolve(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def raiser(exc: BaseException) -> Callable[[], NoReturn]:
    def raise_it() -> NoReturn:
        raise exc

    return raise_it


def outcome(call: Callable[[], Any], catchers: list[str]) -> dict[str, Any]:
    """What ``call`` raises, and which of ``catchers`` an ``except`` clause catches it with."""
    caught = {}
    for path in catchers:
        if spec["mode"] == "never" and path.startswith(SDK_PACKAGES):
            continue
        try:
            call()
        except resolve(path):
            caught[path] = True
        except Exception:
            caught[path] = False
        else:
            raise AssertionError(f"{call} raised nothing")
    try:
        call()
    except Exception as exc:
        return {
            "type": type(exc).__name__,
            "http_status": getattr(exc, "http_status", None),
            "caught": caught,
        }
    raise AssertionError(f"{call} raised nothing")


def main() -> None:
    with Client() as gcc:  # the socket comes from GCGATE_SOCKET
        if spec["mode"] == "after":
            import_sdks()
        fail_id = gcc.register_function(fail)
        failed = gcc.run(1, endpoint_id="local", function_id=fail_id)
        undecodable = gcc.run(endpoint_id="local", function_id=gcc.register_function(unreadable))
        batch = gcc.create_batch()
        batch.add(fail_id, args=(2,))
        in_batch = gcc.batch_run("local", batch)["tasks"][fail_id][0]
        with Executor(endpoint_id="local", client=gcc) as ex:
            future = ex.submit(fail, 3)
            future.exception(timeout=WAIT)
        finals = gcc.get_tasks([failed, undecodable, in_batch], wait=WAIT)
        # Last, once the others are done: a worker runs its tasks in turn, and this
        # one holds its worker until the marker file exists.
        wait_id = gcc.register_function(wait_for_file)
        pending = gcc.run(spec["marker"], endpoint_id="local", function_id=wait_id)
        calls = {
            "get_result": lambda: gcc.get_result(failed),
            "future": future.result,
            "batch": raiser(finals[in_batch]["exception"]),
            "pending": lambda: gcc.get_result(pending),
            "undecodable": lambda: gcc.get_result(undecodable),
            "not_found": lambda: gcc.get_function(str(uuid.uuid4())),
        }
        try:
            cases = {case: outcome(call, spec["catchers"][case]) for case, call in calls.items()}
        finally:
            Path(spec["marker"]).touch()
    loaded = sorted(m for m in sys.modules if m.partition(".")[0] in SDK_PACKAGES)
    print(json.dumps({"cases": cases, "globus_modules": loaded}))


if __name__ == "__main__":
    main()
