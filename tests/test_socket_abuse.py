"""Abuse of the daemon's Unix socket below and around gRPC.

Raw garbage (random bytes, an HTTP/1.1 request, an HTTP/2 preface then garbage
frames, a frame header announcing 16 MiB), half-open connections (connected and
silent; preface sent then stalled; a call sent with a zero receive window so its
answer can never be delivered), messages over the 64 MiB and 10 MB limits,
thousands of concurrent connections and thousands of concurrent WatchTasks
streams. Throughout, a normal client keeps getting answers, the daemon stays up,
and its open fds and memory come back near where they were once the abusers
leave. Figures go to ``socket-abuse.json`` in pytest's base temp dir (and
docs/reliability.md, section 3).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from gcgate.constants import MAX_MESSAGE_BYTES, MAX_SUBMISSION_BYTES
from gcgate.v1 import gateway_pb2 as pb
from gcgate.v1.gateway_pb2_grpc import GatewayStub
from harness import Daemon
from procfs import Usage, proc_limit, wait_until

#: Generous: only reached when something hangs.
WAIT = 60.0
#: How long a normal call may take while the socket is abused (the machine is
#: shared and loaded; a blocked daemon would take forever, not a few seconds).
ANSWER_WITHIN = 20.0
#: Concurrent raw connections and WatchTasks streams in CI (soak: more).
CI_CONNECTIONS, SOAK_CONNECTIONS = 2000, 8000
CI_STREAMS, SOAK_STREAMS = 2000, 8000
#: Fds and KiB of RSS the daemon may keep after the abusers left (caches, arenas).
FD_SLACK, RSS_SLACK_KB = 16, 256 * 1024

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FIGURES: dict[str, Any] = {}


# ------------------------------------------------------------- raw HTTP/2


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame: 24-bit length, type, flags, stream id."""
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream)


def settings(**values: int) -> bytes:
    ids = {"initial_window_size": 0x4, "max_frame_size": 0x5}
    body = b"".join(struct.pack(">HI", ids[k], v) for k, v in values.items())
    return frame(0x4, 0, 0, body) + body


def _literal(name: str, value: str) -> bytes:
    """HPACK literal header field without indexing, no Huffman (lengths < 127)."""
    return b"\x00" + bytes([len(name)]) + name.encode() + bytes([len(value)]) + value.encode()


def grpc_call(stream: int, method: str, message: bytes) -> bytes:
    """HEADERS and DATA frames of a unary gRPC call, written by hand."""
    block = b"".join(
        _literal(k, v)
        for k, v in (
            (":method", "POST"),
            (":scheme", "http"),
            (":path", f"/gcgate.v1.Gateway/{method}"),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        )
    )
    data = b"\x00" + struct.pack(">I", len(message)) + message
    headers = frame(0x1, 0x4, stream, block) + block  # END_HEADERS
    return headers + frame(0x0, 0x1, stream, data) + data  # END_STREAM


def connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(WAIT)
    sock.connect(str(path))
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the daemon sends until it closes the connection (or WAIT passes)."""
    received = b""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            break
        if not chunk:
            break
        received += chunk
    else:
        raise AssertionError("the daemon kept a garbage connection open")
    return received


def goaway_code(received: bytes) -> int | None:
    """The error code of the first GOAWAY frame in ``received``, if any."""
    pos = 0
    while pos + 9 <= len(received):
        length = int.from_bytes(received[pos : pos + 3], "big")
        if received[pos + 3] == 0x7:
            return int.from_bytes(received[pos + 13 : pos + 17], "big")
        pos += 9 + length
    return None


# ------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def many_fds() -> Iterator[None]:
    """Room for thousands of sockets in this process (the daemon inherits it too)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    yield FIGURES
    path = tmp_path_factory.getbasetemp() / "socket-abuse.json"
    path.write_text(json.dumps(FIGURES, indent=2))
    print(f"\nsocket abuse figures -> {path}\n{json.dumps(FIGURES)}")


def pid_of(daemon: Daemon) -> int:
    assert daemon.process is not None
    return daemon.process.pid


def answers(stub: GatewayStub, daemon: Daemon) -> float:
    """A normal client's Status round trip, in seconds (fails if not answered)."""
    started = time.monotonic()
    assert stub.Status(pb.StatusRequest(), timeout=ANSWER_WITHIN).pid == pid_of(daemon)
    return time.monotonic() - started


def settled(daemon: Daemon, baseline: Usage, what: str) -> Usage:
    """Wait until the daemon's fds are back near ``baseline``; its usage then."""
    pid = pid_of(daemon)
    wait_until(lambda: Usage.of(pid).fds <= baseline.fds + FD_SLACK, WAIT, f"fds after {what}")
    after = Usage.of(pid)
    assert after.rss_kb <= baseline.rss_kb + RSS_SLACK_KB, (what, baseline, after)
    return after


def record(name: str, baseline: Usage, after: Usage, **extra: Any) -> None:
    FIGURES[name] = {"before": baseline.as_dict(), "after": after.as_dict(), **extra}


