"""The embedded local endpoint, with real worker processes.

Payloads are built, and results read, with globus_compute_sdk's ComputeSerializer:
the workers must understand exactly what the SDK sends and produce exactly what
the SDK reads.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import pytest
from gcgate.constants import LOCAL_ENDPOINT_ID
from gcgated.backends.base import Outcome, TaskSpec
from gcgated.backends.local import LocalBackend
from gcgated.backends.local.pool import WorkerPool
from gcgated.caller import DAEMON
from globus_compute_sdk.serialize import ComputeSerializer

SDK = ComputeSerializer()
T = TypeVar("T")
TIMEOUT = 30.0
JSON_DATA = "globus_compute_sdk.serialize.JSONData"


def run(coro: Awaitable[T], timeout: float = TIMEOUT) -> T:
    """Run a coroutine on a fresh event loop, failing (not hanging) after ``timeout``."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def make_function(source: str, name: str) -> Callable[..., Any]:
    """Define a function as if in ``__main__``, so dill pickles it by value.

    Functions of this test module would be pickled by reference, and the workers
    cannot import the test module.
    """
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(source, namespace)
    return namespace[name]


def function_code(fn: Callable[..., Any]) -> str:
    return SDK.pack_buffers([SDK.serialize(fn)])


def payload(*args: Any, **kwargs: Any) -> str:
    return SDK.pack_buffers([SDK.serialize(args), SDK.serialize(kwargs)])


def task(
    code: str, *args: Any, function_id: str | None = None, rs: Iterable[str] = (), **kwargs: Any
) -> TaskSpec:
    return TaskSpec(
        task_id=str(uuid.uuid4()),
        function_id=function_id or str(uuid.uuid5(uuid.NAMESPACE_OID, code)),
        function_code=code,
        payload=payload(*args, **kwargs),
        result_serializers=tuple(rs),
    )


DOUBLE = function_code(make_function("def double(x):\n    return x * 2\n", "double"))
DIVIDE_BY_ZERO = function_code(
    make_function("def divide_by_zero(x):\n    return x / 0\n", "divide_by_zero")
)
EXIT_3 = function_code(make_function("def exit_3():\n    import os\n    os._exit(3)\n", "exit_3"))
SEGFAULT = function_code(
    make_function("def segfault():\n    import ctypes\n    ctypes.string_at(0)\n", "segfault")
)
SLEEP = function_code(make_function("def nap(s):\n    import time\n    time.sleep(s)\n", "nap"))


class Collector:
    """The ``on_outcome`` callback: records outcomes and lets tests await them."""

    def __init__(self) -> None:
        self.outcomes: dict[str, Outcome] = {}
        self.calls = 0
        self._waiters: list[tuple[set[str], asyncio.Future[None]]] = []

    def __call__(self, outcome: Outcome) -> None:
        self.calls += 1
        assert outcome.task_id not in self.outcomes, f"duplicate outcome for {outcome.task_id}"
        self.outcomes[outcome.task_id] = outcome
        for ids, future in self._waiters:
            if not future.done() and ids <= self.outcomes.keys():
                future.set_result(None)

    async def wait(self, tasks: Iterable[TaskSpec]) -> list[Outcome]:
        """The outcomes of ``tasks``, in their order, once all have arrived."""
        tasks = list(tasks)
        ids = {t.task_id for t in tasks}
        if not ids <= self.outcomes.keys():
            future = asyncio.get_running_loop().create_future()
            self._waiters.append((ids, future))
            await future
        return [self.outcomes[t.task_id] for t in tasks]


async def with_backend(
    body: Callable[[LocalBackend, Collector], Awaitable[T]], workers: int = 2, prefetch: int = 8
) -> T:
    backend = LocalBackend(workers=workers, prefetch=prefetch)
    collector = Collector()
    await backend.start(collector)
    try:
        return await body(backend, collector)
    finally:
        await backend.stop()


def result_of(outcome: Outcome) -> Any:
    assert outcome.status == "success", outcome.exception
    assert outcome.result is not None
    return SDK.deserialize(outcome.result)


def pool_of(backend: LocalBackend) -> WorkerPool:
    pool = backend._pool
    assert pool is not None
    return pool


