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

import os
import socket
import uuid
from collections.abc import Iterator

import grpc
import pytest
from gcgate.v1 import gateway_pb2 as pb
from gcgate.v1 import gateway_pb2_grpc as pb_grpc
from harness import ConfiguredDaemon, Daemon, serve

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
