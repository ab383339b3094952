"""``Client``: the Globus Compute SDK's ``Client`` API, served by the gcgate daemon.

Each method makes one (or a few) RPCs to the local daemon; nothing here talks to
Globus. Return shapes are the SDK's, so code written against
``globus_compute_sdk.Client`` runs unchanged after swapping the import.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import platform
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from gcgate import errors, hardware, versions
from gcgate._channel import Connection, not_answering_error
from gcgate.batch import UUID_LIKE_T, Batch, as_uuid, create_user_runtime, gcgate_version
from gcgate.constants import OWNER_KEY_FILE, OWNER_KEY_METADATA, TaskStatus
from gcgate.errors import TaskCancelled, TaskExecutionFailed, TaskPending
from gcgate.paths import client_socket_path
from gcgate.serialize import Serializer, Strategylike, resolve_strategy
from gcgate.v1 import gateway_pb2 as pb

log = logging.getLogger(__name__)

#: How long construction waits for the daemon's Status answer. Status is cheap, so
#: a daemon that takes longer is wedged rather than busy.
CONNECT_TIMEOUT_S = 5.0

#: Task ids per GetBatchResult call: keeps each request and answer well inside the
#: gRPC message limit for typical results (larger answers are split further).
BATCH_RESULT_CHUNK = 2000
#: The daemon holds one GetResult call at most this long; longer waits loop.
MAX_WAIT_SECONDS = 300.0
#: ``reason`` of an id the daemon does not know, in get_batch_result (``{}``: the id).
UNKNOWN_TASK_REASON = (
    "task {} is not known to this daemon (never submitted here,"
    " or its result expired after retrieval, or was evicted)"
)

#: Resource server of Globus Compute tokens (``globus_sdk.scopes.ComputeScopes``).
COMPUTE_RESOURCE_SERVER = "funcx_service"
COMPUTE_SCOPE = "https://auth.globus.org/scopes/facd7ccc-c5f4-42aa-916b-a0e270e2c2a9/all"

#: The package whose minimum version the Compute service names ``min_ep_version``.
ENDPOINT_PACKAGE = "globus-compute-endpoint"


@dataclass
class FunctionRegistrationMetadata:
    """The SDK's metadata for a registration; ``FunctionRegistrationMetadata(**d)``
    gives the SDK's TypeErrors for a ``metadata`` dict with missing or unknown keys."""

    python_version: str
    sdk_version: str
    serde_identifier: str | None = None

    def to_meta(self) -> pb.FunctionMeta:
        return pb.FunctionMeta(**{k: v for k, v in asdict(self).items() if v})


def as_serializer(value: Any) -> Serializer:
    """A :class:`Serializer` from ours, or from an SDK ``ComputeSerializer``.

    Porting code sets ``executor.serializer = ComputeSerializer(strategy_code=...)``;
    the strategies are matched by class name, so the SDK's object is taken as is.
    """
    if isinstance(value, Serializer):
        return value
    if hasattr(value, "code_serializer") and hasattr(value, "data_serializer"):
        return Serializer(
            value.code_serializer,
            value.data_serializer,
            allowed_deserializer_types=getattr(value, "allowed_deserializer_types", None),
        )
    raise TypeError(
        f"Expected a gcgate Serializer (or ComputeSerializer), got {type(value).__name__}"
    )


def result_serializer_paths(values: Iterable[Strategylike]) -> list[str]:
    """Validated import paths of result strategies, as endpoints expect them.

    Accepts what the SDK accepts (instances, classes, import paths) and raises
    :class:`~gcgate.errors.SerdeError` for an unknown one, before anything is sent.
    """
    return [resolve_strategy(v).sdk_import_path for v in values]


