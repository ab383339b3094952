"""The Globus Compute Client user guide's examples, ported by changing one import.

Run against a gcgate daemon (GCGATE_SOCKET names its socket). Prints each result
and writes the task ids it created to the file named by argv[1] (if given), so a
later, separate process can fetch them from the daemon's result store.
"""

from __future__ import annotations

import json
import sys

from gcgate import Client  # was: from globus_compute_sdk import Client

# The guide uses a tutorial endpoint; gcgate's embedded local endpoint stands in.
tutorial_endpoint = "local"


def platform_func():
    import platform

    return platform.platform()


def hello(firstname, lastname):
    """Say hello to someone."""
    return f"Hello {firstname} {lastname}"


def noisy_multiply(x, y):
    import random
    import time

    time.sleep(random.random() / 10)
    return x * y


def failing():
    raise Exception("deterministic failure")


def main() -> dict[str, str]:
    gcc = Client()
    print(f"connected to gcgated {gcc.status()['version']}")

    # gcgate's get_result/get_batch_result take an optional wait=SECONDS (the daemon
    # pushes the completion); without it they answer at once, like the SDK's.
    func_uuid = gcc.register_function(platform_func)
    task_id = gcc.run(endpoint_id=tutorial_endpoint, function_id=func_uuid)
    print(f"platform_func -> {gcc.get_result(task_id, wait=60)!r}")

    hello_uuid = gcc.register_function(hello)
    hello_task = gcc.run("Bob", "Smith", endpoint_id=tutorial_endpoint, function_id=hello_uuid)
    print(f"hello('Bob', 'Smith') -> {gcc.get_result(hello_task, wait=60)!r}")

    multiply_uuid = gcc.register_function(noisy_multiply)
    batch = gcc.create_batch()
    for x in range(5):
        batch.add(multiply_uuid, args=(x, 2))
    batch_res = gcc.batch_run(tutorial_endpoint, batch)
    task_ids = batch_res["tasks"][multiply_uuid]
    results = gcc.get_batch_result(task_ids, wait=60)  # gcgate: wait for all
    print("noisy_multiply batch:")
    for tid in task_ids:
        print(f"  {tid}: {results[tid]['status']:8} result={results[tid]['result']}")

    failing_uuid = gcc.register_function(failing)
    fail_task = gcc.run(endpoint_id=tutorial_endpoint, function_id=failing_uuid)
    try:
        gcc.get_result(fail_task, wait=60)
    except Exception as exc:
        print(f"failing() raised remotely, as expected: {type(exc).__name__}:")
        print("  " + str(exc).strip().splitlines()[-1])

    status = gcc.get_endpoint_status(tutorial_endpoint)
    print(f"local endpoint status: {status['status']}")
    return {"hello": hello_task, "batch_first": task_ids[0], "failing": fail_task}


if __name__ == "__main__":
    ids = main()
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            json.dump(ids, f)
