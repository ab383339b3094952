"""The gRPC servicer over the services, in one process: a real aio server on a
real Unix socket, a real store, fake backends (tests/fakes.py).

The fast layer: no daemon process, no worker, no HTTP. What it pins is the
servicer's own job: decode, call one service, encode, map errors to statuses.
"""

from __future__ import annotations

import asyncio
import errno
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from fakes import FakeBackend, FakeGlobusBackend
from gcgate.constants import LOCAL_ENDPOINT_ID, OWNER_KEY_METADATA, TaskStatus
from gcgate.v1 import gateway_pb2 as pb
from gcgate.v1 import gateway_pb2_grpc as pb_grpc
from gcgated.backends.base import Outcome
from gcgated.backends.globus.auth import LOGIN_TIMEOUT
from gcgated.core import TaskLifecycle
from gcgated.routing import Router
from gcgated.server.servicer import GatewayServicer
from gcgated.services import build_services
from gcgated.store import Store

pytestmark = pytest.mark.fast

SOURCE = "def double(x):\n    return 2 * x\n"
GLOBUS_ENDPOINT = "2a7d8a6e-7c55-4e0c-9d4b-6f2f6f1c5a10"
OWNER_KEY = "the-owner-key"


class Gateway:
    """One in-process daemon: its stub, its backends, its store."""

    def __init__(self, stub: pb_grpc.GatewayStub, local: FakeBackend, remote: FakeGlobusBackend):
        self.stub = stub
        self.local = local
        self.remote = remote

    async def register(self) -> str:
        answer = await self.stub.RegisterFunction(
            pb.RegisterFunctionRequest(function_name="double", function_code=SOURCE)
        )
        return answer.function_id

    async def run(
        self,
        function_id: str,
        endpoint_id: str = "local",
        options: pb.SubmitOptions | None = None,
        **kwargs: Any,
    ) -> str:
        answer = await self.stub.Run(
            pb.RunRequest(
                endpoint_id=endpoint_id,
                function_id=function_id,
                json_arguments=pb.JsonArguments(args_json="[21]"),
                options=options,
            ),
            **kwargs,
        )
        return answer.task_id


def in_process(scenario: Callable[[Gateway], Awaitable[None]], tmp_path: Path) -> None:
    """Run ``scenario`` against a servicer served from this process."""

    async def main() -> None:
        store = Store(tmp_path / "store", size_limit_bytes=1 << 30, retention_seconds=60)
        local, remote = FakeBackend(), FakeGlobusBackend()
        router = Router(local, remote)  # type: ignore[arg-type]
        core = TaskLifecycle(store, router)
        socket_path = tmp_path / "gcgate.sock"
        server = grpc.aio.server()
        pb_grpc.add_GatewayServicer_to_server(
            GatewayServicer(
                build_services(core, router, store),
                socket_path=socket_path,
                state_dir=tmp_path,
                owner_key=OWNER_KEY,
            ),
            server,
        )
        server.add_insecure_port(f"unix:{socket_path}")
        await core.start()
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"unix:{socket_path}") as channel:
                await scenario(Gateway(pb_grpc.GatewayStub(channel), local, remote))
        finally:
            await server.stop(None)
            await core.stop()
            store.close()

    asyncio.run(asyncio.wait_for(main(), 30))