def message_dict(msg: Message) -> dict[str, Any]:
    """A protobuf message as plain Python values (ints stay ints, unlike MessageToDict).

    Fields named ``*_json`` are decoded and stored without the suffix.
    """
    out: dict[str, Any] = {}
    for field in msg.DESCRIPTOR.fields:
        value = getattr(msg, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = dict(value)
        elif field.message_type is not None and field.is_repeated:
            value = [message_dict(v) for v in value]
        elif field.message_type is not None:
            value = message_dict(value)
        elif field.is_repeated:
            value = list(value)
        elif field.name.endswith("_json"):
            out[field.name[: -len("_json")]] = json.loads(value) if value else None
            continue
        out[field.name] = value
    return out


def task_dict(record: pb.TaskRecord, serializer: Serializer, *, summary: bool = False) -> dict:
    """A TaskRecord as gcgate's task dict: the one conversion every reader uses.

    ``{"task_id", "pending", "status"}``, plus ``"details"`` when the daemon has
    any and ``"reused_from"`` for a task that reused a stored result (the id of
    the task that ran), and for a final task either ``"result"`` (the deserialized value) or
    ``"exception"`` (a :class:`TaskExecutionFailed` for a failed task, a
    :class:`~gcgate.errors.TaskCancelled` for a cancelled one, or a
    :class:`~gcgate.errors.ResultDeserializationError` when a successful result
    cannot be deserialized here), then ``"completion_t"``. Exceptions are
    returned, not raised, so a caller handling many tasks loses none of them to
    one failure. :func:`sdk_task` makes the SDK's dict of it.

    ``summary=True`` (for listings) adds the record's function (id and name),
    endpoint, group and creation time, for an unfinished task why it is not final
    yet (``"pending_reason"``, when the daemon says), and omits result/exception
    if the daemon did not send them. (Not in the SDK's dicts: ``get_task`` keeps
    the SDK's keys.)
    """
    task: dict[str, Any] = {"task_id": record.task_id, "pending": record.pending}
    task["status"] = record.status.lower()
    details = json.loads(record.details_json) if record.details_json else None
    if details:
        task["details"] = details
    if record.reused_from:
        task["reused_from"] = record.reused_from
    if summary:
        task.update(
            function_id=record.function_id,
            endpoint_id=record.endpoint_id,
            task_group_id=record.task_group_id,
            created_at=record.created_at,
            function_name=record.function_name,
        )
    if record.pending:
        if summary and record.pending_reason:
            task["pending_reason"] = record.pending_reason
        return task
    if task["status"] == TaskStatus.CANCELLED:
        if record.exception or not summary:
            task["exception"] = TaskCancelled(
                record.task_id, record.exception, record.completion_t or None
            )
    elif task["status"] == "failed":
        if record.exception or not summary:
            task["exception"] = TaskExecutionFailed(
                record.exception, record.completion_t or None, details
            )
    elif record.result or not summary:
        try:
            task["result"] = serializer.deserialize(record.result)
        except errors.SerdeError as exc:
            failure = errors.ResultDeserializationError(exc.reason)
            failure.__cause__ = exc
            task["exception"] = failure
    task["completion_t"] = record.completion_t
    return task


def sdk_task(task: dict[str, Any]) -> dict[str, Any]:
    """The SDK's task dict of a successful or pending gcgate one: the same keys in
    the same order but ``task_id`` (the SDK's dicts are keyed by it, not holding it).
    """
    return {key: value for key, value in task.items() if key != "task_id"}


def unique_ids(task_ids: Iterable[UUID_LIKE_T]) -> list[str]:
    """Task ids as strings, each once, in their first order."""
    return list(dict.fromkeys(map(str, task_ids)))


def unknown_task(task_id: str) -> dict[str, Any]:
    """The SDK's ``get_batch_result`` entry for an id the service does not hold: it
    answers that id ``{"status": "failed", "reason": ...}``, which the SDK passes on.
    The reason is the daemon's NOT_FOUND text for the id (GetResult's), which says
    why an id can be unknown here, where the service's says only "unknown task id".
    """
    return {"pending": False, "status": "failed", "reason": UNKNOWN_TASK_REASON.format(task_id)}


class Client:
    """The Globus Compute SDK's ``Client``, talking to the local gcgate daemon.

    The daemon holds the Globus session, the result store and the embedded local
    endpoint (``"local"`` or :data:`~gcgate.constants.LOCAL_ENDPOINT_ID`), so this
    object only needs the daemon's socket. It is cheap, thread-safe, and should be
    closed (or used as a context manager) to release its channel.
    """

    def __init__(
        self,
        environment: str | None = None,
        local_compute_services: bool = False,
        do_version_check: bool = True,
        *,
        code_serialization_strategy: Strategylike | None = None,
        data_serialization_strategy: Strategylike | None = None,
        app: Any = None,
        authorizer: Any = None,
        socket_path: str | os.PathLike[str] | None = None,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        reuse_results: bool = False,
        **kwargs: Any,
    ) -> None:
        """
        :param environment: the SDK's Globus environment ("production", "sandbox",
            ...); here the daemon's ``compute_url`` setting picks the service, so a
            value only warns that it is ignored
        :param local_compute_services: the SDK's, for a Compute service on
            localhost; ignored likewise (with a warning when True)
        :param do_version_check: check at once that this client is not newer than
            its daemon (see :meth:`version_check`)
        :param code_serialization_strategy: strategy for function code (default
            DillCode); SDK strategy objects and import paths are accepted
        :param data_serialization_strategy: strategy for task arguments (default
            DillDataBase64)
        :param app: a ``globus_sdk.GlobusApp``: its Globus Compute access token is
            sent with every call, and the daemon acts at Globus with it (instead of
            its own login) for this client's submissions and their results
        :param authorizer: a ``globus_sdk`` authorizer (e.g. ``AccessTokenAuthorizer``)
            whose header is sent likewise; without either, the daemon's login is used
        :param socket_path: gcgate: the daemon's socket; default: ``$GCGATE_SOCKET``,
            else the user's own daemon, else the system service's socket
        :param connect_timeout: gcgate: seconds to wait for the daemon to answer
        :param reuse_results: gcgate: ``run`` and ``batch_run`` ask the daemon to
            answer a task from its store when an identical task (same endpoint,
            function code, payload bytes and options) submitted with this option
            succeeded before: no run, a new task id, final at once, its dict's
            ``"reused_from"`` naming the task that ran (see :attr:`reuse_results`)
        :param kwargs: anything else warns and is ignored, as in the SDK
        :raises DaemonUnavailable: the daemon does not answer on the socket
        :raises VersionMismatch: ``do_version_check`` and this client is newer
            than the daemon
        """
        if isinstance(environment, (str, os.PathLike)) and os.sep in os.fspath(environment):
            raise TypeError(
                f"Client's first argument is the SDK's 'environment', not a socket path"
                f" ({os.fspath(environment)!r}): pass the socket as socket_path=..."
            )
        for name in kwargs:
            warnings.warn(
                f"The '{name}' argument is unrecognized. "
                "(It might have been removed in a previous release.)",
                stacklevel=2,
            )
        if environment is not None or local_compute_services:
            warnings.warn(
                "gcgate ignores 'environment' and 'local_compute_services': the daemon's"
                " compute_url setting picks the Globus Compute service",
                stacklevel=2,
            )
        if app and authorizer:
            raise ValueError("'app' and 'authorizer' are mutually exclusive.")
        self.app = app
        self.authorizer = authorizer
        #: gcgate: whether submissions ask to reuse stored results (docs/api.md,
        #: "Result reuse"). Off by default: a task with side effects runs each time.
        self.reuse_results = reuse_results
        if app is not None:
            # As the SDK's Client does: the app must get Compute-scoped tokens.
            app.add_scope_requirements({COMPUTE_RESOURCE_SERVER: [COMPUTE_SCOPE]})

        self._fx_serializer = Serializer(code_serialization_strategy, data_serialization_strategy)
        # Final task dicts by task id, like the SDK's table: final results never
        # change, so they are served from here without asking the daemon again.
        self._task_status_table: dict[str, dict[str, Any]] = {}

        self._conn = Connection(
            socket_path if socket_path is not None else client_socket_path(),
            metadata=self._auth_metadata if (app or authorizer) else None,
        )
        try:
            status = self._conn.call(
                self._conn.stub.Status, pb.StatusRequest(), timeout=connect_timeout
            )
            if do_version_check:
                versions.check_daemon(gcgate_version(), status.version, self.socket_path)
        except errors.DeadlineExceeded:
            self._conn.close()
            raise not_answering_error(self.socket_path, connect_timeout) from None
        except BaseException:
            self._conn.close()
            raise
        #: The Globus Compute service the daemon forwards to (its compute_url).
        self.web_service_address = compute_url(status)

    # ------------------------------------------------------------------ plumbing

    def _auth_metadata(self) -> list[tuple[str, str]]:
        """``authorization: Bearer ...`` from the given authorizer or app, per call
        (so a renewing authorizer can renew); the daemon keeps it in memory only."""
        authorizer = self.authorizer
        if authorizer is None and self.app is not None:
            authorizer = self.app.get_authorizer(COMPUTE_RESOURCE_SERVER)
        header = authorizer.get_authorization_header() if authorizer is not None else None
        return [("authorization", header)] if header else []

    @property
    def socket_path(self) -> Path:
        """The daemon socket this client talks to."""
        return self._conn.socket_path

    @property
    def fx_serializer(self) -> Serializer:
        """Serializes function code and task arguments, and deserializes results."""
        return self._fx_serializer

    @fx_serializer.setter
    def fx_serializer(self, value: Any) -> None:
        self._fx_serializer = as_serializer(value)

    def _call(self, method_name: str, request: Any, **kwargs: Any) -> Any:
        return self._conn.call(getattr(self._conn.stub, method_name), request, **kwargs)

    def _task_ids_in_group(self, task_group_id: UUID_LIKE_T) -> list[str]:
        """The ids of a task group's tasks the daemon holds, oldest first (for
        ``Executor.reload_tasks``); NotFound when it holds none."""
        request = pb.GetTaskGroupRequest(task_group_id=str(as_uuid(task_group_id, "task_group_id")))
        return list(self._call("GetTaskGroup", request).task_ids)

    def close(self) -> None:
        """Release the connection; the daemon and its tasks are unaffected."""
        self._conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(socket_path={str(self.socket_path)!r})"

    def status(self) -> dict[str, Any]:
        """The daemon's Status (version, uptime, backends, login, counts) as a dict."""
        return message_dict(self._call("Status", pb.StatusRequest()))

    def get_metrics(self) -> str:
        """The daemon's Prometheus metrics, in the text exposition format 0.0.4
        (``gcgate metrics``; docs/service.md#metrics names them)."""
        return str(self._call("GetMetrics", pb.GetMetricsRequest()).text)

    def version_check(self, endpoint_version: str | None = None) -> None:
        """Check that this client works with its daemon and, given an endpoint's
        version, that the Compute service still accepts that endpoint.

        The SDK checks its own version against the service's ``min_sdk_version``.
        Here the daemon, not this client, speaks to the service (through
        globus-sdk), so the client is checked against the daemon instead: it must
        not be newer (the daemon could lack calls it makes). ``endpoint_version``
        is checked as the SDK does, against the service's ``min_ep_version``
        (asked by the daemon with its login or this client's token).

        :raises VersionMismatch: a check failed (``.version_message`` says which)
        """
        daemon_version = self._call("Status", pb.StatusRequest()).version
        versions.check_daemon(gcgate_version(), daemon_version, self.socket_path)
        if endpoint_version is None:
            return
        service = json.loads(self._call("GetServiceVersion", pb.ServiceVersionRequest()).json)
        minimum = service.get("min_ep_version") or service.get("min_endpoint_version")
        if minimum is None:
            raise errors.VersionMismatch(
                "Globus Compute did not say which endpoint versions it accepts"
                f" (its version document: {service})"
            )
        versions.check_minimum(endpoint_version, minimum, package_name=ENDPOINT_PACKAGE)

    def logout(self) -> None:
        """End the Globus login this client uses, as the SDK's ``logout``.

        - with ``authorizer``: nothing to end; warns (as the SDK);
        - with ``app``: ``app.logout()``, the app's tokens (as the SDK);
        - otherwise the daemon's user login, which every client of the daemon
          shares: the daemon revokes and deletes its tokens. Only the daemon's own
          user may do that; this client proves it by sending the daemon's owner
          key (``owner.key`` in its state directory, which only that user reads).

        :raises PermissionDenied: this user may not read the owner key
        :raises FailedPrecondition: the daemon uses a service account, not a login
        """
        if self.authorizer:
            log.warning(
                "Logout is not supported when Client is initialized with"
                f" a GlobusAuthorizer (self.authorizer={self.authorizer})."
            )
            return
        if self.app:
            self.app.logout()
            return
        state_dir = self._call("Status", pb.StatusRequest()).state_dir
        self._call("Logout", pb.LogoutRequest(), metadata=owner_key_metadata(state_dir))

    # ----------------------------------------------------------------- functions

    def register_function(
        self,
        function: Callable[..., Any],
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        public: bool = False,
        group: UUID_LIKE_T | None = None,
        ha_endpoint_id: UUID_LIKE_T | None = None,
    ) -> str:
        """Register a function; returns its UUID.

        As the SDK: any callable with a ``__name__`` its code strategy serializes
        (lambdas, closures, bound methods, builtins, a :class:`ShellFunction`;
        a ``functools.partial`` has no ``__name__``: AttributeError);
        ``description`` defaults to the docstring, and the metadata records this
        Python version, gcgate's version and the code strategy. Registering the
        same function twice gives the same id.

        :param metadata: refused, as by the SDK when a function is given: a dict
            with the keys of ``FunctionRegistrationMetadata`` raises ValueError
            (other keys: TypeError); ``register_source_code`` takes it
        """
        if metadata:
            FunctionRegistrationMetadata(**metadata)  # the SDK's TypeError for bad keys
        if function is None:
            raise ValueError(
                "Either `function` must be provided, or all three of `function_name`,"
                " `function_code`, and `metadata`."
            )
        if metadata:
            raise ValueError(
                "`function` specified; cannot also specify `function_code`,"
                " `function_name`, or `metadata`"
            )
        return self._register(
            function_name=function.__name__,
            function_code=self.fx_serializer.function_code(function),
            serialized=True,
            serde_identifier=self.fx_serializer.code_serializer.identifier.strip(),
            metadata=None,
            description=inspect.getdoc(function) if description is None else description,
            public=public,
            group=group,
            ha_endpoint_id=ha_endpoint_id,
        )

    def register_source_code(
        self,
        source: str,
        function_name: str,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        public: bool = False,
        group: UUID_LIKE_T | None = None,
        ha_endpoint_id: UUID_LIKE_T | None = None,
    ) -> str:
        """Register Python source text defining ``function_name``; returns its UUID.

        The source is sent as text (the endpoint execs it), so it works across
        Python versions; the code serialization strategy is not used.
        """
        return self._register(
            function_name=function_name,
            function_code=source,
            serialized=False,
            serde_identifier=None,
            metadata=metadata,
            description=description,
            public=public,
            group=group,
            ha_endpoint_id=ha_endpoint_id,
        )

    def _register(
        self,
        *,
        serde_identifier: str | None,
        metadata: dict[str, Any] | None,
        description: str | None,
        public: bool,
        group: UUID_LIKE_T | None,
        ha_endpoint_id: UUID_LIKE_T | None,
        **fields: Any,
    ) -> str:
        if ha_endpoint_id:
            if public or group:
                raise ValueError("`ha_endpoint_id` is mutually exclusive with `public` and `group`")
            raise ValueError("gcgate does not support high-assurance functions (ha_endpoint_id)")
        meta = (
            FunctionRegistrationMetadata(**metadata)
            if metadata
            else FunctionRegistrationMetadata(
                platform.python_version(), gcgate_version(), serde_identifier
            )
        )
        request = pb.RegisterFunctionRequest(
            meta=meta.to_meta(),
            description=description or "",
            public=public,
            group=str(group or ""),
            **fields,
        )
        return self._call("RegisterFunction", request).function_id

    def get_endpoints(self, role: str | None = None) -> list[dict[str, Any]]:
        """Endpoints available: the daemon's local endpoint first, then those Globus
        Compute lists for the daemon's login (or this client's token), as the SDK's
        ``get_endpoints`` returns them.

        :param role: ``"owner"`` or ``"any"``; default: the service's (owner)
        """
        answer = self._call("ListEndpoints", pb.ListEndpointsRequest(role=role or ""))
        return [json.loads(doc) for doc in answer.endpoints_json]

    def delete_function(self, function_id: UUID_LIKE_T) -> dict[str, Any]:
        """Delete a function, as the SDK's ``delete_function``: it runs nowhere any
        more (``run``, ``batch_run`` and ``submit`` of it raise NotFound, on every
        endpoint), until it is registered again. Its registration at Globus Compute
        for the daemon's login (or this client's token) is deleted too. Tasks
        submitted before keep running, and their results stay.

        :returns: the service's answer, ``{}`` when it was never registered there
        :raises NotFound: the function is unknown to the daemon, or already deleted
        """
        answer = self._call(
            "DeleteFunction",
            pb.DeleteFunctionRequest(function_id=str(as_uuid(function_id, "function_id"))),
        )
        return json.loads(answer.json) if answer.json else {}

    def get_function(self, function_id: UUID_LIKE_T) -> dict[str, Any]:
        """A registered function, in the Compute service's document shape."""
        info = self._call("GetFunction", pb.GetFunctionRequest(function_id=str(function_id)))
        metadata = {k: v for k, v in message_dict(info.meta).items() if v}
        return {
            "function_uuid": info.function_id,
            "function_name": info.function_name,
            "function_code": info.function_code,
            "description": info.description,
            "metadata": metadata,
            "public": info.public,
            "group": info.group or None,
            "serialized": info.serialized,
            "created_at": info.created_at,
        }

    # -------------------------------------------------------------------- submit

    def run(
        self, *args: Any, endpoint_id: UUID_LIKE_T, function_id: UUID_LIKE_T, **kwargs: Any
    ) -> str:
        """Run a registered function once with ``args``/``kwargs``; returns the task id.

        ``endpoint_id`` may be ``"local"`` for the daemon's embedded endpoint. The
        task is stored by the daemon before this returns.
        """
        payload = self.fx_serializer.task_payload(args, kwargs)
        request = pb.RunRequest(
            endpoint_id=str(endpoint_id),
            function_id=str(as_uuid(function_id, "function_id")),
            payload=payload,
            options=pb.SubmitOptions(
                user_runtime_json=json.dumps(create_user_runtime()),
                reuse_results=self.reuse_results,
            ),
        )
        return self._call("Run", request).task_id

    def create_batch(
        self,
        task_group_id: UUID_LIKE_T | None = None,
        resource_specification: dict[str, Any] | None = None,
        user_endpoint_config: dict[str, Any] | None = None,
        create_websocket_queue: bool = False,
        result_serializers: list[str] | None = None,
    ) -> Batch:
        """A :class:`Batch` that uses this client's serializer (see :meth:`batch_run`)."""
        return Batch(
            task_group_id,
            resource_specification,
            user_endpoint_config,
            create_websocket_queue,
            serializer=self.fx_serializer,
            user_runtime=create_user_runtime(),
            result_serializers=result_serializers,
        )

    def batch_run(self, endpoint_id: UUID_LIKE_T, batch: Batch) -> dict[str, Any]:
        """Submit every task of ``batch`` to ``endpoint_id`` in one call.

        :returns: ``{"request_id", "task_group_id", "endpoint_id",
            "tasks": {function_id: [task_id, ...]}}``, task ids in ``add()`` order
        :raises ValueError: for a batch without tasks
        """
        return self._batch_run(endpoint_id, batch, reuse_results=self.reuse_results)

    def _batch_run(
        self, endpoint_id: UUID_LIKE_T, batch: Batch, *, reuse_results: bool
    ) -> dict[str, Any]:
        """:meth:`batch_run`, asking for result reuse or not (an Executor's own setting)."""
        if not batch or not len(batch):
            raise ValueError("No tasks specified for batch run")
        request = batch_request(endpoint_id, batch.prepare(), reuse_results=reuse_results)
        r = self._call("BatchRun", request)
        return {
            "request_id": r.request_id,
            "task_group_id": r.task_group_id,
            "endpoint_id": r.endpoint_id,
            "tasks": {group.function_id: list(group.task_ids) for group in r.tasks},
        }

    # ------------------------------------------------------------------- results

    def _remember(self, task: dict[str, Any]) -> dict[str, Any]:
        if not task["pending"]:
            self._task_status_table[task["task_id"]] = task
        return task

    def get_task(self, task_id: UUID_LIKE_T, *, wait: float = 0.0) -> dict[str, Any]:
        """The task's state, as the SDK's: ``{"pending", "status"}`` (and
        ``"details"`` when the daemon has any), for a successful task also
        ``"result"`` and ``"completion_t"``.

        :param wait: gcgate extension: seconds to wait for the task to finish
            (the daemon answers as soon as it does); 0, the default, answers at
            once as the SDK does
        :raises TaskExecutionFailed: the task failed (as the SDK's ``get_task``)
        :raises TaskCancelled: the task was cancelled (:meth:`cancel_tasks`)
        :raises ResultDeserializationError: the result cannot be deserialized
            here (a :class:`~gcgate.errors.SerializationError`, as in the SDK)
        :raises NotFound: the daemon does not know the task
        """
        tid = str(task_id)
        task = self._task_status_table.get(tid)
        deadline = time.monotonic() + wait
        while task is None:
            left = max(0.0, deadline - time.monotonic())
            request = pb.GetResultRequest(task_id=tid, wait_seconds=min(left, MAX_WAIT_SECONDS))
            record = self._call("GetResult", request)
            task = self._remember(task_dict(record, self.fx_serializer))
            if task["pending"] and deadline - time.monotonic() > 0:
                task = None
        if "exception" in task:
            raise task["exception"]
        return sdk_task(task)

    def get_result(self, task_id: UUID_LIKE_T, *, wait: float = 0.0) -> Any:
        """The task's result.

        :param wait: gcgate extension: seconds to wait for the result (default 0:
            answer at once, as the SDK does)
        :raises TaskPending: not finished yet (``.reason`` is its status)
        :raises TaskExecutionFailed: the task failed; ``str()`` shows the remote
            traceback
        :raises TaskCancelled: the task was cancelled (:meth:`cancel_tasks`)
        :raises ResultDeserializationError: as :meth:`get_task`
        """
        task = self.get_task(task_id, wait=wait)
        if task["pending"]:
            raise TaskPending(task["status"])
        return task["result"]

    def get_batch_result(
        self, task_id_list: Iterable[UUID_LIKE_T], *, wait: float = 0.0
    ) -> dict[str, dict[str, Any]]:
        """The state of many tasks, as the SDK's: ``{task_id: task dict}`` (see
        :meth:`get_task`) for the pending and successful ones, in request order.

        Also as the SDK: a task that failed, or whose result cannot be
        deserialized here, is left out and logged; an id the daemon does not know
        is answered ``{"pending": False, "status": "failed", "reason": ...}``.
        :meth:`get_tasks` includes failures with their exception.

        :param wait: gcgate extension: seconds to wait for all of them to finish
            (completions are pushed by the daemon); default 0 answers at once
        """
        wanted = unique_ids(task_id_list)
        unknown: set[str] = set()
        tasks = self._tasks(wanted, wait, unknown)
        results = {}
        for tid in wanted:
            task = tasks.get(tid)
            if task is None:
                results[tid] = unknown_task(tid)
            elif "exception" in task:
                # The SDK's words: its loop logs what it could not unpack, and goes on.
                log.error(
                    "Failure while unpacking results from get_batch_result",
                    exc_info=task["exception"],
                )
            else:
                results[tid] = sdk_task(task)
        return results

    def get_tasks(
        self, task_ids: Iterable[UUID_LIKE_T], *, wait: float = 0.0
    ) -> dict[str, dict[str, Any]]:
        """gcgate extension: every task's dict, failures included.

        ``{task_id: task}`` in request order, each as :meth:`watch` yields it:
        with ``"task_id"``, and for a failed task (or a result that cannot be
        deserialized here) ``"exception"``, the exception :meth:`get_task` would
        raise, returned rather than raised.

        :param wait: seconds to wait for all of them to finish; default 0
            answers at once
        :raises NotFound: an id is unknown to the daemon (the message names it)
        """
        return self._tasks(unique_ids(task_ids), wait, None)

    def _tasks(
        self, wanted: list[str], wait: float, unknown: set[str] | None
    ) -> dict[str, dict[str, Any]]:
        """The final or current dicts of ``wanted``, in order, after waiting up to
        ``wait`` seconds for them to finish.

        Unknown ids raise NotFound, or with ``unknown`` given are left out and
        added to it.
        """
        if wait > 0:
            deadline = time.monotonic() + wait
            try:
                self._wait_for(wanted, wait)
            except errors.NotFound:
                if unknown is None:
                    raise
                # Learn which ids the daemon knows, then wait for those alone.
                known = self._fetch(wanted, unknown)
                pending = [tid for tid, task in known.items() if task["pending"]]
                self._wait_for(pending, deadline - time.monotonic())
        return self._fetch(wanted, unknown)

    def _wait_for(self, task_ids: list[str], timeout: float) -> None:
        """Return once every task is final (and in the table), or after ``timeout`` s."""
        if timeout > 0:
            with contextlib.suppress(errors.DeadlineExceeded):
                for _ in self.watch(task_ids, timeout=timeout):
                    pass

    def _fetch(self, task_ids: list[str], unknown: set[str] | None) -> dict[str, dict[str, Any]]:
        """The dicts of ``task_ids``, from the table or the daemon, in order (ids
        already in ``unknown`` are not asked for again)."""
        table = self._task_status_table
        found = {tid: table[tid] for tid in task_ids if tid in table}
        missing = [tid for tid in task_ids if tid not in found and tid not in (unknown or ())]
        for start in range(0, len(missing), BATCH_RESULT_CHUNK):
            for record in self._batch_records(missing[start : start + BATCH_RESULT_CHUNK], unknown):
                found[record.task_id] = self._remember(task_dict(record, self.fx_serializer))
        return {tid: found[tid] for tid in task_ids if tid in found}

    def _batch_records(self, task_ids: list[str], unknown: set[str] | None) -> list[pb.TaskRecord]:
        """GetBatchResult, halving the request while the answer is over the size limit.

        Without ``unknown``, an unknown id is NotFound for the whole call; with it,
        the daemon answers the known ids and names the unknown ones
        (``skip_unknown``), which are added to ``unknown``: one call either way.
        """
        request = pb.GetBatchResultRequest(task_ids=task_ids, skip_unknown=unknown is not None)
        try:
            answer = self._call("GetBatchResult", request)
        except errors.ResourceExhausted:
            if len(task_ids) == 1:
                raise
            half = len(task_ids) // 2
            return self._batch_records(task_ids[:half], unknown) + self._batch_records(
                task_ids[half:], unknown
            )
        if unknown is not None:
            unknown.update(answer.unknown_task_ids)
        return list(answer.tasks)

    def watch(
        self, task_ids: Iterable[UUID_LIKE_T], *, timeout: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield each task's final dict (see :meth:`get_tasks`) as it finishes.

        Tasks already finished come first; the iterator ends when every task has
        been yielded. Closing it early cancels the stream.

        :raises DeadlineExceeded: ``timeout`` seconds passed first
        :raises NotFound: an id is unknown to the daemon
        """
        wanted = unique_ids(task_ids)
        table = self._task_status_table
        yield from (table[tid] for tid in wanted if tid in table)
        rest = [tid for tid in wanted if tid not in table]
        if not rest:
            return
        request = pb.WatchTasksRequest(task_ids=rest)
        stream = self._conn.stream(self._conn.stub.WatchTaskBatches, request, timeout=timeout)
        for batch in stream:
            for record in batch.tasks:
                yield self._remember(task_dict(record, self.fx_serializer))

    def cancel_tasks(self, task_ids: Iterable[UUID_LIKE_T]) -> dict[str, dict[str, Any]]:
        """gcgate extension: cancel tasks that are not final yet.

        On the local endpoint a waiting task is dropped and a running one is
        stopped (its worker process is killed and replaced); Globus Compute
        cannot cancel a task, so the daemon stops waiting for it and ignores its
        result (it may still run on its endpoint). A cancelled task is final: its
        :meth:`get_result` raises :class:`~gcgate.errors.TaskCancelled`, and it is
        not run again after a daemon restart.

        :returns: ``{task_id: {"cancelled", "status", "message"}}`` in request
            order: ``cancelled`` is False for a task that was final already (its
            ``status`` says how it ended), not an error
        :raises NotFound: an id is unknown to the daemon (nothing is cancelled)
        """
        request = pb.CancelTasksRequest(task_ids=unique_ids(task_ids))
        answer = self._call("CancelTasks", request)
        for entry in answer.tasks:
            if entry.cancelled:
                self._task_status_table.pop(entry.task_id, None)
        return {
            entry.task_id: {
                "cancelled": entry.cancelled,
                "status": entry.status,
                "message": entry.message,
            }
            for entry in answer.tasks
        }

    def list_tasks(
        self,
        limit: int = 50,
        status: str = "",
        include_results: bool = False,
        *,
        function_id: UUID_LIKE_T | None = None,
        endpoint_id: UUID_LIKE_T | None = None,
        since: float | None = None,
    ) -> list[dict[str, Any]]:
        """Recent tasks, newest first, with their function (id and name), endpoint
        and group ids; every filter given must match.

        :param status: only tasks with this status (``"pending"`` matches every
            unfinished one)
        :param include_results: also fetch (and deserialize) results and exceptions
        :param function_id: only this function's tasks
        :param endpoint_id: only this endpoint's tasks (a UUID, or ``"local"``)
        :param since: only tasks accepted at or after this Unix time
        :raises InvalidArgument: a malformed filter (the message names it)
        """
        request = pb.ListTasksRequest(
            limit=limit,
            status=status,
            include_results=include_results,
            function_id=str(function_id or ""),
            endpoint_id=str(endpoint_id or ""),
            since=since or 0.0,
        )
        records = self._call("ListTasks", request).tasks
        return [task_dict(r, self.fx_serializer, summary=True) for r in records]

    def list_functions(
        self, limit: int = 100, name: str = "", *, include_deleted: bool = False
    ) -> list[dict[str, Any]]:
        """Functions registered with the daemon, newest registration first, without
        their code (:meth:`get_function` has it): ``{"function_id", "function_name",
        "registered_at", "description", "serialized", "deleted_at",
        "python_version"}`` each.

        :param name: only functions registered under exactly this name
        :param include_deleted: also deleted ones (``deleted_at`` > 0); their tasks
            keep their records
        """
        request = pb.ListFunctionsRequest(limit=limit, name=name, include_deleted=include_deleted)
        answer = self._call("ListFunctions", request)
        return [message_dict(f) for f in answer.functions]

    # ------------------------------------------------------------ result cache

    def forget_tasks(
        self, task_ids: Iterable[UUID_LIKE_T], *, in_flight: bool = False
    ) -> dict[str, Any]:
        """Delete tasks' records and results from the daemon's store now; asking for
        one afterwards raises NotFound saying it was forgotten.

        :param in_flight: also forget tasks not yet final: each one's work is
            stopped as :meth:`cancel_tasks` would, and it is not run again. Without it a task
            in flight refuses the whole call (nothing is forgotten).
        :returns: ``{"forgotten", "in_flight", "unknown_task_ids", "bytes_freed",
            "size_bytes"}``
        :raises FailedPrecondition: a task is in flight and ``in_flight`` is False
        """
        wanted = unique_ids(task_ids)
        answer = message_dict(
            self._call("ForgetTasks", pb.ForgetTasksRequest(task_ids=wanted, in_flight=in_flight))
        )
        for task_id in wanted:  # this client's own copies go too
            self._task_status_table.pop(task_id, None)
        return answer

    def purge_tasks(
        self,
        *,
        older_than: float | None = None,
        status: str = "",
        endpoint_id: UUID_LIKE_T | None = None,
        function_id: UUID_LIKE_T | None = None,
        task_group_id: UUID_LIKE_T | None = None,
        retrieved: bool = False,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Delete the final results matching every filter given (at least one);
        tasks in flight are never touched. It affects every client of the daemon,
        so only its own user may purge (this client sends the daemon's owner key).

        :param older_than: seconds: results stored at least this long ago (0: all)
        :param status: ``"success"`` or ``"failed"``
        :param retrieved: only results already retrieved at least once
        :param dry_run: only count what would go
        :returns: ``{"tasks", "succeeded", "failed", "record_bytes", "bytes_freed",
            "size_bytes", "sample_task_ids", "dry_run"}``
        """
        request = pb.PurgeTasksRequest(
            status=status,
            endpoint_id=str(endpoint_id or ""),
            function_id=str(function_id or ""),
            task_group_id=str(task_group_id or ""),
            retrieved=retrieved,
            dry_run=dry_run,
        )
        if older_than is not None:
            request.older_than_seconds = older_than
        state_dir = self._call("Status", pb.StatusRequest()).state_dir
        answer = self._call("PurgeTasks", request, metadata=owner_key_metadata(state_dir))
        if not dry_run:  # which ids went is not all in the answer: drop this client's copies
            self._task_status_table.clear()
        return message_dict(answer)

    # ----------------------------------------------------------------- endpoints

    def _endpoint_document(self, method_name: str, endpoint_id: UUID_LIKE_T) -> dict[str, Any]:
        doc = self._call(method_name, pb.EndpointRequest(endpoint_id=str(endpoint_id)))
        return json.loads(doc.json) if doc.json else {}

    def get_endpoint_status(self, endpoint_uuid: UUID_LIKE_T) -> dict[str, Any]:
        """The endpoint's status document (``{"status": "online", "details": ...}``)."""
        return self._endpoint_document("GetEndpointStatus", endpoint_uuid)

    def get_endpoint_metadata(self, endpoint_uuid: UUID_LIKE_T) -> dict[str, Any]:
        """The endpoint's metadata document (``{"uuid", "name", ...}``)."""
        return self._endpoint_document("GetEndpointMetadata", endpoint_uuid)

    def get_allowed_functions(self, endpoint_id: UUID_LIKE_T) -> dict[str, Any]:
        """The functions the endpoint allows: ``{"endpoint_id", "restricted",
        "functions"}`` (the local endpoint: not restricted)."""
        return self._endpoint_document("GetAllowedFunctions", endpoint_id)

    def stop_endpoint(self, endpoint_id: UUID_LIKE_T) -> dict[str, Any]:
        """Stop a Globus Compute endpoint (the service drops its connections);
        the service's answer, ``{"endpoint_id", "lock_expiration_timestamp"}``.

        :raises FailedPrecondition: the local endpoint, which stops with the daemon
        """
        return self._endpoint_document("StopEndpoint", endpoint_id)

    def delete_endpoint(self, endpoint_id: UUID_LIKE_T) -> dict[str, Any]:
        """Delete a Globus Compute endpoint's registration; the service's answer.

        :raises FailedPrecondition: the local endpoint, which is part of the daemon
        """
        return self._endpoint_document("DeleteEndpoint", endpoint_id)

    def get_worker_hardware_details(self, endpoint_id: UUID_LIKE_T) -> str:
        """Run the SDK's worker hardware report on the endpoint; returns the task
        id, whose result is the report text (as the SDK's). See :mod:`gcgate.hardware`."""
        return self.run(endpoint_id=endpoint_id, function_id=hardware.register(self))


def compute_url(status: pb.StatusResponse) -> str | None:
    """The Globus Compute URL the daemon's Status reports (its Globus backend's)."""
    for backend in status.backends:
        if backend.name == "globus" and backend.details_json:
            return json.loads(backend.details_json).get("compute_url")  # type: ignore[no-any-return]
    return None


def owner_key_metadata(state_dir: str) -> list[tuple[str, str]]:
    """The daemon owner's key as call metadata, read from the daemon's state
    directory; none when this user cannot read it (the daemon then refuses)."""
    try:
        key = (Path(state_dir) / OWNER_KEY_FILE).read_text().strip()
    except OSError:
        return []
    return [(OWNER_KEY_METADATA, key)]


def batch_request(
    endpoint_id: UUID_LIKE_T, doc: dict[str, Any], *, reuse_results: bool = False
) -> pb.BatchRunRequest:
    """A BatchRunRequest from a prepared batch document (``Batch.prepare()``),
    asking the daemon to reuse stored results or not.

    Built from the document rather than the Batch object, so it is the one place a
    batch becomes a request, and an SDK ``Batch`` is accepted too.
    """

    def as_json(key: str) -> str:
        return json.dumps(doc[key]) if doc.get(key) else ""

    options = pb.SubmitOptions(
        task_group_id=str(doc.get("task_group_id") or ""),
        resource_specification_json=as_json("resource_specification"),
        user_endpoint_config_json=as_json("user_endpoint_config"),
        result_serializers=result_serializer_paths(doc.get("result_serializers") or ()),
        user_runtime_json=as_json("user_runtime"),
        reuse_results=reuse_results,
    )
    tasks = [
        pb.BatchTasks(function_id=str(fid), payloads=payloads)
        for fid, payloads in doc["tasks"].items()
    ]
    return pb.BatchRunRequest(endpoint_id=str(endpoint_id), tasks=tasks, options=options)


__all__ = [
    "BATCH_RESULT_CHUNK",
    "UNKNOWN_TASK_REASON",
    "Client",
    "FunctionRegistrationMetadata",
    "as_serializer",
    "compute_url",
    "message_dict",
    "owner_key_metadata",
    "result_serializer_paths",
    "task_dict",
]
