"""In-process stand-ins for the daemon's backends, for the fast test layer.

They implement the ``Backend`` protocol (and the Globus backend's calls the
services make) with no worker process and no HTTP: a test decides every outcome
by calling ``report``. The store under them is real.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from gcgated.backends.base import (
    Accepted,
    Outcome,
    OutcomeCallback,
    RunningCallback,
    SubmitGroup,
    TaskSpec,
)
from gcgated.caller import Caller
from gcgated.model import SubmitOptions


class FakeBackend:
    """Accepts tasks and reports nothing by itself: the test reports outcomes."""

    name = "fake"

    def __init__(self) -> None:
        self.on_outcome: OutcomeCallback | None = None
        self.on_running: RunningCallback | None = None
        self.dispatched: list[str] = []
        #: Task ids the core asked this backend to cancel.
        self.cancelled: list[str] = []
        #: Raised by ``accept`` when set (a backend refusing a submission).
        self.refuse_with: BaseException | None = None

    async def start(
        self, on_outcome: OutcomeCallback, on_running: RunningCallback | None = None
    ) -> None:
        self.on_outcome = on_outcome
        self.on_running = on_running

    async def stop(self) -> None:
        pass

    def report(self, outcome: Outcome) -> None:
        assert self.on_outcome is not None, "the backend was not started"
        self.on_outcome(outcome)

    async def accept(
        self,
        endpoint_id: str,
        groups: Sequence[SubmitGroup],
        options: SubmitOptions,
        caller: Caller,
    ) -> Accepted:
        if self.refuse_with is not None:
            raise self.refuse_with
        ids = [[str(uuid.uuid4()) for _ in group.payloads] for group in groups]
        group = options.task_group_id or str(uuid.uuid4())
        return Accepted(request_id="r", task_group_id=group, task_ids=ids)

    def dispatch(self, tasks: Sequence[TaskSpec], caller: Caller) -> None:
        self.dispatched.extend(t.task_id for t in tasks)

    def check_submission(self, payloads: Sequence[str]) -> None:
        pass

    def cancel(self, task_ids: Sequence[str]) -> dict[str, str]:
        self.cancelled.extend(task_ids)
        return {task_id: f"cancelled by {self.name}" for task_id in task_ids}

    def pending_reasons(self, tasks: Mapping[str, str]) -> dict[str, str]:
        return {task_id: f"held by {self.name} for {ep}" for task_id, ep in tasks.items()}

    async def endpoint_status(self, endpoint_id: str, caller: Caller) -> dict[str, Any]:
        return {"status": "online", "endpoint_id": endpoint_id}

    async def endpoint_metadata(self, endpoint_id: str, caller: Caller) -> dict[str, Any]:
        return {"uuid": endpoint_id, "name": self.name}

    async def allowed_functions(self, endpoint_id: str, caller: Caller) -> dict[str, Any]:
        return {"endpoint_id": endpoint_id, "restricted": False, "functions": [], "by": self.name}

    async def stop_endpoint(self, endpoint_id: str, caller: Caller) -> dict[str, Any]:
        return {"endpoint_id": endpoint_id, "stopped_by": self.name}

    async def delete_endpoint(self, endpoint_id: str, caller: Caller) -> dict[str, Any]:
        return {"result": 302, "deleted_by": self.name}

    def describe(self) -> dict[str, Any]:
        return {"state": "running"}


class FakeGlobusBackend(FakeBackend):
    """FakeBackend plus what the services ask of the Globus backend; it records
    the calls that carry a caller, so a test can see who acted."""

    name = "globus"

    def __init__(self) -> None:
        super().__init__()
        self.adopted: list[tuple[list[str], Caller]] = []
        self.who: dict[str, Any] = {"state": "logged_out", "identity": ""}
        #: The callers of the calls that carry one and are not recorded otherwise.
        self.callers: list[Caller] = []

    def adopt(self, task_ids: Sequence[str], caller: Caller) -> int:
        self.adopted.append((list(task_ids), caller))
        return len(task_ids)

    async def list_endpoints(self, role: str, caller: Caller) -> list[dict[str, Any]]:
        return [{"uuid": str(uuid.UUID(int=1)), "role": role}]

    async def delete_function(
        self, function_id: str, caller: Caller
    ) -> tuple[bool, dict[str, Any]]:
        return True, {"result": 200, "function_uuid": function_id}

    async def service_version(self, caller: Caller) -> dict[str, Any]:
        self.callers.append(caller)
        return {"api": "1.0", "min_ep_version": "2.0.0"}

    async def start_login(self, force: bool) -> tuple[str, str]:
        return "login-1", "https://auth.example/authorize?force=" + str(force).lower()

    async def complete_login(self, login_id: str, code: str) -> dict[str, str]:
        self.who = {"state": "logged_in", "identity": "id-1", "username": "u@example.org"}
        return self.who

    async def logout(self) -> dict[str, str]:
        self.who = {"state": "logged_out", "identity": ""}
        return self.who

    def whoami(self) -> dict[str, Any]:
        return dict(self.who)

    def describe(self) -> dict[str, Any]:
        return {"state": "idle", "login": {"state": self.who["state"], "identity": ""}}
