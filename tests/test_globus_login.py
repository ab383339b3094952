"""The daemon's interactive Globus login: ``gcgate login``/``logout``/``whoami``.

A real daemon without service-account credentials, against the Auth and Compute
stand-in. ``gcgate login`` runs as a subprocess exactly as a person would use it:
the test reads the URL it prints, "logs in" at the stand-in (which answers with
the code its page would show) and types the code in.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import pytest
from gcgate import Client, TaskExecutionFailed
from gcgate.errors import Unauthenticated
from gcgate.v1 import gateway_pb2 as pb
from gcgate.v1 import gateway_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness import Daemon, GlobusDaemon, LoginlessDaemon, script_function
from standin import StandIn

WAIT = 60.0


@script_function
def double(x):
    return x * 2


def gcgate(daemon: Daemon, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gcgate.cli", *args],
        env=daemon.env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def login(daemon: Daemon, standin: StandIn, *extra: str) -> dict:
    """``gcgate login --json``, logging in at the URL it prints."""
    process = subprocess.Popen(
        [sys.executable, "-m", "gcgate.cli", "login", "--json", *extra],
        env=daemon.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    prompt = []
    url = ""
    while not url:
        line = process.stderr.readline()
        assert line, f"gcgate login printed no URL: {''.join(prompt)}"
        prompt.append(line)
        if line.startswith("http"):
            url = line.strip()
    assert "Please authenticate with Globus here:" in "".join(prompt)
    code = standin.auth.authorize(url)
    out, err = process.communicate(code + "\n", timeout=120)
    assert process.returncode == 0, err + daemon.log()[-3000:]
    return json.loads(out)


def globus_health(daemon: Daemon, expected: str) -> str:
    """The health service's status for the Globus login once it is ``expected``
    (watched, not polled), or whatever it is when 30 s ran out."""
    with grpc.insecure_channel(f"unix:{daemon.socket_path}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        stream = stub.Watch(health_pb2.HealthCheckRequest(service="gcgate.globus"), timeout=30)
        status = ""
        try:
            for answer in stream:
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
                if status == expected:
                    break
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
        finally:
            stream.cancel()
        return status


def whoami(daemon: Daemon) -> dict:
    answer = gcgate(daemon, "whoami", "--json")
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout)


def test_login_run_as_the_user_and_logout(
    loginless_daemon: LoginlessDaemon, standin: StandIn
) -> None:
    alice = standin.auth.browser_identity
    assert whoami(loginless_daemon)["state"] == "logged_out"
    assert globus_health(loginless_daemon, "NOT_SERVING") == "NOT_SERVING"
    with Client(socket_path=loginless_daemon.socket_path) as client:
        func_id = client.register_function(double)
        with pytest.raises(Unauthenticated, match="gcgate login"):
            client.run(1, endpoint_id=standin.endpoint_id, function_id=func_id)

        who = login(loginless_daemon, standin)

        assert who == {
            "state": "user",
            "identity": alice.id,
            "username": alice.username,
            "name": alice.name,
            "email": alice.email,
        }
        assert whoami(loginless_daemon) == who
        assert globus_health(loginless_daemon, "SERVING") == "SERVING"
        task = client.run(21, endpoint_id=standin.endpoint_id, function_id=func_id)
        assert client.get_result(task, wait=WAIT) == 42
    # Every Compute request was the user's.
    assert set(standin.stats.by_identity("compute")) == {alice.id}
    status = gcgate(loginless_daemon, "status", "--json")
    assert json.loads(status.stdout)["login"] == {"state": "user", "identity": alice.id}

    # Tokens: one file, 0600, the user's namespace only, refresh token kept.
    token_file = loginless_daemon.state_dir / "globus-tokens.db"
    assert token_file.stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(token_file) as db:
        rows = db.execute("SELECT namespace, token_data_json FROM token_storage").fetchall()
    assert {namespace for namespace, _ in rows} == {"user"}
    assert all(json.loads(data)["refresh_token"] for _, data in rows)
    tokens = [json.loads(data)["access_token"] for _, data in rows]

    out = gcgate(loginless_daemon, "logout")
    assert out.returncode == 0, out.stderr
    assert f"logged out {alice.username}" in out.stdout
    assert whoami(loginless_daemon)["state"] == "logged_out"
    assert globus_health(loginless_daemon, "NOT_SERVING") == "NOT_SERVING"
    # Revoked at Globus Auth, and gone from the file.
    assert all(not standin.auth.token(t).active for t in tokens)
    with sqlite3.connect(token_file) as db:
        assert db.execute("SELECT count(*) FROM token_storage").fetchone() == (0,)
    with (
        Client(socket_path=loginless_daemon.socket_path) as client,
        pytest.raises(Unauthenticated, match="gcgate login"),
    ):
        client.run(2, endpoint_id=standin.endpoint_id, function_id=func_id)

    log = loginless_daemon.log()
    assert "logged in to Globus as" in log
    for token in tokens:
        assert token not in log
    assert not [t for t in standin.auth.tokens if t in log]


def test_login_survives_a_restart_and_refreshes(
    loginless_daemon: LoginlessDaemon, standin: StandIn
) -> None:
    login(loginless_daemon, standin)
    loginless_daemon.restart()
    standin.auth.expire_tokens()
    standin.reset()

    with Client(socket_path=loginless_daemon.socket_path) as client:
        func_id = client.register_function(double)
        task = client.run(5, endpoint_id=standin.endpoint_id, function_id=func_id)
        assert client.get_result(task, wait=WAIT) == 10
    # The expired access token was renewed with the stored refresh token.
    refreshes = standin.stats.select(service="auth", path="/v2/oauth2/token")
    assert len(refreshes) == 1
    assert whoami(loginless_daemon)["state"] == "user"


def test_revoked_login_is_unauthenticated(
    loginless_daemon: LoginlessDaemon, standin: StandIn
) -> None:
    login(loginless_daemon, standin)
    assert standin.auth.revoke_refresh_tokens() >= 1
    standin.auth.expire_tokens()

    with Client(socket_path=loginless_daemon.socket_path) as client:
        func_id = client.register_function(double)
        # The first task finds out when it is sent (tasks are sent after the
        # answer): it fails saying so; later submissions are refused at once.
        first = client.run(1, endpoint_id=standin.endpoint_id, function_id=func_id)
        with pytest.raises(TaskExecutionFailed, match="gcgate login"):
            client.get_result(first, wait=WAIT)
        with pytest.raises(Unauthenticated, match="gcgate login"):
            client.run(2, endpoint_id=standin.endpoint_id, function_id=func_id)
    # The health service says so, and Status too.
    assert globus_health(loginless_daemon, "NOT_SERVING") == "NOT_SERVING"
    status = json.loads(gcgate(loginless_daemon, "status", "--json").stdout)
    globus = next(b for b in status["backends"] if b["name"] == "globus")
    assert globus["state"] == "unavailable"
    assert "gcgate login" in globus["details"]["login_error"]

    # Logging in again fixes it.
    login(loginless_daemon, standin, "--force")
    assert globus_health(loginless_daemon, "SERVING") == "SERVING"
    with Client(socket_path=loginless_daemon.socket_path) as client:
        task = client.run(3, endpoint_id=standin.endpoint_id, function_id=func_id)
        assert client.get_result(task, wait=WAIT) == 6


def test_login_as_someone_else_replaces_the_login(
    loginless_daemon: LoginlessDaemon, standin: StandIn
) -> None:
    login(loginless_daemon, standin)
    bob = standin.auth.add_user("bob@example.org", name="Bob")
    standin.auth.browser_identity = bob

    who = login(loginless_daemon, standin, "--force")

    assert (who["identity"], who["username"]) == (bob.id, "bob@example.org")
    with Client(socket_path=loginless_daemon.socket_path) as client:
        func_id = client.register_function(double)
        task = client.run(8, endpoint_id=standin.endpoint_id, function_id=func_id)
        assert client.get_result(task, wait=WAIT) == 16
    assert set(standin.stats.by_identity("compute")) == {bob.id}


def test_bad_code_and_unknown_login_id(loginless_daemon: LoginlessDaemon, standin: StandIn) -> None:
    with grpc.insecure_channel(f"unix:{loginless_daemon.socket_path}") as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        started = stub.StartLogin(pb.StartLoginRequest(), timeout=30)
        assert started.authorize_url.startswith(standin.auth_url)
        assert started.expires_in_seconds > 0
        with pytest.raises(grpc.RpcError) as info:
            stub.CompleteLogin(
                pb.CompleteLoginRequest(login_id=started.login_id, auth_code="wrong"), timeout=30
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "gcgate login" in info.value.details()
        with pytest.raises(grpc.RpcError) as info:
            stub.CompleteLogin(
                pb.CompleteLoginRequest(login_id=str(uuid.uuid4()), auth_code="x"), timeout=30
            )
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert stub.WhoAmI(pb.WhoAmIRequest(), timeout=10).login.state == "logged_out"


def test_login_is_refused_with_a_service_account(standin: StandIn, tmp_path: Path) -> None:
    daemon = GlobusDaemon(tmp_path / "state", standin).start()
    try:
        answer = gcgate(daemon, "login", stdin="")
        assert answer.returncode == 1
        assert "service account" in answer.stderr
        assert whoami(daemon) == {
            "state": "client",
            "identity": standin.service_account.client_id,
            "username": "",
            "name": "",
            "email": "",
        }
    finally:
        daemon.close()
