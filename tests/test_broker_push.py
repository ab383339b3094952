"""The AMQP result path of the test world: a real RabbitMQ (tests/broker.py) and the
Compute stand-in publishing results into it as the Globus Compute service does.

The oracle is the real ``globus_compute_sdk.Executor``: its futures must resolve
from the pushed messages alone (its ``_ResultWatcher`` consuming with pika), with
no status polling. The broker's own behaviour the rest of the suite leans on is
checked here too: persistence across a restart and a crash, refused rotated
passwords, forced connection closes, queue counts, the TLS listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
import uuid
from pathlib import Path
from typing import Any

import globus_sdk
import pika
import pika.exceptions
import pytest
from broker import Broker, _group_alive, missing
from globus_compute_common import messagepack
from globus_compute_common.messagepack.message_types import Result
from globus_compute_sdk import Executor
from globus_compute_sdk.errors import TaskExecutionFailed
from globus_compute_sdk.serialize import ComputeSerializer
from harness import script_function
from standin import StandIn
from standin.sdk import client_app, compute_client

#: Upper bound on any one condition here (tasks take milliseconds).
WAIT = 30.0

serde = ComputeSerializer()


@script_function
def multiply(x, y=1):
    return x * y


@script_function
def failing_task(x):
    raise ValueError(f"deliberate failure for {x}")


@script_function
def wait_for_file(path):
    """A slow task: runs until the test creates ``path`` (or a minute passes)."""
    import os
    import time

    deadline = time.time() + 60
    while not os.path.exists(path):
        if time.time() > deadline:
            raise TimeoutError(path)
        time.sleep(0.01)
    with open(path) as f:
        return f.read()


def until(check: Any, what: str, timeout: float = WAIT) -> Any:
    """Poll ``check()`` until it returns something truthy (returned), or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def connect(url: str) -> pika.BlockingConnection:
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.socket_timeout = 5
    return pika.BlockingConnection(params)


def get_message(url: str, queue: str) -> tuple[Any, bytes]:
    """The next message of ``queue`` (waited for), acknowledged: ``(properties, body)``."""
    with contextlib.closing(connect(url)) as conn:
        channel = conn.channel()
        deadline = time.monotonic() + WAIT
        while True:
            method, props, body = channel.basic_get(queue)
            if method is not None:
                channel.basic_ack(method.delivery_tag)
                return props, body
            assert time.monotonic() < deadline, f"no message in {queue}"
            conn.process_data_events(0.05)


# ------------------------------------------------------------------ the broker


def test_a_node_of_its_own_survives_restart_and_crash_keeping_persistent_messages(
    tmp_path: Path,
) -> None:
    b = Broker(tmp_path / "rabbit")
    try:
        b.start()
        first_start = b.last_start_seconds
        assert first_start is not None and first_start < 20, first_start
        node, amqp_port, pid = b.node, b.amqp_port, b.pid
        assert node.startswith(f"gcgate-{os.getpid()}-") and node.endswith("@localhost")

        with contextlib.closing(connect(b.admin_url)) as conn:
            channel = conn.channel()
            channel.confirm_delivery()
            channel.queue_declare("durable-q", durable=True)
            channel.queue_declare("transient-q", durable=False)
            persistent = pika.BasicProperties(delivery_mode=2)
            channel.basic_publish("", "durable-q", b"kept", persistent, mandatory=True)
        assert b.queue_counts("durable-q") == (1, 0)
        assert b.queue_counts("transient-q") == (0, 0)

        b.restart()
        assert (b.node, b.amqp_port) == (node, amqp_port)
        assert b.pid != pid
        assert b.queue_counts("durable-q") == (1, 0), "a durable queue keeps its message"
        assert b.queue_counts("transient-q") is None, "a transient queue is gone"

        old_pid = b.pid
        assert old_pid is not None
        b.kill()
        assert not _group_alive(old_pid), "SIGKILL took the node's whole process group"
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            connect(b.admin_url)
        b.start()
        props, body = get_message(b.admin_url, "durable-q")
        assert body == b"kept" and props.delivery_mode == 2
        assert b.queue_counts("durable-q") == (0, 0)
        print(f"broker start {first_start:.2f} s, start after kill {b.last_start_seconds:.2f} s")
    finally:
        pid = b.pid
        b.stop()
    assert pid is not None and not _group_alive(pid)
    assert b._epmd is None


