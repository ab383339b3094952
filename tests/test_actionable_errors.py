"""Errors a person can act on (issue 15, part 3), against real processes.

- a Globus host that cannot be reached (nobody listening, a name that does not
  resolve, a host that accepts and never answers) is UNAVAILABLE naming the
  host and the cause, within seconds, for a login and for an interactive call;
- a task that waits says why (``pending_reason``) in GetResult, ListTasks and
  ``gcgate tasks``;
- every malformed id names its argument (and its position in a list);
- the client tells a file that is not a socket, a stale socket and a daemon
  that does not answer (SIGSTOPped) apart.

The hosts are real sockets of this test: a port bound then closed (refused), a
listening socket that never accepts (silent: the kernel completes the
handshake, nothing answers), and the reserved ``.invalid`` domain (RFC 2606).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from gcgate import Client, DaemonUnavailable
from gcgate._diagnose import stopped_state
from gcgate.constants import UPSTREAM_UNAVAILABLE_METADATA
from gcgate.errors import ServiceUnavailable
from gcgate.v1 import gateway_pb2 as pb
from gcgate.v1 import gateway_pb2_grpc as pb_grpc
from globus_sdk import AccessTokenAuthorizer
from harness import ConfiguredDaemon, Daemon, GlobusDaemon, script_function, serve, wait_until
from standin import StandIn
from test_held_tasks import Holder, hold, holder  # noqa: F401 - holder: a fixture

#: A generous bound on each call: exceeding it fails the test as a hang (the
#: point is "seconds, not 120"), not as a performance assertion.
HANG = 30.0
#: Seconds one request to Globus may take in these daemons (the silent host's timeout).
HTTP_TIMEOUT = 2
#: A client's own token: Compute calls go out with it, no login needed.
TOKEN = [("authorization", "Bearer test-token-not-a-secret")]
#: Service-account variables the daemons here must not see.
CREDENTIALS = ("GLOBUS_COMPUTE_CLIENT_ID", "GLOBUS_COMPUTE_CLIENT_SECRET")


@pytest.fixture(scope="module")
def silent_host() -> Iterator[str]:
    """A URL whose host accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@script_function
def double_it(x):
    return x * 2


