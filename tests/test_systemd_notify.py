"""gcgated speaking systemd's notification protocol (Type=notify, WatchdogSec=).

Each test plays the service manager: it owns an AF_UNIX datagram socket, starts
the real daemon with ``NOTIFY_SOCKET`` pointing at it, and reads what arrives,
with the sender's pid from SCM_CREDENTIALS (systemd's ``NotifyAccess=main``
accepts only the main process's messages).
"""

from __future__ import annotations

import grp
import itertools
import os
import queue
import signal
import socket
import stat
import statistics
import struct
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from gcgate import Client
from gcgate.v1 import gateway_pb2 as pb
from gcgate.v1 import gateway_pb2_grpc as pb_grpc
from gcgated.notify import NOTIFY_ENV, Notifier
from harness import Daemon, script_function

WAIT = 30.0
#: The watchdog timeout the tests hand the daemon: 200 ms, so pings every 100 ms.
WATCHDOG_USEC = 200_000


@dataclass
class Message:
    pid: int
    lines: list[str]
    at: float
    #: Whether the daemon's socket accepted a connection when this arrived.
    socket_accepting: bool | None = None
    fields: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.fields = dict(line.split("=", 1) for line in self.lines if "=" in line)


class NotifyListener:
    """The service manager's end: collects every datagram on a reader thread."""

    def __init__(self, address: str, probe_socket: Path | None = None) -> None:
        self.address = address
        self.probe_socket = probe_socket
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.2)
        self.received: queue.Queue[Message] = queue.Queue()
        self.seen: list[Message] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        ucred = struct.calcsize("iII")
        while not self._stop.is_set():
            try:
                data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(ucred))
            except TimeoutError:
                continue
            except OSError:
                return
            pid = -1
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", payload[:ucred])[0]
            message = Message(pid, data.decode().split("\n"), time.monotonic())
            if "READY" in message.fields and self.probe_socket is not None:
                message.socket_accepting = _accepts(self.probe_socket)
            self.received.put(message)

    def wait_for(self, predicate: Callable[[Message], bool], what: str) -> Message:
        """The next message matching ``predicate`` (earlier ones are kept in ``seen``)."""
        deadline = time.monotonic() + WAIT
        while True:
            remaining = deadline - time.monotonic()
            try:
                message = self.received.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                raise AssertionError(
                    f"no {what} within {WAIT}s; got: {[m.lines for m in self.seen]}"
                ) from None
            self.seen.append(message)
            if predicate(message):
                return message

    def drain(self) -> list[Message]:
        while True:
            try:
                self.seen.append(self.received.get_nowait())
            except queue.Empty:
                return self.seen

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def _accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def is_(key: str, value: str = "1") -> Callable[[Message], bool]:
    return lambda m: m.fields.get(key) == value


class WatchdogPidDaemon(Daemon):
    """Started the way systemd starts a service: WATCHDOG_PID is the daemon's own pid."""

    def command(self) -> list[str]:
        wrapper = 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"'
        return ["/bin/sh", "-c", wrapper, "sh", *super().command()]


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[NotifyListener]:
    listen = NotifyListener(f"@gcgate-test-{uuid.uuid4().hex}")
    try:
        yield listen
    finally:
        listen.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def status(path: Path) -> pb.StatusResponse:
    with grpc.insecure_channel(f"unix:{path}") as ch:
        return pb_grpc.GatewayStub(ch).Status(pb.StatusRequest(), timeout=10)


@script_function
def environment():
    import os

    return dict(os.environ)


def worker_environment(socket_path: Path) -> dict[str, str]:
    """The environment a local-endpoint worker process runs functions with."""
    with Client(socket_path=socket_path) as client:
        fid = client.register_function(environment)
        tid = client.run(endpoint_id="local", function_id=fid)
        return client.get_result(tid, wait=WAIT)


# ------------------------------------------------------------- the real daemon


