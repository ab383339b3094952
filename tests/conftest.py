"""Shared fixtures: a real daemon per test module, clients bound to it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from gcgate.constants import MAX_MESSAGE_BYTES
from gcgate.v1.gateway_pb2_grpc import GatewayStub
from harness import Daemon, GlobusDaemon, LoginlessDaemon, serve


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One running gcgated for the whole module (stopped cleanly at the end)."""
    yield from serve(Daemon(tmp_path_factory.mktemp("daemon") / "state").start())


@pytest.fixture
def fresh_daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A daemon of its own for tests that stop, kill or restart it."""
    d = Daemon(tmp_path / "state").start()
    try:
        yield d
    finally:
        d.close()


@pytest.fixture
def stub(daemon: Daemon) -> Iterator[GatewayStub]:
    """The generated stub on a channel of its own: requests go out exactly as built."""
    channel = grpc.insecure_channel(
        f"unix:{daemon.socket_path}",
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    try:
        yield GatewayStub(channel)
    finally:
        channel.close()


@pytest.fixture
def client(daemon: Daemon):
    from gcgate import Client

    with Client(socket_path=daemon.socket_path) as c:
        yield c


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@pytest.fixture(scope="session")
def session_broker(tmp_path_factory: pytest.TempPathFactory):
    """The run's RabbitMQ node (tests/broker.py, TLS listener included), or ``None``
    where rabbitmq-server is not installed; under CI (``CI=true``) that is an error
    instead, so CI never silently runs without it."""
    from broker import Broker, missing

    why = missing()
    if why is not None:
        if _in_ci():
            pytest.fail(f"CI runs the AMQP tests on a real RabbitMQ, but {why}", pytrace=False)
        yield None
        return
    broker = Broker(tmp_path_factory.mktemp("rabbitmq"), tls=True).start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def broker(session_broker):
    """One RabbitMQ broker for the whole run (``tests/broker.py``: users, rotation,
    queue counts, restart); the test is skipped where rabbitmq-server is not
    installed (outside CI)."""
    if session_broker is None:
        from broker import missing

        pytest.skip(f"no RabbitMQ broker: {missing()}")
    return session_broker


@pytest.fixture(scope="module")
def standin_service(session_broker):
    """The Globus Compute and Auth stand-in (tests/standin), one per test module,
    pushing results over AMQP to the session's broker where there is one."""
    from standin import StandIn

    with StandIn(broker=session_broker) as s:
        yield s


@pytest.fixture(scope="module")
def remote(standin_service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GlobusDaemon]:
    """A daemon logged in to the module's stand-in with the default settings."""
    state_dir = tmp_path_factory.mktemp("globus") / "state"
    yield from serve(GlobusDaemon(state_dir, standin_service).start())


@pytest.fixture
def standin(standin_service):
    """The module's stand-in with faults, request log and settings reset for this test.

    Base URLs: ``standin.compute_url``, ``standin.auth_url``; environment for
    subprocesses (globus-sdk, gcgated): ``standin.env()``.
    """
    standin_service.reset()
    yield standin_service
    standin_service.reset()


@pytest.fixture
def pushing(standin, broker):
    """The module's stand-in, publishing to the session broker (the test is skipped
    where rabbitmq-server is not installed, as with ``broker``)."""
    assert standin.compute.broker is broker
    return standin


@pytest.fixture
def executor_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """For tests running the SDK's own ``Executor``: the SDK remembers the last task
    group for later Executors (a class attribute), so each test starts without one,
    as a fresh process would. The SDK keeps its AMQP result watcher threads until the
    process exits; the test's are shut down after it."""
    from globus_compute_sdk import Executor as SdkExecutor
    from globus_compute_sdk.sdk.executor import _RESULT_WATCHERS

    monkeypatch.setattr(SdkExecutor, "_default_task_group_id", None)
    before = set(_RESULT_WATCHERS)
    yield
    for tg in set(_RESULT_WATCHERS) - before:
        watcher = _RESULT_WATCHERS.get(tg)
        if watcher is not None:
            watcher.shutdown(wait=True)
            assert not watcher.is_alive()


@pytest.fixture
def loginless_daemon(standin, tmp_path: Path) -> Iterator[LoginlessDaemon]:
    """A daemon on the stand-in without a service account: users log in, or
    clients bring their own tokens."""
    daemon = LoginlessDaemon(tmp_path / "state", standin.env(service_account=False)).start()
    try:
        yield daemon
    finally:
        daemon.close()