# ----------------------------------------------------------------------------- tests


def test_many_tasks_all_get_correct_results() -> None:
    async def body(backend: LocalBackend, collector: Collector) -> None:
        assert backend.describe()["state"] == "ready"
        tasks = [task(DOUBLE, x) for x in range(200)]
        backend.dispatch(tasks[:50], DAEMON)
        backend.dispatch(tasks[50:], DAEMON)
        outcomes = await collector.wait(tasks)
        assert [result_of(o) for o in outcomes] == [x * 2 for x in range(200)]
        assert collector.calls == 200
        pids = set(pool_of(backend).pids())
        for outcome in outcomes:
            assert outcome.completion_t > 0
            assert set(outcome.details) >= {
                "worker_pid",
                "hostname",
                "python_version",
                "endpoint_id",
            }
            assert outcome.details["worker_pid"] in pids
            assert outcome.details["endpoint_id"] == LOCAL_ENDPOINT_ID
        # Both workers took part, and nothing is left over.
        assert {o.details["worker_pid"] for o in outcomes} == pids
        assert backend.describe() == {
            "state": "ready",
            "endpoint_id": LOCAL_ENDPOINT_ID,
            "workers": 2,
            "queued": 0,
            "running": 0,
        }

    run(with_backend(body))


def test_function_cache_stays_consistent_under_eviction() -> None:
    """More distinct functions than cache slots, interleaved: code is re-sent on misses."""
    codes = [
        function_code(make_function(f"def add_{i}(x):\n    return x + {i}\n", f"add_{i}"))
        for i in range(5)
    ]

    async def body() -> None:
        collector = Collector()
        pool = WorkerPool(2, 3, collector, function_cache_size=2)
        await pool.start()
        try:
            tasks = [task(codes[(x * 7) % 5], x) for x in range(60)]
            pool.submit(tasks)
            outcomes = await collector.wait(tasks)
            assert [result_of(o) for o in outcomes] == [x + (x * 7) % 5 for x in range(60)]
        finally:
            await pool.stop()

    run(body())


def test_exception_gives_traceback_from_user_frame() -> None:
    async def body(backend: LocalBackend, collector: Collector) -> None:
        bad = task(DIVIDE_BY_ZERO, 1)
        good = task(DOUBLE, 4)
        backend.dispatch([bad, good], DAEMON)
        failed, ok = await collector.wait([bad, good])
        assert failed.status == "failed"
        assert failed.result is None
        text = failed.exception or ""
        assert text.startswith("Traceback (most recent call last):\n")
        assert "in divide_by_zero" in text
        assert text.rstrip().endswith("ZeroDivisionError: division by zero")
        assert "call_user_function" not in text  # the worker's own frame is not shown
        assert failed.details["worker_pid"] in pool_of(backend).pids()
        assert result_of(ok) == 8

    run(with_backend(body))


@pytest.mark.parametrize(
    ("code", "expected"),
    [(EXIT_3, "(exit code 3)"), (SEGFAULT, "(exit code -11 / signal SIGSEGV)")],
    ids=["os._exit", "segfault"],
)
def test_dead_worker_fails_only_its_task_and_is_replaced(code: str, expected: str) -> None:
    async def body(backend: LocalBackend, collector: Collector) -> None:
        pool = pool_of(backend)
        before = set(pool.pids())
        crash = task(code)
        # Two workers, least-loaded first: every other task lands behind the crash.
        others = [task(DOUBLE, x) for x in range(20)]
        backend.dispatch([crash, *others], DAEMON)
        [victim] = [w for w in pool._workers.values() if w.inflight[0] is crash]
        assert len(victim.inflight) == 8  # seven tasks wait behind the crash
        [dead] = await collector.wait([crash])
        assert dead.status == "failed"
        pid = dead.details["worker_pid"]
        assert dead.exception == (
            f"Worker process {pid} died {expected} while running this task;"
            " the task was not retried."
        )
        outcomes = await collector.wait(others)
        assert [result_of(o) for o in outcomes] == [x * 2 for x in range(20)]
        await pool.wait_full()
        after = set(pool.pids())
        assert len(after) == 2
        assert pid in before and pid not in after
        assert backend.describe()["state"] == "ready"
        # The replacement serves tasks too (fresh function cache: code re-sent).
        more = [task(DOUBLE, x) for x in range(10)]
        backend.dispatch(more, DAEMON)
        assert [result_of(o) for o in await collector.wait(more)] == [x * 2 for x in range(10)]
        assert collector.calls == 31

    run(with_backend(body))


