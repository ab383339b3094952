"""Gateway RPCs: decode the request, call the task life-cycle, encode the answer.

No storage or backend detail lives here; errors raised by the core carry the
message the client sees, and the ``rpc`` decorator maps them to status codes.
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
from gcgate.constants import LOCAL_ENDPOINT_ID
from gcgate.v1 import gateway_pb2 as pb
from gcgate.v1 import gateway_pb2_grpc as pb_grpc

from gcgated.backends.base import SubmitOptions
from gcgated.backends.globus.auth import LOGIN_TIMEOUT
from gcgated.caller import Caller
from gcgated.core import Submission, TaskLifecycle
from gcgated.errors import GatewayError, InvalidArgument, is_disk_full
from gcgated.validation import check_endpoint_role, json_payload, parse_json_object

log = logging.getLogger(__name__)

#: The longest a GetResult call may hold a connection waiting for a result.
MAX_WAIT_SECONDS = 300.0
#: Bounds on ListTasks, so one call cannot read the whole store.
DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT = 50, 10_000
#: Results and exceptions per WatchTaskBatches message, well inside the 64 MB limit.
BATCH_MESSAGE_BYTES = 16 * 1024 * 1024

Handler = TypeVar("Handler", bound=Callable[..., Any])


async def _abort(
    servicer: GatewayServicer, name: str, exc: Exception, context: grpc.aio.ServicerContext
) -> None:
    """End the call with the status ``exc`` stands for; anything unexpected is
    INTERNAL with the details in the log only (they may quote a client's data)."""
    if isinstance(exc, grpc.aio.AbortError):  # the call was already ended with a status
        raise exc
    if isinstance(exc, GatewayError):
        await context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
    if is_disk_full(exc):
        log.error("%s refused: the store cannot be written: %s", name, exc)
        await context.abort(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"the result store at {servicer.core.store.directory} cannot be written: its"
            f" disk is full ({exc}); free space there, then retry",
        )
    log.exception("%s failed", name)
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


class GatewayServicer(pb_grpc.GatewayServicer):
    """Implements gcgate.v1.Gateway on top of the task life-cycle."""

    def __init__(self, core: TaskLifecycle, *, socket_path: Path, state_dir: Path):
        self.core = core
        self.socket_path = socket_path
        self.state_dir = state_dir

    @rpc
    async def Status(self, request: pb.StatusRequest, context: Any) -> pb.StatusResponse:
        status = self.core.status()
        counts = status["counts"]
        store = self.core.store
        return pb.StatusResponse(
            version=__version__,
            uptime_seconds=status["uptime_seconds"],
            pid=os.getpid(),
            socket_path=str(self.socket_path),
            state_dir=str(self.state_dir),
            backends=[
                pb.BackendStatus(
                    name=name,
                    state=str(info.get("state", "")),
                    endpoint_id=str(info.get("endpoint_id", "")),
                    details_json=json.dumps(info),
                )
                for name, info in status["backends"]
            ],
            login=_login_state(status["backends"]),
            tasks=pb.TaskCounts(
                pending=counts["pending"], success=counts["success"], failed=counts["failed"]
            ),
            store=pb.StoreStatus(
                size_bytes=store.size_bytes(),
                size_limit_bytes=store.size_limit_bytes,
                functions=counts["functions"],
                task_records=counts["task_records"],
                retention_days=store.retention_seconds / 86400,
                damaged_moved_to=store.damaged_moved_to,
            ),
        )

    @rpc
    async def RegisterFunction(
        self, request: pb.RegisterFunctionRequest, context: Any
    ) -> pb.RegisterFunctionResponse:
        function_id, created = self.core.register_function(
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
        return pb.RegisterFunctionResponse(function_id=function_id, created=created)

    @rpc
    async def GetFunction(self, request: pb.GetFunctionRequest, context: Any) -> pb.FunctionInfo:
        record = self.core.get_function(request.function_id)
        return pb.FunctionInfo(
            function_id=record["function_id"],
            function_name=record["function_name"],
            function_code=record["function_code"],
            serialized=record["serialized"],
            meta=pb.FunctionMeta(**record["meta"]),
            description=record["description"],
            public=record["public"],
            group=record["group"],
            created_at=record["created_at"],
        )

    @rpc
    async def Run(self, request: pb.RunRequest, context: Any) -> pb.RunResponse:
        receipt = await self.core.submit(
            _submission(
                request.endpoint_id,
                [(request.function_id, [_run_payload(request)])],
                request.options,
                caller_of(context),
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
        receipt = await self.core.submit(
            _submission(
                request.endpoint_id,
                [(group.function_id, _batch_payloads(group)) for group in request.tasks],
                request.options,
                caller_of(context),
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
        wait = min(max(request.wait_seconds, 0.0), MAX_WAIT_SECONDS)
        self._adopt([request.task_id], context)
        return task_message(await self.core.wait_for(request.task_id, wait))

    @rpc
    async def GetBatchResult(
        self, request: pb.GetBatchResultRequest, context: Any
    ) -> pb.GetBatchResultResponse:
        self._adopt(request.task_ids, context)
        records = self.core.get_tasks(request.task_ids)
        return pb.GetBatchResultResponse(tasks=[task_message(r) for r in records])

    @stream_rpc
    async def WatchTasks(
        self, request: pb.WatchTasksRequest, context: Any
    ) -> AsyncIterator[pb.TaskRecord]:
        self._adopt(request.task_ids, context)
        async for record in self.core.watch(request.task_ids):
            yield task_message(record)

    @stream_rpc
    async def WatchTaskBatches(
        self, request: pb.WatchTasksRequest, context: Any
    ) -> AsyncIterator[pb.TaskRecordBatch]:
        self._adopt(request.task_ids, context)
        async for records in self.core.watch_batches(request.task_ids):
            for chunk in wire_chunks(records):
                yield pb.TaskRecordBatch(tasks=[task_message(r) for r in chunk])

    def _adopt(self, task_ids: Any, context: Any) -> None:
        """A client passing its own token asks about tasks: let the Globus backend
        poll those created with a token of its, if they wait for one."""
        caller = caller_of(context)
        if caller.token is not None:
            self.core.router.remote.adopt([str(t).lower() for t in task_ids], caller)

    @rpc
    async def GetEndpointStatus(
        self, request: pb.EndpointRequest, context: Any
    ) -> pb.EndpointDocument:
        endpoint_id, backend = self.core.router.resolve(request.endpoint_id)
        document = await backend.endpoint_status(endpoint_id, caller_of(context))
        return pb.EndpointDocument(endpoint_id=endpoint_id, json=json.dumps(document))

    @rpc
    async def GetEndpointMetadata(
        self, request: pb.EndpointRequest, context: Any
    ) -> pb.EndpointDocument:
        endpoint_id, backend = self.core.router.resolve(request.endpoint_id)
        document = await backend.endpoint_metadata(endpoint_id, caller_of(context))
        return pb.EndpointDocument(endpoint_id=endpoint_id, json=json.dumps(document))

    @rpc
    async def ListTasks(self, request: pb.ListTasksRequest, context: Any) -> pb.ListTasksResponse:
        limit = min(request.limit or DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)
        records = self.core.recent_tasks(max(limit, 1), request.status)
        return pb.ListTasksResponse(
            tasks=[task_message(r, include_results=request.include_results) for r in records]
        )

    @rpc
    async def ListEndpoints(
        self, request: pb.ListEndpointsRequest, context: Any
    ) -> pb.ListEndpointsResponse:
        router = self.core.router
        caller = caller_of(context)
        role = check_endpoint_role(request.role)
        documents = [await router.local.endpoint_metadata(LOCAL_ENDPOINT_ID, caller)]
        documents.extend(await router.remote.list_endpoints(role, caller))
        return pb.ListEndpointsResponse(endpoints_json=[json.dumps(d) for d in documents])

    @rpc
    async def DeleteFunction(
        self, request: pb.DeleteFunctionRequest, context: Any
    ) -> pb.DeleteFunctionResponse:
        function_id = self.core.get_function(request.function_id)["function_id"]
        remote = self.core.router.remote
        deleted, answer = await remote.delete_function(function_id, caller_of(context))
        return pb.DeleteFunctionResponse(
            deleted_at_globus=deleted, json=json.dumps(answer) if deleted else ""
        )

    # ---------------------------------------------------------------- login

    @rpc
    async def StartLogin(
        self, request: pb.StartLoginRequest, context: Any
    ) -> pb.StartLoginResponse:
        login_id, url = await self.core.router.remote.start_login(request.force)
        return pb.StartLoginResponse(
            login_id=login_id, authorize_url=url, expires_in_seconds=LOGIN_TIMEOUT
        )

    @rpc
    async def CompleteLogin(
        self, request: pb.CompleteLoginRequest, context: Any
    ) -> pb.WhoAmIResponse:
        backend = self.core.router.remote
        await backend.complete_login(request.login_id, request.auth_code)
        return _who_am_i(backend.whoami())

    @rpc
    async def Logout(self, request: pb.LogoutRequest, context: Any) -> pb.WhoAmIResponse:
        backend = self.core.router.remote
        await backend.logout()
        return _who_am_i(backend.whoami())

    @rpc
    async def WhoAmI(self, request: pb.WhoAmIRequest, context: Any) -> pb.WhoAmIResponse:
        return _who_am_i(self.core.router.remote.whoami())


def _run_payload(request: pb.RunRequest) -> str:
    """The task payload of a Run: given, or framed from JSON arguments."""
    if request.HasField("json_arguments"):
        if request.payload:
            raise InvalidArgument("give either payload or json_arguments, not both")
        return json_payload(request.json_arguments.args_json, request.json_arguments.kwargs_json)
    return request.payload


def _batch_payloads(group: pb.BatchTasks) -> list[str]:
    """Payloads first, then those framed from JSON arguments (the documented order)."""
    return [
        *group.payloads,
        *(json_payload(a.args_json, a.kwargs_json) for a in group.json_arguments),
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
) -> Submission:
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
            result_serializers=tuple(options.result_serializers),
        ),
    )


def _login_state(backends: list[tuple[str, dict[str, Any]]]) -> pb.LoginState:
    """The Globus login a backend reports (``describe()["login"]``), if any."""
    for _, info in backends:
        login = info.get("login")
        if isinstance(login, dict):
            return pb.LoginState(
                state=str(login.get("state", "")), identity=str(login.get("identity", ""))
            )
    return pb.LoginState(state="not_configured")


def wire_chunks(records: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """``records`` in runs whose results and exceptions stay under BATCH_MESSAGE_BYTES
    (a run has at least one record: a single result is at most 10 MB)."""
    chunk: list[dict[str, Any]] = []
    size = 0
    for record in records:
        length = len(record.get("result") or "") + len(record.get("exception") or "")
        if chunk and size + length > BATCH_MESSAGE_BYTES:
            yield chunk
            chunk, size = [], 0
        chunk.append(record)
        size += length
    if chunk:
        yield chunk


def task_message(record: dict[str, Any], *, include_results: bool = True) -> pb.TaskRecord:
    """A store record as the wire TaskRecord."""
    status = record["status"]
    message = pb.TaskRecord(
        task_id=record["task_id"],
        status=status,
        pending=status not in ("success", "failed"),
        completion_t=record.get("completion_t") or "",
        function_id=record["function_id"],
        endpoint_id=record["endpoint_id"],
        task_group_id=record["task_group_id"],
        created_at=record["created_at"],
        details_json=json.dumps(record["details"]) if record.get("details") else "",
    )
    if include_results:
        message.result = record.get("result") or ""
        message.exception = record.get("exception") or ""
    return message
