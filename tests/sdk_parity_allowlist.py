"""Where gcgate's public API differs from globus-compute-sdk's, on purpose, and why.

``tests/test_sdk_parity.py`` fails on every difference not named here, and on
every entry here that is no longer a difference; ``docs/api.md``'s section
"Differences from globus-compute-sdk" names exactly these keys. Keys:
``Owner.member`` (a member missing, extra, or of another kind),
``Owner.method(param)`` (a parameter missing, extra, moved or with another
default), ``gcgate.NAME`` / ``errors.NAME`` / ``serialize.NAME`` (a name one
module exports and the other does not).
"""

from __future__ import annotations

_WAIT = (
    "gcgate extension, keyword-only: seconds to wait for the result (the daemon answers"
    " the moment the task ends); the default 0 answers at once, as the SDK"
)
_STATUS_ERROR = (
    "gcgate extension: one exception class per gRPC status the daemon answers with,"
    " so callers can catch what the daemon refused (all are GcgateError)"
)
_CONVENIENCE = (
    "gcgate extension: exported at the top level as well, for callers that want"
    " the class without importing its module"
)
_REUSE = (
    "gcgate extension, keyword-only: answer tasks identical to one that succeeded before"
    " (same endpoint, function code, argument bytes and options) from the daemon's store"
    " instead of running them; off by default (docs/api.md, Result reuse)"
)
_REUSE_ATTRIBUTE = "gcgate extension: the reuse_results setting, which a user may change"
_WIRE_HELPER = (
    "gcgate extension: the wire-format pieces gcgate's serializer is built from,"
    " public for clients that frame payloads themselves (docs/wire-format.md)"
)

