"""The daemon's request and record types, shared by the servicer, the services,
the core and the backends.

They sit below every layer (only ``gcgated.caller`` is beneath them), so a layer
hands the next one typed values instead of protobuf messages or dicts: the
servicer decodes a request once, JSON options included, into these, and the
services hand records out as ``TaskRecord`` and ``FunctionRecord``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gcgate.constants import TaskStatus

from gcgated.caller import Caller


@dataclass(frozen=True)
class SubmitOptions:
    """What every task of one submission shares (the SDK's ``create_batch()``),
    JSON fields already decoded."""

    task_group_id: str
    resource_specification: dict[str, Any] | None = None
    user_endpoint_config: dict[str, Any] | None = None
    user_runtime: dict[str, Any] | None = None
    result_serializers: tuple[str, ...] = ()
    #: Answer tasks identical to one that succeeded before from the store, without
    #: running them (``gcgated.reuse`` says what "identical" means).
    reuse_results: bool = False


@dataclass(frozen=True)
class Registration:
    """A RegisterFunction call, decoded; its fields are what the function's id is
    the content address of."""

    function_name: str
    #: Compute-serialized code when ``serialized``, else Python source text.
    function_code: str
    serialized: bool
    #: python_version, sdk_version, serde_identifier of the registering client.
    meta: Mapping[str, str]
    description: str = ""
    public: bool = False
    #: A Globus group UUID the function is shared with ("" for none).
    group: str = ""


@dataclass(frozen=True)
class Submission:
    """One Run or BatchRun call, already decoded from protobuf."""

    endpoint_id: str
    #: (function_id, payloads) in request order.
    groups: Sequence[tuple[str, Sequence[str]]]
    options: SubmitOptions
    #: Who submits: the daemon's login, or a client passing its own token.
    caller: Caller


@dataclass
class Receipt:
    """What a submission answers: the SDK's batch_run response shape."""

    request_id: str
    task_group_id: str
    endpoint_id: str
    tasks: list[tuple[str, list[str]]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PurgeRequest:
    """A client's purge (PurgeTasks), as given: the core validates and resolves it.

    Every filter that is set must match; ``older_than_seconds`` None: no age filter.
    """

    older_than_seconds: float | None = None
    status: str = ""
    endpoint_id: str = ""
    function_id: str = ""
    task_group_id: str = ""
    retrieved: bool = False
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """A client's listing of recent tasks (ListTasks), as given: the core validates
    and resolves it. Every filter that is set must match ("" and 0: none)."""

    limit: int = 0
    status: str = ""
    function_id: str = ""
    endpoint_id: str = ""
    #: Accepted at or after this Unix time.
    since: float = 0.0


@dataclass(frozen=True, slots=True)
class CancelResult:
    """What a cancel did to one task (``CancelTasks`` answers one per id)."""

    task_id: str
    #: True when this cancel ended the task; False when it was final already.
    cancelled: bool
    #: The task's status after the cancel: "cancelled", or the final one it had.
    status: TaskStatus
    #: What was stopped, or that the task was final already, for a person.
    message: str


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """A task as the services hand it out: what the store keeps of it, typed."""

    task_id: str
    status: TaskStatus
    function_id: str
    endpoint_id: str
    task_group_id: str
    #: Unix time the daemon accepted the task.
    created_at: float
    #: Unix time the task finished, as the text the service sends ("" while pending).
    completion_t: str = ""
    #: The serialized result (Compute format) of a successful task.
    result: str | None = None
    #: The remote traceback, or the reason, of a failed task.
    exception: str | None = None
    #: Execution details (worker pid, host, ...), when the endpoint gave any.
    details: Mapping[str, Any] = field(default_factory=dict)
    #: The task that ran and produced this result, when this one reused it ("" if
    #: this task ran).
    reused_from: str = ""
    #: The function's registered name, where the caller looked it up ("" otherwise).
    function_name: str = ""
    #: Why the task is not final yet, in words ("" when final, or not asked for).
    pending_reason: str = ""

    @property
    def pending(self) -> bool:
        return not self.status.final

    @classmethod
    def from_stored(cls, doc: Mapping[str, Any]) -> TaskRecord:
        """The record the store returns (JSON text decoded), extra keys ignored."""
        return cls(
            task_id=doc["task_id"],
            status=TaskStatus(doc["status"]),
            function_id=doc["function_id"],
            endpoint_id=doc["endpoint_id"],
            task_group_id=doc["task_group_id"],
            created_at=doc["created_at"],
            completion_t=doc.get("completion_t") or "",
            result=doc.get("result"),
            exception=doc.get("exception"),
            details=doc.get("details") or {},
            reused_from=doc.get("reused_from") or "",
            function_name=doc.get("function_name") or "",
        )


@dataclass(frozen=True, slots=True)
class FunctionRecord:
    """A registered function, as the services hand it out."""

    function_id: str
    function_name: str
    #: Compute-serialized code when ``serialized``, else Python source text.
    function_code: str
    serialized: bool
    #: python_version, sdk_version, serde_identifier of the registering client.
    meta: Mapping[str, str]
    description: str
    public: bool
    group: str
    created_at: float
    #: Unix time it was deleted (DeleteFunction); 0 while it can run.
    deleted_at: float = 0.0

    @classmethod
    def from_stored(cls, doc: Mapping[str, Any]) -> FunctionRecord:
        fields = {name: doc[name] for name in cls.__dataclass_fields__ if name != "deleted_at"}
        return cls(**fields, deleted_at=doc.get("deleted_at", 0.0))
