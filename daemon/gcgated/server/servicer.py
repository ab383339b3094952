"""Gateway RPCs: decode the request, call one service, encode the answer.

Only the services (``gcgated.services``) are reachable from here, never the core,
a backend or the store (an import-linter contract keeps it so); errors the
services raise carry the message the client sees, and the ``rpc`` decorator maps
them to status codes.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
from gcgate import __version__
from gcgate.constants import OWNER_KEY_FILE, UPSTREAM_UNAVAILABLE_METADATA
from gcgate.v1 import gateway_pb2 as pb
from gcgate.v1 import gateway_pb2_grpc as pb_grpc

from gcgated.caller import Caller
from gcgated.errors import (
    GatewayError,
    InvalidArgument,
    PermissionDenied,
    ServiceUnavailable,
    is_disk_full,
)
from gcgated.logs import log_refusal
from gcgated.model import (
    PurgeRequest,
    Registration,
    Submission,
    SubmitOptions,
    TaskQuery,
    TaskRecord,
)
from gcgated.network import is_network_error, unreachable
from gcgated.owner import is_owner
from gcgated.services import Services
from gcgated.services.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from gcgated.services.status import DaemonStatus
from gcgated.strict_json import json_text
from gcgated.validation import json_payload, parse_json_object, result_serializers

log = logging.getLogger(__name__)

#: Results and exceptions per WatchTaskBatches message, well inside the 64 MB limit.
BATCH_MESSAGE_BYTES = 16 * 1024 * 1024

Handler = TypeVar("Handler", bound=Callable[..., Any])


async def _abort(
    servicer: GatewayServicer, name: str, exc: Exception, context: grpc.aio.ServicerContext
) -> None:
    """End the call with the status ``exc`` stands for; anything unexpected is
    INTERNAL with the details in the log only (they may quote a client's data).
    A Globus host that could not be reached is expected (an outage, no network):
    UNAVAILABLE naming it, one log line, whichever path let it through."""
    if isinstance(exc, grpc.aio.AbortError):  # the call was already ended with a status
        raise exc
    if is_network_error(exc):
        exc = unreachable(exc, name)
        log.warning("%s", exc)
    if isinstance(exc, GatewayError):
        log_refusal(log, name, exc.code, str(exc), caller_of(context).key)
        if isinstance(exc, ServiceUnavailable):  # Globus is down, not the daemon
            context.set_trailing_metadata(((UPSTREAM_UNAVAILABLE_METADATA, "globus"),))
        await context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
    if is_disk_full(exc):
        log.error(
            "%s refused: the store cannot be written: %s",
            name,
            exc,
            extra={"rpc": name, "code": "RESOURCE_EXHAUSTED"},
        )
        await context.abort(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"the result store at {servicer.services.status.store_directory} cannot be written: its"
            f" disk is full ({exc}); free space there, then retry",
        )
    log.exception("%s failed", name, extra={"rpc": name, "code": "INTERNAL"})
    await context.abort(
        grpc.StatusCode.INTERNAL, f"{name}: internal error in gcgated; its log has the details"
    )


def rpc(method: Handler) -> Handler:
    """Map core errors to their status; anything unexpected to INTERNAL, logged."""

    @functools.wraps(method)
    async def unary(self: GatewayServicer, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except Exception as exc:
            await _abort(self, method.__name__, exc, context)

    return unary  # type: ignore[return-value]


def stream_rpc(method: Handler) -> Handler:
    """``rpc`` for server-streaming methods."""

    @functools.wraps(method)
    async def streaming(
        self: GatewayServicer, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        try:
            async for item in method(self, request, context):
                yield item
        except Exception as exc:
            await _abort(self, method.__name__, exc, context)

    return streaming  # type: ignore[return-value]


def caller_of(context: grpc.aio.ServicerContext) -> Caller:
    """Who the call acts as at Globus: a client's own token (``Client(authorizer=...)``
    sends it as ``authorization: Bearer`` metadata), else the daemon's login."""
    return Caller.from_metadata(context.invocation_metadata())


def endpoint_document(answer: tuple[str, dict[str, Any]]) -> pb.EndpointDocument:
    """An endpoint service's (endpoint id, document) as the wire message."""
    endpoint_id, document = answer
    return pb.EndpointDocument(endpoint_id=endpoint_id, json=json.dumps(document))


