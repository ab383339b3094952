"""One client process of the load test (tests/test_load.py starts 16 of them).

Run as ``python tests/load_client.py ENDPOINT SECONDS INDEX`` with ``GCGATE_SOCKET``
set. It connects, registers ``increment`` and prints ``ready``; it then waits
for a line on stdin, so that all processes start their load together, and for
SECONDS cycles through the client's kinds of call:

- ``run`` then ``get_result(wait=)`` of that task;
- ``batch_run`` of a small batch, then ``WatchTasks`` (``Client.watch``) until
  all of it is done;
- ``Executor.submit`` of a few tasks (its own BatchRun and WatchTasks), then
  each future's result;
- ``get_result`` of earlier tasks through a second client, whose cache has
  never seen them (so each one is an RPC).

Inputs are unique across processes (INDEX * 10**7 + n), so every task's result
``x + 1`` is known. The report on stdout (one JSON document) holds every task
id handed out with its input and the result this process received, each call's
latency in seconds by kind, and every error.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

from gcgate import Client, Executor

BATCH = 4
WAIT = 120.0
INPUT_STRIDE = 10**7


def increment(x):
    return x + 1


class LoadClient:
    """The calls of one process, and what it saw of them."""

    def __init__(self, client: Client, reader: Client, executor: Executor, endpoint: str):
        self.client, self.reader, self.executor = client, reader, executor
        self.endpoint = endpoint
        self.function_id = client.register_function(increment)
        #: task id -> [input, result received] (result None until received)
        self.tasks: dict[str, list[Any]] = {}
        self.latency: dict[str, list[float]] = {}
        self.errors: list[str] = []
        self.calls = 0
        self._unread: list[str] = []
        self._next = 0
        self._base = 0

    def inputs(self, count: int) -> list[int]:
        start = self._next
        self._next += count
        return [self._base + n for n in range(start, start + count)]

    def timed(self, kind: str, call: Callable[[], Any]) -> Any:
        started = time.monotonic()
        answer = call()
        self.latency.setdefault(kind, []).append(time.monotonic() - started)
        self.calls += 1
        return answer

    def received(self, task_id: str, result: Any) -> None:
        self.tasks[task_id][1] = result
        self._unread.append(task_id)

    def single(self) -> None:
        (x,) = self.inputs(1)
        task_id = self.timed(
            "Run",
            lambda: self.client.run(x, endpoint_id=self.endpoint, function_id=self.function_id),
        )
        self.tasks[task_id] = [x, None]
        result = self.timed("GetResult(wait)", lambda: self.client.get_result(task_id, wait=WAIT))
        self.received(task_id, result)

    def batch(self) -> None:
        values = self.inputs(BATCH)
        batch = self.client.create_batch()
        for x in values:
            batch.add(self.function_id, args=(x,))
        answer = self.timed("BatchRun", lambda: self.client.batch_run(self.endpoint, batch))
        task_ids = answer["tasks"][self.function_id]
        for task_id, x in zip(task_ids, values, strict=True):
            self.tasks[task_id] = [x, None]
        done = self.timed("WatchTasks", lambda: list(self.client.watch(task_ids, timeout=WAIT)))
        for task in done:
            self.received(task["task_id"], task["result"])

    def executor_round(self) -> None:
        started = time.monotonic()
        futures = [(x, self.executor.submit(increment, x)) for x in self.inputs(BATCH)]
        for x, future in futures:
            result = future.result(timeout=WAIT)
            self.latency.setdefault("Executor future", []).append(time.monotonic() - started)
            self.tasks[future.task_id] = [x, None]
            self.received(future.task_id, result)

    def reread(self) -> None:
        for task_id in self._unread[:BATCH]:
            result = self.timed("GetResult(done)", lambda t=task_id: self.reader.get_result(t))
            if result != self.tasks[task_id][1]:
                self.errors.append(f"reread {task_id}: {result!r} != {self.tasks[task_id][1]!r}")
        del self._unread[:BATCH]

    def run_for(self, seconds: float, index: int) -> float:
        self._base = index * INPUT_STRIDE
        rounds = (self.single, self.batch, self.executor_round, self.reread)
        started = time.monotonic()
        step = 0
        while time.monotonic() - started < seconds:
            work = rounds[step % len(rounds)]
            step += 1
            try:
                work()
            except Exception as exc:  # recorded: the test requires none
                self.errors.append(f"{work.__name__}: {type(exc).__name__}: {exc}")
        return time.monotonic() - started

    def report(self, elapsed: float) -> dict[str, Any]:
        return {
            "seconds": elapsed,
            "tasks": self.tasks,
            "latency": self.latency,
            "errors": self.errors,
            "calls": self.calls,
        }


def main(endpoint: str, seconds: float, index: int) -> None:
    with Client() as client, Client() as reader:
        executor = Executor(endpoint_id=endpoint, client=client)
        try:
            load = LoadClient(client, reader, executor, endpoint)
            print("ready", flush=True)
            sys.stdin.readline()
            elapsed = load.run_for(seconds, index)
        finally:
            executor.shutdown()
    print(json.dumps(load.report(elapsed)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]))
