"""Exceptions the thin client raises.

Kept free of grpc (and of every other third-party import) so that importing
``gcgate.errors`` is cheap and so that code which only wants to *catch* gcgate
errors never pays for the transport. gRPC status codes appear here only as their
names ("NOT_FOUND", ...); the transport layer converts a ``grpc.RpcError`` with
:func:`error_for`.

Every public name of ``globus_compute_sdk.errors`` is here, with the same
constructor, attributes and ``str()``, so code and logs written against the SDK
read the same with gcgate. The daemon's refusals carry the ``http_status`` the
Globus web service answers the same refusal with.

Code that catches the SDK's own classes keeps working too: once the SDK's module
is imported, a gcgate error is built as a subclass of both its gcgate class and
its SDK counterpart (``_sdk_counterpart``; see :mod:`gcgate._sdk_twins`), so
``except globus_compute_sdk.errors.TaskPending`` and ``except gcgate.TaskPending``
both catch it, and a daemon refusal is a ``globus_sdk.GlobusAPIError``.
"""

from __future__ import annotations

import concurrent.futures
import re
import textwrap
import time
from typing import Any, ClassVar, TypeVar

from gcgate._sdk_twins import Counterpart, twin_class

__all__ = [
    "SERDE_TASK_EXECUTION_FAILED_HELP_MESSAGE",
    "WORKER_LOST_MESSAGE",
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "ComputeError",
    "DaemonUnavailable",
    "DataLoss",
    "DeadlineExceeded",
    "DeserializationError",
    "FailedPrecondition",
    "GatewayError",
    "GcgateError",
    "Internal",
    "InvalidArgument",
    "MaxResultSizeExceeded",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "ResultDeserializationError",
    "SerdeError",
    "SerializationError",
    "ServiceUnavailable",
    "TaskCancelled",
    "TaskExecutionFailed",
    "TaskPending",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "VersionMismatch",
    "error_for",
]


_E = TypeVar("_E", bound="GcgateError")

_SDK_ERRORS = "globus_compute_sdk.errors"
#: What the SDK's Compute web client raises for every refusal of the service.
_COMPUTE_API_ERROR: Counterpart = ("globus_sdk", "ComputeAPIError")


class GcgateError(Exception):
    """Base class of every error gcgate raises on purpose, so callers can catch one type."""

    #: The SDK class that code ported from the SDK catches this error as; None
    #: for errors the SDK has no counterpart of.
    _sdk_counterpart: ClassVar[Counterpart | None] = None

    def __new__(cls: type[_E], *args: Any, **kwargs: Any) -> _E:
        # A twin (also an instance of the SDK counterpart) when that SDK is imported.
        return super().__new__(twin_class(cls), *args, **kwargs)  # type: ignore[misc]

    def __init__(self, *args: Any) -> None:
        # Ends the __init__ chain here: in a twin the SDK class follows in the MRO,
        # and its __init__ must not run (GlobusAPIError's parses an HTTP response).
        Exception.__init__(self, *args)


class ComputeError(GcgateError):
    """Base class of :class:`SerdeError`, :class:`TaskPending` and :class:`VersionMismatch`.

    Mirrors ``globus_compute_sdk.errors.ComputeError``, their base in the SDK.
    """

    _sdk_counterpart = (_SDK_ERRORS, "ComputeError")

    # The SDK's ComputeError makes str() its repr(); gcgate keeps Python's str()
    # (the message). Named here so that a twin, whose MRO has the SDK class after
    # this one, reads the same as a plain instance.
    __str__ = Exception.__str__


class VersionMismatch(ComputeError):
    """Versions that do not work together: this client and its daemon, or an
    endpoint and the Compute service (``Client.version_check``).

    Mirrors ``globus_compute_sdk.errors.VersionMismatch``: the explanation is in
    ``.version_message``, and ``str()`` is the SDK's.
    """

    _sdk_counterpart = (_SDK_ERRORS, "VersionMismatch")

    def __init__(self, version_message: str) -> None:
        super().__init__(version_message)
        self.version_message = version_message

    def __str__(self) -> str:
        return f"Globus Compute Versioning Issue: {self.version_message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.version_message!r})"


# --------------------------------------------------------------------- serialization