def test_ready_status_watchdog_and_stopping(tmp_path: Path) -> None:
    d = WatchdogPidDaemon(tmp_path / "state", workers=1)
    listen = NotifyListener(str(d.socket_dir / "notify"), probe_socket=d.socket_path)
    d.daemon_env = {"NOTIFY_SOCKET": listen.address, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    try:
        d.start()
        assert d.process is not None
        pid = d.process.pid

        ready = listen.wait_for(is_("READY"), "READY=1")
        assert ready.socket_accepting, "READY=1 came before the socket accepted connections"
        assert ready.fields["STATUS"] == (
            f"serving on {d.socket_path}; login: not configured;"
            " tasks: 0 pending, 0 succeeded, 0 failed, 0 cancelled"
        )

        # Pings at half of WATCHDOG_USEC, from the daemon itself.
        pings = [listen.wait_for(is_("WATCHDOG"), "WATCHDOG=1") for _ in range(6)]
        gaps = [b.at - a.at for a, b in itertools.pairwise(pings)]
        assert 0.05 <= statistics.median(gaps) <= 0.15, gaps
        assert "systemd watchdog: pinging every 0.1s" in d.log()

        # STATUS= follows the task counts.
        environment = worker_environment(d.socket_path)
        listen.wait_for(lambda m: "1 succeeded" in m.fields.get("STATUS", ""), "a STATUS update")
        # Workers do not inherit the protocol's variables (they could not speak
        # for the service anyway: NotifyAccess=main).
        assert not set(NOTIFY_ENV) & set(environment), environment

        d.process.send_signal(signal.SIGTERM)
        stopping = listen.wait_for(is_("STOPPING"), "STOPPING=1")
        assert stopping.fields["STATUS"].startswith("stopping")
        assert d.process.wait(timeout=WAIT) == 0, d.log()
        d.process = None

        messages = listen.drain()
        assert {m.pid for m in messages} == {pid}, [(m.pid, m.lines) for m in messages]
        assert messages[0] is ready
        events = [m for m in messages if set(m.fields) & {"READY", "STOPPING", "RELOADING"}]
        assert events == [ready, stopping]
    finally:
        listen.close()
        d.close()


def test_abstract_socket_and_no_watchdog_without_watchdog_usec(
    tmp_path: Path, listener: NotifyListener
) -> None:
    d = Daemon(tmp_path / "state", workers=1, daemon_env={"NOTIFY_SOCKET": listener.address})
    try:
        d.start()
        listener.wait_for(is_("READY"), "READY=1 on an abstract socket")
        assert d.stop() == 0
        listener.wait_for(is_("STOPPING"), "STOPPING=1")
        assert not [m for m in listener.drain() if "WATCHDOG" in m.fields]
        assert "systemd watchdog" not in d.log()
    finally:
        d.close()


def test_refusal_is_reported_as_status(tmp_path: Path, listener: NotifyListener) -> None:
    d = Daemon(tmp_path / "state", workers=1, daemon_env={"NOTIFY_SOCKET": listener.address})
    try:
        os.chmod(d.socket_dir, 0o777)
        done = subprocess.run(
            d.command(), env={**d.env, **d.daemon_env}, capture_output=True, text=True, timeout=WAIT
        )
        assert done.returncode == 1, done.stderr
        message = listener.wait_for(lambda m: "STATUS" in m.fields, "a STATUS line")
        assert message.fields["STATUS"].startswith("cannot start: ")
        assert "writable by other users" in message.fields["STATUS"]
        assert not [m for m in listener.drain() if "READY" in m.fields]
    finally:
        d.close()


RELOAD_CONFIG = """\
[gcgated]
retention_days = {retention}
{extra}
"""


def test_sighup_reloads_the_config_file(tmp_path: Path, listener: NotifyListener) -> None:
    config = tmp_path / "gcgated.toml"
    config.write_text(RELOAD_CONFIG.format(retention=7, extra=""))
    d = Daemon(
        tmp_path / "state",
        workers=1,
        extra_args=("--config", str(config)),
        daemon_env={"NOTIFY_SOCKET": listener.address},
    )
    try:
        d.start()
        assert d.process is not None
        listener.wait_for(is_("READY"), "READY=1")
        assert status(d.socket_path).store.retention_days == 7

        group = grp.getgrgid(os.getgid()).gr_name
        config.write_text(RELOAD_CONFIG.format(retention=3, extra=f"group = '{group}'"))
        d.process.send_signal(signal.SIGHUP)
        reloading = listener.wait_for(is_("RELOADING"), "RELOADING=1")
        assert int(reloading.fields["MONOTONIC_USEC"]) > 0
        ready = listener.wait_for(is_("READY"), "READY=1 after the reload")
        assert "last reload failed" not in ready.fields["STATUS"]
        assert status(d.socket_path).store.retention_days == 3
        assert f"reload: group changed ( -> {group}); it takes effect when the daemon restarts" in (
            d.log()
        )
        assert mode(d.socket_path) == 0o600  # not given to the group behind the admin's back

        config.write_text("retention_days = 'soon'\n")
        d.process.send_signal(signal.SIGHUP)
        listener.wait_for(is_("RELOADING"), "RELOADING=1")
        failed = listener.wait_for(is_("READY"), "READY=1 after a failed reload")
        assert "last reload failed: config file" in failed.fields["STATUS"]
        assert "bad value for 'retention_days'" in failed.fields["STATUS"]
        assert status(d.socket_path).store.retention_days == 3  # the running config stays
        assert "reload failed, keeping the running configuration" in d.log()
        assert d.stop() == 0
    finally:
        d.close()


# ---------------------------------------------------------- the protocol alone


def test_notifier_reads_and_removes_its_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "@x")
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    notifier = Notifier.from_environment()
    assert notifier.address == "@x"
    assert notifier.watchdog_interval == 1.5
    assert not set(NOTIFY_ENV) & set(os.environ)


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "200000"}, 0.1),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "{pid}"}, 0.1),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "{other}"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "me"}, None),
        ({}, None),
    ],
    ids=["usec", "own-pid", "other-pid", "zero", "garbage", "garbage-pid", "none"],
)
def test_watchdog_is_only_for_this_process(env: dict[str, str], interval: float | None) -> None:
    values = {k: v.format(pid=os.getpid(), other=os.getpid() + 1) for k, v in env.items()}
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": "/run/x", **values})
    assert notifier.watchdog_interval == interval


