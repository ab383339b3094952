"""The embedded local endpoint against ``concurrent.futures.ProcessPoolExecutor``.

Both sides get the same number of worker processes and run :func:`bench.noop.noop`.
Before timing, each side is warmed up: the daemon's workers and the pool's
processes are started, the function is registered and has run once in every
worker (so the daemon's workers have deserialized and cached it).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
from gcgate import Client, Executor
from gcgate.constants import LOCAL_ENDPOINT_ID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness import script_function

from bench.common import (
    WAIT,
    BenchDaemon,
    Row,
    Settings,
    Target,
    median,
    percentile,
    running_daemon,
    timed,
)
from bench.noop import noop
from bench.procs import cpu_split

PPE = "ProcessPoolExecutor"


def _warm_up(run_once: Callable[[], object], workers: int) -> None:
    """Enough calls that every worker has started and run the function."""
    for _ in range(4 * workers):
        run_once()


@contextmanager
def _warm_sides(
    settings: Settings, name: str
) -> Iterator[tuple[BenchDaemon, Client, str, cf.ProcessPoolExecutor]]:
    """A daemon, a client with ``noop`` registered (its id) and the baseline pool,
    every worker on both sides started and having run ``noop``."""
    with (
        running_daemon(settings, name) as daemon,
        Client(socket_path=daemon.socket_path) as client,
        _pool(settings) as pool,
    ):
        function_id = client.register_function(script_function(noop))

        def run_once() -> object:
            task_id = client.run(endpoint_id=LOCAL_ENDPOINT_ID, function_id=function_id)
            return client.get_result(task_id, wait=WAIT)

        _warm_up(run_once, settings.workers)
        _warm_up(lambda: pool.submit(noop).result(timeout=WAIT), settings.workers)
        yield daemon, client, function_id, pool


def _pool(settings: Settings) -> cf.ProcessPoolExecutor:
    """The baseline pool. Spawned, not forked: this process has gRPC threads, and
    forking a threaded process is unsafe (as the daemon's workers are spawned too).
    Worker start-up is excluded by the warm-up either way."""
    return cf.ProcessPoolExecutor(
        max_workers=settings.workers, mp_context=multiprocessing.get_context("spawn")
    )


def roundtrip(settings: Settings) -> list[Row]:
    """``run()`` + ``get_result(wait=...)`` one at a time, against ``submit().result()``.

    The two sides alternate call by call, so a change in machine load hits both.
    """
    n = settings.pick(1000, 100)
    with _warm_sides(settings, "roundtrip") as (daemon, client, function_id, pool):
        run_times: list[float] = []

        def gcgate_once() -> object:
            t0 = time.perf_counter()
            task_id = client.run(endpoint_id=LOCAL_ENDPOINT_ID, function_id=function_id)
            run_times.append(time.perf_counter() - t0)
            return client.get_result(task_id, wait=WAIT)

        def pool_once() -> object:
            return pool.submit(noop).result(timeout=WAIT)

        ours: list[float] = []
        theirs: list[float] = []
        with cpu_split(daemon.pid) as cpu:
            for _ in range(n):
                ours.append(timed(gcgate_once))
                theirs.append(timed(pool_once))
        empty_rpc = _empty_rpc_times(daemon.socket_path, n)
    target = Target("<=", 1.5)
    rows = [
        Row(
            "roundtrip",
            f"run + get_result, p{q}",
            "ms",
            percentile(ours, q) * 1e3,
            percentile(theirs, q) * 1e3,
            target,
            PPE,
            f"{n} calls each"
            + (f"; daemon CPU {cpu.daemon / n * 1e6:.0f} us per call" if q == 50 else ""),
        )
        for q in (50, 99)
    ]
    # Where the time goes, for whoever works on it (no targets).
    rows.append(
        Row("roundtrip", "of which run() alone, p50", "ms", percentile(run_times, 50) * 1e3)
    )
    rows.append(
        Row(
            "roundtrip",
            "one empty RPC (grpc.health Check), p50",
            "ms",
            percentile(empty_rpc, 50) * 1e3,
            note="the floor of each of the 2 RPCs of a round trip",
        )
    )
    return rows


def _empty_rpc_times(socket_path: Path, n: int) -> list[float]:
    """Seconds per call of the cheapest RPC the daemon serves, on a warm channel."""
    with grpc.insecure_channel(f"unix:{socket_path}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest()
        for _ in range(10):
            stub.Check(request, timeout=WAIT)
        return [timed(lambda: stub.Check(request, timeout=WAIT)) for _ in range(n)]


def _throughput(seconds: list[float], n: int) -> float:
    return n / median(seconds)


def batch(settings: Settings) -> list[Row]:
    """``n`` tasks by ``batch_run`` + ``get_batch_result(wait=...)``, against ``pool.map``.

    Timed from building the batch (serializing the arguments is part of submitting)
    to having every result; the median of ``reps`` runs on each side.
    """
    n = settings.pick(10_000, 1_000)
    reps = settings.pick(3, 1)
    with _warm_sides(settings, "batch") as (daemon, client, function_id, pool):

        def gcgate_all() -> None:
            b = client.create_batch()
            for i in range(n):
                b.add(function_id, (i,))
            task_ids = client.batch_run(LOCAL_ENDPOINT_ID, b)["tasks"][function_id]
            results = client.get_batch_result(task_ids, wait=WAIT)
            if len(results) != n or any(t["pending"] or "exception" in t for t in results.values()):
                raise RuntimeError("batch figure: not every task succeeded")

        def pool_all() -> None:
            if len(list(pool.map(noop, range(n), timeout=WAIT))) != n:
                raise RuntimeError("batch figure: pool.map lost results")

        with cpu_split(daemon.pid) as cpu:
            ours = [timed(gcgate_all) for _ in range(reps)]
        theirs = [timed(pool_all) for _ in range(reps)]
    return [
        Row(
            "batch",
            f"batch_run + get_batch_result, {n:,} tasks",
            "tasks/s",
            _throughput(ours, n),
            _throughput(theirs, n),
            Target(">=", 0.7),
            f"{PPE}.map",
            f"median of {reps}; gcgate {cpu.per_task_us(n * reps)}",
        )
    ]


def executor(settings: Settings) -> list[Row]:
    """``Executor.submit`` of ``n`` tasks until every future is done, against the pool's."""
    n = settings.pick(10_000, 1_000)
    reps = settings.pick(3, 1)
    with (
        running_daemon(settings, "executor") as daemon,
        Client(socket_path=daemon.socket_path) as client,
        Executor(endpoint_id=LOCAL_ENDPOINT_ID, client=client) as gce,
        _pool(settings) as pool,
    ):
        fn = script_function(noop)

        def submit_all(ex: cf.Executor, f: Callable[..., object]) -> None:
            futures = [ex.submit(f, i) for i in range(n)]
            done, not_done = cf.wait(futures, timeout=WAIT)
            if not_done or any(fut.exception() is not None for fut in done):
                raise RuntimeError(f"executor figure: {type(ex).__name__} tasks did not succeed")

        _warm_up(lambda: gce.submit(fn).result(timeout=WAIT), settings.workers)
        _warm_up(lambda: pool.submit(noop).result(timeout=WAIT), settings.workers)
        with cpu_split(daemon.pid) as cpu:
            ours = [timed(lambda: submit_all(gce, fn)) for _ in range(reps)]
        theirs = [timed(lambda: submit_all(pool, noop)) for _ in range(reps)]
    return [
        Row(
            "executor",
            f"Executor.submit x {n:,} until all done",
            "tasks/s",
            _throughput(ours, n),
            _throughput(theirs, n),
            Target(">=", 0.6),
            PPE,
            f"median of {reps}; gcgate {cpu.per_task_us(n * reps)}",
        )
    ]
