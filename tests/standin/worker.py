"""What a Globus Compute endpoint worker does with one task, in a worker process.

Mirrors ``globus_compute_endpoint.engines.helper.execute_task`` and its
``exception_handling`` module: the task buffer (the function's registered
``function_code`` followed by the submitted payload: three packed buffers) is
unpacked and deserialized with the real SDK's ``ComputeSerializer``, the function
is called, and its result serialized with the task's ``result_serializers`` (or
the default data strategy), subject to the endpoint's result size limit.
Failures become the traceback text the endpoint reports, starting at the user's
frame; the endpoint's own errors (result too large) are reported as their
``repr``, and every failure carries the ``error_details`` (``code``,
``user_message``) the endpoint puts in its ``Result`` message.

Deliberately independent of gcgate: this is the reference the code under test is
checked against. Imported in spawned worker processes, so it keeps its imports to
the SDK's serializer and the standard library.
"""

from __future__ import annotations

import platform
import sys
import time
import traceback
import types
from typing import Any

#: globus-compute-endpoint's default ``result_size_limit``.
RESULT_SIZE_LIMIT = 10 * 1024 * 1024


def _inner_traceback(tb: types.TracebackType, levels: int = 2) -> types.TracebackType:
    while levels > 0:
        tb = tb.tb_next if tb.tb_next is not None else tb
        levels -= 1
    return tb


def get_error_string(exc: BaseException, *, tb_levels: int = 2) -> str:
    """The endpoint's ``get_error_string``: repr for its own errors, else the
    traceback from the frame ``tb_levels`` below the catching one."""
    from globus_compute_sdk.errors import MaxResultSizeExceeded

    if isinstance(exc, MaxResultSizeExceeded):
        return repr(exc)
    tb = exc.__traceback__
    if tb is not None:
        tb = _inner_traceback(tb, levels=tb_levels)
    return "".join(traceback.format_exception(type(exc), exc, tb))


def get_result_error_details(exc: BaseException) -> dict[str, str]:
    """The endpoint's ``get_result_error_details``: the ``code`` and
    ``user_message`` of a failed task's ``Result.error_details``."""
    from globus_compute_sdk.errors import MaxResultSizeExceeded

    if isinstance(exc, MaxResultSizeExceeded):
        return {"code": type(exc).__name__, "user_message": f"remote error: {exc}"}
    return {
        "code": "RemoteExecutionError",
        "user_message": "An error occurred during the execution of this task",
    }


def env_details() -> dict[str, Any]:
    """``globus_compute_sdk.sdk.utils.get_env_details()``, as workers report it."""
    import dill
    from globus_compute_sdk.version import __version__

    return {
        "os": platform.platform(),
        "dill_version": dill.__version__,
        "python_version": platform.python_version(),
        "globus_compute_sdk_version": __version__,
    }


def _call_user_function(
    task_buffer: str, result_serializers: list[str] | None, result_size_limit: int
) -> str:
    from globus_compute_sdk.errors import MaxResultSizeExceeded
    from globus_compute_sdk.serialize import ComputeSerializer

    serializer = ComputeSerializer()
    f, args, kwargs = serializer.unpack_and_deserialize(task_buffer)
    result_data = f(*args, **kwargs)
    if result_serializers:
        serialized = ComputeSerializer.serialize_from_list(result_data, result_serializers)
    else:
        serialized = serializer.serialize(result_data)
    if len(serialized) > result_size_limit:
        raise MaxResultSizeExceeded(len(serialized), result_size_limit)
    return serialized


def execute_task(
    task_buffer: str,
    result_serializers: list[str] | None = None,
    result_size_limit: int = RESULT_SIZE_LIMIT,
) -> dict[str, Any]:
    """Run one task; ``{"result": str}`` or ``{"exception": str, "error_details":
    {"code", "user_message"}}``, plus ``details``."""
    start = time.time()
    out: dict[str, Any]
    try:
        out = {"result": _call_user_function(task_buffer, result_serializers, result_size_limit)}
    except BaseException as exc:  # SystemExit too: the worker must survive user code
        out = {"exception": get_error_string(exc), "error_details": get_result_error_details(exc)}
    end = time.time()
    details = env_details()
    details["task_transitions"] = {"execution-start": start, "execution-end": end}
    out["details"] = details
    out["completion_t"] = end
    return out


def warm_up() -> int:
    """Import what tasks need, so the first task is not slowed by it."""
    import globus_compute_sdk.serialize  # noqa: F401

    return len(sys.modules)