class GatewayServicer(pb_grpc.GatewayServicer):
    """Implements gcgate.v1.Gateway on top of the daemon's services.

    ``owner_key``: the key of ``gcgated.owner``, which calls that change what
    every client relies on must carry.
    """

    def __init__(
        self, services: Services, *, socket_path: Path, state_dir: Path, owner_key: str
    ) -> None:
        self.services = services
        self.socket_path = socket_path
        self.state_dir = state_dir
        self._owner_key = owner_key

    def _require_owner(self, context: grpc.aio.ServicerContext, what: str) -> None:
        if not is_owner(context.invocation_metadata(), self._owner_key):
            raise PermissionDenied(
                f"{what} affects every client of this daemon, so only the daemon's own"
                f" user may do it: the call must carry the contents of"
                f" {self.state_dir / OWNER_KEY_FILE} (gcgate.Client and the gcgate"
                " command send them when they can read that file)"
            )

    @rpc
    async def Status(self, request: pb.StatusRequest, context: Any) -> pb.StatusResponse:
        return _status_message(
            self.services.status.snapshot(), socket_path=self.socket_path, state_dir=self.state_dir
        )

    @rpc
    async def RegisterFunction(
        self, request: pb.RegisterFunctionRequest, context: Any
    ) -> pb.RegisterFunctionResponse:
        function_id, created = self.services.functions.register(
            Registration(
                function_name=request.function_name,
                function_code=request.function_code,
                serialized=request.serialized,
                meta={
                    "python_version": request.meta.python_version,
                    "sdk_version": request.meta.sdk_version,
                    "serde_identifier": request.meta.serde_identifier,
                },
                description=request.description,
                public=request.public,
                group=request.group,
            )
        )
        return pb.RegisterFunctionResponse(function_id=function_id, created=created)

    @rpc
    async def GetFunction(self, request: pb.GetFunctionRequest, context: Any) -> pb.FunctionInfo:
        record = self.services.functions.get(request.function_id)
        return pb.FunctionInfo(
            function_id=record.function_id,
            function_name=record.function_name,
            function_code=record.function_code,
            serialized=record.serialized,
            meta=pb.FunctionMeta(**record.meta),
            description=record.description,
            public=record.public,
            group=record.group,
            created_at=record.created_at,
        )

    @rpc
    async def Run(self, request: pb.RunRequest, context: Any) -> pb.RunResponse:
        receipt = await self.services.tasks.submit(
            _submission(
                request.endpoint_id,
                [(request.function_id, [_run_payload(request)])],
                request.options,
                caller_of(context),
                json_only=request.HasField("json_arguments"),
            )
        )
        return pb.RunResponse(
            task_id=receipt.tasks[0][1][0],
            task_group_id=receipt.task_group_id,
            endpoint_id=receipt.endpoint_id,
            request_id=receipt.request_id,
        )

    @rpc
    async def BatchRun(self, request: pb.BatchRunRequest, context: Any) -> pb.BatchRunResponse:
        receipt = await self.services.tasks.submit(
            _submission(
                request.endpoint_id,
                [
                    (group.function_id, _batch_payloads(group, index))
                    for index, group in enumerate(request.tasks)
                ],
                request.options,
                caller_of(context),
                json_only=bool(request.tasks)
                and not any(group.payloads for group in request.tasks),
            )
        )
        return pb.BatchRunResponse(
            request_id=receipt.request_id,
            task_group_id=receipt.task_group_id,
            endpoint_id=receipt.endpoint_id,
            tasks=[pb.FunctionTaskIds(function_id=f, task_ids=t) for f, t in receipt.tasks],
        )

    @rpc
    async def GetResult(self, request: pb.GetResultRequest, context: Any) -> pb.TaskRecord:
        record = await self.services.tasks.wait_for(
            request.task_id, request.wait_seconds, caller_of(context)
        )
        return task_message(record)

    @rpc
    async def GetBatchResult(
        self, request: pb.GetBatchResultRequest, context: Any
    ) -> pb.GetBatchResultResponse:
        records, unknown = self.services.tasks.get_many(
            request.task_ids, caller_of(context), skip_unknown=request.skip_unknown
        )
        return pb.GetBatchResultResponse(
            tasks=[task_message(r) for r in records], unknown_task_ids=unknown
        )

    @stream_rpc
    async def WatchTasks(
        self, request: pb.WatchTasksRequest, context: Any
    ) -> AsyncIterator[pb.TaskRecord]:
        async for record in self.services.tasks.watch(request.task_ids, caller_of(context)):
            yield task_message(record)

    @stream_rpc
    async def WatchTaskBatches(
        self, request: pb.WatchTasksRequest, context: Any
    ) -> AsyncIterator[pb.TaskRecordBatch]:
        batches = self.services.tasks.watch_batches(request.task_ids, caller_of(context))
        async for records in batches:
            for chunk in wire_chunks(records):
                yield pb.TaskRecordBatch(tasks=[task_message(r) for r in chunk])

    @rpc
    async def CancelTasks(
        self, request: pb.CancelTasksRequest, context: Any
    ) -> pb.CancelTasksResponse:
        results = self.services.tasks.cancel(request.task_ids)
        return pb.CancelTasksResponse(
            tasks=[
                pb.CancelledTask(
                    task_id=r.task_id, cancelled=r.cancelled, status=r.status, message=r.message
                )
                for r in results
            ]
        )

    @rpc
    async def GetTaskGroup(
        self, request: pb.GetTaskGroupRequest, context: Any
    ) -> pb.GetTaskGroupResponse:
        task_group_id, task_ids = self.services.tasks.in_group(request.task_group_id)
        return pb.GetTaskGroupResponse(task_group_id=task_group_id, task_ids=task_ids)

    @rpc
    async def GetEndpointStatus(
        self, request: pb.EndpointRequest, context: Any
    ) -> pb.EndpointDocument:
        endpoints = self.services.endpoints
        return endpoint_document(await endpoints.status(request.endpoint_id, caller_of(context)))

    @rpc
    async def GetEndpointMetadata(
        self, request: pb.EndpointRequest, context: Any
    ) -> pb.EndpointDocument:
        endpoints = self.services.endpoints
        return endpoint_document(await endpoints.metadata(request.endpoint_id, caller_of(context)))

    @rpc
    async def GetAllowedFunctions(
        self, request: pb.EndpointRequest, context: Any
    ) -> pb.EndpointDocument:
        endpoints = self.services.endpoints
        return endpoint_document(
            await endpoints.allowed_functions(request.endpoint_id, caller_of(context))
        )

    @rpc
    async def StopEndpoint(self, request: pb.EndpointRequest, context: Any) -> pb.EndpointDocument:
        endpoints = self.services.endpoints
        return endpoint_document(await endpoints.stop(request.endpoint_id, caller_of(context)))

    @rpc
    async def DeleteEndpoint(
        self, request: pb.EndpointRequest, context: Any
    ) -> pb.EndpointDocument:
        endpoints = self.services.endpoints
        return endpoint_document(await endpoints.delete(request.endpoint_id, caller_of(context)))

    @rpc
    async def GetServiceVersion(
        self, request: pb.ServiceVersionRequest, context: Any
    ) -> pb.ServiceVersionResponse:
        document = await self.services.status.service_version(caller_of(context))
        return pb.ServiceVersionResponse(json=json.dumps(document))

    @rpc
    async def ListTasks(self, request: pb.ListTasksRequest, context: Any) -> pb.ListTasksResponse:
        records = self.services.tasks.recent(
            TaskQuery(
                limit=request.limit,
                status=request.status,
                function_id=request.function_id,
                endpoint_id=request.endpoint_id,
                since=request.since,
            )
        )
        return pb.ListTasksResponse(
            tasks=[task_message(r, include_results=request.include_results) for r in records]
        )

    @rpc
    async def ListEndpoints(
        self, request: pb.ListEndpointsRequest, context: Any
    ) -> pb.ListEndpointsResponse:
        documents = await self.services.endpoints.list(request.role, caller_of(context))
        return pb.ListEndpointsResponse(endpoints_json=[json.dumps(d) for d in documents])

    @rpc
    async def DeleteFunction(
        self, request: pb.DeleteFunctionRequest, context: Any
    ) -> pb.DeleteFunctionResponse:
        deleted, answer = await self.services.functions.delete(
            request.function_id, caller_of(context)
        )
        return pb.DeleteFunctionResponse(
            deleted_at_globus=deleted, json=json.dumps(answer) if deleted else ""
        )

    # ------------------------------------------------------ cache life-cycle

    @rpc
    async def ForgetTasks(
        self, request: pb.ForgetTasksRequest, context: Any
    ) -> pb.ForgetTasksResponse:
        if not request.task_ids:
            raise InvalidArgument("task_ids is empty: name the tasks to forget")
        removal = await self.services.tasks.forget(request.task_ids, in_flight=request.in_flight)
        return pb.ForgetTasksResponse(
            forgotten=removal.tasks,
            in_flight=removal.in_flight,
            unknown_task_ids=removal.unknown_task_ids,
            bytes_freed=removal.bytes_freed,
            size_bytes=removal.size_bytes,
        )

    @rpc
    async def PurgeTasks(
        self, request: pb.PurgeTasksRequest, context: Any
    ) -> pb.PurgeTasksResponse:
        self._require_owner(context, "PurgeTasks (it deletes results of every client)")
        removal = await self.services.tasks.purge(
            PurgeRequest(
                older_than_seconds=(
                    request.older_than_seconds if request.HasField("older_than_seconds") else None
                ),
                status=request.status,
                endpoint_id=request.endpoint_id,
                function_id=request.function_id,
                task_group_id=request.task_group_id,
                retrieved=request.retrieved,
                dry_run=request.dry_run,
            )
        )
        return pb.PurgeTasksResponse(
            tasks=removal.tasks,
            succeeded=removal.by_status.get("success", 0),
            failed=removal.by_status.get("failed", 0),
            record_bytes=removal.record_bytes,
            bytes_freed=removal.bytes_freed,
            size_bytes=removal.size_bytes,
            sample_task_ids=removal.sample_task_ids,
            dry_run=request.dry_run,
        )

    @rpc
    async def ListFunctions(
        self, request: pb.ListFunctionsRequest, context: Any
    ) -> pb.ListFunctionsResponse:
        records = self.services.functions.list(
            request.limit, request.name, deleted=request.include_deleted
        )
        return pb.ListFunctionsResponse(
            functions=[
                pb.FunctionSummary(
                    function_id=r.function_id,
                    function_name=r.function_name,
                    registered_at=r.created_at,
                    description=r.description,
                    serialized=r.serialized,
                    deleted_at=r.deleted_at,
                    python_version=r.meta.get("python_version", ""),
                )
                for r in records
            ]
        )

    # -------------------------------------------------------------- metrics

    @rpc
    async def GetMetrics(
        self, request: pb.GetMetricsRequest, context: Any
    ) -> pb.GetMetricsResponse:
        return pb.GetMetricsResponse(
            text=self.services.metrics.exposition(), content_type=METRICS_CONTENT_TYPE
        )

    # ---------------------------------------------------------------- login

    @rpc
    async def StartLogin(
        self, request: pb.StartLoginRequest, context: Any
    ) -> pb.StartLoginResponse:
        start = await self.services.login.start(request.force)
        return pb.StartLoginResponse(
            login_id=start.login_id,
            authorize_url=start.authorize_url,
            expires_in_seconds=start.expires_in_seconds,
        )

    @rpc
    async def CompleteLogin(
        self, request: pb.CompleteLoginRequest, context: Any
    ) -> pb.WhoAmIResponse:
        return _who_am_i(await self.services.login.complete(request.login_id, request.auth_code))

    @rpc
    async def Logout(self, request: pb.LogoutRequest, context: Any) -> pb.WhoAmIResponse:
        self._require_owner(context, "Logout (it ends the daemon's Globus login)")
        return _who_am_i(await self.services.login.logout())

    @rpc
    async def WhoAmI(self, request: pb.WhoAmIRequest, context: Any) -> pb.WhoAmIResponse:
        return _who_am_i(self.services.login.whoami())


