"""Prometheus metrics of a real daemon: GetMetrics, the HTTP listener (TCP loopback
and Unix socket), ``gcgate metrics``, and the numbers moving as work is done,
locally and against the Globus stand-in (a 429 counted under its path template).

Every scrape is parsed with prometheus_client's own parser, as a scraper would.
Counters are compared before and after (the module's daemons are shared), so
each test checks what its own calls added.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from gcgate import Client
from gcgate.errors import TaskExecutionFailed
from gcgated.cli.daemon import main as daemon_main
from gcgated.metrics_listener import parse_listen
from harness import Daemon, GlobusDaemon, script_function, serve, wait_until
from prometheus_client.parser import text_string_to_metric_families
from standin import StandIn

WAIT = 60.0
GCGATE = shutil.which("gcgate", path=str(Path(sys.executable).parent))
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@script_function
def double(x):
    return x * 2


@script_function
def broken(x):
    raise ValueError(f"no good: {x}")


def samples(text: str) -> Samples:
    """Every sample of an exposition, by (sample name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(scrape: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series does not exist (yet)."""
    return scrape.get((name, frozenset(labels.items())), 0.0)


def scrape(client: Client) -> Samples:
    return samples(client.get_metrics())


def rpc_count(scrape: Samples, method: str) -> float:
    return value(
        scrape, "gcgate_rpc_duration_seconds_count", service="gcgate.v1.Gateway", method=method
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket, as a local proxy or agent would scrape it."""

    def __init__(self, path: Path) -> None:
        super().__init__("localhost")
        self._path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self._path)


def get_unix(path: Path, target: str) -> tuple[int, str, str]:
    connection = UnixHTTPConnection(path)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read().decode()
    finally:
        connection.close()


# --------------------------------------------------------------- the RPC


def test_local_tasks_move_completions_rpc_latency_and_store(daemon: Daemon, client: Client) -> None:
    fid = client.register_function(double)
    bad = client.register_function(broken)
    before = scrape(client)
    ids = [client.run(n, endpoint_id="local", function_id=fid) for n in range(3)]
    assert [client.get_result(t, wait=WAIT) for t in ids] == [0, 2, 4]
    failing = client.run(7, endpoint_id="local", function_id=bad)
    with pytest.raises(TaskExecutionFailed, match="no good: 7"):
        client.get_result(failing, wait=WAIT)

    after = scrape(client)
    completed = "gcgate_tasks_completed_total"
    assert value(after, completed, backend="local", status="success") == (
        value(before, completed, backend="local", status="success") + 3
    )
    assert value(after, completed, backend="local", status="failed") == (
        value(before, completed, backend="local", status="failed") + 1
    )
    assert rpc_count(after, "Run") == rpc_count(before, "Run") + 4
    assert rpc_count(after, "GetResult") >= rpc_count(before, "GetResult") + 4
    ok = {"service": "gcgate.v1.Gateway", "method": "Run", "code": "OK"}
    assert value(after, "gcgate_rpc_requests_total", **ok) == (
        value(before, "gcgate_rpc_requests_total", **ok) + 4
    )
    assert (
        value(after, "gcgate_store_task_records") == value(before, "gcgate_store_task_records") + 4
    )
    assert value(after, "gcgate_store_size_bytes") > 0
    assert value(after, "gcgate_store_size_limit_bytes") > value(after, "gcgate_store_size_bytes")
    # Nothing left in flight: the gauges are back to zero.
    assert value(after, "gcgate_tasks_pending") == 0
    assert value(after, "gcgate_tasks", backend="local", state="queued") == 0
    assert value(after, "gcgate_tasks", backend="local", state="running") == 0
    assert value(after, "gcgate_local_workers") == daemon.workers
    assert value(after, "gcgate_backend_state", backend="local", state="ready") == 1
    assert value(after, "gcgate_build_info", version=client.status()["version"]) == 1
    assert value(after, "process_resident_memory_bytes") > 0


def test_a_running_task_shows_as_running_then_pending_returns_to_zero(
    daemon: Daemon, client: Client, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"

    @script_function
    def wait_for_file(path):
        import os
        import time

        while not os.path.exists(path):
            time.sleep(0.01)
        return "opened"

    fid = client.register_function(wait_for_file)
    task = client.run(str(gate), endpoint_id="local", function_id=fid)
    wait_until(
        "the task to show as running in the metrics",
        lambda: value(scrape(client), "gcgate_tasks", backend="local", state="running") == 1,
    )
    assert value(scrape(client), "gcgate_tasks_pending") == 1
    gate.touch()
    assert client.get_result(task, wait=WAIT) == "opened"
    wait_until(
        "no task pending in the metrics",
        lambda: value(scrape(client), "gcgate_tasks_pending") == 0,
    )


def test_refused_calls_are_counted_by_status_code(client: Client, stub) -> None:
    from gcgate.v1 import gateway_pb2 as pb

    refused = {"service": "gcgate.v1.Gateway", "method": "GetResult", "code": "INVALID_ARGUMENT"}
    before = value(scrape(client), "gcgate_rpc_requests_total", **refused)
    with pytest.raises(Exception, match="task_id"):
        stub.GetResult(pb.GetResultRequest(task_id="not-a-uuid"), timeout=10)
    assert value(scrape(client), "gcgate_rpc_requests_total", **refused) == before + 1


# ------------------------------------------------------------ the listener


@pytest.fixture
def tcp_daemon(tmp_path: Path) -> Iterator[tuple[Daemon, int]]:
    port = free_port()
    d = Daemon(tmp_path / "state", extra_args=("--metrics-listen", f"127.0.0.1:{port}"))
    for started in serve(d.start()):
        yield started, port


def test_http_listener_on_loopback_serves_metrics_and_nothing_else(
    tcp_daemon: tuple[Daemon, int],
) -> None:
    daemon, port = tcp_daemon
    url = f"http://127.0.0.1:{port}/metrics"
    assert f"metrics served at {url}" in daemon.log()
    with Client(socket_path=daemon.socket_path) as client:
        fid = client.register_function(double)
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == CONTENT_TYPE
            before = samples(response.read().decode())
        assert client.get_result(client.run(4, endpoint_id="local", function_id=fid), wait=WAIT)
        with urllib.request.urlopen(url, timeout=10) as response:
            after = samples(response.read().decode())
    completed = {"backend": "local", "status": "success"}
    assert value(after, "gcgate_tasks_completed_total", **completed) == (
        value(before, "gcgate_tasks_completed_total", **completed) + 1
    )
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10)
    assert missing.value.code == 404


def test_http_listener_on_a_unix_socket_is_private_and_replaces_a_stale_one(
    tmp_path: Path,
) -> None:
    socket_dir = Path(tempfile.mkdtemp(prefix="gcgm-", dir="/tmp"))
    path = socket_dir / "metrics.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # a socket file nobody listens on: what a crash leaves
    stale.close()
    try:
        group = str(os.getgid())
        daemon = Daemon(
            tmp_path / "state", extra_args=("--metrics-listen", f"unix:{path}", "--group", group)
        )
        for d in serve(daemon.start()):
            info = path.stat()
            assert stat.S_ISSOCK(info.st_mode)
            assert stat.S_IMODE(info.st_mode) == 0o660 and info.st_gid == int(group)
            with Client(socket_path=d.socket_path) as client:
                fid = client.register_function(double)
                _, _, text = get_unix(path, "/metrics")
                before = samples(text)
                assert client.get_result(
                    client.run(5, endpoint_id="local", function_id=fid), wait=WAIT
                )
            status, content_type, text = get_unix(path, "/metrics")
            assert (status, content_type) == (200, CONTENT_TYPE)
            assert rpc_count(samples(text), "Run") == rpc_count(before, "Run") + 1
            assert get_unix(path, "/other")[0] == 404
            # The metrics socket mistaken for the daemon's: named as such, not "nobody
            # is listening; start gcgated".
            assert GCGATE, "the gcgate console script is not installed next to this Python"
            mistaken = subprocess.run(
                [GCGATE, "--socket", str(path), "status"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert mistaken.returncode == 3, mistaken.stderr
            assert d.process is not None
            assert mistaken.stderr.strip() == (
                f"gcgate: cannot reach the gcgate daemon: {path} is not a gcgate daemon's"
                f" socket: process {d.process.pid} listens on it but does not answer gRPC (is"
                " it the daemon's metrics_listen HTTP socket, or another program's?); give the"
                " path of the daemon's socket (`gcgated` logs it when it starts)"
            )
        assert not path.exists(), "the daemon removes its metrics socket when it stops"
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)


def test_http_listener_answers_only_get_and_head(tcp_daemon: tuple[Daemon, int]) -> None:
    """A scraper's GET and HEAD; any other method 405 naming the allowed ones, even
    with a body the listener never reads; an unknown path is 404 whatever the method."""
    _, port = tcp_daemon
    answers: dict[tuple[str, str], tuple[int, str | None, bytes]] = {}
    for method, target, body in [
        ("POST", "/metrics", b"x" * 100_000),
        ("PUT", "/metrics", b""),
        ("DELETE", "/metrics", None),
        ("HEAD", "/metrics", None),
        ("POST", "/other", b"x"),
    ]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request(method, target, body=body)
            response = connection.getresponse()
            answers[method, target] = (
                response.status,
                response.getheader("Allow"),
                response.read(),
            )
        finally:
            connection.close()
    for method in ("POST", "PUT", "DELETE"):
        assert answers[method, "/metrics"] == (405, "GET, HEAD", b"GET or HEAD only\n"), method
    assert answers["HEAD", "/metrics"] == (200, None, b"")
    assert answers["POST", "/other"][0] == 404


def refused_start(daemon: Daemon) -> subprocess.CompletedProcess[str]:
    """Run ``daemon``, which must refuse to start: its exit, a line saying why, no
    traceback, and nothing of it left behind on its socket."""
    done = subprocess.run(
        daemon.command(), env=daemon.env, capture_output=True, text=True, timeout=WAIT
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert not daemon.socket_path.exists()
    return done


def test_a_port_another_process_listens_on_is_refused_at_start(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        daemon = Daemon(tmp_path / "state", extra_args=("--metrics-listen", f"127.0.0.1:{port}"))
        try:
            done = refused_start(daemon)
        finally:
            daemon.close()
        assert (
            f"metrics_listen: cannot listen on http://127.0.0.1:{port}/metrics (Address already"
            f" in use: another process listens on port {port} (`ss -ltnp 'sport = :{port}'`"
            " names it)); choose another address or port, or leave metrics_listen unset"
        ) in done.stderr
        assert "choose another address or port, or leave metrics_listen unset" in done.stderr
        # The other process keeps its port.
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            pass


def test_a_unix_socket_another_process_listens_on_is_refused_and_kept(tmp_path: Path) -> None:
    socket_dir = Path(tempfile.mkdtemp(prefix="gcgm-", dir="/tmp"))
    path = socket_dir / "metrics.sock"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
            other.bind(str(path))
            other.listen()
            daemon = Daemon(tmp_path / "state", extra_args=("--metrics-listen", f"unix:{path}"))
            try:
                done = refused_start(daemon)
            finally:
                daemon.close()
            assert (
                f"metrics_listen: another process listens on {path}; stop it or choose another path"
            ) in done.stderr
            assert path.is_socket(), "the other process's socket is not removed"
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.connect(str(path))  # and it still reaches that process
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)


@pytest.mark.parametrize(
    ("source", "address"),
    [("flag", "0.0.0.0:9464"), ("env", "192.168.1.10:9464"), ("flag", "example.org:9464")],
)
def test_a_non_loopback_address_is_refused_at_start(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    source: str,
    address: str,
) -> None:
    args = ["--socket", str(tmp_path / "s.sock"), "--state-dir", str(tmp_path / "state")]
    if source == "flag":
        args += ["--metrics-listen", address]
    else:
        monkeypatch.setenv("GCGATE_METRICS_LISTEN", address)
    assert daemon_main(args) == 2
    error = capsys.readouterr().err
    assert "metrics_listen" in error and "not a loopback address" in error
    assert address in error
    assert ("command line" if source == "flag" else "environment") in error
    assert not (tmp_path / "state").exists(), "refused before anything was started"


@pytest.mark.fast
@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("127.0.0.1:9464", "http://127.0.0.1:9464/metrics"),
        ("[::1]:9464", "http://[::1]:9464/metrics"),
        ("localhost:9464", "http://localhost:9464/metrics"),
        ("127.0.0.2:80", "http://127.0.0.2:80/metrics"),
        ("unix:/run/gcgate/metrics.sock", "unix:/run/gcgate/metrics.sock (GET /metrics)"),
    ],
)
def test_accepted_listen_addresses(text: str, shown: str) -> None:
    assert str(parse_listen(text)) == shown


@pytest.mark.fast
@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("9464", "not HOST:PORT"),
        ("127.0.0.1:0", "not HOST:PORT"),
        ("127.0.0.1:70000", "not HOST:PORT"),
        ("[::]:9464", "not a loopback address"),
        ("10.0.0.1:9464", "not a loopback address"),
        ("unix:metrics.sock", "must be absolute"),
    ],
)
def test_refused_listen_addresses_say_why(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_listen(text)


# -------------------------------------------------------------------- CLI


def test_gcgate_metrics_prints_filters_and_gives_json(daemon: Daemon, client: Client) -> None:
    assert GCGATE, "the gcgate console script is not installed next to this Python"
    client.get_result(
        client.run(1, endpoint_id="local", function_id=client.register_function(double)),
        wait=WAIT,
    )
    env = daemon.env

    def gcgate(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [GCGATE, "metrics", *args], env=env, capture_output=True, text=True, timeout=60
        )

    everything = gcgate()
    assert everything.returncode == 0, everything.stderr
    names = {f.name for f in text_string_to_metric_families(everything.stdout)}
    assert {"gcgate_tasks_completed", "gcgate_rpc_duration_seconds", "gcgate_build_info"} <= names

    matched = gcgate("--match", "^gcgate_tasks_completed")
    assert matched.returncode == 0, matched.stderr
    families = list(text_string_to_metric_families(matched.stdout))
    assert [f.name for f in families] == ["gcgate_tasks_completed"]
    shown = samples(matched.stdout)
    assert value(shown, "gcgate_tasks_completed_total", backend="local", status="success") >= 1

    as_json = gcgate("--match", "^gcgate_tasks_completed", "--json")
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    (family,) = data["families"]
    assert family["name"] == "gcgate_tasks_completed_total" and family["type"] == "counter"
    by_labels = {
        (s["labels"]["backend"], s["labels"]["status"]): s["value"] for s in family["samples"]
    }
    assert by_labels[("local", "success")] == value(
        shown, "gcgate_tasks_completed_total", backend="local", status="success"
    )

    nothing = gcgate("--match", "^no_such_metric$")
    assert nothing.returncode == 5
    assert "no metric name matches" in nothing.stderr


# ------------------------------------------------------------------ Globus


@pytest.fixture
def gcc(remote: GlobusDaemon) -> Iterator[Client]:
    with Client(socket_path=remote.socket_path) as client:
        yield client


def test_globus_429_is_counted_under_its_path_template(gcc: Client, standin: StandIn) -> None:
    fid = gcc.register_function(double)
    # A first task, so the login and the registration are done before the fault.
    assert gcc.get_result(gcc.run(1, endpoint_id=standin.endpoint_id, function_id=fid), wait=WAIT)
    before = scrape(gcc)
    storm = standin.faults.rate_limit(count=1, retry_after=1, path="/v3/endpoints/*/submit")
    task = gcc.run(2, endpoint_id=standin.endpoint_id, function_id=fid)
    assert gcc.get_result(task, wait=WAIT) == 4
    assert storm.hits == 1
    after = scrape(gcc)

    submit = {"method": "POST", "path": "/v3/endpoints/{id}/submit"}
    http = "gcgate_globus_http_requests_total"
    assert value(after, http, code="429", **submit) == value(before, http, code="429", **submit) + 1
    assert value(after, http, code="200", **submit) >= value(before, http, code="200", **submit) + 1
    # No id ever becomes a label: every path is a template.
    for name, labels in after:
        if name == http:
            path = dict(labels)["path"]
            assert standin.endpoint_id not in path and task not in path
    assert value(after, "gcgate_globus_http_retries_total", reason="429") >= (
        value(before, "gcgate_globus_http_retries_total", reason="429") + 1
    )
    assert value(after, "gcgate_globus_throttled_total") >= (
        value(before, "gcgate_globus_throttled_total") + 1
    )
    assert value(after, "gcgate_globus_rate_wait_seconds_total") > value(
        before, "gcgate_globus_rate_wait_seconds_total"
    ), "the 429's Retry-After held the next request back"
    assert value(after, "gcgate_globus_submit_requests_total") >= (
        value(before, "gcgate_globus_submit_requests_total") + 1
    )
    assert value(after, "gcgate_globus_submitted_tasks_total") >= (
        value(before, "gcgate_globus_submitted_tasks_total") + 1
    )
    completed = {"backend": "globus", "status": "success"}
    assert value(after, "gcgate_tasks_completed_total", **completed) == (
        value(before, "gcgate_tasks_completed_total", **completed) + 1
    )
    assert value(after, "gcgate_globus_rate_limit_requests") > 0
    assert value(after, "gcgate_backend_state", backend="globus", state="ready") == 1


def test_pushed_results_are_counted_received_and_acked(gcc: Client, pushing: StandIn) -> None:
    fid = gcc.register_function(double)
    before = scrape(gcc)
    ids = [gcc.run(n, endpoint_id=pushing.endpoint_id, function_id=fid) for n in range(3)]
    assert [gcc.get_result(t, wait=WAIT) for t in ids] == [0, 2, 4]
    acked = "gcgate_globus_push_messages_acked_total"
    # Acks go out after the outcomes are stored, so they may trail the results.
    wait_until(
        "3 pushed results acknowledged",
        lambda: value(scrape(gcc), acked) >= value(before, acked) + 3,
    )
    after = scrape(gcc)
    for name in (
        "gcgate_globus_push_messages_received_total",
        "gcgate_globus_pushed_results_total",
    ):
        assert value(after, name) >= value(before, name) + 3, name
    assert value(after, "gcgate_globus_push_connects_total") >= 1
    assert value(after, "gcgate_tasks", backend="globus", state="in_flight") == 0