class SerdeError(ComputeError):
    """Base class of :class:`SerializationError` and :class:`DeserializationError`.

    Mirrors ``globus_compute_sdk.errors.SerdeError``: the explanation is in
    ``.reason`` and ``str()`` is the reason itself.
    """

    _sdk_counterpart = (_SDK_ERRORS, "SerdeError")

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r})"


class SerializationError(SerdeError):
    """A Python object could not be turned into the Globus Compute wire format."""

    _sdk_counterpart = (_SDK_ERRORS, "SerializationError")

    def __str__(self) -> str:
        # Same text as the SDK's SerializationError.
        return f"Serialization failed: {self.reason}"


class DeserializationError(SerdeError):
    """A payload is malformed, or its content could not be turned back into Python."""

    _sdk_counterpart = (_SDK_ERRORS, "DeserializationError")

    def __str__(self) -> str:
        # Same text as the SDK's DeserializationError.
        return f"Deserialization failed: {self.reason}"


class ResultDeserializationError(DeserializationError, SerializationError):
    """A task's result arrived but cannot be turned back into Python here.

    Both a :class:`DeserializationError` (what it is) and a
    :class:`SerializationError`, the class the SDK's ``Client`` raises for it
    (``SerializationError("Result Object Deserialization")``), so ``except``
    clauses written for either catch it. ``str()`` is the SDK's text, then why
    it failed (``.reason``), which the SDK's leaves out; the underlying error is
    its ``__cause__``.
    """

    _sdk_counterpart = (_SDK_ERRORS, "SerializationError")

    def __str__(self) -> str:
        # The SDK Client's words first: what a ported script logs or matches.
        return f"Serialization failed: Result Object Deserialization: {self.reason}"


# ----------------------------------------------------------------------------- tasks


class TaskPending(ComputeError):
    """The task has no result yet; ``.reason`` is its current status.

    Mirrors ``globus_compute_sdk.errors.TaskPending``, including its ``str()``.
    """

    _sdk_counterpart = (_SDK_ERRORS, "TaskPending")

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"Task is pending due to {self.reason}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r})"


class MaxResultSizeExceeded(GcgateError):
    """A serialized task result is larger than the endpoint accepts.

    Mirrors ``globus_compute_sdk.errors.MaxResultSizeExceeded``, which endpoints raise
    (and report as the task's failure) when a result is over the size limit.
    """

    _sdk_counterpart = (_SDK_ERRORS, "MaxResultSizeExceeded")

    def __init__(self, result_size: int, result_size_limit: int) -> None:
        super().__init__(result_size, result_size_limit)
        self.result_size = result_size
        self.result_size_limit = result_size_limit

    def __str__(self) -> str:
        return (
            f"Task result of {self.result_size}B exceeded current "
            f"limit of {self.result_size_limit}B"
        )


# Verbatim from globus_compute_sdk.errors.error_types (4.19) so the hint users see for a
# failed task is the one the SDK documentation and support threads refer to.
SERDE_TASK_EXECUTION_FAILED_HELP_MESSAGE = """

This appears to be an error with serialization. If it is, using a different
serialization strategy from globus_compute_sdk.serialize might resolve the issue. For
example, to use globus_compute_sdk.serialize.AllCodeStrategies:

  from globus_compute_sdk import Executor
  from globus_compute_sdk.serialize import ComputeSerializer, AllCodeStrategies

  with Executor('<your-endpoint-id>') as gcx:
    gcx.serializer = ComputeSerializer(strategy_code=AllCodeStrategies())

For more information, see:
    https://globus-compute.readthedocs.io/en/latest/sdk/executor_user_guide.html#specifying-serde-strategy
"""

WORKER_LOST_MESSAGE = """*****
 One common cause of WorkerLost exceptions is Python version mismatch
 between the submitting Globus Compute SDK and the Endpoint, as
 serialization is typically not compatible across differing major
 Python versions.
*****
"""


