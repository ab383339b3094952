"""The Globus Compute / Auth stand-in is faithful: the real SDKs work against it.

The real ``globus_compute_sdk.Client`` (4.19) runs the Client user guide's examples
against the stand-in, logged in through globus-sdk's own ``ClientApp`` and
``UserApp`` machinery; ``globus_sdk.ComputeClientV2``/``V3`` check every path's
JSON shape; the Auth endpoints are driven by globus-sdk's login clients; and the
injected faults behave as the SDK's transport expects real ones to.

The guide's functions are defined as if in a script's ``__main__`` (see
:func:`script_function`), so dill pickles them by value as it does for users.
"""

from __future__ import annotations

import inspect
import platform
import textwrap
import time
import uuid
from collections.abc import Callable
from typing import Any

import globus_sdk
import pytest
import requests
from globus_compute_sdk.errors import TaskExecutionFailed, TaskPending
from globus_compute_sdk.serialize import ComputeSerializer, JSONData
from standin import COMPUTE_RESOURCE_SERVER, COMPUTE_SCOPE, UNKNOWN_TASK_REASON, StandIn
from standin.sdk import client_app, compute_client, login_client, user_app
from standin.stats import RequestRecord, Stats

#: Upper bound on waiting for any task here (they take milliseconds).
WAIT = 30.0
POLL = 0.05


