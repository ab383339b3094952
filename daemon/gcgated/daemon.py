"""Running the daemon process: locks, the private socket, serving, clean shutdown.

Order matters and is the point of this module:

1. take the state-dir lock (one daemon per store) and the socket lock (one
   daemon per socket), so a second daemon refuses with the first one's pid;
2. make the socket's directory private (0700) and replace a stale socket
   left by a crashed daemon;
3. open the store, start the backends, resume unfinished tasks;
4. serve gRPC (Gateway, health, reflection) on the socket, mode 0600;
5. on SIGTERM/SIGINT: stop accepting, give in-flight RPCs a grace period,
   stop backends, flush outcomes, close the store, remove the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import grpc
from gcgate.constants import MAX_MESSAGE_BYTES
from gcgate.v1 import gateway_pb2 as pb
from gcgate.v1 import gateway_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from gcgated.backends.local import LocalBackend
from gcgated.config import Config
from gcgated.core import TaskLifecycle
from gcgated.errors import StartupError
from gcgated.routing import Router
from gcgated.server.servicer import GatewayServicer
from gcgated.store import Store

log = logging.getLogger(__name__)

SERVER_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_concurrent_streams", 1024),
]
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Gateway"].full_name


@contextlib.contextmanager
def exclusive_lock(path: Path, what: str) -> Iterator[None]:
    """Hold an flock on ``path`` (with our pid inside) or refuse to start."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise StartupError(
                f"another gcgated (pid {holder}) is already running on this {what}"
                f" ({path}); stop it first or choose a different --socket/--state-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def private_dir(path: Path) -> None:
    """Create ``path`` 0700, or check an existing one is ours and not open to others."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid():
        raise StartupError(
            f"{path} belongs to uid {info.st_uid}, not to this user ({os.getuid()});"
            " refusing to put the socket or state there"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise StartupError(
            f"{path} is writable by other users (mode {stat.filemode(info.st_mode)});"
            f" fix it with `chmod 700 {path}`"
        )
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)


def remove_stale_socket(path: Path) -> None:
    """Replace what a crashed daemon left; we hold the socket lock, so it is stale."""
    if path.is_socket():
        log.info("removing stale socket %s left by a previous daemon", path)
        path.unlink()
    elif path.exists():
        raise StartupError(f"{path} exists and is not a socket; refusing to replace it")


async def serve(config: Config, ready: asyncio.Event | None = None) -> None:
    """Run the daemon until SIGTERM/SIGINT."""
    socket_path = config.socket_path.absolute()
    private_dir(config.state_dir)
    private_dir(socket_path.parent)
    with (
        exclusive_lock(config.state_dir / "gcgated.lock", "state directory"),
        exclusive_lock(socket_path.with_name(socket_path.name + ".lock"), "socket"),
    ):
        remove_stale_socket(socket_path)
        store = Store(
            config.store_dir,
            size_limit_bytes=config.store_size_limit_mb * 1024 * 1024,
            retention_seconds=config.retention_days * 86400,
        )
        core = TaskLifecycle(store, Router(local=LocalBackend(workers=config.worker_count)))
        try:
            await core.start()
            await _serve_grpc(core, config, socket_path, ready)
        finally:
            await core.stop()
            store.close()
            with contextlib.suppress(FileNotFoundError):
                socket_path.unlink()
    log.info("gcgated stopped")


async def _serve_grpc(
    core: TaskLifecycle, config: Config, socket_path: Path, ready: asyncio.Event | None
) -> None:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    pb_grpc.add_GatewayServicer_to_server(
        GatewayServicer(core, socket_path=socket_path, state_dir=config.state_dir), server
    )
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (
            SERVICE_NAME,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    old_umask = os.umask(0o177)  # the socket file is created 0600
    try:
        server.add_insecure_port(f"unix:{socket_path}")
    finally:
        os.umask(old_umask)
    await server.start()
    os.chmod(socket_path, 0o600)
    for name in ("", SERVICE_NAME):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("gcgated serving on %s (state in %s)", socket_path, config.state_dir)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        log.info(
            "shutting down: finishing in-flight calls (grace %.0fs)", config.shutdown_grace_seconds
        )
        await health.enter_graceful_shutdown()
        core.begin_shutdown()
        await server.stop(config.shutdown_grace_seconds)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
