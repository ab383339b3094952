"""``Batch``: many task submissions in one request, as the SDK's ``sdk/batch.py``.

The shape of :meth:`Batch.prepare` is the SDK's (the Compute service's v3 submit
document), so code that inspects a prepared batch, and the daemon that forwards it
to Globus, see the same thing whether the batch came from gcgate or from the SDK.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import platform
import sys
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any, Protocol, TypeVar

from gcgate.serialize import Serializer

#: What the SDK accepts wherever it wants a UUID: a ``uuid.UUID`` or its string.
UUID_LIKE_T = uuid.UUID | str


class _Sized(Protocol):
    #: Bytes the item adds to a submission.
    size: int


_S = TypeVar("_S", bound=_Sized)


def by_size(items: Iterable[_S], limit: int) -> Iterator[list[_S]]:
    """``items`` in order, in consecutive runs whose sizes total at most ``limit``
    (an item larger than that alone): one submission each, since a submission is
    accepted or refused whole, and one over the limit would take the tasks sent
    with it down too."""
    run: list[_S] = []
    size = 0
    for item in items:
        if run and size + item.size > limit:
            yield run
            run, size = [], 0
        run.append(item)
        size += item.size
    if run:
        yield run


def as_uuid(uuid_like: UUID_LIKE_T, name: str = "", hint: str = "") -> uuid.UUID:
    """The SDK's ``as_uuid``: same checks, same exception classes for bad input
    (``ValueError`` for a malformed string, ``TypeError``/``AttributeError`` for
    another type), the message naming the argument ``name`` and the value."""
    if isinstance(uuid_like, uuid.UUID):
        return uuid_like
    try:
        return uuid.UUID(uuid_like)
    except ValueError:
        if not name:
            raise
        raise ValueError(f"{name}: {uuid_like!r} is not a UUID{hint}") from None


def as_optional_uuid(
    optional_uuid_like: UUID_LIKE_T | None, name: str = "", hint: str = ""
) -> uuid.UUID | None:
    """The SDK's ``as_optional_uuid``: falsy means "none"."""
    return as_uuid(optional_uuid_like, name, hint) if optional_uuid_like else None


def gcgate_version() -> str:
    """gcgate's version (read at call time: ``gcgate/__init__`` imports this module)."""
    from gcgate import __version__

    return __version__


@functools.lru_cache(maxsize=1)
def _globus_sdk_version() -> str:
    # The thin client does not depend on globus-sdk; report it only if installed.
    # Looked up from package metadata, never imported (that would cost ~0.5 s).
    from importlib import metadata

    try:
        return metadata.version("globus-sdk")
    except metadata.PackageNotFoundError:
        return ""


@functools.lru_cache(maxsize=1)
def _user_runtime() -> dict[str, Any]:
    # Cached: platform.processor() and platform.architecture() may spawn
    # subprocesses, and the Executor builds a batch per flush.
    return {
        # Same keys as the SDK's UserRuntime so endpoint config templates that read
        # them keep working; the submitting library here is gcgate.
        "globus_compute_sdk_version": gcgate_version(),
        "globus_sdk_version": _globus_sdk_version(),
        "python_version": sys.version,
        "python": {
            "version": platform.python_version(),
            "version_description": sys.version,
            "version_tuple": tuple(sys.version_info[:3]),
            "version_info": tuple(sys.version_info),
            "implementation": platform.python_implementation(),
            "compiler": platform.python_compiler(),
        },
        "platform": {
            "architecture": platform.architecture(),
            "machine": platform.machine(),
            "node": platform.node(),
            "platform": platform.platform(),
            "processor": platform.processor(),
            "release": platform.release(),
        },
    }


def create_user_runtime() -> dict[str, Any]:
    """The submitter's runtime, as ``asdict(globus_compute_sdk...create_user_runtime())``.

    Endpoints pass it to their user-config template renderer, so the keys are the
    SDK's; ``globus_compute_sdk_version`` carries gcgate's version.
    """
    return copy.deepcopy(_user_runtime())


