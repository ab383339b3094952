"""gcgate: a thin client for the gcgate daemon, with the Globus Compute SDK's API.

Porting code from the SDK needs only the import changed::

    from gcgate import Client, Executor   # was: from globus_compute_sdk import ...

The client depends on grpcio, protobuf and dill only; everything that talks to
Globus lives in the daemon (``gcgated``).
"""

__version__ = "0.1.0"

# Imported after __version__, which the submodules read from here.
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
    TaskExecutionFailed,
    TaskPending,
    Unavailable,
)
from gcgate.executor import ComputeFuture, Executor

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
    "NotFound",
    "ResourceExhausted",
    "SerializationError",
    "TaskExecutionFailed",
    "TaskPending",
    "Unavailable",
    "__version__",
]
