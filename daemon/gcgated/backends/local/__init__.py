"""The embedded local endpoint: tasks run in worker processes of the daemon's host.

:class:`LocalBackend` adapts :class:`~.pool.WorkerPool` to the core's Backend
protocol and answers endpoint queries for :data:`LOCAL_ENDPOINT_ID` in the shape
of the Globus Compute service's documents, so SDK-style code that inspects an
endpoint works unchanged against the local one.
"""

from __future__ import annotations

import getpass
import os
import platform
import socket
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcgate import __version__
from gcgate.constants import LOCAL_ENDPOINT_ID
from gcgate.serialize import unpack_buffers

from gcgated.caller import Caller
from gcgated.errors import FailedPrecondition, InvalidArgument
from gcgated.model import SubmitOptions

from ..base import Accepted, OutcomeCallback, RunningCallback, SubmitGroup, TaskSpec
from .limits import DEFAULT_LIMIT_MB, MB, payload_bytes, payload_too_large

if TYPE_CHECKING:
    # Imported lazily at run time: ``python -m gcgated.backends.local.worker``
    # imports this package first, and the worker needs neither asyncio nor the
    # pool (importing the pool would also import the worker module a second time).
    from .pool import WorkerPool

__all__ = ["LocalBackend"]

#: The local endpoint's name, as the service would list it.
LOCAL_ENDPOINT_NAME = "gcgate-local"