# ------------------------------------------------------------- garbage


GARBAGE = {
    "random bytes": os.urandom(64 * 1024),
    "HTTP/1.1 request": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "preface then garbage frames": PREFACE + settings() + os.urandom(4096),
    # A DATA frame header announcing 2**24 - 1 bytes (the daemon allows 16 KiB frames).
    "preface then a 16 MiB frame header": PREFACE + settings() + b"\xff\xff\xff\0\0\0\0\0\1",
}


@pytest.mark.parametrize("name", list(GARBAGE))
def test_garbage_on_the_socket_closes_that_connection_only(
    daemon: Daemon, stub: GatewayStub, figures: dict[str, Any], name: str
) -> None:
    with contextlib.closing(connect(daemon.socket_path)) as sock:
        sock.sendall(GARBAGE[name])
        received = read_until_closed(sock)
    figures.setdefault("garbage", {})[name] = {
        "bytes_back": len(received),
        "goaway_error_code": goaway_code(received),
    }
    answers(stub, daemon)


# ------------------------------------------------------------- half-open


def test_half_open_connections_do_not_block_others(
    daemon: Daemon, stub: GatewayStub, figures: dict[str, Any]
) -> None:
    """Silent sockets, stalled prefaces and calls whose answer cannot be delivered
    (zero receive window) hold nothing the other clients need."""
    baseline = Usage.of(pid_of(daemon))
    status = pb.StatusRequest().SerializeToString()
    opened: list[socket.socket] = []
    try:
        for i in range(300):
            sock = connect(daemon.socket_path)
            opened.append(sock)
            if i % 3 == 1:
                sock.sendall(PREFACE)
            elif i % 3 == 2:
                sock.sendall(PREFACE + settings(initial_window_size=0))
                sock.sendall(b"".join(grpc_call(s, "Status", status) for s in (1, 3, 5)))
        slowest = max(answers(stub, daemon) for _ in range(20))
        during = Usage.of(pid_of(daemon))
    finally:
        for sock in opened:
            sock.close()
    after = settled(daemon, baseline, "half-open connections")
    record(
        "half_open",
        baseline,
        after,
        connections=len(opened),
        streams_never_read=3 * (len(opened) // 3),
        during=during.as_dict(),
        slowest_normal_call_s=round(slowest, 3),
    )


# ------------------------------------------------------------- size limits


@pytest.fixture
def unlimited_stub(daemon: Daemon) -> Iterator[GatewayStub]:
    """A client that sends anything: the daemon's own limits are what is tested."""
    channel = grpc.insecure_channel(
        f"unix:{daemon.socket_path}",
        options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
    )
    try:
        yield GatewayStub(channel)
    finally:
        channel.close()


def test_message_over_64_mib_is_resource_exhausted(
    daemon: Daemon, stub: GatewayStub, unlimited_stub: GatewayStub, figures: dict[str, Any]
) -> None:
    payload = "x" * (MAX_MESSAGE_BYTES + 1024 * 1024)
    with pytest.raises(grpc.RpcError) as caught:
        unlimited_stub.Run(
            pb.RunRequest(endpoint_id="local", function_id="f", payload=payload),
            timeout=WAIT,
        )
    figures["over_64_mib"] = {"code": caught.value.code().name, "details": caught.value.details()}
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in caught.value.details()
    answers(stub, daemon)


def test_submission_over_10_mb_is_invalid_argument(
    daemon: Daemon, stub: GatewayStub, figures: dict[str, Any]
) -> None:
    function_id = stub.RegisterFunction(
        pb.RegisterFunctionRequest(function_name="f", function_code="def f(x):\n    return 1\n")
    ).function_id
    # Base64 of more than 10 MB: the local limit counts the decoded bytes.
    frame_body = "00\n" + "A" * (MAX_SUBMISSION_BYTES * 4 // 3 + 400)
    payload = f"{len(frame_body)}\n{frame_body}3\n00\n"
    with pytest.raises(grpc.RpcError) as caught:
        stub.Run(
            pb.RunRequest(endpoint_id="local", function_id=function_id, payload=payload),
            timeout=WAIT,
        )
    figures["over_10_mb"] = {"code": caught.value.code().name, "details": caught.value.details()}
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "TASK_PAYLOAD_TOO_LARGE" in caught.value.details()
    answers(stub, daemon)


# ------------------------------------------------------------- many clients


def hold_connections(daemon: Daemon, count: int) -> list[socket.socket]:
    """``count`` connections, each through the HTTP/2 handshake and then idle."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard < count + 256:
        pytest.skip(f"the hard limit on open files ({hard}) is too low for {count} connections")
    opened = []
    for _ in range(count):
        sock = connect(daemon.socket_path)
        sock.sendall(PREFACE + settings())
        opened.append(sock)
    return opened


def many_connections(
    daemon: Daemon, stub: GatewayStub, figures: dict[str, Any], count: int, label: str = ""
) -> None:
    pid = pid_of(daemon)
    baseline = Usage.of(pid)
    opened = hold_connections(daemon, count)
    try:
        # The daemon accepted every one: its fd count says so.
        wait_until(lambda: Usage.of(pid).fds > count, WAIT, f"{count} accepted connections")
        slowest = max(answers(stub, daemon) for _ in range(20))
        during = Usage.of(pid)
    finally:
        for sock in opened:
            sock.close()
    after = settled(daemon, baseline, f"{count} connections")
    record(
        f"connections_{count}{label}",
        baseline,
        after,
        connections=count,
        during=during.as_dict(),
        slowest_normal_call_s=round(slowest, 3),
    )


def test_thousands_of_connections(
    daemon: Daemon, stub: GatewayStub, figures: dict[str, Any]
) -> None:
    many_connections(daemon, stub, figures, CI_CONNECTIONS)


def test_daemon_started_with_a_low_fd_soft_limit_raises_it(
    tmp_path: Path, figures: dict[str, Any]
) -> None:
    """As under systemd (soft 1,024): the daemon raises its soft limit to the hard
    one. At 1,024, 2,000 idle connections left it unable to answer anyone."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        low = Daemon(tmp_path / "state").start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    channel = grpc.insecure_channel(f"unix:{low.socket_path}")
    try:
        assert proc_limit(pid_of(low), "Max open files") == (str(hard), str(hard))
        many_connections(low, GatewayStub(channel), figures, CI_CONNECTIONS, "_from_soft_1024")
    finally:
        channel.close()
        low.close()


@pytest.mark.soak
def test_thousands_of_connections_soak(
    daemon: Daemon, stub: GatewayStub, figures: dict[str, Any]
) -> None:
    many_connections(daemon, stub, figures, SOAK_CONNECTIONS)


WAIT_FOR_FILE = """
def wait_for_file(path):
    import os, time
    while not os.path.exists(path):
        time.sleep(0.05)
    return path
"""


async def watch_all(socket_path: Path, task_id: str, streams: int, release: Path) -> dict[str, Any]:
    """``streams`` WatchTasks streams on one pending task over a few channels, the
    task released once each connection has carried its requests (a Status call
    behind them came back); every stream must deliver the task's final record.

    (A stream the daemon starts serving after the release finds the task final in
    the store: it must deliver the record just the same.)
    """
    channels = [  # each on a connection of its own (a shared pool would use one)
        grpc.aio.insecure_channel(
            f"unix:{socket_path}", options=[("grpc.use_local_subchannel_pool", 1)]
        )
        for _ in range(max(streams // 500, 1))
    ]
    try:
        started = time.monotonic()
        watching = [
            asyncio.ensure_future(
                _records(
                    GatewayStub(channels[i % len(channels)]).WatchTasks(
                        pb.WatchTasksRequest(task_ids=[task_id]), timeout=WAIT * 3
                    )
                )
            )
            for i in range(streams)
        ]
        for channel in channels:
            await GatewayStub(channel).Status(pb.StatusRequest(), timeout=WAIT)
        opened_in = time.monotonic() - started
        release.touch()
        results = await asyncio.gather(*watching)
        return {"opened_in_s": round(opened_in, 2), "records": results}
    finally:
        for channel in channels:
            await channel.close()


async def _records(call: Any) -> list[str]:
    return [record.status async for record in call]


def many_streams(
    daemon: Daemon, stub: GatewayStub, figures: dict[str, Any], streams: int, tmp_path: Path
) -> None:
    pid = pid_of(daemon)
    function_id = stub.RegisterFunction(
        pb.RegisterFunctionRequest(function_name="wait_for_file", function_code=WAIT_FOR_FILE)
    ).function_id
    release = tmp_path / "release"
    task_id = stub.Run(
        pb.RunRequest(
            endpoint_id="local",
            function_id=function_id,
            json_arguments=pb.JsonArguments(args_json=json.dumps([str(release)])),
        )
    ).task_id
    answers(stub, daemon)
    baseline = Usage.of(pid)
    started = time.monotonic()
    outcome = asyncio.run(watch_all(daemon.socket_path, task_id, streams, release))
    assert outcome["records"] == [["success"]] * streams
    after = settled(daemon, baseline, f"{streams} streams")
    record(
        f"watch_streams_{streams}",
        baseline,
        after,
        streams=streams,
        channels=max(streams // 500, 1),
        opened_in_s=outcome["opened_in_s"],
        all_delivered_in_s=round(time.monotonic() - started, 2),
    )
    answers(stub, daemon)


def test_thousands_of_watch_streams(
    daemon: Daemon, stub: GatewayStub, figures: dict[str, Any], tmp_path: Path
) -> None:
    many_streams(daemon, stub, figures, CI_STREAMS, tmp_path)


@pytest.mark.soak
def test_thousands_of_watch_streams_soak(
    daemon: Daemon, stub: GatewayStub, figures: dict[str, Any], tmp_path: Path
) -> None:
    many_streams(daemon, stub, figures, SOAK_STREAMS, tmp_path)
