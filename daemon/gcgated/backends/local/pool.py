"""The daemon side of the local endpoint: an asyncio pool of worker processes.

Why this shape:

* Workers are separate interpreters started with ``python -m ...worker``, never
  forks of the daemon (which runs gRPC threads, and forking a threaded process is
  unsafe). The daemon never unpickles user data; it only moves opaque strings.
* The daemon talks to each worker with newline-delimited JSON: tasks go down the
  worker's stdin, outcomes come back on the worker's original stdout, which the
  worker keeps for the protocol only (see ``worker.py``).
* Each worker gets up to ``prefetch`` tasks at once so it never waits for the
  daemon between two short tasks; it runs them in order, so the oldest task it has
  not reported is the one it is running. That is what makes a worker death
  attributable to exactly one task.
* Function code is sent to a worker only the first time it needs a function id.
  Both sides keep an LRU of the same size and apply the same operations in the
  same order (the order tasks are sent), so they always agree on what is cached.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any

from gcgate.constants import LOCAL_ENDPOINT_ID, TaskStatus

from gcgated.timeouts import within

from ..base import Outcome, TaskSpec
from .worker import FUNCTION_CACHE_SIZE, RESULT_SIZE_LIMIT

log = logging.getLogger(__name__)

#: How long a new worker may take to import its modules and say it is ready.
READY_TIMEOUT = 60.0
#: How long ``stop()`` waits after SIGTERM before it sends SIGKILL.
STOP_GRACE = 2.0
#: How long a worker that closed its protocol channel may take to actually exit.
EXIT_GRACE = 5.0
#: Bytes read from a worker per system call; messages may span many reads.
READ_CHUNK = 256 * 1024
#: Back-off between failed attempts to replace a dead worker (doubling, capped).
RESPAWN_DELAY_MIN = 0.5
RESPAWN_DELAY_MAX = 30.0

#: What a cancelled task's record says, by what the cancel did to it.
DROPPED = "Cancelled at a client's request while it waited for a local worker; it did not run."
#: A task its worker had been sent but had not reported starting: the worker skips
#: it, unless it was starting it just then (then it runs, and its outcome is ignored).
SKIPPED = (
    "Cancelled at a client's request before its local worker started it; it did not"
    " run (had the worker been starting it at that moment, its outcome is ignored)."
)
KILLED = (
    "Cancelled at a client's request while it ran: its local worker process {pid}"
    " was killed (and replaced); the task did not finish."
)

#: Pool states, as reported by ``LocalBackend.describe()``.
NEW, STARTING, READY, DEGRADED, STOPPING, STOPPED = (
    "new",
    "starting",
    "ready",
    "degraded",
    "stopping",
    "stopped",
)


#: One encoder for every task message (json.dumps with options builds one per call).
_encode_message = json.JSONEncoder(separators=(",", ":")).encode


class WorkerStartError(RuntimeError):
    """A worker process could not be started or did not report ready in time."""


class _Worker:
    """The daemon's view of one worker process."""

    __slots__ = (
        "cancelled",
        "closed",
        "details",
        "failure",
        "functions",
        "inflight",
        "pid",
        "proc",
        "ready",
        "skipping",
        "watcher",
    )

    def __init__(self, proc: asyncio.subprocess.Process, ready: asyncio.Future[dict[str, Any]]):
        self.proc = proc
        self.pid: int = proc.pid
        #: Tasks sent to this worker and not yet reported, in the order sent.
        self.inflight: deque[TaskSpec] = deque()
        #: Mirror of the worker's function cache (function ids, LRU order).
        self.functions: OrderedDict[str, None] = OrderedDict()
        #: Copied into every outcome this worker produces.
        self.details: dict[str, Any] = {"worker_pid": proc.pid, "endpoint_id": LOCAL_ENDPOINT_ID}
        #: Resolved with the worker's hello message.
        self.ready = ready
        #: Reads the worker's messages, then handles its exit.
        self.watcher: asyncio.Task[None] | None = None
        #: Set as soon as the worker's protocol channel is gone (it exited).
        self.closed = False
        #: Why the daemon killed this worker, if it did.
        self.failure: str | None = None
        #: The cancelled task this worker was killed for running (its death then
        #: fails nothing: the task is final already, and the rest are requeued).
        self.cancelled: str | None = None
        #: Cancelled tasks sent to this worker and not started: it was told to skip
        #: them (``{"op": "cancel"}``), and still reports each, in order.
        self.skipping: set[str] = set()