def test_json_result_serializer() -> None:
    async def body(backend: LocalBackend, collector: Collector) -> None:
        t = task(DOUBLE, 21, rs=[JSON_DATA])
        backend.dispatch([t], DAEMON)
        [outcome] = await collector.wait([t])
        assert outcome.status == "success", outcome.exception
        assert outcome.result == "11\n42"
        assert SDK.deserialize(outcome.result) == 42

    run(with_backend(body))


def test_result_that_no_serializer_accepts_fails_clearly() -> None:
    make_set = function_code(make_function("def make_set():\n    return {1, 2}\n", "make_set"))

    async def body(backend: LocalBackend, collector: Collector) -> None:
        t = task(make_set, rs=[JSON_DATA])
        backend.dispatch([t], DAEMON)
        [outcome] = await collector.wait([t])
        assert outcome.status == "failed"
        text = outcome.exception or ""
        assert "result could not be serialized" in text
        assert "JSONData" in text and "set" in text

    run(with_backend(body))


def test_large_payloads_and_the_result_size_limit() -> None:
    """Multi-megabyte messages cross the protocol intact; results over 10 MB fail."""
    blob = function_code(make_function("def blob(s, n):\n    return s * n\n", "blob"))

    async def body(backend: LocalBackend, collector: Collector) -> None:
        big = task(blob, "ab" * 1_500_000, 1)  # 3 MB in, 3 MB out
        too_big = task(blob, "x", 11 * 1024 * 1024)
        backend.dispatch([big, too_big], DAEMON)
        ok, failed = await collector.wait([big, too_big])
        assert result_of(ok) == "ab" * 1_500_000
        assert failed.status == "failed"
        assert "MaxResultSizeExceeded" in (failed.exception or "")
        assert "limit of 10000000B" in (failed.exception or "")
        assert "setting local_max_result_mb" in (failed.exception or "")

    run(with_backend(body))


def test_prints_and_stdin_do_not_touch_the_protocol() -> None:
    noisy = function_code(
        make_function(
            "def noisy(x):\n"
            "    import os, sys\n"
            '    print(\'{"op": "done", "id": "bogus"}\')\n'
            "    print('partial line without newline', end='')\n"
            "    sys.stdout.flush()\n"
            "    os.write(1, b'\\nraw write to fd 1\\n')\n"
            "    sys.stderr.write('to stderr\\n')\n"
            "    assert sys.stdin.read() == ''\n"
            "    return x + 1\n",
            "noisy",
        )
    )

    async def body(backend: LocalBackend, collector: Collector) -> None:
        tasks = [task(noisy, x) for x in range(10)]
        backend.dispatch(tasks, DAEMON)
        outcomes = await collector.wait(tasks)
        assert [result_of(o) for o in outcomes] == [x + 1 for x in range(10)]

    run(with_backend(body))


def test_source_registered_function() -> None:
    source = "import math\n\ndef hyp(a, b=4):\n    return math.hypot(a, b)\n"
    broken = "def halve(x):\n    return x / 0  # oops\n"

    def source_task(code: str, name: str, *args: Any) -> TaskSpec:
        return TaskSpec(
            task_id=str(uuid.uuid4()),
            function_id=str(uuid.uuid4()),
            function_code=code,
            payload=payload(*args),
            serialized=False,
            function_name=name,
        )

    async def body(backend: LocalBackend, collector: Collector) -> None:
        ok = source_task(source, "hyp", 3)
        bad = source_task(broken, "halve", 1)
        missing = source_task(source, "nope", 1)
        backend.dispatch([ok, bad, missing], DAEMON)
        ok_out, bad_out, missing_out = await collector.wait([ok, bad, missing])
        assert result_of(ok_out) == 5.0
        assert bad_out.status == "failed"
        assert "in halve" in (bad_out.exception or "")
        assert "return x / 0  # oops" in (bad_out.exception or "")  # source line shown
        assert "ZeroDivisionError" in (bad_out.exception or "")
        assert missing_out.status == "failed"
        assert "does not define 'nope'" in (missing_out.exception or "")

    run(with_backend(body))