def _status_message(
    status: DaemonStatus, *, socket_path: Path, state_dir: Path
) -> pb.StatusResponse:
    store = status.store
    login = status.login
    return pb.StatusResponse(
        version=__version__,
        uptime_seconds=status.uptime_seconds,
        pid=os.getpid(),
        socket_path=str(socket_path),
        state_dir=str(state_dir),
        backends=[
            pb.BackendStatus(
                name=name,
                state=str(info.get("state", "")),
                endpoint_id=str(info.get("endpoint_id", "")),
                details_json=json.dumps(info),
            )
            for name, info in status.backends
        ],
        login=(
            pb.LoginState(state="not_configured")
            if login is None
            else pb.LoginState(
                state=str(login.get("state", "")), identity=str(login.get("identity", ""))
            )
        ),
        tasks=pb.TaskCounts(
            pending=status.pending,
            success=status.success,
            failed=status.failed,
            cancelled=status.cancelled,
            reused=status.reused,
        ),
        store=pb.StoreStatus(
            size_bytes=store.size_bytes,
            size_limit_bytes=store.size_limit_bytes,
            functions=store.functions,
            task_records=store.task_records,
            retention_days=store.retention_seconds / 86400,
            unread_retention_days=store.unread_retention_seconds / 86400,
            damaged_moved_to=store.damaged_moved_to,
        ),
        reload=pb.ReloadState(
            last_reload_at=status.reload.at,
            ok=not status.reload.error,
            error=status.reload.error,
        ),
        config_file=status.config_file,
    )