def script_function(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` defined again from its source in a fresh ``__main__`` namespace."""
    source = textwrap.dedent(inspect.getsource(fn))
    source = "\n".join(line for line in source.splitlines() if not line.startswith("@"))
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(source, f"<user guide: {fn.__name__}>", "exec"), namespace)
    return namespace[fn.__name__]


# ------------------------------------------------------------ the guide's functions


@script_function
def platform_func():
    """Get platform information about this system."""

    import platform

    return platform.platform()


@script_function
def hello(firstname, lastname):
    """Say hello to someone."""

    return "Hello {} {}".format(firstname, lastname)  # noqa: UP032 - the guide's code


@script_function
def multiply(x, y=1):
    return x * y


@script_function
def failing_task(x):
    raise ValueError(f"deliberate failure for {x}")


@script_function
def pair(a, b):
    return (a, b)


@script_function
def big_result(n):
    return "x" * n


@script_function
def kill_worker():
    import os

    os._exit(1)


# ------------------------------------------------------------------------ helpers


def wait_result(gcc: Any, task_id: str) -> Any:
    """The SDK's model: poll ``get_result`` until it stops raising TaskPending."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            return gcc.get_result(task_id)
        except TaskPending:
            if time.monotonic() > deadline:
                raise
            time.sleep(POLL)


def wait_batch(gcc: Any, task_ids: list[str]) -> dict[str, dict]:
    deadline = time.monotonic() + WAIT
    while True:
        results = gcc.get_batch_result(task_ids)
        if len(results) == len(task_ids) and not any(r["pending"] for r in results.values()):
            return results
        assert time.monotonic() < deadline, results
        time.sleep(POLL)


@pytest.fixture
def gcc(standin: StandIn) -> Any:
    """The real SDK Client, logged in as the stand-in's service account."""
    return compute_client(standin, app=client_app(standin))


@pytest.fixture
def token(standin: StandIn) -> str:
    return standin.auth.mint_token()


@pytest.fixture
def v2(standin: StandIn, token: str) -> globus_sdk.ComputeClientV2:
    return globus_sdk.ComputeClientV2(
        base_url=standin.compute_url, authorizer=globus_sdk.AccessTokenAuthorizer(token)
    )


@pytest.fixture
def v3(standin: StandIn, token: str) -> globus_sdk.ComputeClientV3:
    return globus_sdk.ComputeClientV3(
        base_url=standin.compute_url, authorizer=globus_sdk.AccessTokenAuthorizer(token)
    )


serde = ComputeSerializer()


def register(v3: globus_sdk.ComputeClientV3, fn: Callable[..., Any]) -> str:
    body = {
        "function_name": fn.__name__,
        "function_code": serde.pack_buffers([serde.serialize(fn)]),
        "serialized": True,
        "meta": {
            "python_version": platform.python_version(),
            "sdk_version": "4.19.0",
            "serde_identifier": "01",
        },
    }
    return v3.register_function(body)["function_uuid"]


def payload(*args: Any, **kwargs: Any) -> str:
    return serde.pack_buffers([serde.serialize(args), serde.serialize(kwargs)])


def is_uuid(value: Any) -> bool:
    try:
        return str(uuid.UUID(str(value))) == str(value)
    except ValueError:
        return False


# ------------------------------------------------- the real SDK Client: user guide


def test_register_run_and_get_result(gcc: Any, standin: StandIn) -> None:
    func_uuid = gcc.register_function(platform_func)
    assert is_uuid(func_uuid)

    task_id = gcc.run(endpoint_id=standin.endpoint_id, function_id=func_uuid)
    assert is_uuid(task_id)

    assert wait_result(gcc, task_id) == platform.platform()
    task = gcc.get_task(task_id)
    assert task["pending"] is False and task["status"] == "success"
    assert float(task["completion_t"]) <= time.time()
    assert task["details"]["endpoint_id"] == standin.endpoint_id
    # The SDK's version check, a registration, a submit, then task polls only.
    routes = standin.stats.by_route("compute")
    assert routes["GET /v2/version"] == 1
    assert routes["POST /v3/functions"] == 1
    assert routes["POST /v3/endpoints/{endpoint_id}/submit"] == 1
    assert set(routes) == {
        "GET /v2/version",
        "POST /v3/functions",
        "POST /v3/endpoints/{endpoint_id}/submit",
        "GET /v2/tasks/{task_id}",
    }


def test_hello_with_arguments(gcc: Any, standin: StandIn) -> None:
    func_id = gcc.register_function(hello)
    task_id = gcc.run("Bob", "Smith", endpoint_id=standin.endpoint_id, function_id=func_id)
    assert wait_result(gcc, task_id) == "Hello Bob Smith"
    kw_id = gcc.run(
        endpoint_id=standin.endpoint_ids[1],
        function_id=func_id,
        firstname="Ada",
        lastname="Lovelace",
    )
    assert wait_result(gcc, kw_id) == "Hello Ada Lovelace"
    assert standin.compute.task(kw_id).endpoint_id == standin.endpoint_ids[1]


def test_batch_run_and_get_batch_result(gcc: Any, standin: StandIn) -> None:
    mult = gcc.register_function(multiply)
    hi = gcc.register_function(hello)
    batch = gcc.create_batch()
    for x in range(5):
        batch.add(mult, args=(x,), kwargs={"y": 3})
    batch.add(hi, args=("Bob", "Smith"))
    r = gcc.batch_run(standin.endpoint_id, batch)

    assert set(r) == {"request_id", "task_group_id", "endpoint_id", "tasks"}
    assert r["endpoint_id"] == standin.endpoint_id
    assert len(r["tasks"][mult]) == 5 and len(r["tasks"][hi]) == 1
    ids = [*r["tasks"][mult], *r["tasks"][hi]]
    results = wait_batch(gcc, ids)
    assert [results[t]["result"] for t in r["tasks"][mult]] == [0, 3, 6, 9, 12]
    assert results[r["tasks"][hi][0]]["result"] == "Hello Bob Smith"
    assert all(results[t]["status"] == "success" for t in ids)

    # One submit carried all six, in the SDK's Batch.prepare() shape.
    (submit,) = standin.compute.submits
    assert submit.tasks_by_function == {mult: 5, hi: 1}
    assert submit.user_runtime is not None and "python" in submit.user_runtime
    assert submit.create_queue is False
    # A second batch in the same task group is accepted.
    again = gcc.create_batch(task_group_id=r["task_group_id"])
    again.add(mult, args=(7,))
    r2 = gcc.batch_run(standin.endpoint_id, again)
    assert r2["task_group_id"] == r["task_group_id"]
    assert wait_result(gcc, r2["tasks"][mult][0]) == 7


def test_failing_function_raises_task_execution_failed(gcc: Any, standin: StandIn) -> None:
    fid = gcc.register_function(failing_task)
    task_id = gcc.run(42, endpoint_id=standin.endpoint_id, function_id=fid)
    with pytest.raises(TaskExecutionFailed) as info:
        wait_result(gcc, task_id)
    text = str(info.value)
    # The endpoint's traceback text, starting at the user's frame.
    assert "ValueError: deliberate failure for 42" in text
    assert "failing_task" in text
    assert "standin" not in text and "execute_task" not in text


def test_stop_and_delete_endpoint_answer_as_globus_sdk_documents(
    gcc: Any, standin: StandIn
) -> None:
    """The SDK's stop_endpoint / delete_endpoint (lock, then DELETE) against the
    stand-in: the answers of globus-sdk's own test data (globus_sdk/testing/data/
    compute/v3/lock_endpoint.py, v2/delete_endpoint.py; that package needs
    ``responses`` to import), and an endpoint of someone else's cannot be touched."""
    ep = standin.compute.add_endpoint()
    locked = gcc.stop_endpoint(ep.uuid)
    assert set(locked.data) == {"endpoint_id", "lock_expiration_timestamp"}
    assert locked["endpoint_id"] == ep.uuid
    assert gcc.get_endpoint_status(ep.uuid)["status"] == "offline"
    assert gcc.delete_endpoint(ep.uuid).data == {"result": 302}
    with pytest.raises(globus_sdk.GlobusAPIError) as gone:
        gcc.get_endpoint_metadata(ep.uuid)
    assert (gone.value.http_status, gone.value.code) == (404, "ENDPOINT_NOT_FOUND")

    theirs = standin.compute.add_endpoint()
    theirs.owner = str(uuid.uuid4())
    try:
        for change in (gcc.stop_endpoint, gcc.delete_endpoint):
            with pytest.raises(globus_sdk.GlobusAPIError) as refused:
                change(theirs.uuid)
            assert (refused.value.http_status, refused.value.code) == (
                403,
                "ENDPOINT_ACCESS_FORBIDDEN",
            )
        assert theirs.uuid in standin.compute.endpoints
    finally:
        standin.compute.remove_endpoint(theirs.uuid)  # later tests list the module's endpoints


def test_endpoint_status_metadata_and_listing(gcc: Any, standin: StandIn) -> None:
    status = gcc.get_endpoint_status(standin.endpoint_id)
    assert status["status"] == "online"
    assert set(status["details"]) == {
        "total_workers",
        "idle_workers",
        "pending_tasks",
        "outstanding_tasks",
        "managers",
    }
    meta = gcc.get_endpoint_metadata(standin.endpoint_id)
    assert meta["uuid"] == standin.endpoint_id
    assert {"name", "display_name", "hostname", "endpoint_version"} <= set(meta)
    listed = gcc.get_endpoints()
    assert {e["uuid"] for e in listed} == set(standin.endpoint_ids)

    standin.compute.set_endpoint_status(standin.endpoint_ids[1], "offline")
    assert gcc.get_endpoint_status(standin.endpoint_ids[1])["status"] == "offline"


def test_result_serializers_json_data(gcc: Any, standin: StandIn) -> None:
    fid = gcc.register_function(pair)
    batch = gcc.create_batch(
        result_serializers=["globus_compute_sdk.serialize.JSONData"],
    )
    batch.add(fid, args=(1, "two"))
    r = gcc.batch_run(standin.endpoint_id, batch)
    (task_id,) = r["tasks"][fid]
    assert standin.compute.submits[-1].result_serializers == [
        "globus_compute_sdk.serialize.JSONData"
    ]
    # JSON has no tuples: the endpoint's JSONData result reads back as a list.
    assert wait_result(gcc, task_id) == [1, "two"]
    assert standin.compute.task(task_id).result == JSONData().serialize((1, "two"))


def test_get_and_delete_function_and_source_code(gcc: Any, standin: StandIn) -> None:
    fid = gcc.register_function(hello, description="greets")
    doc = gcc.get_function(fid)
    assert doc["function_uuid"] == fid
    assert doc["function_name"] == "hello"
    assert doc["description"] == "greets"
    assert doc["metadata"]["python_version"] == platform.python_version()
    assert serde.deserialize(serde.unpack_buffers(doc["function_code"])[0])("A", "B") == (
        "Hello A B"
    )

    src_id = gcc.register_source_code("def shout(word):\n    return word.upper() + '!'\n", "shout")
    assert wait_result(gcc, gcc.run("hey", endpoint_id=standin.endpoint_id, function_id=src_id))
    assert standin.compute.functions[src_id].serialized is False

    gcc.delete_function(fid)
    with pytest.raises(globus_sdk.GlobusAPIError) as info:
        gcc.get_function(fid)
    assert (info.value.http_status, info.value.code) == (404, "FUNCTION_NOT_FOUND")


def test_client_with_access_token_authorizer(standin: StandIn, token: str) -> None:
    gcc = compute_client(standin, authorizer=globus_sdk.AccessTokenAuthorizer(token))
    fid = gcc.register_function(hello)
    task_id = gcc.run("Bob", "Smith", endpoint_id=standin.endpoint_id, function_id=fid)
    assert wait_result(gcc, task_id) == "Hello Bob Smith"
    assert set(standin.stats.by_token("compute")) == {token}


def test_user_app_native_login_and_refresh(standin: StandIn) -> None:
    app = user_app(standin)
    gcc = compute_client(standin, app=app)
    # The login went through the authorize URL (PKCE, offline access) and the
    # code exchange; the id_token was verified against the stand-in's JWKs.
    flow = app._login_flow_manager
    (url,) = flow.authorize_urls  # type: ignore[attr-defined]
    assert url.startswith(standin.auth_url + "v2/oauth2/authorize?")
    assert "code_challenge_method=S256" in url and "access_type=offline" in url
    assert standin.auth.grants["authorization_code"] == 1
    assert app.token_storage.identity_id == standin.auth.user.id

    fid = gcc.register_function(hello)
    # Every access token expires under the SDK's feet: the service answers 401,
    # the SDK refreshes with its refresh token and retries, once.
    assert standin.auth.expire_tokens(resource_server=COMPUTE_RESOURCE_SERVER) >= 1
    task_id = gcc.run("Bob", "Smith", endpoint_id=standin.endpoint_id, function_id=fid)
    assert wait_result(gcc, task_id) == "Hello Bob Smith"
    assert standin.auth.grants["refresh_token"] == 1
    submits = standin.stats.select(service="compute", path="/v3/endpoints/*/submit")
    assert [r.status for r in submits] == [401, 200]
    assert submits[0].token != submits[1].token
    assert {r.identity for r in submits} == {standin.auth.user.id}


def test_env_vars_point_the_sdks_at_the_standin(
    standin: StandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for k, v in standin.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("GLOBUS_COMPUTE_USER_DIR", str(tmp_path))
    # globus-sdk clients without a base_url find the stand-in through the env.
    assert globus_sdk.ConfidentialAppAuthClient("x", "y").base_url == standin.auth_url
    assert globus_sdk.ComputeClientV2().base_url == standin.compute_url
    # The Compute SDK's own app choice: client credentials from the env -> ClientApp.
    from globus_compute_sdk.sdk.auth.globus_app import get_globus_app

    app = get_globus_app()
    assert isinstance(app, globus_sdk.ClientApp)
    gcc = compute_client(standin, app=app)
    task_id = gcc.run(
        endpoint_id=standin.endpoint_id, function_id=gcc.register_function(platform_func)
    )
    assert wait_result(gcc, task_id) == platform.platform()
    assert standin.auth.grants["client_credentials"] == 1
    assert {r.identity for r in standin.stats.select(service="compute")} == {
        standin.service_account.client_id
    }


# ------------------------------------------------------- faults and the SDK transport


def test_429_with_retry_after_is_retried(gcc: Any, standin: StandIn) -> None:
    fid = gcc.register_function(hello)
    fault = standin.faults.rate_limit(2, retry_after=1, path="/v3/endpoints/*/submit")
    start = time.monotonic()
    task_id = gcc.run("Bob", "Smith", endpoint_id=standin.endpoint_id, function_id=fid)
    assert time.monotonic() - start >= 2.0  # the SDK honoured Retry-After twice
    assert fault.hits == 2
    submits = standin.stats.select(service="compute", path="/v3/endpoints/*/submit")
    assert [r.status for r in submits] == [429, 429, 200]
    assert len(standin.compute.submits) == 1  # the refused attempts created nothing
    assert wait_result(gcc, task_id) == "Hello Bob Smith"


def test_5xx_bursts_and_dropped_connections_are_retried(
    v2: globus_sdk.ComputeClientV2, v3: globus_sdk.ComputeClientV3, standin: StandIn
) -> None:
    standin.faults.server_error(2, status=503, path="/v2/version")
    assert v2.get_version()
    standin.faults.server_error(1, status=502, method="POST")
    fid = register(v3, multiply)
    standin.faults.drop_connection(1, path="/v2/functions/*")
    assert v2.get_function(fid)["function_uuid"] == fid
    outcomes = [(r.path, r.outcome, r.status) for r in standin.stats.records]
    assert outcomes == [
        ("/v2/version", "status", 503),
        ("/v2/version", "status", 503),
        ("/v2/version", "ok", 200),
        ("/v3/functions", "status", 502),
        ("/v3/functions", "ok", 200),
        (f"/v2/functions/{fid}", "drop", None),
        (f"/v2/functions/{fid}", "ok", 200),
    ]


def test_an_error_that_outlasts_the_retries_surfaces(
    v2: globus_sdk.ComputeClientV2, standin: StandIn
) -> None:
    standin.faults.server_error(status=500, duration=30, path="/v2/version")
    retries = v2.retry_config.tune(max_retries=1, max_sleep=0)
    with retries, pytest.raises(globus_sdk.GlobusAPIError) as info:
        v2.get_version()
    assert info.value.http_status == 500 and info.value.code == "INTERNAL_SERVER_ERROR"
    standin.faults.clear()
    standin.faults.server_error(status=503, count=5)
    with v2.retry_config.tune(max_retries=0), pytest.raises(globus_sdk.GlobusAPIError) as info:
        v2.get_version()
    assert info.value.http_status == 503  # a proxy's HTML page, not JSON
    assert "503 Service Unavailable" in info.value.text


def test_slow_answers(v2: globus_sdk.ComputeClientV2, standin: StandIn) -> None:
    standin.faults.slow(0.5, path="/v2/version")
    start = time.monotonic()
    v2.get_version()
    assert time.monotonic() - start >= 0.5
    start = time.monotonic()
    v2.get_version()
    assert time.monotonic() - start < 0.5


def test_response_lost_after_processing_loses_the_result(
    v2: globus_sdk.ComputeClientV2, v3: globus_sdk.ComputeClientV3, standin: StandIn
) -> None:
    fid = register(v3, multiply)
    r = v3.submit(standin.endpoint_id, {"create_queue": False, "tasks": {fid: [payload(6, y=7)]}})
    (tid,) = r["tasks"][fid]
    assert standin.compute.wait([tid], timeout=WAIT)
    # The service hands the result out, the answer never arrives, the SDK retries:
    # the cloud no longer has the result.
    standin.faults.drop_connection(1, when="after", path="/v2/batch_status")
    doc = v2.get_task_batch([tid])["results"][tid]
    assert doc == {"task_id": tid, "status": "failed", "reason": UNKNOWN_TASK_REASON}
    assert standin.compute.task(tid).fetches == 1
    assert serde.deserialize(standin.compute.task(tid).result) == 42


def test_expired_token_without_renewal_is_401(standin: StandIn, token: str) -> None:
    v2 = globus_sdk.ComputeClientV2(
        base_url=standin.compute_url, authorizer=globus_sdk.AccessTokenAuthorizer(token)
    )
    standin.auth.expire_tokens()
    with pytest.raises(globus_sdk.GlobusAPIError) as info:
        v2.get_endpoints()
    assert (info.value.http_status, info.value.code) == (401, "UNAUTHORIZED")
    assert info.value.message == "Token is expired"
    # No token at all, and a token for another resource server.
    assert requests.get(f"{standin.compute_url}/v2/endpoints", timeout=10).status_code == 401
    auth_token = standin.auth.mint_token(scopes="openid")
    r = requests.get(
        f"{standin.compute_url}/v2/endpoints",
        headers={"Authorization": f"Bearer {auth_token}"},
        timeout=10,
    )
    assert r.status_code == 403


# ----------------------------------------------------------- not found, too large


def test_unknown_ids_are_404_with_a_code(
    gcc: Any, v2: globus_sdk.ComputeClientV2, standin: StandIn
) -> None:
    unknown = str(uuid.uuid4())
    fid = gcc.register_function(hello)
    cases = [
        (lambda: gcc.run(endpoint_id=unknown, function_id=fid), "ENDPOINT_NOT_FOUND"),
        (lambda: gcc.get_endpoint_status(unknown), "ENDPOINT_NOT_FOUND"),
        (lambda: gcc.get_endpoint_metadata(unknown), "ENDPOINT_NOT_FOUND"),
        (lambda: gcc.get_function(unknown), "FUNCTION_NOT_FOUND"),
        (
            lambda: gcc.run(endpoint_id=standin.endpoint_id, function_id=unknown),
            "FUNCTION_NOT_FOUND",
        ),
        (lambda: gcc.get_task(unknown), "TASK_NOT_FOUND"),
        (lambda: v2.get_task_group(unknown), "TASK_GROUP_NOT_FOUND"),
    ]
    for call, code in cases:
        with pytest.raises(globus_sdk.GlobusAPIError) as info:
            call()
        assert (info.value.http_status, info.value.code) == (404, code)
        assert info.value.message and info.value.request_id
    assert standin.compute.submits == []
    # Unknown ids in a batch status are reported, not an error.
    assert gcc.get_batch_result([unknown])[unknown]["reason"] == UNKNOWN_TASK_REASON
    # Ids that are not UUIDs fail validation (FastAPI's 422).
    with pytest.raises(globus_sdk.GlobusAPIError) as info:
        v2.get_task("not-a-uuid")
    assert info.value.http_status == 422
    assert info.value.raw_json["detail"][0]["loc"] == ["path", "task_uuid"]


def test_submission_over_10_mb_is_413(gcc: Any, standin: StandIn) -> None:
    fid = gcc.register_function(multiply)
    with pytest.raises(globus_sdk.GlobusAPIError) as info:
        gcc.run("x" * 10_000_000, endpoint_id=standin.endpoint_id, function_id=fid)
    assert (info.value.http_status, info.value.code) == (413, "TASK_PAYLOAD_TOO_LARGE")
    assert standin.compute.submits == []
    # Just under the limit is accepted.
    ok = gcc.run("x" * 7_000_000, endpoint_id=standin.endpoint_id, function_id=fid)
    assert is_uuid(ok)


def test_result_over_the_endpoint_limit_fails_the_task(
    v2: globus_sdk.ComputeClientV2, v3: globus_sdk.ComputeClientV3, standin: StandIn
) -> None:
    fid = register(v3, big_result)
    r = v3.submit(standin.endpoint_id, {"tasks": {fid: [payload(11 * 1024 * 1024)]}})
    (tid,) = r["tasks"][fid]
    assert standin.compute.wait([tid], timeout=WAIT)
    doc = v2.get_task(tid).data
    assert doc["status"] == "failed"
    assert doc["exception"].startswith("MaxResultSizeExceeded(")


def test_a_lost_worker_fails_its_task_and_the_endpoint_recovers(
    v2: globus_sdk.ComputeClientV2, v3: globus_sdk.ComputeClientV3, standin: StandIn
) -> None:
    kill, mult = register(v3, kill_worker), register(v3, multiply)
    (lost,) = v3.submit(standin.endpoint_id, {"tasks": {kill: [payload()]}})["tasks"][kill]
    assert standin.compute.wait([lost], timeout=WAIT)
    doc = v2.get_task(lost).data
    assert doc["status"] == "failed" and "WorkerLost" in doc["exception"]
    (ok,) = v3.submit(standin.endpoint_id, {"tasks": {mult: [payload(4, y=2)]}})["tasks"][mult]
    assert standin.compute.wait([ok], timeout=WAIT)
    assert serde.deserialize(v2.get_task(ok)["result"]) == 8


# ------------------------------------------------ direct ComputeClientV2/V3 shapes


def test_every_compute_path_json_shape(
    v2: globus_sdk.ComputeClientV2, v3: globus_sdk.ComputeClientV3, standin: StandIn, token: str
) -> None:
    ep = standin.endpoint_id
    assert v2.get_version().data == "1.23.0"
    assert {"api", "min_sdk_version", "min_ep_version"} <= set(v2.get_version(service="all").data)

    fid = register(v3, multiply)
    assert set(
        v2.register_function(
            {"function_name": "m", "function_code": serde.pack_buffers([serde.serialize(multiply)])}
        ).data
    ) == {"function_uuid"}
    assert set(v2.get_function(fid).data) == {
        "function_uuid",
        "function_name",
        "function_code",
        "description",
        "metadata",
    }

    standin.compute.set_endpoint_status(ep, "offline")
    sub = v3.submit(
        ep,
        {
            "create_queue": False,
            "tasks": {fid: [payload(2, y=5), payload(3)]},
            "resource_specification": {"num_nodes": 1},
            "user_endpoint_config": {"worker_init": "true"},
            "user_runtime": {"python_version": platform.python_version()},
        },
    ).data
    assert set(sub) == {"request_id", "task_group_id", "endpoint_id", "tasks"}
    assert sub["endpoint_id"] == ep and list(sub["tasks"]) == [fid]
    t1, t2 = sub["tasks"][fid]
    record = standin.compute.task(t1)
    assert record.resource_specification == {"num_nodes": 1}
    assert record.user_endpoint_config == {"worker_init": "true"}

    # Pending while the endpoint is offline: no result fields.
    assert v2.get_task(t1).data == {"task_id": t1, "status": "waiting-for-ep"}
    assert v2.get_endpoint_status(ep)["details"]["outstanding_tasks"] >= 2
    standin.compute.set_endpoint_status(ep, "online")
    assert standin.compute.wait([t1, t2], timeout=WAIT)

    final = v2.get_task(t1).data
    assert set(final) == {"task_id", "status", "result", "completion_t", "details"}
    assert final["status"] == "success" and serde.deserialize(final["result"]) == 10
    assert isinstance(final["completion_t"], str)
    assert {"python_version", "dill_version", "os", "endpoint_id"} <= set(final["details"])

    batch = v2.get_task_batch([t1, t2]).data
    assert batch["response"] == "batch" and set(batch["results"]) == {t1, t2}
    assert batch["results"][t1]["reason"] == UNKNOWN_TASK_REASON  # fetched before
    assert serde.deserialize(batch["results"][t2]["result"]) == 3

    group = v2.get_task_group(sub["task_group_id"]).data
    assert [t["id"] for t in group["tasks"]] == [t1, t2]
    assert {"uuid", "name", "display_name", "owner"} == set(v2.get_endpoints().data[0])
    assert v2.get_endpoint(ep)["uuid"] == ep
    assert v3.get_endpoint_allowlist(ep)["functions"] == []
    assert v2.delete_function(fid).data == {"result": 302}

    # Another identity cannot see these tasks or use these functions.
    other = standin.auth.add_user("bob@example.org")
    v2_other = globus_sdk.ComputeClientV2(
        base_url=standin.compute_url,
        authorizer=globus_sdk.AccessTokenAuthorizer(standin.auth.mint_token(other)),
    )
    with pytest.raises(globus_sdk.GlobusAPIError) as info:
        v2_other.get_task(t2)
    assert info.value.http_status in (403, 404)


def test_results_are_kept_until_fetched_and_abandoned_later(
    v2: globus_sdk.ComputeClientV2, v3: globus_sdk.ComputeClientV3, standin: StandIn
) -> None:
    fid = register(v3, multiply)
    standin.compute.consume_on_fetch = False
    r = v3.submit(standin.endpoint_id, {"tasks": {fid: [payload(1), payload(2), payload(3)]}})
    t1, t2, t3 = r["tasks"][fid]
    assert standin.compute.wait([t1, t2, t3], timeout=WAIT)
    assert "result" in v2.get_task(t1).data and "result" in v2.get_task(t1).data
    standin.compute.consume_on_fetch = True
    assert "result" in v2.get_task(t2).data
    with pytest.raises(globus_sdk.GlobusAPIError) as info:
        v2.get_task(t2)
    assert info.value.http_status == 404
    # Unfetched results are abandoned after result_ttl.
    standin.compute.result_ttl = 0.0
    assert v2.get_task_batch([t3])["results"][t3]["reason"] == UNKNOWN_TASK_REASON
    assert standin.compute.task(t3).abandoned


# ------------------------------------------------------------------ the Auth side


def test_client_credentials_token_response(standin: StandIn) -> None:
    auth = login_client(standin)
    tokens = auth.oauth2_client_credentials_tokens([COMPUTE_SCOPE, "openid"])
    by_rs = tokens.by_resource_server
    assert set(by_rs) == {"auth.globus.org", COMPUTE_RESOURCE_SERVER}
    assert tokens["resource_server"] == "auth.globus.org"
    assert by_rs[COMPUTE_RESOURCE_SERVER]["scope"] == COMPUTE_SCOPE
    assert by_rs[COMPUTE_RESOURCE_SERVER]["refresh_token"] is None
    assert tokens.decode_id_token()["sub"] == standin.service_account.client_id

    intro = auth.oauth2_token_introspect(by_rs[COMPUTE_RESOURCE_SERVER]["access_token"])
    assert intro["active"] is True and intro["sub"] == standin.service_account.client_id
    auth.oauth2_revoke_token(by_rs[COMPUTE_RESOURCE_SERVER]["access_token"])
    assert (
        auth.oauth2_token_introspect(by_rs[COMPUTE_RESOURCE_SERVER]["access_token"])["active"]
        is False
    )

    userinfo = globus_sdk.AuthClient(
        base_url=standin.auth_url,
        authorizer=globus_sdk.AccessTokenAuthorizer(by_rs["auth.globus.org"]["access_token"]),
    ).userinfo()
    assert userinfo["sub"] == standin.service_account.client_id

    bad = globus_sdk.ConfidentialAppAuthClient(
        standin.service_account.client_id, "wrong", base_url=standin.auth_url
    )
    with pytest.raises(globus_sdk.AuthAPIError) as info:
        bad.oauth2_client_credentials_tokens(COMPUTE_SCOPE)
    # Token-endpoint errors are OAuth2 documents, as in globus-sdk's test data.
    assert info.value.http_status == 401
    assert info.value.raw_json["error"] == "invalid_client"


def test_authorization_code_pkce_and_refresh(standin: StandIn) -> None:
    native = globus_sdk.NativeAppAuthClient(
        "4cf29807-cf21-49ec-9443-ff9a3fb9f81c", base_url=standin.auth_url
    )
    native.oauth2_start_flow([COMPUTE_SCOPE, "openid", "profile"], refresh_tokens=True)
    code = standin.auth.authorize(native.oauth2_get_authorize_url())
    tokens = native.oauth2_exchange_code_for_tokens(code)
    compute = tokens.by_resource_server[COMPUTE_RESOURCE_SERVER]
    assert compute["refresh_token"]
    assert tokens.decode_id_token()["preferred_username"] == "alice@example.org"
    with pytest.raises(globus_sdk.AuthAPIError) as info:  # codes are single-use
        native.oauth2_exchange_code_for_tokens(code)
    assert info.value.http_status == 401

    refreshed = native.oauth2_refresh_token(compute["refresh_token"])
    assert refreshed["resource_server"] == COMPUTE_RESOURCE_SERVER
    assert refreshed["access_token"] != compute["access_token"]

    # A verifier that does not match the challenge is refused.
    native.oauth2_start_flow(COMPUTE_SCOPE)
    code = standin.auth.authorize(native.oauth2_get_authorize_url())
    native.current_oauth2_flow_manager.verifier = "x" * 43  # type: ignore[union-attr]
    with pytest.raises(globus_sdk.AuthAPIError) as info:
        native.oauth2_exchange_code_for_tokens(code)
    assert info.value.raw_json["error"] == "invalid_grant"

    # Revoking the refresh token ends the session: refresh fails.
    native.oauth2_revoke_token(compute["refresh_token"])
    with pytest.raises(globus_sdk.AuthAPIError):
        native.oauth2_refresh_token(compute["refresh_token"])


# ------------------------------------------------------------- counters and limits


def test_counters_and_rate_window(
    v2: globus_sdk.ComputeClientV2, standin: StandIn, token: str
) -> None:
    for _ in range(3):
        v2.get_endpoints()
    assert standin.stats.count(service="compute", path="/v2/endpoints") == 3
    assert standin.stats.by_token("compute")[token] == 3
    assert standin.stats.by_identity("compute")[standin.auth.user.id] == 3
    assert standin.stats.max_in_window(10.0) == 3
    assert standin.stats.within_rate_limit()

    # With enforcement on, the 21st request within 10 s is refused with a 429.
    standin.compute.enforce_rate_limit = True
    standin.stats.reset()
    with v2.retry_config.tune(max_retries=0):
        for _ in range(20):
            v2.get_endpoints()
        with pytest.raises(globus_sdk.GlobusAPIError) as info:
            v2.get_endpoints()
    assert (info.value.http_status, info.value.code) == (429, "RATE_LIMIT_EXCEEDED")
    assert 1 <= int(info.value.headers["Retry-After"]) <= 10
    assert standin.stats.count(outcome="rate_limited") == 1
    assert standin.stats.max_in_window(10.0) == 21
    assert not standin.stats.within_rate_limit()


def test_max_in_window_arithmetic() -> None:
    stats = Stats()
    for t in (0.0, 1.0, 9.0, 10.0, 10.5, 25.0):
        stats.add(RequestRecord(t=t, service="compute", method="GET", path="/", identity="a"))
    stats.add(RequestRecord(t=5.0, service="compute", method="GET", path="/", identity="b"))
    assert stats.max_in_window(10.0) == 5  # 0, 1, 5, 9, 10 (closed window)
    assert stats.max_in_window(10.0, identity="a") == 4
    assert stats.max_in_window_per_identity(10.0) == {"a": 4, "b": 1}
    assert stats.within_rate_limit(limit=4)
    assert not stats.within_rate_limit(limit=3)