def test_a_rotated_password_is_refused_and_connections_can_be_closed(broker: Broker) -> None:
    user, password = broker.user(f"rotation-{uuid.uuid4()}")
    assert broker.user_password(user) == (user, password)
    conn = connect(broker.url_for(user, password))
    try:
        new = broker.rotate_password(user)
        assert new != password
        assert broker.user_password(user) == (user, new)
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            connect(broker.url_for(user, password))
        connect(broker.url_for(user, new)).close()

        # The connection opened before the rotation lives on until closed by the broker.
        assert conn.is_open
        broker.close_connections(user=user)
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
            until(lambda: conn.process_data_events(0.05) or not conn.is_open, "the close")
        assert info.value.reply_code == 320  # CONNECTION_FORCED
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def test_users_read_only_what_their_permissions_allow(broker: Broker) -> None:
    tag = uuid.uuid4().hex
    mine, theirs = f"mine.{tag}", f"theirs.{tag}"
    with contextlib.closing(connect(broker.admin_url)) as conn:
        channel = conn.channel()
        for q in (mine, theirs):
            channel.queue_declare(q, durable=True)
            channel.basic_publish("", q, b"m", pika.BasicProperties(delivery_mode=2))
    until(lambda: broker.queue_counts(theirs) == (1, 0), "the publishes")
    url = broker.url_for(
        *broker.user(f"reader-{tag}", configure="^$", write="^$", read=rf"^mine\.{tag}$")
    )
    with contextlib.closing(connect(url)) as conn:
        channel = conn.channel()
        method, _, body = channel.basic_get(mine)
        assert body == b"m"
        # Delivered, not acknowledged: counted as unacked until the ack.
        assert broker.queue_counts(mine) == (0, 1)
        channel.basic_ack(method.delivery_tag)
        until(lambda: broker.queue_counts(mine) == (0, 0), "the ack")
        for forbidden in (
            lambda ch: ch.basic_get(theirs),
            lambda ch: ch.queue_declare(f"new.{tag}", durable=True),
            lambda ch: ch.basic_publish("", mine, b"x"),
        ):
            channel = conn.channel()
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
                forbidden(channel)
                channel.basic_qos(prefetch_count=1)  # a round trip: the refusal arrives
            assert info.value.reply_code == 403
    assert broker.queue_counts(theirs) == (1, 0)
    assert broker.delete_queue(theirs) and broker.delete_queue(mine)
    assert broker.queue_counts(theirs) is None and not broker.delete_queue(theirs)