class Batch:
    """Tasks to submit together to one endpoint (see ``Client.batch_run``).

    Mirrors ``globus_compute_sdk.sdk.batch.Batch``: same constructor, same
    :meth:`add` checks and messages, same :meth:`prepare` document.
    """

    def __init__(
        self,
        task_group_id: UUID_LIKE_T | None,
        resource_specification: dict[str, Any] | None = None,
        user_endpoint_config: dict[str, Any] | None = None,
        request_queue: bool = False,
        serializer: Serializer | None = None,
        user_runtime: dict[str, Any] | Any | None = None,
        result_serializers: list[str] | None = None,
    ) -> None:
        """
        :param task_group_id: UUID of the task group to submit the batch to
        :param resource_specification: resource requirements for each task
        :param user_endpoint_config: user endpoint configuration values, as allowed
            by the endpoint's administrators
        :param request_queue: whether to request a result queue (kept for the SDK's
            shape; gcgate streams results from the daemon instead)
        :param serializer: serializes task args and kwargs (default: DillDataBase64)
        :param user_runtime: the submitter's runtime description, a dict as made by
            :func:`create_user_runtime` (an SDK ``UserRuntime`` dataclass also works)
        :param result_serializers: import paths of the strategies the endpoint tries,
            in order, to serialize each result
        """
        self.task_group_id = task_group_id  # type: ignore[assignment]  # via setter
        self.resource_specification = resource_specification
        self.user_endpoint_config = user_endpoint_config
        self.tasks: dict[uuid.UUID, list[str]] = defaultdict(list)
        self._serde = serializer or Serializer()
        self.request_queue = request_queue
        self.user_runtime = user_runtime
        self.result_serializers = result_serializers

    def __repr__(self) -> str:
        return str(self.prepare())

    def __bool__(self) -> bool:
        """True if every function in the batch has at least one task (as the SDK).

        Note that an empty batch is therefore truthy; ``Client.batch_run`` checks
        ``len()`` as well.
        """
        return all(bool(fns) for fns in self.tasks.values())

    def __len__(self) -> int:
        """The total number of tasks in the batch, over all functions."""
        return sum(len(fns) for fns in self.tasks.values())

    @property
    def task_group_id(self) -> uuid.UUID | None:
        return self._task_group_id

    @task_group_id.setter
    def task_group_id(self, new_id: UUID_LIKE_T | None) -> None:
        self._task_group_id = as_optional_uuid(new_id, "task_group_id")

    def add(
        self,
        function_id: UUID_LIKE_T,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        """Add one invocation of a registered function to the batch.

        :param function_id: UUID of the registered function
        :param args: positional arguments, a tuple (or list)
        :param kwargs: keyword arguments, a dict with str keys
        :raises TypeError: for args/kwargs of the wrong type (the SDK's messages)
        :raises ValueError: if ``function_id`` is not a UUID
        """
        # Serialize first and validate the id after, in the SDK's order, so a call
        # with several problems raises the same error as the SDK would.
        payload = self._serde.task_payload(args, kwargs)
        self.tasks[as_uuid(function_id, "function_id")].append(payload)

    def prepare(self) -> dict[str, Any]:
        """The submission document, in the SDK's (and the Compute service's) shape."""
        data: dict[str, Any] = {
            "create_queue": self.request_queue,
            "tasks": {str(fn_id): tasks for fn_id, tasks in self.tasks.items()},
        }
        if self.task_group_id:
            data["task_group_id"] = str(self.task_group_id)
        if self.resource_specification:
            data["resource_specification"] = self.resource_specification
        if self.user_endpoint_config:
            data["user_endpoint_config"] = self.user_endpoint_config
        if self.user_runtime:
            rt = self.user_runtime
            data["user_runtime"] = dataclasses.asdict(rt) if dataclasses.is_dataclass(rt) else rt
        if self.result_serializers:
            data["result_serializers"] = self.result_serializers
        return data