class LocalBackend:
    """Runs tasks in ``workers`` local processes, ``prefetch`` tasks queued per worker.

    ``workers`` defaults to the number of CPUs: tasks are assumed CPU-bound, as on a
    Compute endpoint with one worker per core.
    """

    name = "local"

    def __init__(
        self,
        workers: int | None = None,
        prefetch: int = 8,
        task_dir: Path | None = None,
        *,
        max_payload_mb: float = DEFAULT_LIMIT_MB,
        max_result_mb: float = DEFAULT_LIMIT_MB,
    ) -> None:
        """
        :param task_dir: where ShellFunction tasks run, in a directory each (as an
            endpoint's sandboxes); None: in the workers' directory
        :param max_payload_mb: the largest argument payload of one task (settings
            ``local_max_payload_mb``), in serialized bytes before base64
        :param max_result_mb: the largest result (``local_max_result_mb``), likewise
        """
        self.workers = workers if workers is not None else (os.cpu_count() or 1)
        if self.workers < 1:
            raise ValueError(f"the local endpoint needs at least one worker, got {self.workers}")
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        self.prefetch = prefetch
        self.task_dir = task_dir
        self.max_payload_bytes = int(max_payload_mb * MB)
        self.max_result_bytes = int(max_result_mb * MB)
        self._pool: WorkerPool | None = None

    async def start(
        self, on_outcome: OutcomeCallback, on_running: RunningCallback | None = None
    ) -> None:
        """Spawn the workers; raises if any does not come up (with the reason).

        ``on_running`` is told each task as a worker starts it (a worker runs its
        tasks one after the other, so that is when the previous one is done).
        """
        from .pool import WorkerPool

        if self._pool is not None:
            raise RuntimeError("LocalBackend.start() called twice")
        self._pool = WorkerPool(
            self.workers,
            self.prefetch,
            on_outcome,
            on_running=on_running,
            task_dir=self.task_dir,
            max_result_bytes=self.max_result_bytes,
        )
        await self._pool.start()

    async def stop(self) -> None:
        """Terminate the workers; unreported tasks are left for the core to resume."""
        if self._pool is not None:
            await self._pool.stop()

    async def accept(
        self,
        endpoint_id: str,
        groups: Sequence[SubmitGroup],
        options: SubmitOptions,
        caller: Caller,
    ) -> Accepted:
        """Local task ids are made up here; nothing runs before they are persisted.
        Who submits makes no difference here (``caller`` is ignored)."""
        return Accepted(
            request_id=str(uuid.uuid4()),
            task_group_id=options.task_group_id or str(uuid.uuid4()),
            task_ids=[[str(uuid.uuid4()) for _ in group.payloads] for group in groups],
        )

    def check_submission(self, payloads: Sequence[str]) -> None:
        """Each task's arguments within ``max_payload_bytes``, counted as the user's
        serialized bytes (not the base64 text the wire carries: see limits.py).
        The limit is per task: nothing here travels in one request to a service."""
        for number, payload in enumerate(payloads, 1):
            size = payload_bytes(unpack_buffers(payload))  # framing checked before
            if size > self.max_payload_bytes:
                position = f" of task {number} of this submission" if len(payloads) > 1 else ""
                raise InvalidArgument(payload_too_large(size, self.max_payload_bytes, position))

    def dispatch(self, tasks: Sequence[TaskSpec], caller: Caller) -> None:
        """Queue tasks; returns at once (call it on the event loop thread)."""
        if self._pool is None:
            raise RuntimeError("LocalBackend.dispatch() before start()")
        self._pool.submit(tasks)

    def cancel(self, task_ids: Sequence[str]) -> dict[str, str]:
        """Drop the queued ones; stop a running one by killing its worker process,
        which a new one replaces (the worker's other tasks go back to the queue)."""
        return self._pool.cancel(task_ids) if self._pool is not None else {}

    async def endpoint_status(self, endpoint_id: str, caller: Caller) -> dict[str, Any]:
        """Like ``GET /v2/endpoints/{id}/status`` of the Compute service."""
        pool = self._pool
        total = pool.live_workers if pool else 0
        running = pool.running if pool else 0
        return {
            "status": "online" if total else "offline",
            "details": {
                "total_workers": total,
                "idle_workers": total - running,
                "pending_tasks": pool.queued if pool else 0,
                "outstanding_tasks": pool.outstanding if pool else 0,
                "managers": 1,
                "active_managers": 1 if total else 0,
                "total_cores": os.cpu_count() or 1,
                "prefetch_capacity": self.prefetch,
                "max_workers": self.workers,
                "endpoint_id": LOCAL_ENDPOINT_ID,
            },
        }

    async def endpoint_metadata(self, endpoint_id: str, caller: Caller) -> dict[str, Any]:
        """Like ``GET /v2/endpoints/{id}`` of the Compute service."""
        status = await self.endpoint_status(endpoint_id, caller)
        return {
            "uuid": LOCAL_ENDPOINT_ID,
            "name": LOCAL_ENDPOINT_NAME,
            "display_name": "gcgate local endpoint",
            "description": "Runs tasks in worker processes of the gcgate daemon's host.",
            "endpoint_type": "SINGLE_USER",
            "multi_user": False,
            "public": False,
            "local": True,
            "status": status["status"],
            "hostname": socket.gethostname(),
            "ip": "127.0.0.1",
            "ip_address": "127.0.0.1",
            "local_user": _local_user(),
            "endpoint_config": (
                f"engine:\n  type: gcgate-local\n  max_workers: {self.workers}\n"
                f"  prefetch_capacity: {self.prefetch}"
            ),
            "user_config_template": "",
            "user_config_schema": {},
            "endpoint_version": __version__,
            "sdk_version": __version__,
            "python_version": platform.python_version(),
            "subscription_uuid": None,
        }

    async def allowed_functions(self, endpoint_id: str, caller: Caller) -> dict[str, Any]:
        """Like ``GET /v3/endpoints/{id}/allowed_functions``: the local endpoint runs
        any function registered with the daemon, so it is not restricted."""
        return {"endpoint_id": LOCAL_ENDPOINT_ID, "restricted": False, "functions": []}

    async def stop_endpoint(self, endpoint_id: str, caller: Caller) -> dict[str, Any]:
        """Refused: the workers are the daemon's, and every client shares them."""
        raise FailedPrecondition(
            f"the local endpoint ({LOCAL_ENDPOINT_ID}) runs inside gcgated and stops only"
            " with it: stop the daemon (SIGTERM, or `systemctl stop gcgated`) to stop it"
        )

    async def delete_endpoint(self, endpoint_id: str, caller: Caller) -> dict[str, Any]:
        """Refused: there is no registration to delete."""
        raise FailedPrecondition(
            f"the local endpoint ({LOCAL_ENDPOINT_ID}) is part of gcgated and cannot be"
            " deleted; only Globus Compute endpoints can"
        )

    def pending_reasons(self, tasks: Mapping[str, str]) -> dict[str, str]:
        """Queued, or running on which worker (see WorkerPool.pending_reasons)."""
        return self._pool.pending_reasons(tasks.keys()) if self._pool is not None else {}

    def describe(self) -> dict[str, Any]:
        """State and load, for the daemon's Status RPC."""
        pool = self._pool
        if pool is None:
            return {
                "state": "stopped",
                "endpoint_id": LOCAL_ENDPOINT_ID,
                "workers": 0,
                "queued": 0,
                "running": 0,
            }
        return {
            "state": pool.state,
            "endpoint_id": LOCAL_ENDPOINT_ID,
            "workers": pool.live_workers,
            "queued": pool.queued,
            "running": pool.running,
        }


def _local_user() -> str:
    """The account the workers run as; never fails (containers may lack a passwd entry)."""
    try:
        return getpass.getuser()
    except Exception:
        return str(os.getuid()) if hasattr(os, "getuid") else ""