def _run_payload(request: pb.RunRequest) -> str:
    """The task payload of a Run: given, or framed from JSON arguments (the
    ``arguments`` oneof; with neither, "", which the core refuses naming both)."""
    if request.HasField("json_arguments"):
        return json_payload(request.json_arguments.args_json, request.json_arguments.kwargs_json)
    return request.payload


def _batch_payloads(group: pb.BatchTasks, index: int) -> list[str]:
    """Payloads first, then those framed from JSON arguments (the documented order);
    an error names the one at fault (``tasks[0].json_arguments[2].args_json``)."""
    return [
        *group.payloads,
        *(
            json_payload(a.args_json, a.kwargs_json, f"tasks[{index}].json_arguments[{k}]")
            for k, a in enumerate(group.json_arguments)
        ),
    ]


def _who_am_i(info: dict[str, Any]) -> pb.WhoAmIResponse:
    return pb.WhoAmIResponse(
        login=pb.LoginState(state=str(info.get("state", "")), identity=info.get("identity", "")),
        username=info.get("username", ""),
        name=info.get("name", ""),
        email=info.get("email", ""),
    )


def _submission(
    endpoint_id: str,
    groups: list[tuple[str, list[str]]],
    options: pb.SubmitOptions,
    caller: Caller,
    *,
    json_only: bool,
) -> Submission:
    """A decoded submission; ``json_only`` when every task came with JSON arguments
    (its results then default to JSON)."""
    return Submission(
        endpoint_id=endpoint_id,
        groups=groups,
        caller=caller,
        options=SubmitOptions(
            task_group_id=options.task_group_id,
            resource_specification=parse_json_object(
                options.resource_specification_json, "options.resource_specification_json"
            ),
            user_endpoint_config=parse_json_object(
                options.user_endpoint_config_json, "options.user_endpoint_config_json"
            ),
            user_runtime=parse_json_object(options.user_runtime_json, "options.user_runtime_json"),
            result_serializers=result_serializers(options.result_serializers, json_only=json_only),
            reuse_results=options.reuse_results,
        ),
    )