def describe_exit(returncode: int | None) -> str:
    """``exit code 3`` or ``exit code -11 / signal SIGSEGV``: what a person needs to see."""
    if returncode is None:
        return "exit code unknown"
    if returncode < 0:
        try:
            return f"exit code {returncode} / signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"exit code {returncode} / signal {-returncode}"
    return f"exit code {returncode}"


def _worker_env() -> dict[str, str]:
    """The daemon's environment, plus the source directories of gcgate/gcgated.

    Why: ``python -m gcgated.backends.local.worker`` must import the same code the
    daemon runs even when the daemon runs from a checkout that is not installed.
    Installed packages (site-packages) are found anyway and are not added, so the
    interpreter's own path order is not disturbed.
    """
    import gcgate

    import gcgated

    env = dict(os.environ)
    extra: list[str] = []
    for module in (gcgated, gcgate):
        root = str(Path(module.__file__ or "").resolve().parent.parent)
        if Path(root).name not in ("site-packages", "dist-packages") and root not in extra:
            extra.append(root)
    if extra:
        current = env.get("PYTHONPATH")
        env["PYTHONPATH"] = os.pathsep.join(extra + ([current] if current else []))
    return env


class WorkerPool:
    """A fixed-size set of worker processes fed from one FIFO queue.

    Everything here runs on one event loop thread; ``submit`` never blocks or
    awaits, and costs O(1) per task (the least-loaded worker is found through
    buckets indexed by in-flight count, at most ``prefetch`` of them).
    """

    def __init__(
        self,
        size: int,
        prefetch: int,
        on_outcome: Callable[[Outcome], None],
        *,
        function_cache_size: int = FUNCTION_CACHE_SIZE,
        ready_timeout: float = READY_TIMEOUT,
        on_running: Callable[[str], None] | None = None,
        task_dir: Path | None = None,
        max_result_bytes: int = RESULT_SIZE_LIMIT,
    ) -> None:
        if size < 1:
            raise ValueError(f"a worker pool needs at least one worker, got {size}")
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        self.size = size
        self.prefetch = prefetch
        #: A worker is refilled once it is down to this many tasks in flight, and
        #: then up to ``prefetch``: under load each write to it carries about half
        #: a prefetch of tasks instead of one, and it still never runs dry.
        self.refill_mark = prefetch // 2
        self.function_cache_size = function_cache_size
        self.ready_timeout = ready_timeout
        self.state = NEW
        self._on_outcome = on_outcome
        #: Told the id of each task as it starts to run (becomes the oldest task
        #: of its worker's); None: nobody is told.
        self._on_running = on_running
        #: Where ShellFunction tasks get a directory each (see worker.py).
        self.task_dir = task_dir
        #: The workers fail tasks whose result is larger (see limits.py).
        self.max_result_bytes = max_result_bytes
        #: Tasks accepted but not yet sent to any worker.
        self._queue: deque[TaskSpec] = deque()
        #: Live, ready workers, keyed by pid.
        self._workers: dict[int, _Worker] = {}
        #: ``_by_load[k]``: ready workers with exactly k tasks in flight (k < prefetch).
        self._by_load: list[dict[_Worker, None]] = [{} for _ in range(prefetch)]
        self._respawns: set[asyncio.Task[None]] = set()
        self._respawn_delay = RESPAWN_DELAY_MIN
        #: Set while every worker slot holds a live, ready worker.
        self._full = asyncio.Event()
        self._env: dict[str, str] | None = None

    # ------------------------------------------------------------------ life-cycle

    async def start(self) -> None:
        """Spawn all workers and wait until each says it is ready.

        Why all-or-nothing: a daemon that starts with a broken worker setup (bad
        interpreter, missing dependency) should fail loudly at start, not later
        with tasks stuck in a queue.
        """
        if self.state != NEW:
            raise RuntimeError(f"worker pool cannot start from state {self.state!r}")
        self.state = STARTING
        self._env = _worker_env()
        results = await asyncio.gather(
            *(self._spawn() for _ in range(self.size)), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors or self.state in (STOPPING, STOPPED):
            await self.stop()
            if errors:
                first = errors[0]
                raise WorkerStartError(f"local endpoint failed to start: {first}") from first
            raise RuntimeError("worker pool stopped while starting")
        if self.state == STARTING:  # not DEGRADED: a worker already died and is replaced
            self.state = READY
            self._full.set()
        self._pump()

    async def stop(self) -> None:
        """Terminate every worker: SIGTERM, then SIGKILL after a short grace.

        Tasks not reported by then are dropped silently: the core still has them
        as unfinished and dispatches them again after a restart.
        """
        if self.state in (STOPPING, STOPPED):
            return
        self.state = STOPPING
        for task in list(self._respawns):
            task.cancel()
        workers = list(self._workers.values())
        self._workers.clear()
        self._by_load = [{} for _ in range(self.prefetch)]
        await asyncio.gather(*(self._terminate(w) for w in workers), return_exceptions=True)
        watchers = [w.watcher for w in workers if w.watcher is not None]
        await asyncio.gather(*watchers, *self._respawns, return_exceptions=True)
        self._queue.clear()
        self.state = STOPPED

    async def _terminate(self, worker: _Worker) -> None:
        """End one worker process and reap it."""
        proc = worker.proc
        if proc.stdin is not None:
            proc.stdin.close()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await within(proc.wait(), STOP_GRACE)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    # --------------------------------------------------------------------- workers

    async def _spawn(self) -> _Worker:
        """Start one worker process and wait for its hello; it joins the pool then."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            # Not `-m`: that would make the worker module `__main__`, and dill
            # binds functions defined in a submitter's `__main__` (scripts,
            # notebooks) to the worker's `__main__` globals. This leaves an empty
            # `__main__` for user code, as on a Globus Compute endpoint.
            "-c",
            "raise SystemExit(__import__('gcgated.backends.local.worker', fromlist=['_']).main())",
            "--parent-pid",
            str(os.getpid()),
            "--function-cache-size",
            str(self.function_cache_size),
            *(("--task-dir", str(self.task_dir)) if self.task_dir else ()),
            "--max-result-bytes",
            str(self.max_result_bytes),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            # Inherited: user code's prints (redirected there by the worker) and
            # worker crash reports end up in the daemon's own stderr / log.
            stderr=None,
            env=self._env,
            # Own session: a terminal's Ctrl-C reaches only the daemon, which then
            # stops the workers itself. Were they interrupted directly, their
            # tasks would be reported as failed instead of resumed after restart.
            start_new_session=True,
        )
        worker = _Worker(proc, asyncio.get_running_loop().create_future())
        worker.watcher = asyncio.create_task(self._watch(worker), name=f"local-worker-{proc.pid}")
        try:
            hello = await within(asyncio.shield(worker.ready), self.ready_timeout)
        except asyncio.TimeoutError:
            worker.ready.cancel()  # the watcher must not set an exception nobody reads
            await self._terminate(worker)
            raise WorkerStartError(
                f"worker process {proc.pid} did not report ready within {self.ready_timeout:g}s"
            ) from None
        except BaseException:
            worker.ready.cancel()
            await self._terminate(worker)
            raise
        if worker.closed:
            await self._terminate(worker)
            raise WorkerStartError(f"worker process {proc.pid} exited right after starting")
        worker.details.update(
            hostname=hello.get("hostname", ""), python_version=hello.get("python_version", "")
        )
        if self.state in (STARTING, READY, DEGRADED):
            self._workers[worker.pid] = worker
            self._by_load[0][worker] = None
        else:
            await self._terminate(worker)
        return worker

    async def _watch(self, worker: _Worker) -> None:
        """Read a worker's messages until it goes away, then deal with its death."""
        try:
            await self._read_messages(worker)
        except Exception as exc:
            log.exception("local worker %d broke the protocol; killing it", worker.pid)
            worker.failure = f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(ProcessLookupError):
                worker.proc.kill()
        worker.closed = True
        # Out of the dispatch indices at once: a task sent from now on would be
        # lost, or be blamed for a death it had nothing to do with.
        registered = worker.pid in self._workers
        if registered:
            self._forget(worker)
        returncode = await self._reap(worker)
        if not worker.ready.done():
            worker.ready.set_exception(
                WorkerStartError(
                    f"worker process {worker.pid} exited before it was ready"
                    f" ({describe_exit(returncode)}); see the daemon's log for its error output"
                )
            )
            return
        if registered and self.state not in (STOPPING, STOPPED):
            self._on_worker_death(worker, returncode)

    async def _read_messages(self, worker: _Worker) -> None:
        """Split the worker's output into lines and handle each; return at EOF.

        Reads big chunks rather than line by line: a burst of short outcomes then
        costs one wake-up, and a multi-megabyte result costs O(size) in total.
        """
        reader = worker.proc.stdout
        assert reader is not None
        partial: list[bytes] = []
        while True:
            chunk = await reader.read(READ_CHUNK)
            if not chunk:
                return
            if b"\n" not in chunk:
                partial.append(chunk)
                continue
            if partial:
                partial.append(chunk)
                chunk = b"".join(partial)
                partial.clear()
            *lines, rest = chunk.split(b"\n")
            if rest:
                partial.append(rest)
            for line in lines:
                self._on_message(worker, json.loads(line))
            self._pump()

    async def _reap(self, worker: _Worker) -> int | None:
        """Wait for a worker that closed its channel to exit; kill it if it lingers."""
        proc = worker.proc
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            return await within(proc.wait(), EXIT_GRACE)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            return await proc.wait()

    def _on_worker_death(self, worker: _Worker, returncode: int | None) -> None:
        """Fail the task the dead worker was running, requeue the rest, replace it.

        A worker the pool killed because its task was cancelled fails nothing:
        every task it held but the cancelled ones goes back to the queue.
        """
        if worker.cancelled is not None:
            log.info(
                "local worker %d stopped (%s): its task %s was cancelled; replacing it",
                worker.pid,
                describe_exit(returncode),
                worker.cancelled,
            )
            worker.skipping.add(worker.cancelled)
        elif worker.inflight:
            running = worker.inflight.popleft()
            log.warning(
                "local worker %d died (%s) while running task %s",
                worker.pid,
                describe_exit(returncode),
                running.task_id,
            )
            self._report(
                Outcome(
                    task_id=running.task_id,
                    status=TaskStatus.FAILED,
                    exception=self._death_message(worker, returncode),
                    completion_t=time.time(),
                    details=dict(worker.details),
                )
            )
        else:
            log.warning(
                "local worker %d died (%s) while idle", worker.pid, describe_exit(returncode)
            )
        # Not started yet: back to the head of the queue, in their original order.
        self._queue.extendleft(
            reversed([s for s in worker.inflight if s.task_id not in worker.skipping])
        )
        worker.inflight.clear()
        self.state = DEGRADED
        self._full.clear()
        self._schedule_respawn()
        self._pump()

    @staticmethod
    def _death_message(worker: _Worker, returncode: int | None) -> str:
        """The failure text of the task a worker was running when it went away."""
        if worker.failure:
            return (
                f"Worker process {worker.pid} sent the daemon an invalid message"
                f" ({worker.failure}) while running this task and was killed;"
                " the task was not retried."
            )
        return (
            f"Worker process {worker.pid} died ({describe_exit(returncode)}) while"
            " running this task; the task was not retried."
        )

    def _forget(self, worker: _Worker) -> None:
        """Remove a worker from every index so nothing more is sent to it."""
        self._workers.pop(worker.pid, None)
        load = len(worker.inflight)
        if load < self.prefetch:
            self._by_load[load].pop(worker, None)

    def _schedule_respawn(self) -> None:
        task = asyncio.create_task(self._respawn(), name="local-worker-respawn")
        self._respawns.add(task)
        task.add_done_callback(self._respawns.discard)

    async def _respawn(self) -> None:
        """Start a replacement worker, retrying with back-off until one is ready."""
        while self.state in (READY, DEGRADED):
            try:
                await self._spawn()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error(
                    "could not replace a local worker (%s); retrying in %.1fs",
                    exc,
                    self._respawn_delay,
                )
                await asyncio.sleep(self._respawn_delay)
                self._respawn_delay = min(self._respawn_delay * 2, RESPAWN_DELAY_MAX)
                continue
            self._respawn_delay = RESPAWN_DELAY_MIN
            if self.state == DEGRADED and len(self._workers) >= self.size:
                self.state = READY
                self._full.set()
            self._pump()
            return

    # -------------------------------------------------------------------- messages

    def _on_message(self, worker: _Worker, msg: dict[str, Any]) -> None:
        """Handle one message from a worker (``ready`` once, then ``done`` per task)."""
        op = msg.get("op")
        if op == "done":
            self._on_done(worker, msg)
        elif op == "ready" and not worker.ready.done():
            worker.ready.set_result(msg)
        else:
            raise ValueError(f"unexpected message from worker {worker.pid}: {op!r}")

    def _on_done(self, worker: _Worker, msg: dict[str, Any]) -> None:
        """Turn a worker's report on its oldest in-flight task into an Outcome."""
        if not worker.inflight or worker.inflight[0].task_id != msg.get("id"):
            raise ValueError(f"worker {worker.pid} reported a task it was not running")
        load = len(worker.inflight)
        spec = worker.inflight.popleft()
        if worker.pid in self._workers:
            if load < self.prefetch:
                del self._by_load[load][worker]
            self._by_load[load - 1][worker] = None
        if spec.task_id in worker.skipping:
            # Cancelled (final already): skipped, or run in the instant before the
            # worker read the cancel; either way there is nothing to report.
            worker.skipping.discard(spec.task_id)
        else:
            self._report(
                Outcome(
                    task_id=spec.task_id,
                    status=TaskStatus(msg["status"]),
                    result=msg.get("result"),
                    exception=msg.get("exception"),
                    completion_t=msg.get("completion_t") or time.time(),
                    details=dict(worker.details),
                )
            )
        if worker.inflight and worker.inflight[0].task_id not in worker.skipping:
            self._report_running(worker.inflight[0].task_id)  # it goes on with its next task

    def _report(self, outcome: Outcome) -> None:
        """Hand an outcome to the core; its bugs must not take the pool down."""
        try:
            self._on_outcome(outcome)
        except Exception:
            log.exception("outcome callback failed for task %s", outcome.task_id)

    def _report_running(self, task_id: str) -> None:
        """Tell whoever listens that a task started to run (its worker's oldest now)."""
        if self._on_running is None:
            return
        try:
            self._on_running(task_id)
        except Exception:
            log.exception("running callback failed for task %s", task_id)

    # ---------------------------------------------------------------------- cancel

    def cancel(self, task_ids: Iterable[str]) -> dict[str, str]:
        """Stop these tasks: drop the queued ones, tell their workers to skip the
        prefetched ones, and kill (then replace) the worker of a running one.

        Returns what was done to each task the pool had, as the text a cancelled
        task's record keeps. Outcomes of these tasks are never reported.
        """
        wanted = set(task_ids)
        done: dict[str, str] = {}
        if any(spec.task_id in wanted for spec in self._queue):
            kept = [spec for spec in self._queue if spec.task_id not in wanted]
            done.update((s.task_id, DROPPED) for s in self._queue if s.task_id in wanted)
            self._queue.clear()
            self._queue.extend(kept)
        for worker in list(self._workers.values()):
            for position, spec in enumerate(worker.inflight):
                if spec.task_id not in wanted or spec.task_id in worker.skipping:
                    continue
                if position == 0 and worker.cancelled is None:
                    done[spec.task_id] = KILLED.format(pid=worker.pid)
                    self._kill_for_cancel(worker, spec.task_id)
                elif position == 0:  # its worker is being killed for another task
                    done[spec.task_id] = SKIPPED
                    worker.skipping.add(spec.task_id)
                else:
                    done[spec.task_id] = SKIPPED
                    worker.skipping.add(spec.task_id)
                    self._send_cancel(worker, spec.task_id)
        return done

    def _kill_for_cancel(self, worker: _Worker, task_id: str) -> None:
        """SIGKILL the worker (and what it started: its session's process group);
        its watcher requeues its other tasks and starts a replacement."""
        worker.cancelled = task_id
        log.info("killing local worker %d: its running task %s was cancelled", worker.pid, task_id)
        try:
            os.killpg(worker.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                worker.proc.kill()

    def _send_cancel(self, worker: _Worker, task_id: str) -> None:
        """Tell a worker to skip a task it holds and has not started (it reads
        ahead, so it sees this before it gets to the task)."""
        stdin = worker.proc.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.write(_encode_message({"op": "cancel", "id": task_id}).encode() + b"\n")

    def pending_reasons(self, task_ids: Collection[str]) -> dict[str, str]:
        """Why each of ``task_ids`` the pool holds is not done, in words: running
        on a worker, sent to one behind others, or queued (and where in line);
        one pass over the queue and the workers, whatever the number asked."""
        wanted = set(task_ids)
        reasons: dict[str, str] = {}
        for worker in self._workers.values():
            for position, spec in enumerate(worker.inflight):
                if spec.task_id in wanted:
                    reasons[spec.task_id] = (
                        f"running on local worker pid {worker.pid}"
                        if position == 0
                        else f"sent to local worker pid {worker.pid}, behind {position} task(s)"
                    )
        trouble = "" if self.state == READY else f"; the worker pool is {self.state}"
        for position, spec in enumerate(self._queue, 1):
            if spec.task_id in wanted:
                reasons[spec.task_id] = (
                    f"queued for a local worker ({position} of {len(self._queue)} in line){trouble}"
                )
        return reasons

    # -------------------------------------------------------------------- dispatch

    def submit(self, tasks: Iterable[TaskSpec]) -> None:
        """Queue tasks and send what fits right away; never blocks."""
        self._queue.extend(tasks)
        self._pump()

    def _pump(self) -> None:
        """Move queued tasks to the least-loaded workers, one write per worker.

        Only workers at or below the refill mark take part, each until it is full.
        """
        if not self._queue or self.state not in (READY, DEGRADED):
            return
        refilling = [w for bucket in self._by_load[: self.refill_mark + 1] for w in bucket]
        if not refilling:
            return
        batches: dict[_Worker, list[bytes]] = {}
        queue = self._queue
        while queue:
            worker = self._least_loaded(refilling)
            if worker is None:
                break
            spec = queue.popleft()
            batch = batches.get(worker)
            if batch is None:
                batch = batches[worker] = []
            batch.append(self._encode(worker, spec))
            load = len(worker.inflight)
            worker.inflight.append(spec)
            del self._by_load[load][worker]
            if load + 1 < self.prefetch:
                self._by_load[load + 1][worker] = None
        for worker, lines in batches.items():
            assert worker.proc.stdin is not None
            worker.proc.stdin.write(b"".join(lines))
            if len(worker.inflight) == len(lines):  # it was idle: runs the first at once
                self._report_running(worker.inflight[0].task_id)

    def _least_loaded(self, among: list[_Worker]) -> _Worker | None:
        """The least-loaded of ``among`` that is not full (few: the pool's size)."""
        for bucket in self._by_load:
            for worker in bucket:
                if worker in among:
                    return worker
        return None

    def _encode(self, worker: _Worker, spec: TaskSpec) -> bytes:
        """One task message; the function code rides along only on a cache miss."""
        msg: dict[str, Any] = {"op": "task", "id": spec.task_id, "fid": spec.function_id}
        functions = worker.functions
        if spec.function_id in functions:
            functions.move_to_end(spec.function_id)
        else:
            functions[spec.function_id] = None
            if len(functions) > self.function_cache_size:
                functions.popitem(last=False)
            msg["code"] = spec.function_code
            msg["serialized"] = spec.serialized
            msg["name"] = spec.function_name
        msg["payload"] = spec.payload
        if spec.result_serializers:
            msg["result_serializers"] = list(spec.result_serializers)
        return _encode_message(msg).encode() + b"\n"

    # ----------------------------------------------------------------------- stats

    async def wait_full(self) -> None:
        """Return once every worker slot is filled (e.g. after a dead worker's replacement)."""
        await self._full.wait()

    @property
    def live_workers(self) -> int:
        return len(self._workers)

    @property
    def queued(self) -> int:
        """Tasks accepted and not started (in the pool queue or prefetched)."""
        return len(self._queue) + sum(max(len(w.inflight) - 1, 0) for w in self._workers.values())

    @property
    def running(self) -> int:
        """Tasks executing right now: one per busy worker."""
        return sum(1 for w in self._workers.values() if w.inflight)

    @property
    def outstanding(self) -> int:
        """Tasks accepted and not finished."""
        return len(self._queue) + sum(len(w.inflight) for w in self._workers.values())

    def pids(self) -> list[int]:
        """Pids of the live workers (for tests and diagnostics)."""
        return list(self._workers)
