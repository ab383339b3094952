"""gcgate: a thin client for the gcgate daemon, with the Globus Compute SDK's API.

Porting code from the SDK needs only the import changed::

    from gcgate import Client, Executor   # was: from globus_compute_sdk import ...

The client depends on grpcio, protobuf and dill only; everything that talks to
Globus lives in the daemon (``gcgated``).
"""

__version__ = "0.1.0"

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> defining module. Resolved on first use (PEP 562), so that
#: `import gcgate` and its light modules (errors, serialize, constants) do not
#: load grpc until a Client, Batch or Executor is actually used.
_EXPORTS = {
    "Batch": "gcgate.batch",
    "Client": "gcgate.client",
    "ComputeFuture": "gcgate.executor",
    "Executor": "gcgate.executor",
    "LOCAL_ENDPOINT_ID": "gcgate.constants",
    "MPIFunction": "gcgate.shell_function",
    "ShellFunction": "gcgate.shell_function",
    "ShellResult": "gcgate.shell_function",
    **{
        name: "gcgate.errors"
        for name in (
            "DaemonUnavailable",
            "DeserializationError",
            "GatewayError",
            "GcgateError",
            "InvalidArgument",
            "NotFound",
            "ResourceExhausted",
            "SerializationError",
            "TaskCancelled",
            "TaskExecutionFailed",
            "TaskPending",
            "Unavailable",
        )
    },
}

if TYPE_CHECKING:
    from gcgate.batch import Batch
    from gcgate.client import Client
    from gcgate.constants import LOCAL_ENDPOINT_ID
    from gcgate.errors import (
        DaemonUnavailable,
        DeserializationError,
        GatewayError,
        GcgateError,
        InvalidArgument,
        NotFound,
        ResourceExhausted,
        SerializationError,
        TaskCancelled,
        TaskExecutionFailed,
        TaskPending,
        Unavailable,
    )
    from gcgate.executor import ComputeFuture, Executor
    from gcgate.shell_function import MPIFunction, ShellFunction, ShellResult


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gcgate' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "LOCAL_ENDPOINT_ID",
    "Batch",
    "Client",
    "ComputeFuture",
    "DaemonUnavailable",
    "DeserializationError",
    "Executor",
    "GatewayError",
    "GcgateError",
    "InvalidArgument",
    "MPIFunction",
    "NotFound",
    "ResourceExhausted",
    "SerializationError",
    "ShellFunction",
    "ShellResult",
    "TaskCancelled",
    "TaskExecutionFailed",
    "TaskPending",
    "Unavailable",
    "__version__",
]