def refused_url() -> str:
    """A URL of a port nobody listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


UNRESOLVABLE = "https://gcgate-test.nonexistent.invalid"


@pytest.fixture(scope="module", params=["refused", "unresolvable", "silent"])
def offline_daemon(
    request: pytest.FixtureRequest, silent_host: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Daemon, str]]:
    """A daemon without a login whose Globus Auth and Compute are both unreachable,
    one way or another; with the words its errors must hold (host and cause)."""
    if request.param == "refused":
        url = refused_url()
        words = f"{url.removeprefix('http://')}: connection refused"
    elif request.param == "unresolvable":
        url, words = UNRESOLVABLE, "gcgate-test.nonexistent.invalid: name resolution failed"
    else:
        url = silent_host
        host = url.removeprefix("http://")
        words = f"{host}: connected, but no answer came: timed out after {HTTP_TIMEOUT} s"
    env = {
        "GLOBUS_SDK_SERVICE_URL_AUTH": url + "/",
        "GLOBUS_SDK_SERVICE_URL_COMPUTE": url,
        "GCGATE_COMPUTE_URL": url,
    }
    state_dir = tmp_path_factory.mktemp(f"offline-{request.param}") / "state"
    daemon = ConfiguredDaemon(state_dir, {"http_timeout_seconds": HTTP_TIMEOUT}, env, workers=1)
    saved = {k: os.environ.pop(k) for k in CREDENTIALS if k in os.environ}  # no service account
    try:
        yield from ((d, words) for d in serve(daemon.start()))
    finally:
        os.environ.update(saved)


def refusal(call: object) -> grpc.RpcError:
    """The RpcError ``call()`` ends with (the test fails if it answers)."""
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value


def test_offline_login_is_unavailable_naming_auth(offline_daemon: tuple[Daemon, str]) -> None:
    daemon, words = offline_daemon
    with grpc.insecure_channel(f"unix:{daemon.socket_path}") as channel:
        stub = pb_grpc.GatewayStub(channel)
        started = stub.StartLogin(pb.StartLoginRequest(), timeout=HANG)
        assert started.authorize_url  # made here: no request to Auth yet
        request = pb.CompleteLoginRequest(login_id=started.login_id, auth_code="a-code")
        err = refusal(lambda: stub.CompleteLogin(request, timeout=HANG))
        who = stub.WhoAmI(pb.WhoAmIRequest(), timeout=HANG)
    assert err.code() is grpc.StatusCode.UNAVAILABLE, err.details()
    assert err.details().startswith("completing the Globus login: cannot reach Globus Auth at ")
    assert words in err.details()
    assert who.login.state == "logged_out"
    assert dict(err.trailing_metadata() or ()).get(UPSTREAM_UNAVAILABLE_METADATA) == "globus"
    # The command says the same, not that the daemon is unreachable: exit 1 (an
    # error), not 3 (the daemon cannot be reached), and no daemon-socket advice.
    shown = cli("login", env=daemon.env, stdin="a-code\n")
    assert shown.returncode == 1, shown.stderr
    said = "gcgate: UNAVAILABLE: completing the Globus login: cannot reach Globus Auth at "
    assert said in shown.stderr and words in shown.stderr, shown.stderr
    assert "start it with" not in shown.stderr and "daemon socket" not in shown.stderr
    assert "Traceback" not in daemon.log()
    assert "cannot reach Globus Auth" in daemon.log()


#: Interactive RPCs that ask Globus Compute (as a client's token: no login needed).
COMPUTE_CALLS = [
    ("GetEndpointStatus", pb.EndpointRequest(endpoint_id=str(uuid.UUID(int=7)))),
    ("GetEndpointMetadata", pb.EndpointRequest(endpoint_id=str(uuid.UUID(int=7)))),
    ("GetAllowedFunctions", pb.EndpointRequest(endpoint_id=str(uuid.UUID(int=7)))),
    ("ListEndpoints", pb.ListEndpointsRequest()),
    ("GetServiceVersion", pb.ServiceVersionRequest()),
]


def test_unreachable_compute_is_unavailable_in_seconds(
    offline_daemon: tuple[Daemon, str],
) -> None:
    daemon, words = offline_daemon
    with grpc.insecure_channel(f"unix:{daemon.socket_path}") as channel:
        stub = pb_grpc.GatewayStub(channel)
        calls = {
            rpc: getattr(stub, rpc).future(message, timeout=HANG, metadata=TOKEN)
            for rpc, message in COMPUTE_CALLS
        }
        errors = {rpc: call.exception() for rpc, call in calls.items()}
    for rpc, err in errors.items():
        assert isinstance(err, grpc.Call), (rpc, err)
        assert err.code() is grpc.StatusCode.UNAVAILABLE, (rpc, err.details())
        assert "cannot reach Globus Compute at " in err.details(), rpc
        assert words in err.details(), (rpc, err.details())
        assert "check this host's network connection" in err.details()
    assert "Traceback" not in daemon.log()
    # The client raises what the daemon meant: Globus is down, the daemon is not.
    token = AccessTokenAuthorizer("test-token-not-a-secret")
    with (
        Client(socket_path=daemon.socket_path, authorizer=token) as client,
        pytest.raises(ServiceUnavailable) as caught,
    ):
        client.get_endpoint_status(str(uuid.UUID(int=7)))
    assert not isinstance(caught.value, DaemonUnavailable)
    assert "cannot reach Globus Compute at " in str(caught.value)


# ------------------------------------------------------------- pending reasons


def cli(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``gcgate ARGS`` in a subprocess (a generous timeout: a hang fails the test)."""
    return subprocess.run(
        [sys.executable, "-m", "gcgate.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=HANG,
    )


def parent_of(pid: int) -> int:
    """The parent process id of ``pid`` (from /proc)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


@pytest.fixture
def one_worker(tmp_path: Path) -> Iterator[Daemon]:
    yield from serve(Daemon(tmp_path / "state", workers=1).start())


def test_local_pending_reasons_in_get_result_list_tasks_and_cli(
    one_worker: Daemon,
    holder: Holder,  # noqa: F811 - the fixture imported above
) -> None:
    with Client(socket_path=one_worker.socket_path) as client:
        function_id = client.register_function(hold)
        ids = [
            client.run(holder.address, f"t{n}", endpoint_id="local", function_id=function_id)
            for n in range(12)
        ]
        assert holder.accept() == "t0"  # runs; the rest wait behind it (one worker)
        with grpc.insecure_channel(f"unix:{one_worker.socket_path}") as channel:
            stub = pb_grpc.GatewayStub(channel)
            last = stub.GetResult(pb.GetResultRequest(task_id=ids[-1]), timeout=HANG)
            listed = {
                t.task_id: t.pending_reason
                for t in stub.ListTasks(pb.ListTasksRequest(limit=100), timeout=HANG).tasks
            }
        shown = cli("tasks", env=one_worker.env)
        as_json = cli("--json", "tasks", env=one_worker.env)
        for name in [f"t{n}" for n in range(12)]:
            if name != "t0":
                assert holder.accept() == name
            holder.release(name)
        done = client.get_batch_result(ids, wait=HANG)
    assert all(not task["pending"] for task in done.values())
    running = listed[ids[0]]
    assert running.startswith("running on local worker pid "), running
    pid = int(running.rsplit(" ", 1)[1])
    assert parent_of(pid) == one_worker.process.pid  # a worker of this daemon
    assert listed[ids[1]] == f"sent to local worker pid {pid}, behind 1 task(s)"
    queued = [listed[t] for t in ids if listed[t].startswith("queued for a local worker (")]
    assert (
        queued
        and queued[-1] == f"queued for a local worker ({len(queued)} of {len(queued)} in line)"
    )
    assert last.pending and last.pending_reason == queued[-1]
    assert shown.returncode == 0, shown.stderr
    assert "why pending:" in shown.stdout
    assert f"  {ids[0]}: running on local worker pid {pid}" in shown.stdout
    summaries = {t["task_id"]: t for t in json.loads(as_json.stdout)}
    assert summaries[ids[0]]["pending_reason"] == running
    # Final tasks have none (the field is empty, the key left out).
    with Client(socket_path=one_worker.socket_path) as client:
        final = {t["task_id"]: t for t in client.list_tasks(limit=100)}
    assert all("pending_reason" not in final[t] for t in ids)


@pytest.fixture
def patient_daemon(standin: StandIn, tmp_path: Path) -> Iterator[GlobusDaemon]:
    """A daemon logged in to the stand-in that retries a submit for 1 s before
    holding its tasks (the default is 120 s)."""
    yield from serve(GlobusDaemon(tmp_path / "state", standin, {"retry_seconds": 1}).start())


def listed_reason(client: Client, task_id: str) -> str:
    """``task_id``'s pending reason as ``Client.list_tasks`` has it ("" for none)."""
    return next(
        t.get("pending_reason", "") for t in client.list_tasks(limit=100) if t["task_id"] == task_id
    )


def test_held_globus_task_says_why_it_waits(standin: StandIn, patient_daemon: GlobusDaemon) -> None:
    """Compute resets every connection: the task waits to be submitted, and says
    so with the cause and since when; once Compute answers again it is submitted
    and waits for its (offline) endpoint, and says that; then it runs."""
    endpoint_id = standin.endpoint_id
    outage = standin.faults.add(drop="before", reset=True)  # every Compute request, until removed
    with Client(socket_path=patient_daemon.socket_path) as client:
        function_id = client.register_function(double_it)
        task_id = client.run(21, endpoint_id=endpoint_id, function_id=function_id)
        compute = standin.compute_url.removeprefix("http://")
        held = (
            "waiting to be submitted to Globus Compute: Globus Compute at"
            f" {compute}: connection reset by the host, since "
        )
        wait_until(
            "the task to be held", lambda: listed_reason(client, task_id).startswith(held), HANG
        )
        reason = listed_reason(client, task_id)
        assert re.fullmatch(re.escape(held) + r"\d\d:\d\d:\d\d UTC; gcgated keeps trying", reason)
        shown = cli("tasks", env=patient_daemon.env)
        assert f"  {task_id}: {reason}" in shown.stdout, shown.stdout

        # Compute answers again, its endpoint is offline (and a status lookup said so).
        standin.compute.set_endpoint_status(endpoint_id, "offline")
        standin.faults.remove(outage)
        assert client.get_endpoint_status(endpoint_id)["status"] == "offline"
        sent = (
            f"submitted to Globus Compute; waiting for endpoint {endpoint_id}"
            " (offline at the last status lookup) to run it; "
        )
        wait_until(
            "the task to be submitted",
            lambda: listed_reason(client, task_id).startswith(sent),
            HANG,
        )
        reason = listed_reason(client, task_id)
        assert re.fullmatch(
            re.escape(sent) + r"(its result is pushed to gcgated when it is done"
            r"|gcgated polls for its result \(every \d+ s\))",
            reason,
        ), reason
        standin.compute.set_endpoint_status(endpoint_id, "online")
        assert client.get_result(task_id, wait=HANG) == 42


# ------------------------------------------------------- connection messages


def test_a_file_that_is_not_a_socket_is_named_as_such(tmp_path: Path) -> None:
    regular = tmp_path / "not-a-socket"
    regular.write_text("x")
    shown = cli("status", env={**os.environ, "GCGATE_SOCKET": str(regular)})
    assert shown.returncode == 3, shown.stderr
    assert shown.stderr.strip() == (
        f"gcgate: cannot reach the gcgate daemon: {regular} is not a socket (it is a regular"
        " file), and GCGATE_SOCKET names it; set GCGATE_SOCKET to the daemon's socket"
        " (`gcgated` logs it when it starts), or unset it to use the default"
    )
    with pytest.raises(DaemonUnavailable) as caught:
        Client(socket_path=tmp_path)
    assert str(caught.value) == (
        f"cannot reach the gcgate daemon: {tmp_path} is not a socket (it is a directory);"
        " give the path of the daemon's socket (`gcgated` logs it when it starts)"
    )


def test_a_socket_path_too_long_for_unix_sockets_is_named_as_such() -> None:
    """Not gRPC's own error lines on stderr and an UNKNOWN status (exit 1)."""
    long_path = Path("/tmp", "x" * 120, "gcgate.sock")
    shown = cli("status", env={**os.environ, "GCGATE_SOCKET": str(long_path)})
    assert shown.returncode == 3, shown.stderr
    assert shown.stderr.strip() == (
        f"gcgate: cannot reach the gcgate daemon at {long_path}: the path is 137 bytes, longer"
        " than the 107 a Unix socket address holds, so no daemon can listen there; give a"
        " shorter path (`gcgated` logs its socket when it starts), or unset GCGATE_SOCKET to"
        " use the default"
    )
    with pytest.raises(DaemonUnavailable, match="longer than the 107"):
        Client(socket_path=long_path)


def test_stale_and_missing_sockets_say_start_the_daemon(tmp_path: Path) -> None:
    short = Path(tempfile.mkdtemp(prefix="gcg-stale-", dir="/tmp"))
    try:
        stale = short / "stale.sock"
        with socket.socket(socket.AF_UNIX) as gone:
            gone.bind(str(stale))  # bound, never listening, closed: a stale socket file
        for path, reason in ((stale, "nobody is listening"), (short / "none", "no such socket")):
            with pytest.raises(DaemonUnavailable) as caught:
                Client(socket_path=path)
            assert str(caught.value).startswith(
                f"cannot reach the gcgate daemon at {path}: {reason}; start it with `gcgated`"
            )
    finally:
        shutil.rmtree(short)


def test_a_stopped_daemon_is_named_with_how_to_resume_it(one_worker: Daemon) -> None:
    assert one_worker.process is not None
    pid = one_worker.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_until("the daemon to stop", lambda: stopped_state(pid) == "stopped", HANG)
        with pytest.raises(DaemonUnavailable) as caught:
            Client(socket_path=one_worker.socket_path, connect_timeout=2)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert str(caught.value) == (
        f"the gcgate daemon at {one_worker.socket_path} (pid {pid}) is not answering: it is"
        f" stopped (SIGSTOP or Ctrl-Z); resume it with `kill -CONT {pid}`"
    )
    with Client(socket_path=one_worker.socket_path) as client:  # resumed: it answers
        assert client.status()["pid"] == pid