class TaskExecutionFailed(GcgateError):
    """The task ran and failed remotely; ``remote_data`` is the remote traceback text.

    Mirrors ``globus_compute_sdk.errors.TaskExecutionFailed``: same attributes, same
    ``str()`` (the indented remote traceback plus, when the failure looks like a
    serialization problem or a lost worker, the SDK's hint on what to do about it).
    """

    _sdk_counterpart = (_SDK_ERRORS, "TaskExecutionFailed")

    SERDE_REGEX: ClassVar[re.Pattern[str]] = re.compile("dill|pickle|serializ", re.IGNORECASE)

    # Matches the traceback line of parsl's WorkerLost, whatever module it lives in.
    WORKER_LOST_REGEX: ClassVar[re.Pattern[str]] = re.compile(r"\s*parsl\.\S+\.WorkerLost:")

    def __init__(
        self,
        remote_data: str,
        completion_t: str | None = None,
        task_details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(remote_data, completion_t, task_details)
        self.remote_data = remote_data
        self.task_details = task_details
        # As the SDK: a missing completion time means "now".
        self.completion_t = completion_t or str(time.time())

    def __str__(self) -> str:
        remote_data = textwrap.indent(self.remote_data, " ")
        message = "\n" + remote_data
        serial_err = TaskExecutionFailed.SERDE_REGEX.search(remote_data)
        worker_err = TaskExecutionFailed.WORKER_LOST_REGEX.search(remote_data)
        if serial_err or worker_err:
            message += SERDE_TASK_EXECUTION_FAILED_HELP_MESSAGE
        if worker_err:
            message += WORKER_LOST_MESSAGE
        return message


class TaskCancelled(GcgateError, concurrent.futures.CancelledError):
    """The task was cancelled (``Client.cancel_tasks``, ``gcgate cancel``,
    ``Future.cancel``) before it finished: it has no result.

    A gcgate status the SDK does not have (the Compute service cannot cancel a
    task). Also a ``concurrent.futures.CancelledError``, what a cancelled
    future's ``result()`` raises, so one ``except`` covers both. ``reason`` says
    what the cancel stopped (for a Globus task: that it may still run there).
    """

    def __init__(self, task_id: str, reason: str, completion_t: str | None = None) -> None:
        super().__init__(task_id, reason, completion_t)
        self.task_id = task_id
        self.reason = reason
        self.completion_t = completion_t or str(time.time())

    def __str__(self) -> str:
        return f"task {self.task_id} was cancelled: {self.reason}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.task_id!r}, {self.reason!r})"


# ---------------------------------------------------------------------------- daemon


class DaemonUnavailable(GcgateError):
    """The gcgate daemon cannot be reached (not running, wrong socket, shutting down).

    The caller writes the message, since only it knows which socket it tried and
    how to start the daemon.
    """


class GatewayError(GcgateError):
    """The daemon refused a request; ``code`` is the gRPC status name, e.g. "NOT_FOUND".

    ``message`` is the daemon's explanation, written for a person, passed through
    unchanged. Subclasses exist per status so callers can ``except NotFound``
    without comparing strings; :func:`error_for` picks the subclass.

    The subclasses for refusals, every one but :class:`Cancelled` and
    :class:`DeadlineExceeded` (the caller's own call ended) and
    :class:`Unavailable` (the daemon is going away, as :class:`DaemonUnavailable`),
    are also ``globus_sdk.ComputeAPIError`` (a ``GlobusAPIError``) once
    ``globus_sdk`` is imported: what the SDK raises when the service refuses.
    """

    #: The gRPC status name this class stands for (instances may carry another one
    #: when the daemon answers with a status gcgate has no subclass for).
    code: str = "UNKNOWN"
    #: The HTTP status of the same refusal by a web service (gRPC's standard
    #: mapping, google.rpc.Code): what ``globus_sdk.GlobusAPIError.http_status``
    #: says when the Globus web service refuses a call.
    http_status: int = 500

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message, code)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.message else self.code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"


class Cancelled(GatewayError):
    """The call was cancelled (usually by the client)."""

    code = "CANCELLED"
    http_status = 499


class Unknown(GatewayError):
    """The daemon failed in a way it could not classify."""

    code = "UNKNOWN"
    http_status = 500
    _sdk_counterpart = _COMPUTE_API_ERROR


class InvalidArgument(GatewayError):
    """Malformed ids, bad framing, or a submission over the size limit."""

    code = "INVALID_ARGUMENT"
    http_status = 400
    _sdk_counterpart = _COMPUTE_API_ERROR