def test_no_notify_socket_means_no_messages() -> None:
    notifier = Notifier.from_environment({"WATCHDOG_USEC": "200000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    assert notifier.ready("x") is False


def test_a_relative_notify_socket_is_ignored() -> None:
    assert not Notifier.from_environment({"NOTIFY_SOCKET": "relative/path"}).enabled


def test_send_to_a_path_and_a_missing_socket(tmp_path: Path) -> None:
    path = tmp_path / "n.sock"
    listen = NotifyListener(str(path))
    try:
        notifier = Notifier(str(path))
        assert notifier.status("multi\nline") is True
        message = listen.wait_for(lambda m: "STATUS" in m.fields, "STATUS")
        assert message.lines == ["STATUS=multi line"]  # a newline would end the field
        assert message.pid == os.getpid()
    finally:
        listen.close()
    gone = Notifier(str(tmp_path / "gone.sock"))
    assert gone.ready("x") is False  # logged, never raised
    assert gone.watchdog() is False


def test_sighup_checks_new_credentials_and_keeps_the_running_login(
    tmp_path: Path, listener: NotifyListener
) -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    secret = "reload-secret-" + uuid.uuid4().hex
    config = tmp_path / "gcgated.toml"
    config.write_text(f"client_id = '{first}'\nclient_secret = '{secret}'\n")
    config.chmod(0o600)
    d = Daemon(
        tmp_path / "state",
        workers=1,
        extra_args=("--config", str(config)),
        daemon_env={"NOTIFY_SOCKET": listener.address},
    )
    try:
        d.start()
        assert d.process is not None
        listener.wait_for(is_("READY"), "READY=1")
        assert status(d.socket_path).login.identity == first

        config.write_text(f"client_id = '{second}'\nclient_secret = '{secret}-2'\n")
        d.process.send_signal(signal.SIGHUP)
        listener.wait_for(is_("RELOADING"), "RELOADING=1")
        ready = listener.wait_for(is_("READY"), "READY=1 after the reload")
        assert f"login: client {first}" in ready.fields["STATUS"]
        assert status(d.socket_path).login.identity == first  # the backend's login
        assert f"credentials changed (client {second}); they take effect when" in d.log()

        config.chmod(0o644)
        d.process.send_signal(signal.SIGHUP)
        listener.wait_for(is_("RELOADING"), "RELOADING=1")
        failed = listener.wait_for(is_("READY"), "READY=1 after a failed reload")
        assert "last reload failed" in failed.fields["STATUS"]
        assert f"chmod 600 {config}" in failed.fields["STATUS"]
        assert d.stop() == 0
        assert secret not in d.log()
    finally:
        d.close()
