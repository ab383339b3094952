"""gcgated as a process: permissions, locks, stale sockets, signals, flags, standard services.

Every test runs the real ``gcgated`` (``python -m gcgated.cli.daemon``) and talks
to it over its Unix socket, or watches it refuse to start.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from gcgate.serialize import JSONData, pack_buffers
from gcgate.v1 import gateway_pb2 as pb
from gcgate.v1 import gateway_pb2_grpc as pb_grpc
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from harness import Daemon

#: Refusals happen before anything is served; a daemon that does not refuse is
#: killed after this long (and the test fails).
REFUSE_TIMEOUT = 30.0
#: The shutdown grace is 10 s: in-flight waits must end well before it.
PROMPT_SHUTDOWN = 8.0
GATEWAY = "gcgate.v1.Gateway"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def channel(path: Path) -> grpc.Channel:
    return grpc.insecure_channel(f"unix:{path}")


def status(path: Path) -> pb.StatusResponse:
    with channel(path) as ch:
        return pb_grpc.GatewayStub(ch).Status(pb.StatusRequest(), timeout=10)


def isolated_env(home: Path, **extra: str) -> dict[str, str]:
    """The test's environment without GCGATE_* settings or the user's config file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GCGATE_")}
    env["XDG_CONFIG_HOME"] = str(home / "config")
    env.update(extra)
    return env


def run_gcgated(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gcgated.cli.daemon", "--workers", "1", *args],
        capture_output=True,
        text=True,
        timeout=REFUSE_TIMEOUT,
        env=env,
    )