class DeadlineExceeded(GatewayError):
    """The call did not finish before its deadline."""

    code = "DEADLINE_EXCEEDED"
    http_status = 504


class NotFound(GatewayError):
    """Unknown function, task or endpoint id."""

    code = "NOT_FOUND"
    http_status = 404
    _sdk_counterpart = _COMPUTE_API_ERROR


class AlreadyExists(GatewayError):
    """The object to create exists already."""

    code = "ALREADY_EXISTS"
    http_status = 409
    _sdk_counterpart = _COMPUTE_API_ERROR


class PermissionDenied(GatewayError):
    """Logged in, but not allowed to do this (e.g. someone else's endpoint)."""

    code = "PERMISSION_DENIED"
    http_status = 403
    _sdk_counterpart = _COMPUTE_API_ERROR


class ResourceExhausted(GatewayError):
    """The daemon's result store (or another quota) is full."""

    code = "RESOURCE_EXHAUSTED"
    http_status = 429
    _sdk_counterpart = _COMPUTE_API_ERROR


class FailedPrecondition(GatewayError):
    """The request is valid but the daemon is not in a state to serve it."""

    code = "FAILED_PRECONDITION"
    http_status = 400
    _sdk_counterpart = _COMPUTE_API_ERROR


class Aborted(GatewayError):
    """The operation was aborted, typically by a concurrent conflicting one."""

    code = "ABORTED"
    http_status = 409
    _sdk_counterpart = _COMPUTE_API_ERROR


class OutOfRange(GatewayError):
    """A value is outside the range the daemon accepts."""

    code = "OUT_OF_RANGE"
    http_status = 400
    _sdk_counterpart = _COMPUTE_API_ERROR


class Unimplemented(GatewayError):
    """The daemon does not implement this call (older daemon than client)."""

    code = "UNIMPLEMENTED"
    http_status = 501
    _sdk_counterpart = _COMPUTE_API_ERROR


class Internal(GatewayError):
    """A bug or unexpected failure inside the daemon."""

    code = "INTERNAL"
    http_status = 500
    _sdk_counterpart = _COMPUTE_API_ERROR


class Unavailable(GatewayError, DaemonUnavailable):
    """The daemon answered UNAVAILABLE (it is shutting down).

    Also a :class:`DaemonUnavailable`, so one ``except DaemonUnavailable`` covers
    both "cannot connect" and "daemon going away".
    """

    code = "UNAVAILABLE"
    http_status = 503


class ServiceUnavailable(GatewayError):
    """The daemon is up, but Globus (the service behind it) could not be reached
    or kept refusing (429/5xx) within its budget; the message names the host and
    the cause. Retry later. Not a :class:`DaemonUnavailable`: nothing is wrong
    with the daemon or the socket."""

    code = "UNAVAILABLE"
    http_status = 503
    _sdk_counterpart = _COMPUTE_API_ERROR


class DataLoss(GatewayError):
    """Stored data was lost or corrupted."""

    code = "DATA_LOSS"
    http_status = 500
    _sdk_counterpart = _COMPUTE_API_ERROR


class Unauthenticated(GatewayError):
    """The daemon has no valid Globus login for this request."""

    code = "UNAUTHENTICATED"
    http_status = 401
    _sdk_counterpart = _COMPUTE_API_ERROR


_BY_CODE: dict[str, type[GatewayError]] = {
    cls.code: cls
    for cls in (
        Cancelled,
        Unknown,
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Aborted,
        OutOfRange,
        Unimplemented,
        Internal,
        Unavailable,
        DataLoss,
        Unauthenticated,
    )
}


def error_for(code_name: str, message: str) -> GatewayError:
    """Build the :class:`GatewayError` subclass for a gRPC status name.

    Accepts the bare name ("NOT_FOUND"), ``str(grpc.StatusCode.NOT_FOUND)``
    ("StatusCode.NOT_FOUND") and any letter case, so the transport can pass what
    grpc gives it without importing grpc here. A name without a subclass yields a
    plain :class:`GatewayError` that still carries the name as ``code``.
    """
    name = code_name.strip().rpartition(".")[2].upper()
    cls = _BY_CODE.get(name)
    if cls is None:
        return GatewayError(message, code=name or "UNKNOWN")
    return cls(message)