ALLOWED: dict[str, str] = {
    # ------------------------------------------------------------------ Client
    "Client.__init__(socket_path)": (
        "gcgate extension, keyword-only: the daemon's socket (default: $GCGATE_SOCKET,"
        " the user's daemon, the system service's)"
    ),
    "Client.__init__(connect_timeout)": (
        "gcgate extension, keyword-only: how long construction waits for the daemon"
    ),
    "Client.__init__(reuse_results)": _REUSE,
    "Client.reuse_results": _REUSE_ATTRIBUTE,
    "Client.__enter__": "gcgate extension: a Client holds a gRPC channel; `with` closes it",
    "Client.__exit__": "gcgate extension: a Client holds a gRPC channel; `with` closes it",
    "Client.close": "gcgate extension: releases the channel; the daemon and its tasks stay",
    "Client.socket_path": "gcgate extension: the daemon socket this client talks to",
    "Client.status": "gcgate extension: the daemon's Status (version, backends, counts)",
    "Client.get_metrics": (
        "gcgate extension: the daemon's Prometheus metrics as text (gcgate metrics)"
    ),
    "Client.watch": (
        "gcgate extension: yields each task's result as it completes, pushed by the"
        " daemon (no polling)"
    ),
    "Client.list_tasks": "gcgate extension: recent tasks from the daemon's store (gcgate tasks)",
    "Client.list_functions": (
        "gcgate extension: the functions registered with the daemon (gcgate functions);"
        " the SDK has no listing of functions"
    ),
    "Client.forget_tasks": (
        "gcgate extension: the daemon's store outlives clients; this deletes tasks'"
        " records and results by id (gcgate forget)"
    ),
    "Client.purge_tasks": (
        "gcgate extension: deletes the stored results matching filters (age, status,"
        " endpoint, function, task group, retrieved) (gcgate purge)"
    ),
    "Client.get_tasks": (
        "gcgate extension: get_batch_result's lookup with failures kept (under 'exception')"
        " and unknown ids refused, for code that must see every task"
    ),
    "Client.cancel_tasks": (
        "gcgate extension: cancel unfinished tasks (local: dropped or its worker killed;"
        " Globus: no longer waited for, the service has no cancel), per task what happened"
    ),
    "Client.get_task(wait)": _WAIT,
    "Client.get_result(wait)": _WAIT,
    "Client.get_batch_result(wait)": _WAIT,
    "Client.FUNCX_SDK_CLIENT_ID": (
        "the SDK's own Globus Auth client id for logging in; a gcgate client holds no"
        " login (the daemon does, or the app/authorizer given to it)"
    ),
    "Client.FUNCX_SCOPE": (
        "the SDK's scope for its own login; a gcgate client holds no login"
        " (gcgate.client.COMPUTE_SCOPE is what an app given to it is asked for)"
    ),
    "Client.auth_client": (
        "deprecated in the SDK; the login is the daemon's (`gcgate whoami` says whose)"
    ),
    "Client.register_endpoint": (
        "endpoints register themselves (globus-compute-endpoint); doing it through a"
        " shared daemon would register them as the daemon's identity"
    ),
    "Client.get_result_amqp_url": (
        "the result queues are the daemon's: it consumes them and pushes results to"
        " clients; a client reading them would take results from under it"
    ),
    # ---------------------------------------------------------------- Executor
    "Executor.submit(fn)": (
        "positional-only, as concurrent.futures.Executor.submit: a function with a"
        " keyword argument named fn can be submitted"
    ),
    "Executor.reconnect_timeout": (
        "gcgate extension: how long futures wait for a restarting daemon before failing"
    ),
    "Executor.DEFAULT_RECONNECT_TIMEOUT": (
        "gcgate extension: the default of reconnect_timeout (60 s)"
    ),
    "Executor.__init__(reuse_results)": _REUSE + "; None: the client's setting",
    "Executor.reuse_results": _REUSE_ATTRIBUTE,
    # ------------------------------------------------------------- top level
    "gcgate.Batch": _CONVENIENCE,
    "gcgate.ComputeFuture": _CONVENIENCE,
    "gcgate.DeserializationError": _CONVENIENCE,
    "gcgate.SerializationError": _CONVENIENCE,
    "gcgate.TaskExecutionFailed": _CONVENIENCE,
    "gcgate.TaskPending": _CONVENIENCE,
    "gcgate.TaskCancelled": _CONVENIENCE,
    "gcgate.GcgateError": _CONVENIENCE,
    "gcgate.GatewayError": _CONVENIENCE,
    "gcgate.DaemonUnavailable": _CONVENIENCE,
    "gcgate.InvalidArgument": _CONVENIENCE,
    "gcgate.NotFound": _CONVENIENCE,
    "gcgate.ResourceExhausted": _CONVENIENCE,
    "gcgate.Unavailable": _CONVENIENCE,
    "gcgate.LOCAL_ENDPOINT_ID": (
        "gcgate extension: the embedded local endpoint's fixed UUID (alias 'local')"
    ),
    # ------------------------------------------------------------------ errors
    "errors.ResultDeserializationError": (
        "gcgate extension: an undecodable result, both the SDK's SerializationError and"
        " gcgate's DeserializationError, so either except clause catches it"
    ),
    "errors.GcgateError": "gcgate extension: the base of every error gcgate raises on purpose",
    "errors.TaskCancelled": (
        "gcgate extension: a cancelled task's get_result (a status the service lacks);"
        " also concurrent.futures.CancelledError"
    ),
    "errors.GatewayError": "gcgate extension: the base of the daemon's refusals (gRPC statuses)",
    "errors.DaemonUnavailable": (
        "gcgate extension: the daemon cannot be reached (the message says how to start it)"
    ),
    "errors.error_for": "gcgate extension: the GatewayError subclass for a gRPC status name",
    "errors.SERDE_TASK_EXECUTION_FAILED_HELP_MESSAGE": (
        "the SDK's hint text, exported for code that prints it (the SDK has it unexported)"
    ),
    "errors.WORKER_LOST_MESSAGE": (
        "the SDK's WorkerLost hint, exported for code that prints it (unexported in the SDK)"
    ),
    **{
        f"errors.{name}": _STATUS_ERROR
        for name in (
            "Aborted",
            "AlreadyExists",
            "Cancelled",
            "DataLoss",
            "DeadlineExceeded",
            "FailedPrecondition",
            "Internal",
            "InvalidArgument",
            "NotFound",
            "OutOfRange",
            "PermissionDenied",
            "ResourceExhausted",
            "ServiceUnavailable",
            "Unauthenticated",
            "Unavailable",
            "Unimplemented",
            "Unknown",
        )
    },
    # --------------------------------------------------------------- serialize
    "serialize.SerializationStrategy.get_cached_by_class": (
        "gcgate keeps one strategy per identifier in its module: resolve_strategy()"
        " takes a class, an instance or an import path"
    ),
    "serialize.SerializationStrategy.get_cached_by_id": (
        "gcgate keeps one strategy per identifier in its module: strategy_by_identifier()"
    ),
    "serialize.SerializationStrategy.name": (
        "gcgate extension: the class name, which is the SDK's class name"
    ),
    "serialize.SerializationStrategy.sdk_import_path": (
        "gcgate extension: the SDK import path endpoints expect in result_serializers"
    ),
    "serialize.SerializationStrategy.selectable": (
        "gcgate extension: False for strategies that are only read (PickleCode)"
    ),
    "serialize.PickleCode": (
        "the SDK's deprecated strategy (unexported there), kept so old payloads still decode"
    ),
    "serialize.Serializer": (
        "gcgate's earlier name of ComputeSerializer, kept for code written against it"
    ),
    "serialize.ComputeSerializer.function_code": (
        "gcgate extension: the function_code a function registers with (the SDK builds"
        " it in FunctionRegistrationData)"
    ),
    "serialize.ComputeSerializer.task_payload": (
        "gcgate extension: a task's packed (args, kwargs) payload (the SDK builds it in Batch.add)"
    ),
    "serialize.ComputeSerializer.unpack_task": (
        "gcgate extension: a task payload back to (function, args, kwargs), as an endpoint"
        " reads it (local workers and tests)"
    ),
    "serialize.Strategylike": (
        "the type of what result_serializers take (the SDK has it in serialize.facade)"
    ),
    "serialize.resolve_strategy": (
        "gcgate extension: a strategy from a class, an instance or an SDK import path"
    ),
    "serialize.strategy_by_identifier": (
        "gcgate extension: a strategy from its 3-character wire header"
    ),
    "serialize.IDENTIFIER_LENGTH": _WIRE_HELPER,
    "serialize.SDK_SERIALIZE_MODULE": _WIRE_HELPER,
    "serialize.pack_buffers": _WIRE_HELPER,
    "serialize.unpack_buffers": _WIRE_HELPER,
}