def test_the_tls_listener_serves_the_test_ca(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aio_pika

    user, password = broker.user(f"tls-{uuid.uuid4()}")
    url = broker.url_for(user, password, tls=True)
    assert url.startswith("amqps://") and f":{broker.amqps_port}/" in url

    # Without the test CA, the certificate is refused: it really is TLS, checked.
    with pytest.raises(ssl.SSLCertVerificationError):
        connect(url)

    # pika (the SDK's client) with the CA trusted as a public one would be.
    monkeypatch.setenv("SSL_CERT_FILE", broker.tls_env()["SSL_CERT_FILE"])
    connect(url).close()
    monkeypatch.delenv("SSL_CERT_FILE")

    # aio-pika / aiormq (the daemon's client) with the CA named in the URL; refused
    # without it.
    async def aio(url: str) -> None:
        connection = await aio_pika.connect(url, timeout=10)
        await connection.close()

    asyncio.run(aio(broker.url_for(user, password, tls=True, ca_in_query=True)))
    with pytest.raises(Exception) as info:  # aiormq may wrap it
        asyncio.run(aio(url))
    assert "CERTIFICATE_VERIFY_FAILED" in repr(info.value), repr(info.value)


# ------------------------------------------------------------- the stand-in


def test_sdk_executor_futures_resolve_by_amqp_push(pushing: StandIn, executor_state: None) -> None:
    standin = pushing
    gcc = compute_client(standin, app=client_app(standin))
    with Executor(endpoint_id=standin.endpoint_id, client=gcc) as ex:
        futures = [ex.submit(multiply, i, y=3) for i in range(5)]
        failed = ex.submit(failing_task, 7)
        assert [f.result(timeout=WAIT) for f in futures] == [0, 3, 6, 9, 12]
        with pytest.raises(TaskExecutionFailed) as info:
            failed.result(timeout=WAIT)
        task_group_id = str(ex.task_group_id)
    assert "ValueError: deliberate failure for 7" in str(info.value)

    submits = standin.compute.submits
    assert submits and all(s.create_queue for s in submits), submits
    assert {s.task_group_id for s in submits} == {task_group_id}
    group = standin.compute.task_groups[task_group_id]
    assert group.queue == standin.compute.queue_prefix(group.owner) + task_group_id

    task_ids = [f.task_id for f in [*futures, failed]]
    assert set(task_ids) <= set(standin.compute.published_task_ids(task_group_id))
    # Every result came by push: the SDK never asked for a status or a result.
    assert standin.stats.count(service="compute", path="/v2/batch_status") == 0
    assert standin.stats.count(service="compute", path="/v2/tasks/*") == 0
    assert standin.stats.count(path="/v2/get_amqp_result_connection_url") >= 1
    # ... and acknowledged every message it took.
    until(lambda: standin.broker.queue_counts(group.queue) == (0, 0), "the SDK's acks")
    # The results are still held by the service, once, for a fetch.
    assert all(not standin.compute.task(t).forgotten for t in task_ids)


def test_create_queue_pushes_each_result_and_keeps_it_fetchable(pushing: StandIn) -> None:
    standin, broker = pushing, pushing.broker
    assert broker is not None
    token = standin.auth.mint_token()
    authorizer = globus_sdk.AccessTokenAuthorizer(token)
    v2 = globus_sdk.ComputeClientV2(base_url=standin.compute_url, authorizer=authorizer)
    v3 = globus_sdk.ComputeClientV3(base_url=standin.compute_url, authorizer=authorizer)
    identity = standin.auth.token(token).identity_id
    fid = gcc_register(v3, multiply)
    bad = gcc_register(v3, failing_task)

    info = v2.get_result_amqp_url().data
    assert set(info) == {"connection_url", "queue_prefix"}
    assert info["queue_prefix"] == standin.compute.queue_prefix(identity)
    assert info["connection_url"].startswith(f"amqp://gc-{identity}:")

    body = {"tasks": {fid: [payload(6, y=7)], bad: [payload(1)]}, "create_queue": True}
    r = v3.submit(standin.endpoint_id, body)
    group, (ok_id,), (bad_id,) = r["task_group_id"], r["tasks"][fid], r["tasks"][bad]
    queue = info["queue_prefix"] + group
    assert broker.queue_counts(queue) is not None, "declared before the submit returned"
    assert standin.compute.wait_published([ok_id, bad_id], timeout=WAIT)

    messages = {}
    for _ in range(2):
        props, raw = get_message(info["connection_url"], queue)
        message = messagepack.unpack(raw)
        assert isinstance(message, Result)
        messages[str(message.task_id)] = (props, message)
    assert set(messages) == {ok_id, bad_id}

    props, ok = messages[ok_id]
    task = standin.compute.task(ok_id)
    assert serde.deserialize(ok.data) == 42 and not ok.is_error
    assert ok.details == task.details and ok.details["endpoint_id"] == standin.endpoint_id
    assert props.delivery_mode == 2 and props.timestamp == int(task.completion_t)
    assert not props.headers

    props, failure = messages[bad_id]
    assert failure.is_error and failure.error_details is not None
    assert failure.error_details.code == "RemoteExecutionError"
    assert "ValueError: deliberate failure for 1" in failure.data
    assert failure.data == standin.compute.task(bad_id).exception

    # Pushing did not consume: the service hands each result out once more.
    assert serde.deserialize(v2.get_task(ok_id)["result"]) == 42
    assert v2.get_task(bad_id)["status"] == "failed"

    # The identity's credentials read its own queues, nobody else's.
    other = standin.compute.queue_prefix(str(uuid.uuid4())) + group
    with contextlib.closing(connect(broker.admin_url)) as conn:
        conn.channel().queue_declare(other, durable=True)
    with contextlib.closing(connect(info["connection_url"])) as conn:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            conn.channel().basic_get(other)
        assert refused.value.reply_code == 403
    broker.delete_queue(other)

    # A later submit to the same group uses the same queue.
    (again,) = v3.submit(
        standin.endpoint_id,
        {"tasks": {fid: [payload(2)]}, "create_queue": True, "task_group_id": group},
    )["tasks"][fid]
    assert standin.compute.wait_published([again], timeout=WAIT)
    assert standin.compute.published(group) == 3
    assert broker.queue_counts(queue) == (1, 0)
    broker.delete_queue(queue)


def test_the_url_route_hands_out_amqps_on_the_tls_listener(
    pushing: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    standin, broker = pushing, pushing.broker
    assert broker is not None and broker.amqps_port is not None
    v2 = globus_sdk.ComputeClientV2(
        base_url=standin.compute_url,
        authorizer=globus_sdk.AccessTokenAuthorizer(standin.auth.mint_token()),
    )
    standin.compute.amqp_tls = True
    info = v2.get_result_amqp_url().data
    assert info["connection_url"].startswith("amqps://")
    assert info["connection_url"].endswith(f"127.0.0.1:{broker.amqps_port}/%2F")
    # As the SDK connects: pika with the URL as given, the CA trusted like a public one.
    monkeypatch.setenv("SSL_CERT_FILE", broker.tls_env()["SSL_CERT_FILE"])
    connect(info["connection_url"]).close()

    standin.compute.amqp_ca_in_url = True
    url = v2.get_result_amqp_url()["connection_url"]
    assert url.endswith(f"?cafile={broker.ca_file}")
    standin.reset()
    assert v2.get_result_amqp_url()["connection_url"].startswith("amqp://")


def test_publish_and_declare_controls(pushing: StandIn) -> None:
    standin, broker = pushing, pushing.broker
    assert broker is not None
    token = standin.auth.mint_token()
    identity = standin.auth.token(token).identity_id
    v3 = globus_sdk.ComputeClientV3(
        base_url=standin.compute_url, authorizer=globus_sdk.AccessTokenAuthorizer(token)
    )
    fid = gcc_register(v3, multiply)
    prefix = standin.compute.queue_prefix(identity)

    # A queue that never gets messages.
    standin.compute.publish_results = False
    r = v3.submit(standin.endpoint_id, {"tasks": {fid: [payload(1)]}, "create_queue": True})
    silent, (tid,) = r["task_group_id"], r["tasks"][fid]
    assert standin.compute.wait([tid], timeout=WAIT)
    until(lambda: standin.compute.publisher.pending == 0, "the publisher to drain")
    assert standin.compute.published(silent) == 0
    assert broker.queue_counts(prefix + silent) == (0, 0)

    # A queue the broker does not know.
    standin.compute.publish_results = True
    standin.compute.declare_queues = False
    r = v3.submit(standin.endpoint_id, {"tasks": {fid: [payload(2)]}, "create_queue": True})
    unknown, (tid,) = r["task_group_id"], r["tasks"][fid]
    assert standin.compute.wait([tid], timeout=WAIT)
    until(lambda: standin.compute.publisher.pending == 0, "the publisher to drain")
    assert broker.queue_counts(prefix + unknown) is None
    assert standin.compute.published(unknown) == 0
    assert standin.compute.submits[-1].create_queue

    # Without create_queue there is no queue either.
    standin.compute.declare_queues = True
    plain = v3.submit(standin.endpoint_id, {"tasks": {fid: [payload(3)]}})["task_group_id"]
    assert standin.compute.task_groups[plain].queue is None
    assert broker.queue_counts(prefix + plain) is None

    standin.reset()
    assert standin.compute.publish_results and standin.compute.declare_queues
    broker.delete_queue(prefix + silent)


def test_without_a_broker_the_url_route_is_503_and_create_queue_is_ignored() -> None:
    with StandIn(workers=1) as standin:
        token = standin.auth.mint_token()
        authorizer = globus_sdk.AccessTokenAuthorizer(token)
        v2 = globus_sdk.ComputeClientV2(base_url=standin.compute_url, authorizer=authorizer)
        v3 = globus_sdk.ComputeClientV3(base_url=standin.compute_url, authorizer=authorizer)
        v2.retry_config.max_retries = 0  # globus-sdk retries a 503 five times, backing off
        with pytest.raises(globus_sdk.GlobusAPIError) as info:
            v2.get_result_amqp_url()
        assert info.value.http_status == 503 and info.value.code == "AMQP_UNAVAILABLE"
        assert "no AMQP broker" in info.value.message
        assert standin.stats.count(path="/v2/get_amqp_result_connection_url") == 1
        fid = gcc_register(v3, multiply)
        r = v3.submit(standin.endpoint_id, {"tasks": {fid: [payload(5)]}, "create_queue": True})
        (tid,) = r["tasks"][fid]
        assert standin.compute.submits[-1].create_queue
        assert standin.compute.task_groups[r["task_group_id"]].queue is None
        assert standin.compute.wait([tid], timeout=WAIT)
        assert serde.deserialize(v2.get_task(tid)["result"]) == 5
        assert standin.compute.published() == 0


@pytest.mark.slow
def test_a_result_finished_while_the_broker_is_down_arrives_after_it_restarts(
    pushing: StandIn, tmp_path: Path
) -> None:
    standin, broker = pushing, pushing.broker
    assert broker is not None
    token = standin.auth.mint_token()
    authorizer = globus_sdk.AccessTokenAuthorizer(token)
    v2 = globus_sdk.ComputeClientV2(base_url=standin.compute_url, authorizer=authorizer)
    v3 = globus_sdk.ComputeClientV3(base_url=standin.compute_url, authorizer=authorizer)
    fid = gcc_register(v3, wait_for_file)
    release = tmp_path / "release"
    info = v2.get_result_amqp_url().data
    r = v3.submit(
        standin.endpoint_id, {"tasks": {fid: [payload(str(release))]}, "create_queue": True}
    )
    group, (tid,) = r["task_group_id"], r["tasks"][fid]
    queue = info["queue_prefix"] + group
    until(lambda: v2.get_task(tid)["status"] == "running", "the task to run")
    connections = standin.compute.publisher.connections

    broker.stop()
    release.write_text("done after the broker went down")
    assert standin.compute.wait([tid], timeout=WAIT)
    # Finished while the broker is down: held by the publisher, not lost.
    assert standin.compute.publisher.pending >= 1
    assert standin.compute.published(group) == 0

    broker.start()
    props, raw = get_message(info["connection_url"], queue)
    message = messagepack.unpack(raw)
    assert str(message.task_id) == tid
    assert serde.deserialize(message.data) == "done after the broker went down"
    assert props.delivery_mode == 2
    assert standin.compute.wait_published([tid], timeout=WAIT)
    assert standin.compute.publisher.connections > connections
    broker.delete_queue(queue)


# ------------------------------------------------------------------ helpers


def gcc_register(v3: globus_sdk.ComputeClientV3, fn: Any) -> str:
    import platform

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


def test_the_broker_is_there_in_ci() -> None:
    """CI installs rabbitmq-server (.ci/run): there the broker tests never skip."""
    if os.environ.get("CI", "").lower() not in ("true", "1", "yes"):
        pytest.skip("only meaningful under CI")
    assert missing() is None