def wire_chunks(records: list[TaskRecord]) -> Iterator[list[TaskRecord]]:
    """``records`` in runs whose results and exceptions stay under BATCH_MESSAGE_BYTES
    (a run has at least one record: a single result is at most 10 MB)."""
    chunk: list[TaskRecord] = []
    size = 0
    for record in records:
        length = len(record.result or "") + len(record.exception or "")
        if chunk and size + length > BATCH_MESSAGE_BYTES:
            yield chunk
            chunk, size = [], 0
        chunk.append(record)
        size += length
    if chunk:
        yield chunk


def task_message(record: TaskRecord, *, include_results: bool = True) -> pb.TaskRecord:
    """A task record as the wire TaskRecord."""
    message = pb.TaskRecord(
        task_id=record.task_id,
        status=record.status,
        pending=record.pending,
        completion_t=record.completion_t,
        function_id=record.function_id,
        endpoint_id=record.endpoint_id,
        task_group_id=record.task_group_id,
        created_at=record.created_at,
        details_json=json.dumps(record.details) if record.details else "",
        reused_from=record.reused_from,
        function_name=record.function_name,
        pending_reason=record.pending_reason,
    )
    if include_results:
        message.result = record.result or ""
        message.exception = record.exception or ""
        message.result_json = json_text(message.result)
    return message