def refused(*args: str, env: dict[str, str]) -> str:
    """Run gcgated, which must refuse to start: non-zero exit, a message, no traceback."""
    done = run_gcgated(*args, env=env)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output, output
    assert done.stderr.strip(), "refused without saying why"
    return done.stderr


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory under /tmp, short enough for socket paths (107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="gcg-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon for the read-only checks; it creates its socket directory itself."""
    d = Daemon(tmp_path_factory.mktemp("served") / "state", workers=1)
    d.socket_path = d.socket_dir / "run" / "gcgate.sock"
    try:
        d.start()
        yield d
    finally:
        if d.process is not None:
            assert d.stop() == 0, d.log()
        d.close()


def start(state_dir: Path, *extra_args: str, workers: int = 1) -> Daemon:
    d = Daemon(state_dir, workers=workers, extra_args=extra_args)
    try:
        return d.start()
    except BaseException:
        d.close()
        raise


# ---------------------------------------------------------------- permissions


def test_socket_and_state_are_private(served: Daemon) -> None:
    info = served.socket_path.lstat()
    assert stat.S_ISSOCK(info.st_mode)
    assert mode(served.socket_path) == 0o600
    assert mode(served.socket_path.parent) == 0o700  # created by the daemon
    assert mode(served.state_dir) == 0o700
    assert mode(served.state_dir / "store") == 0o700
    # The lock files name the daemon holding them.
    pid = str(served.process.pid if served.process else "")
    for lock in (served.state_dir / "gcgated.lock", served.socket_dir / "run" / "gcgate.sock.lock"):
        assert mode(lock) == 0o600
        assert lock.read_text().strip() == pid


def test_an_existing_socket_directory_is_tightened(tmp_path: Path) -> None:
    d = Daemon(tmp_path / "state", workers=1)
    try:
        os.chmod(d.socket_dir, 0o755)  # readable by others, writable by nobody else
        d.start()
        assert mode(d.socket_dir) == 0o700
        assert mode(d.socket_path) == 0o600
        assert d.stop() == 0
    finally:
        d.close()


def start_in_shared_directory(
    which: str, directory_mode: int, short_dir: Path, tmp_path: Path
) -> tuple[str, Path]:
    """A start with the socket or the state dir in a directory of ``directory_mode``
    that others may write to: what it printed (it must be refused), and the
    directory, checked left as it was and holding no socket."""
    target = short_dir / "shared"
    target.mkdir()
    os.chmod(target, directory_mode)
    socket_path = (target if which == "socket" else short_dir) / "gcgate.sock"
    state_dir = target if which == "state" else tmp_path / "state"
    err = refused(
        "--socket", str(socket_path), "--state-dir", str(state_dir), env=isolated_env(tmp_path)
    )
    assert mode(target) == directory_mode  # not "fixed" behind the admin's back
    assert not socket_path.exists()
    return err, target


@pytest.mark.parametrize("which", ["socket", "state"])
def test_directory_writable_by_others_is_refused(
    which: str, short_dir: Path, tmp_path: Path
) -> None:
    err, target = start_in_shared_directory(which, 0o777, short_dir, tmp_path)
    assert "writable by other users" in err
    assert f"chmod 700 {target}" in err


@pytest.mark.parametrize("which", ["socket", "state"])
def test_a_shared_directory_like_tmp_is_refused_with_a_directory_of_its_own_to_use(
    which: str, short_dir: Path, tmp_path: Path
) -> None:
    """``--socket /tmp/gcgate.sock``: the advice is a directory inside, never to chmod
    the shared one (as root, /tmp is the daemon's user's, so only its mode tells)."""
    err, target = start_in_shared_directory(which, 0o1777, short_dir, tmp_path)
    assert f"{target} is shared by every user (mode drwxrwxrwt, like /tmp)" in err
    assert f"e.g. {target}/gcgate-{os.getuid()}/, which it creates private" in err
    assert "chmod" not in err


@pytest.mark.skipif(os.geteuid() != 0, reason="making a directory of another uid needs root")
def test_directory_of_another_user_is_refused(short_dir: Path, tmp_path: Path) -> None:
    target = short_dir / "theirs"
    target.mkdir(mode=0o700)
    os.chown(target, 65534, 65534)
    err = refused(
        "--socket",
        str(target / "gcgate.sock"),
        "--state-dir",
        str(tmp_path / "state"),
        env=isolated_env(tmp_path),
    )
    assert "belongs to uid 65534" in err
    assert not (target / "gcgate.sock").exists()


def test_regular_file_at_socket_path_is_refused(short_dir: Path, tmp_path: Path) -> None:
    squatter = short_dir / "gcgate.sock"
    squatter.write_text("not a socket\n")
    err = refused(
        "--socket",
        str(squatter),
        "--state-dir",
        str(tmp_path / "state"),
        env=isolated_env(tmp_path),
    )
    assert f"{squatter} exists and is not a socket" in err
    assert squatter.read_text() == "not a socket\n"


# ---------------------------------------------------------- one daemon per ...


def test_second_daemon_on_same_socket_or_state_dir_refuses(
    served: Daemon, short_dir: Path, tmp_path: Path
) -> None:
    assert served.process is not None
    first_pid = served.process.pid
    env = isolated_env(tmp_path)

    err = refused(
        "--socket", str(served.socket_path), "--state-dir", str(tmp_path / "other"), env=env
    )
    assert f"another gcgated (pid {first_pid}) is already running on this socket" in err

    other_socket = short_dir / "other.sock"
    err = refused("--socket", str(other_socket), "--state-dir", str(served.state_dir), env=env)
    assert f"another gcgated (pid {first_pid}) is already running on this state directory" in err
    assert not other_socket.exists()

    # The first one did not notice.
    assert served.process.poll() is None
    assert status(served.socket_path).pid == first_pid
    assert mode(served.socket_path) == 0o600


def test_stale_socket_is_replaced(tmp_path: Path) -> None:
    d = start(tmp_path / "state")
    try:
        d.kill()
        assert d.socket_path.is_socket(), "kill -9 should leave the socket file behind"
        d.start()
        assert d.process is not None
        assert status(d.socket_path).pid == d.process.pid
        assert mode(d.socket_path) == 0o600
        assert f"removing stale socket {d.socket_path}" in d.log()
        assert d.stop() == 0
    finally:
        d.close()


# ------------------------------------------------------------------- signals


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_cleanly(signum: signal.Signals, tmp_path: Path) -> None:
    d = start(tmp_path / "state")
    try:
        assert d.process is not None
        d.process.send_signal(signum)
        assert d.process.wait(timeout=30) == 0, d.log()
        d.process = None
        assert not d.socket_path.exists()
        log = d.log()
        assert "gcgated stopped" in log
        assert "Traceback" not in log
    finally:
        d.close()


NAP_SOURCE = """\
def nap(address, seconds):
    import os, socket, time
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(address)
        s.sendall(str(os.getpid()).encode())
    time.sleep(seconds)
"""


def nap_payload(address: str, seconds: float) -> str:
    return pack_buffers([JSONData().serialize([address, seconds]), JSONData().serialize({})])


def test_sigterm_ends_open_waits_promptly(tmp_path: Path, short_dir: Path) -> None:
    d = start(tmp_path / "state")
    listener = socket.socket(socket.AF_UNIX)
    listener.settimeout(30)
    address = str(short_dir / "started.sock")
    listener.bind(address)
    listener.listen(2)
    ch = channel(d.socket_path)
    try:
        stub = pb_grpc.GatewayStub(ch)
        fid = stub.RegisterFunction(
            pb.RegisterFunctionRequest(function_name="nap", function_code=NAP_SOURCE),
            timeout=10,
        ).function_id

        def run(seconds: float) -> str:
            request = pb.RunRequest(
                endpoint_id="local", function_id=fid, payload=nap_payload(address, seconds)
            )
            return stub.Run(request, timeout=10).task_id

        quick = run(0)
        with listener.accept()[0] as conn:
            conn.recv(32)  # read before closing, or the task's sendall may fail
        record = stub.GetResult(pb.GetResultRequest(task_id=quick, wait_seconds=30), timeout=40)
        assert record.status == "success", record
        blocker = run(60)
        conn, _ = listener.accept()  # the blocking task is running in a worker
        with conn:
            worker_pid = int(conn.recv(32))

        waiting = stub.GetResult.future(
            pb.GetResultRequest(task_id=blocker, wait_seconds=60), timeout=30
        )
        stream = stub.WatchTasks(pb.WatchTasksRequest(task_ids=[quick, blocker]), timeout=30)
        # The final task comes first, so the stream (and, on the same connection,
        # the earlier GetResult) is being served and waits on the blocking task.
        assert next(stream).task_id == quick
        assert not waiting.done()

        assert d.process is not None
        started = time.monotonic()
        d.process.send_signal(signal.SIGTERM)
        code = d.process.wait(timeout=30)
        elapsed = time.monotonic() - started
        d.process = None
        assert code == 0, d.log()
        assert elapsed < PROMPT_SHUTDOWN, f"shutdown took {elapsed:.1f}s:\n{d.log()}"

        with pytest.raises(grpc.RpcError) as failed:
            waiting.result(timeout=10)
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE, failed.value
        with pytest.raises(grpc.RpcError) as failed:
            next(stream)
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE, failed.value

        assert not d.socket_path.exists()
        with pytest.raises(ProcessLookupError):
            os.kill(worker_pid, 0)  # the busy worker was stopped and reaped
    finally:
        ch.close()
        listener.close()
        d.close()


# --------------------------------------------------------------- flags, config


def test_log_level_debug_logs_debug_lines(served: Daemon) -> None:
    log = served.log()  # the harness runs every daemon with --log-level DEBUG
    assert " DEBUG gcgated." in log  # gcgated's own; libraries stay at WARNING
    assert " DEBUG grpc" not in log and " DEBUG asyncio" not in log
    assert f"INFO gcgated.daemon: gcgated serving on {served.socket_path}" in log


def test_log_level_warning_hides_info_and_debug(tmp_path: Path) -> None:
    d = start(tmp_path / "state", "--log-level", "warning")  # last flag wins; any case
    try:
        status(d.socket_path)
        assert d.stop() == 0
        log = d.log()
        assert " DEBUG " not in log
        assert " INFO " not in log
    finally:
        d.close()


EMPTY_ENV = {
    var: ""
    for var in ("GCGATE_WORKERS", "GCGATE_LOG_LEVEL", "GCGATE_STATE_DIR", "GCGATE_RETENTION_DAYS")
}


@pytest.mark.parametrize(
    ("args", "config", "env", "message"),
    [
        (["--workers", "-1"], None, {}, "command line: workers must be >= 0"),
        (["--retention-days", "-1"], None, {}, "command line: retention_days must be >= 0"),
        (
            ["--unread-retention-days", "0"],
            None,
            {},
            "command line: unread_retention_days must be > 0 (inf keeps",
        ),
        ([], "[gcgated]\nworkers = 1\nbogus = 2\n", {}, "unknown setting 'bogus'"),
        ([], "workers = 'many'\n", {}, "bad value for 'workers': 'many' (expected a whole number)"),
        ([], "workers = [1\n", {}, "cannot read config file"),
        ([], "log_level = 'verbose'\n", {}, "log_level must be one of DEBUG, INFO"),
        ([], None, {"GCGATE_LOG_LEVEL": "loud"}, "environment: log_level must be one of"),
        ([], None, {"GCGATE_WORKERS": "-2"}, "environment: workers must be >= 0"),
        (
            [],
            None,
            {"GCGATE_RETENTION_DAYS": "7d"},
            "environment: bad value for 'retention_days': '7d' (expected a number)",
        ),
        (["--config", "{tmp}/missing.toml"], None, {}, "missing.toml does not exist"),
        # An empty variable is unset: the flag's error, not "bad value ''".
        (["--workers", "-1"], None, EMPTY_ENV, "command line: workers must be >= 0"),
        # A TOML value of another kind is refused, not converted (to 2 workers, 1 day, 100 MB).
        ([], "workers = 2.7\n", {}, "bad value for 'workers': 2.7 (expected a whole number)"),
        ([], "retention_days = true\n", {}, "(expected a number, not a TOML boolean)"),
        ([], "store_size_limit_mb = 100.5\n", {}, "(expected a whole number)"),
        ([], "result_push = 1\n", {}, "bad value for 'result_push': 1 (expected true or false)"),
        ([], "log_format = ['json']\n", {}, "(expected a string, not a TOML array)"),
        # An empty path is not the working directory.
        ([], "state_dir = ''\n", {}, "bad value for 'state_dir': '' (an empty path; give one"),
        (["--socket", ""], None, {}, "command line: bad value for 'socket_path': '' (an empty"),
        # TOML is UTF-8: a file in another encoding is named, not a traceback.
        ([], "retention_days = 3 # caf\xe9\n", {}, "is not UTF-8 text, as TOML must be (byte 0xe9"),
        # With a [gcgated] table nothing else is read: refused, not silently ignored.
        (
            [],
            "workers = 2\n[gcgated]\nretention_days = 3\n",
            {},
            "'workers' outside the [gcgated] table would be ignored; move it into [gcgated]",
        ),
        ([], "gcgated = 5\n", {}, "gcgated must be the [gcgated] table, not 5"),
        # The Globus backend's tunables: refused as the file's, before anything starts.
        ([], "rate_limit_requests = 0\n", {}, ".toml: rate_limit_requests must be > 0, not 0"),
    ],
    ids=[
        "negative-workers",
        "negative-retention",
        "zero-unread-retention",
        "unknown-key",
        "bad-type",
        "bad-toml",
        "bad-log-level",
        "env-log-level",
        "env-workers",
        "env-days-with-unit",
        "missing-config",
        "empty-env-is-unset",
        "fractional-int",
        "boolean-number",
        "fractional-size",
        "number-boolean",
        "array-string",
        "empty-state-dir",
        "empty-socket-flag",
        "latin-1-file",
        "setting-beside-table",
        "table-not-a-table",
        "globus-tunable",
    ],
)
def test_bad_config_exits_2_with_a_message(
    args: list[str],
    config: str | None,
    env: dict[str, str],
    message: str,
    short_dir: Path,
    tmp_path: Path,
) -> None:
    args = [a.format(tmp=tmp_path) for a in args]
    if config is not None:
        # Latin-1: one byte per character, so a case can hold bytes that are not UTF-8.
        (tmp_path / "gcgated.toml").write_bytes(config.encode("latin-1"))
        args += ["--config", str(tmp_path / "gcgated.toml")]
    socket_path = short_dir / "gcgate.sock"
    done = run_gcgated(
        "--socket",
        str(socket_path),
        "--state-dir",
        str(tmp_path / "state"),
        *args,
        env=isolated_env(tmp_path, **env),
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("gcgated: "), done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not socket_path.exists()
    assert not (tmp_path / "state").exists()


def test_socket_path_too_long_is_refused(tmp_path: Path) -> None:
    long_path = "/tmp/" + "x" * 120 + "/gcgate.sock"
    done = run_gcgated(
        "--socket", long_path, "--state-dir", str(tmp_path / "state"), env=isolated_env(tmp_path)
    )
    assert done.returncode == 2
    assert "longer than the 107 bytes" in done.stderr
    assert "Traceback" not in done.stderr


class EnvSocketDaemon(Daemon):
    """A daemon told its socket by GCGATE_SOCKET, and with ``flag`` also by --socket."""

    def __init__(self, state_dir: Path, *, flag: bool) -> None:
        super().__init__(state_dir, workers=1)
        self.env_socket = self.socket_dir / "from-env.sock"
        self.flag_socket = self.socket_dir / "from-flag.sock" if flag else None
        self.socket_path = self.flag_socket or self.env_socket

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "GCGATE_SOCKET": str(self.env_socket)}

    def command(self) -> list[str]:
        command = super().command()
        at = command.index("--socket")
        del command[at : at + 2]
        if self.flag_socket is not None:
            command += ["--socket", str(self.flag_socket)]
        return command


@pytest.mark.parametrize("flag", [False, True], ids=["env", "flag-overrides-env"])
def test_gcgate_socket_env_and_socket_flag(flag: bool, tmp_path: Path) -> None:
    d = EnvSocketDaemon(tmp_path / "state", flag=flag)
    try:
        d.start()
        assert status(d.socket_path).socket_path == str(d.socket_path)
        assert d.env_socket.exists() is not flag
        assert d.stop() == 0
    finally:
        d.close()


# -------------------------------------------------------- standard gRPC services


def test_health_service_reports_serving(served: Daemon) -> None:
    with channel(served.socket_path) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for service in ("", GATEWAY):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING, service
        with pytest.raises(grpc.RpcError) as unknown:
            health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_and_describes_the_api(served: Daemon) -> None:
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=GATEWAY),
    ]
    with channel(served.socket_path) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        listed, described = list(stub.ServerReflectionInfo(iter(requests), timeout=10))

    services = {s.name for s in listed.list_services_response.service}
    assert {GATEWAY, "grpc.health.v1.Health"} <= services

    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in described.file_descriptor_response.file_descriptor_proto
    ]
    gateway = next(f for f in files if f.package == "gcgate.v1")
    assert gateway.name == "gcgate/v1/gateway.proto"
    (service,) = gateway.service
    expected = pb.DESCRIPTOR.services_by_name["Gateway"]
    assert [m.name for m in service.method] == [m.name for m in expected.methods]


def test_status_describes_this_daemon(served: Daemon) -> None:
    answer = status(served.socket_path)
    assert served.process is not None
    assert answer.pid == served.process.pid
    assert answer.socket_path == str(served.socket_path)
    assert answer.state_dir == str(served.state_dir)
    assert answer.uptime_seconds > 0
    (local,) = [b for b in answer.backends if b.name == "local"]
    assert local.state == "ready"
    assert json.loads(local.details_json)["workers"] == 1