def test_undecodable_function_and_arguments_fail_clearly() -> None:
    async def body(backend: LocalBackend, collector: Collector) -> None:
        garbage_fn = TaskSpec(
            task_id=str(uuid.uuid4()),
            function_id="f-garbage",
            function_code="9\n01\nnotb64",
            payload=payload(1),
        )
        # Same function again: the worker has it cached (as a failure) by now.
        again = TaskSpec(**{**garbage_fn.__dict__, "task_id": str(uuid.uuid4())})
        garbage_args = TaskSpec(
            task_id=str(uuid.uuid4()),
            function_id="f-double",
            function_code=DOUBLE,
            payload="5\n00\nxx",
        )
        backend.dispatch([garbage_fn, again, garbage_args], DAEMON)
        outcomes = await collector.wait([garbage_fn, again, garbage_args])
        assert all(o.status == "failed" for o in outcomes)
        assert "Could not deserialize the task's function" in (outcomes[0].exception or "")
        assert outcomes[1].exception == outcomes[0].exception
        assert "Could not deserialize the task's arguments" in (outcomes[2].exception or "")

    run(with_backend(body, workers=1))


def test_endpoint_status_and_metadata() -> None:
    async def body(backend: LocalBackend, collector: Collector) -> None:
        status = await backend.endpoint_status(LOCAL_ENDPOINT_ID, DAEMON)
        assert status["status"] == "online"
        details = status["details"]
        assert details["total_workers"] == 2
        assert details["idle_workers"] == 2
        assert details["pending_tasks"] == 0
        assert details["outstanding_tasks"] == 0
        assert details["managers"] == 1
        assert details["active_managers"] == 1

        # One task running on each worker: no idle workers, one pending.
        naps = [task(SLEEP, 30) for _ in range(3)]
        backend.dispatch(naps, DAEMON)
        details = (await backend.endpoint_status(LOCAL_ENDPOINT_ID, DAEMON))["details"]
        assert details["idle_workers"] == 0
        assert details["outstanding_tasks"] == 3
        assert details["pending_tasks"] == 1
        assert backend.describe()["running"] == 2

        metadata = await backend.endpoint_metadata(LOCAL_ENDPOINT_ID, DAEMON)
        assert metadata["uuid"] == LOCAL_ENDPOINT_ID
        assert metadata["name"] == "gcgate-local"
        assert metadata["status"] == "online"
        assert metadata["local"] is True
        assert metadata["ip"] == "127.0.0.1"
        assert metadata["hostname"]
        assert "endpoint_type" in metadata

    run(with_backend(body))


def test_stop_kills_workers_and_drops_unfinished_tasks() -> None:
    async def body() -> None:
        backend = LocalBackend(workers=2)
        collector = Collector()
        await backend.start(collector)
        pids = pool_of(backend).pids()
        assert len(pids) == 2
        quick = task(DOUBLE, 1)
        backend.dispatch([quick], DAEMON)
        await collector.wait([quick])
        backend.dispatch([task(SLEEP, 60) for _ in range(4)], DAEMON)
        started = time.monotonic()
        await backend.stop()
        assert time.monotonic() - started < 10
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        assert collector.calls == 1  # the sleeping tasks are not reported
        assert backend.describe()["state"] == "stopped"
        await backend.stop()  # idempotent

    run(body())


def test_start_fails_clearly_when_workers_cannot_start(monkeypatch: pytest.MonkeyPatch) -> None:
    import gcgated.backends.local.pool as pool_module

    monkeypatch.setattr(pool_module.sys, "executable", "/bin/false")

    async def body() -> None:
        backend = LocalBackend(workers=2)
        with pytest.raises(RuntimeError, match="exited before it was ready"):
            await backend.start(Collector())

    run(body())