async def status_of(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call
    return failed.value.code(), failed.value.details() or ""


def test_run_then_wait_for_the_result(tmp_path: Path) -> None:
    async def scenario(gw: Gateway) -> None:
        task_id = await gw.run(await gw.register())
        assert gw.local.dispatched == [task_id]
        pending = await gw.stub.GetResult(pb.GetResultRequest(task_id=task_id))
        assert (pending.status, pending.pending) == (TaskStatus.WAITING_FOR_EP, True)

        waiting = asyncio.ensure_future(
            gw.stub.GetResult(pb.GetResultRequest(task_id=task_id, wait_seconds=10))
        )
        gw.local.report(Outcome(task_id, TaskStatus.SUCCESS, result="11\n42"))
        done = await waiting
        assert (done.status, done.pending, done.result) == ("success", False, "11\n42")
        assert done.endpoint_id == LOCAL_ENDPOINT_ID

        listed = await gw.stub.ListTasks(pb.ListTasksRequest(status="success"))
        assert [t.task_id for t in listed.tasks] == [task_id]
        status = await gw.stub.Status(pb.StatusRequest())
        assert (status.tasks.pending, status.tasks.success, status.tasks.failed) == (0, 1, 0)
        assert status.store.functions == 1
        assert [b.name for b in status.backends] == ["fake", "globus"]

    in_process(scenario, tmp_path)


def test_watch_batches_streams_each_completion_once(tmp_path: Path) -> None:
    async def scenario(gw: Gateway) -> None:
        function_id = await gw.register()
        ids = [await gw.run(function_id) for _ in range(3)]
        gw.local.report(Outcome(ids[0], TaskStatus.FAILED, exception="boom"))
        stream: AsyncIterator[pb.TaskRecordBatch] = gw.stub.WatchTaskBatches(
            pb.WatchTasksRequest(task_ids=[*ids, ids[0]])
        )
        seen: dict[str, str] = {}
        async for batch in stream:
            for task in batch.tasks:
                assert task.task_id not in seen
                seen[task.task_id] = task.status
            if len(seen) == 1:  # the one already final comes first, then the rest
                for task_id in ids[1:]:
                    gw.local.report(Outcome(task_id, TaskStatus.SUCCESS, result="11\n1"))
        assert seen == {ids[0]: "failed", ids[1]: "success", ids[2]: "success"}

    in_process(scenario, tmp_path)


def test_bad_requests_get_statuses_a_person_can_act_on(tmp_path: Path) -> None:
    async def scenario(gw: Gateway) -> None:
        unknown = "00000000-0000-4000-8000-000000000000"
        code, message = await status_of(gw.stub.GetResult(pb.GetResultRequest(task_id=unknown)))
        assert code == grpc.StatusCode.NOT_FOUND and unknown in message
        code, message = await status_of(gw.stub.GetResult(pb.GetResultRequest(task_id="nope")))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "task_id" in message
        code, message = await status_of(
            gw.stub.Run(pb.RunRequest(endpoint_id="Local", function_id=unknown))
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "endpoint_id" in message
        code, message = await status_of(gw.stub.ListEndpoints(pb.ListEndpointsRequest(role="boss")))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "boss" in message

    in_process(scenario, tmp_path)


def test_a_full_disk_is_resource_exhausted_naming_the_store(tmp_path: Path) -> None:
    async def scenario(gw: Gateway) -> None:
        function_id = await gw.register()
        gw.local.refuse_with = OSError(errno.ENOSPC, "No space left on device")
        code, message = await status_of(gw.run(function_id))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert str(tmp_path / "store") in message and "free space" in message
        gw.local.refuse_with = RuntimeError("a bug")
        code, message = await status_of(gw.run(function_id))
        assert code == grpc.StatusCode.INTERNAL and "a bug" not in message

    in_process(scenario, tmp_path)


def test_a_client_token_reaches_the_globus_backend_as_its_caller(tmp_path: Path) -> None:
    async def scenario(gw: Gateway) -> None:
        function_id = await gw.register()
        token = [("authorization", "Bearer tok-123")]
        task_id = await gw.run(function_id, GLOBUS_ENDPOINT, metadata=token)
        assert gw.remote.dispatched == [task_id]
        await gw.stub.GetBatchResult(pb.GetBatchResultRequest(task_ids=[task_id]), metadata=token)
        await gw.stub.GetBatchResult(pb.GetBatchResultRequest(task_ids=[task_id]))
        assert [(ids, caller.token) for ids, caller in gw.remote.adopted] == [
            ([task_id], "tok-123")
        ]
        deleted = await gw.stub.DeleteFunction(
            pb.DeleteFunctionRequest(function_id=function_id), metadata=token
        )
        assert deleted.deleted_at_globus and json.loads(deleted.json)["function_uuid"]

    in_process(scenario, tmp_path)


def test_login_goes_through_the_login_service(tmp_path: Path) -> None:
    async def scenario(gw: Gateway) -> None:
        start = await gw.stub.StartLogin(pb.StartLoginRequest(force=True))
        assert start.login_id == "login-1" and start.authorize_url.endswith("force=true")
        assert start.expires_in_seconds == LOGIN_TIMEOUT
        who = await gw.stub.CompleteLogin(
            pb.CompleteLoginRequest(login_id=start.login_id, auth_code="code")
        )
        assert (who.login.state, who.username) == ("logged_in", "u@example.org")
        status = await gw.stub.Status(pb.StatusRequest())
        assert status.login.state == "logged_in"
        who = await gw.stub.Logout(pb.LogoutRequest(), metadata=((OWNER_KEY_METADATA, OWNER_KEY),))
        assert who.login.state == "logged_out"

    in_process(scenario, tmp_path)


def test_logout_needs_the_owner_key(tmp_path: Path) -> None:
    async def scenario(gw: Gateway) -> None:
        await gw.stub.CompleteLogin(pb.CompleteLoginRequest(login_id="login-1", auth_code="c"))
        for metadata in ((), ((OWNER_KEY_METADATA, "a-guess"),)):
            code, details = await status_of(gw.stub.Logout(pb.LogoutRequest(), metadata=metadata))
            assert code == grpc.StatusCode.PERMISSION_DENIED
            assert str(tmp_path / "owner.key") in details and "a-guess" not in details
        assert (await gw.stub.WhoAmI(pb.WhoAmIRequest())).login.state == "logged_in"

    in_process(scenario, tmp_path)


def test_a_task_group_lists_its_tasks_oldest_first(tmp_path: Path) -> None:
    async def scenario(gw: Gateway) -> None:
        function_id = await gw.register()
        first = await gw.run(function_id)
        group = (await gw.stub.GetResult(pb.GetResultRequest(task_id=first))).task_group_id
        options = pb.SubmitOptions(task_group_id=group)
        more = [await gw.run(function_id, options=options) for _ in range(2)]
        await gw.run(function_id)  # another group
        gw.local.report(Outcome(more[0], TaskStatus.SUCCESS, result="11\n2"))
        answer = await gw.stub.GetTaskGroup(pb.GetTaskGroupRequest(task_group_id=group.upper()))
        assert answer.task_group_id == group
        assert list(answer.task_ids) == [first, *more]

        unknown = "00000000-0000-4000-8000-000000000000"
        code, message = await status_of(
            gw.stub.GetTaskGroup(pb.GetTaskGroupRequest(task_group_id=unknown))
        )
        assert code == grpc.StatusCode.NOT_FOUND and unknown in message
        code, message = await status_of(
            gw.stub.GetTaskGroup(pb.GetTaskGroupRequest(task_group_id="nope"))
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "task_group_id" in message

    in_process(scenario, tmp_path)


def test_endpoint_operations_go_to_the_endpoints_backend(tmp_path: Path) -> None:
    async def scenario(gw: Gateway) -> None:
        token = [("authorization", "Bearer tok-9")]
        calls = [
            (gw.stub.GetAllowedFunctions, "by"),
            (gw.stub.StopEndpoint, "stopped_by"),
            (gw.stub.DeleteEndpoint, "deleted_by"),
        ]
        for call, field in calls:
            for endpoint, backend in (("local", "fake"), (GLOBUS_ENDPOINT, "globus")):
                answer = await call(pb.EndpointRequest(endpoint_id=endpoint), metadata=token)
                assert json.loads(answer.json)[field] == backend
                assert answer.endpoint_id == (LOCAL_ENDPOINT_ID if backend == "fake" else endpoint)
            code, message = await status_of(call(pb.EndpointRequest(endpoint_id="nope")))
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "endpoint_id" in message

        version = await gw.stub.GetServiceVersion(pb.ServiceVersionRequest(), metadata=token)
        assert json.loads(version.json)["min_ep_version"] == "2.0.0"
        assert [caller.token for caller in gw.remote.callers] == ["tok-9"]

    in_process(scenario, tmp_path)


def test_pending_records_carry_their_backends_reason(tmp_path: Path) -> None:
    """Each unfinished record says why, in its own backend's words (asked of the
    backend its endpoint routes to); a final one says nothing."""

    async def scenario(gw: Gateway) -> None:
        function_id = await gw.register()
        local_id = await gw.run(function_id)
        remote_id = await gw.run(function_id, endpoint_id=GLOBUS_ENDPOINT)
        done_id = await gw.run(function_id)
        gw.local.report(Outcome(done_id, TaskStatus.SUCCESS, result="11\n42"))
        await gw.stub.GetResult(pb.GetResultRequest(task_id=done_id, wait_seconds=10))

        listed = await gw.stub.ListTasks(pb.ListTasksRequest())
        reasons = {t.task_id: t.pending_reason for t in listed.tasks}
        assert reasons == {
            local_id: f"held by fake for {LOCAL_ENDPOINT_ID}",
            remote_id: f"held by globus for {GLOBUS_ENDPOINT}",
            done_id: "",
        }
        one = await gw.stub.GetResult(pb.GetResultRequest(task_id=remote_id))
        assert one.pending_reason == reasons[remote_id]
        batch = await gw.stub.GetBatchResult(pb.GetBatchResultRequest(task_ids=[done_id, local_id]))
        assert [t.pending_reason for t in batch.tasks] == ["", reasons[local_id]]

    in_process(scenario, tmp_path)
