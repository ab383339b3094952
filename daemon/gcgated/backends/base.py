"""The contract between the task life-cycle (core) and an execution backend.

A backend executes or forwards tasks and reports each final outcome through a
callback. It never touches the store: the core persists every task before
handing it over and persists every outcome the backend reports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gcgate.constants import TaskStatus

from gcgated.caller import Caller
from gcgated.model import SubmitOptions


@dataclass(frozen=True)
class TaskSpec:
    """Everything a backend needs to execute one task, all opaque text."""

    task_id: str
    function_id: str
    #: The function as registered (Compute format when ``serialized``, else source).
    function_code: str
    #: pack_buffers([serialize(args), serialize(kwargs)]).
    payload: str
    #: False when ``function_code`` is plain Python source text.
    serialized: bool = True
    #: Entry-point name (needed to run source-registered functions).
    function_name: str = ""
    #: Strategy import paths for the result, tried in order; empty: the default.
    result_serializers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """A final task state, in the shape of the Compute service's task document."""

    task_id: str
    #: SUCCESS or FAILED (CANCELLED only from the core's cancel).
    status: TaskStatus
    #: Serialized result (Compute format) when status is "success".
    result: str | None = None
    #: Remote traceback text (or a clear reason) when status is "failed".
    exception: str | None = None
    #: Unix time the task finished.
    completion_t: float = 0.0
    #: Execution details (worker pid, host, ...).
    details: dict[str, Any] = field(default_factory=dict)
    #: Called by the core once the store transaction holding this outcome has
    #: committed (also when the store ignored it as a repeat of a task already
    #: final), never when the write failed (it is retried). A backend drops its
    #: own record of the task here, not sooner: a crash before the commit must
    #: still find that record (a ledger row, a message to acknowledge).
    on_stored: Callable[[], None] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class SubmitGroup:
    """The tasks of one function in a submission."""

    #: The function's store record (id, name, code, serialized, meta, ...).
    function: dict[str, Any]
    payloads: Sequence[str]


@dataclass(frozen=True)
class Accepted:
    """Task ids a backend assigned to a submission, one list per group, in order."""

    request_id: str
    task_group_id: str
    task_ids: list[list[str]]


#: Called by a backend, on the daemon's event loop, once per final task.
OutcomeCallback = Callable[[Outcome], None]
#: Called by a backend, on the daemon's event loop, with a task's id when the task
#: starts to run (status "running" until its outcome is reported).
RunningCallback = Callable[[str], None]


class Backend(Protocol):
    """What the core needs from an execution backend."""

    name: str

    async def start(
        self, on_outcome: OutcomeCallback, on_running: RunningCallback | None = None
    ) -> None:
        """Start workers/connections; afterwards report outcomes via ``on_outcome``,
        and tasks starting to run via ``on_running`` where the backend sees that."""

    async def stop(self) -> None:
        """Stop promptly. Unfinished tasks stay in the store and resume on restart."""

    async def accept(
        self,
        endpoint_id: str,
        groups: Sequence[SubmitGroup],
        options: SubmitOptions,
        caller: Caller,
    ) -> Accepted:
        """Assign task ids to a validated submission made by ``caller``.

        A local backend makes them up; a remote one may submit first and return
        the ids the service assigned. The core persists the tasks after this
        returns and before it answers the client, then calls :meth:`dispatch`.
        """

    def dispatch(self, tasks: Sequence[TaskSpec], caller: Caller) -> None:
        """Take charge of persisted tasks that ``caller`` submitted (run them, or
        track them remotely); must not block. Also called on start for tasks
        resumed from the store, with the daemon's login as ``caller``."""

    async def endpoint_status(self, endpoint_id: str, caller: Caller) -> dict[str, Any]:
        """The Compute service's endpoint status document for ``endpoint_id``,
        as ``caller`` may see it."""

    async def endpoint_metadata(self, endpoint_id: str, caller: Caller) -> dict[str, Any]:
        """The Compute service's endpoint metadata document for ``endpoint_id``,
        as ``caller`` may see it."""

    async def allowed_functions(self, endpoint_id: str, caller: Caller) -> dict[str, Any]:
        """The functions ``endpoint_id`` allows, in the Compute service's shape
        ``{"endpoint_id", "restricted", "functions"}``."""

    async def stop_endpoint(self, endpoint_id: str, caller: Caller) -> dict[str, Any]:
        """Stop ``endpoint_id`` as ``caller``; the service's answer."""

    async def delete_endpoint(self, endpoint_id: str, caller: Caller) -> dict[str, Any]:
        """Delete ``endpoint_id``'s registration as ``caller``; the service's answer."""

    def check_submission(self, payloads: Sequence[str]) -> None:
        """Refuse (InvalidArgument, naming the limit and how to change it) payloads
        over this backend's size limit; called before anything is stored or sent."""

    def cancel(self, task_ids: Sequence[str]) -> dict[str, str]:
        """Stop working on these unfinished tasks of this backend's: drop them if
        they wait, stop them if they run where the backend can, else stop waiting
        for their results (which are then ignored). Must not block. Returns, per
        task, what was stopped: the text the core stores as the cancelled task's
        ``exception``. The core records the tasks as cancelled right after (a
        later outcome of theirs is ignored: they are final)."""

    def pending_reasons(self, tasks: Mapping[str, str]) -> dict[str, str]:
        """Why each of these unfinished tasks (task id -> endpoint id) of this
        backend's is not final yet, in words a person reads in ``gcgate tasks``
        (queued, running where, waiting for what since when). From memory only:
        ListTasks asks for thousands at once. Tasks it knows nothing of are left out."""

    def describe(self) -> dict[str, Any]:
        """State and details for the daemon's Status RPC."""
