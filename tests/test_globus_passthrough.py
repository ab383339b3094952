"""Clients that bring their own Globus token: ``Client(authorizer=...)``, ``Client(app=...)``.

The daemon here has no Globus login at all: everything a token-carrying client
does at Globus is done with that client's token (its tasks belong to the token's
identity at the service), the token is kept in memory only, and tasks created
with it survive a daemon restart by waiting for the client to come back with a
token.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import globus_sdk
import pytest
from gcgate import Client
from gcgate.errors import Unauthenticated
from harness import Daemon, LoginlessDaemon, script_function
from standin import StandIn
from standin.sdk import client_app

WAIT = 60.0


@script_function
def double(x):
    return x * 2


def token_client(daemon: Daemon, token: str) -> Client:
    return Client(
        socket_path=daemon.socket_path, authorizer=globus_sdk.AccessTokenAuthorizer(token)
    )


def backend_details(daemon: Daemon) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "gcgate.cli", "status", "--json"],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    status = json.loads(out.stdout)
    return next(b for b in status["backends"] if b["name"] == "globus")["details"]


def test_a_clients_token_is_used_for_its_calls(
    loginless_daemon: LoginlessDaemon, standin: StandIn
) -> None:
    bob = standin.auth.add_user("bob@example.org", name="Bob")
    token = standin.auth.mint_token(bob)

    with token_client(loginless_daemon, token) as client:
        func_id = client.register_function(double)
        task = client.run(21, endpoint_id=standin.endpoint_id, function_id=func_id)
        assert client.get_result(task, wait=WAIT) == 42
        assert client.get_endpoint_status(standin.endpoint_id)["status"] == "online"

    # Every Compute request carried the client's token; the task is Bob's.
    assert set(standin.stats.by_token("compute")) == {token}
    assert standin.compute.tasks[task].owner == bob.id
    # The daemon itself is still not logged in, and never wrote the token down.
    assert backend_details(loginless_daemon)["login"]["state"] == "logged_out"
    assert token not in loginless_daemon.log()
    token_file = loginless_daemon.state_dir / "globus-tokens.db"
    assert token.encode() not in token_file.read_bytes()
    for path in (loginless_daemon.state_dir / "store").rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path

    # A client without a token gets nothing from Globus through this daemon.
    with (
        Client(socket_path=loginless_daemon.socket_path) as plain,
        pytest.raises(Unauthenticated, match="gcgate login"),
    ):
        plain.run(1, endpoint_id=standin.endpoint_id, function_id=func_id)


def test_two_tokens_never_share_a_submit(
    loginless_daemon: LoginlessDaemon, standin: StandIn
) -> None:
    users = [standin.auth.add_user(f"user{i}@example.org") for i in range(2)]
    tokens = [standin.auth.mint_token(u) for u in users]
    clients = [token_client(loginless_daemon, t) for t in tokens]
    try:
        func_ids = [c.register_function(double) for c in clients]

        def run(i: int) -> str:
            client = clients[i % 2]
            return client.run(i, endpoint_id=standin.endpoint_id, function_id=func_ids[i % 2])

        with ThreadPoolExecutor(20) as pool:
            task_ids = list(pool.map(run, range(20)))
        for i, task_id in enumerate(task_ids):
            assert clients[i % 2].get_result(task_id, wait=WAIT) == 2 * i
            assert standin.compute.tasks[task_id].owner == users[i % 2].id
        # Each submit was one identity's.
        for record in standin.compute.submits:
            owners = {standin.compute.tasks[t].owner for t in record.task_ids}
            assert len(owners) == 1
    finally:
        for client in clients:
            client.close()


def test_a_tokens_submits_join_one_task_group(
    loginless_daemon: LoginlessDaemon, standin: StandIn
) -> None:
    """A token's submits without a task group of the client's join one service task
    group (with a result queue), its own: never the daemon's or another token's."""
    dave = standin.auth.add_user("dave@example.org")
    with token_client(loginless_daemon, standin.auth.mint_token(dave)) as client:
        func_id = client.register_function(double)
        task_ids = [
            client.run(n, endpoint_id=standin.endpoint_id, function_id=func_id) for n in range(3)
        ]
        assert [client.get_result(t, wait=WAIT) for t in task_ids] == [0, 2, 4]
    groups = {standin.compute.tasks[t].task_group_id for t in task_ids}
    assert len(groups) == 1
    group = standin.compute.task_groups[groups.pop()]
    assert (group.owner, group.create_queue) == (dave.id, True)


def test_token_tasks_wait_for_their_client_after_a_restart(
    loginless_daemon: LoginlessDaemon, standin: StandIn
) -> None:
    bob = standin.auth.add_user("bob@example.org")
    with token_client(loginless_daemon, standin.auth.mint_token(bob)) as client:
        func_id = client.register_function(double)
        standin.compute.set_endpoint_status(standin.endpoint_id, "offline")
        task_ids = [
            client.run(n, endpoint_id=standin.endpoint_id, function_id=func_id) for n in range(5)
        ]
    loginless_daemon.kill()
    standin.compute.set_endpoint_status(standin.endpoint_id, "online")
    loginless_daemon.start()

    # Without a token the daemon cannot poll them: they wait for their client.
    details = backend_details(loginless_daemon)
    assert details["waiting_for_client_token"] == 5
    with Client(socket_path=loginless_daemon.socket_path) as plain:
        assert all(plain.get_task(t)["pending"] for t in task_ids)

    # Bob comes back (with a new token): his results are fetched with it.
    fresh = standin.auth.mint_token(bob)
    with token_client(loginless_daemon, fresh) as client:
        results = client.get_batch_result(task_ids, wait=WAIT)
    assert [results[t]["result"] for t in task_ids] == [2 * n for n in range(5)]
    assert backend_details(loginless_daemon)["waiting_for_client_token"] == 0


def test_client_app_supplies_the_token(loginless_daemon: LoginlessDaemon, standin: StandIn) -> None:
    app = client_app(standin)
    with Client(socket_path=loginless_daemon.socket_path, app=app) as client:
        func_id = client.register_function(double)
        task = client.run(4, endpoint_id=standin.endpoint_id, function_id=func_id)
        assert client.get_result(task, wait=WAIT) == 8
    assert standin.compute.tasks[task].owner == standin.service_account.client_id


def test_an_expired_client_token_is_unauthenticated(
    loginless_daemon: LoginlessDaemon, standin: StandIn
) -> None:
    token = standin.auth.mint_token(standin.auth.add_user("carol@example.org"))
    standin.auth.expire_tokens()
    with token_client(loginless_daemon, token) as client:
        func_id = client.register_function(double)
        with pytest.raises(Unauthenticated, match="access token this client passed"):
            client.run(1, endpoint_id=standin.endpoint_id, function_id=func_id)
    # The daemon's own login state is not what failed.
    assert backend_details(loginless_daemon)["login_error"] == ""
