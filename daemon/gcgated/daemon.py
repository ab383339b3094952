"""Running the daemon process: locks, the private socket, serving, clean shutdown.

Order matters and is the point of this module:

1. take the state-dir lock (one daemon per store) and the socket lock (one
   daemon per socket), so a second daemon refuses with the first one's pid;
2. make the socket's directory private (0700, or 0750 for ``--group``) and
   replace a stale socket left by a crashed daemon;
3. open the store (a damaged database moved aside: ``store.recovery``), start
   the backends, resume unfinished tasks;
4. serve gRPC (Gateway, health, reflection) on the socket, mode 0600 (0660
   owned by the group with ``--group``), then tell systemd ``READY=1``;
5. on SIGTERM/SIGINT: tell systemd ``STOPPING=1``, stop accepting, give
   in-flight RPCs a grace period, stop backends, flush outcomes, close the
   store, remove the socket.

Before any of it, core dumps are turned off (see :func:`disable_core_dumps`),
service-account credentials are loaded and the secret is removed from the
environment (see ``gcgated.credentials``); the systemd notification variables
are read and removed too (see ``gcgated.notify``), so the local endpoint's
worker processes inherit neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import grp
import logging
import os
import resource
import signal
import stat
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import grpc
from gcgate.constants import MAX_MESSAGE_BYTES
from gcgate.v1 import gateway_pb2 as pb
from gcgate.v1 import gateway_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from gcgated import logs
from gcgated.backends.globus import HEALTH_SERVICE as GLOBUS_HEALTH
from gcgated.backends.globus import GlobusBackend, build_globus_backend
from gcgated.backends.local import LocalBackend
from gcgated.config import Config
from gcgated.core import TaskLifecycle
from gcgated.credentials import ClientCredentials, credential_environment, load_client_credentials
from gcgated.errors import StartupError, is_disk_full
from gcgated.metrics_listener import MetricsListener, parse_listen
from gcgated.notify import Notifier
from gcgated.owner import create_owner_key
from gcgated.routing import Router
from gcgated.server.decoding import RequestDecoding
from gcgated.server.rpcmetrics import RpcMetrics
from gcgated.server.servicer import GatewayServicer
from gcgated.services import Services, build_services
from gcgated.services.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from gcgated.store import Store
from gcgated.store.recovery import open_store

log = logging.getLogger(__name__)

SERVER_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_concurrent_streams", 1024),
    # Calls that arrived but that the event loop has not picked up yet. gRPC's
    # defaults (1,000, then random early drop up to 3,000) CANCELLED part of a
    # burst of 2,000 WatchTasks streams from one host's clients (test_socket_abuse).
    ("grpc.server.max_pending_requests", 10_000),
    ("grpc.server.max_pending_requests_hard_limit", 20_000),
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


def private_dir(path: Path, gid: int | None = None) -> None:
    """Create ``path`` 0700 (0750 owned by group ``gid``), or check an existing one.

    An existing directory must be ours and writable by nobody else; it is then
    tightened to exactly 0700, or 0750 with its group set to ``gid``.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = check_private_dir(path, gid)
    wanted = private_mode(gid)
    if gid is not None and info.st_gid != gid:
        give_to_group(path, gid)
    if stat.S_IMODE(info.st_mode) != wanted:
        os.chmod(path, wanted)


def private_mode(gid: int | None) -> int:
    """A private directory's mode: 0700, or 0750 when a group may connect."""
    return 0o700 if gid is None else 0o750


def check_private_dir(path: Path, gid: int | None = None) -> os.stat_result:
    """Refuse an existing ``path`` that is not ours or that others may write to
    (``gcgated --check-config`` asks the same without creating anything)."""
    info = path.stat()
    if info.st_mode & stat.S_ISVTX and info.st_mode & stat.S_IWOTH:
        # /tmp and its like: shared by design, and never to be chmod-ed.
        raise StartupError(
            f"{path} is shared by every user (mode {stat.filemode(info.st_mode)}, like /tmp);"
            " refusing to put the socket or state directly in it: give the daemon a"
            f" directory of its own there, e.g. {path / f'gcgate-{os.getuid()}'}/, which it"
            " creates private"
        )
    if info.st_uid != os.getuid():
        raise StartupError(
            f"{path} belongs to uid {info.st_uid}, not to this user ({os.getuid()});"
            " refusing to put the socket or state there"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise StartupError(
            f"{path} is writable by other users (mode {stat.filemode(info.st_mode)});"
            f" fix it with `chmod {private_mode(gid):o} {path}`"
        )
    return info


def give_to_group(path: Path, gid: int) -> None:
    """chgrp ``path``; the daemon's user must be root or a member of the group."""
    try:
        os.chown(path, -1, gid)
    except PermissionError as exc:
        raise StartupError(
            f"cannot give {path} to group {group_name(gid)} ({exc.strerror}): the daemon's"
            f" user (uid {os.getuid()}) must be a member of that group; under the"
            " gcgated.service unit it must be the unit's Group="
        ) from None


def restrict_socket(path: Path, gid: int | None) -> None:
    """A socket file the daemon's user alone may connect to (0600), or its group
    too (0660, owned by ``gid``)."""
    if gid is not None and path.stat().st_gid != gid:
        give_to_group(path, gid)
    os.chmod(path, 0o600 if gid is None else 0o660)


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def remove_stale_socket(path: Path) -> None:
    """Replace what a crashed daemon left; we hold the socket lock, so it is stale."""
    if path.is_socket():
        log.info("removing stale socket %s left by a previous daemon", path)
        path.unlink()
    elif path.exists():
        raise StartupError(f"{path} exists and is not a socket; refusing to replace it")


#: Seconds between STATUS= refreshes for systemd when there is no faster watchdog tick.
STATUS_REFRESH_SECONDS = 5.0

#: Settings a SIGHUP reload applies; any other change waits for a restart.
RELOADABLE = (
    "log_level",
    "log_level_libraries",
    "log_format",
    "retention_days",
    "unread_retention_days",
    "store_size_limit_mb",
    "shutdown_grace_seconds",
)
#: Not settings a reload compares (credentials are compared as a whole).
NOT_COMPARED = ("client_id", "client_secret", "config_file", "sources")

Reloader = Callable[[], Config]


def disable_core_dumps() -> None:
    """No core file of this process or its workers: one would hold the client
    secret and the Globus tokens, written wherever ``core_pattern`` says.

    Both limits are set to 0, so nothing in the process can raise them again;
    the workers inherit them. The process stays dumpable (``PR_SET_DUMPABLE``
    is not cleared): that would only keep out the daemon's own user, who can
    read the token file and the credentials anyway, and it would cost that user
    py-spy/gdb on a stuck daemon and make ``/proc/<pid>`` root's
    (docs/reliability.md#5-isolation).
    """
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def raise_fd_limit() -> None:
    """Open files up to the hard limit: every client connection is an fd, and at
    the usual soft limit of 1,024 a few idle clients holding connections left
    the daemon unable to accept anyone else (test_socket_abuse)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:  # e.g. an unlimited hard limit the kernel caps
        log.warning("cannot raise the open-file limit from %d to %d: %s", soft, hard, exc)


async def serve(
    config: Config, ready: asyncio.Event | None = None, reload: Reloader | None = None
) -> None:
    """Run the daemon until SIGTERM/SIGINT; ``reload`` re-reads the config on SIGHUP."""
    disable_core_dumps()
    raise_fd_limit()
    notifier = Notifier.from_environment()
    serving = ready or asyncio.Event()
    try:
        try:
            await _serve(config, notifier, serving, reload)
        except Exception as exc:
            if serving.is_set() or not is_disk_full(exc):
                raise
            # A start that could not write its lock, owner key or store: not an
            # internal error to show as a traceback, but a full disk to name (once
            # serving, the store refuses submissions and holds outcomes instead).
            socket_dir = config.socket_path.absolute().parent
            raise StartupError(
                f"no space left to start ({exc}): the daemon writes to its state directory"
                f" {config.state_dir} and its socket directory {socket_dir}; free space on"
                f" their file system (`df -h {config.state_dir} {socket_dir}`), then start"
                " it again"
            ) from None
    except StartupError as exc:
        notifier.status(f"cannot start: {exc}")
        raise
    finally:
        notifier.close()


async def _serve(
    config: Config, notifier: Notifier, ready: asyncio.Event | None, reload: Reloader | None
) -> None:
    # Credentials first: this also removes the secret from the environment
    # before any worker process is started with a copy of it.
    credential_env = credential_environment()
    credentials = load_client_credentials(config)
    if credentials is not None:
        log.info(
            "service-account credentials loaded for client %s (from %s)",
            credentials.client_id,
            credentials.source,
        )
    socket_path = config.socket_path.absolute()
    gid = config.group_id
    private_dir(config.state_dir)
    private_dir(socket_path.parent, gid)
    with (
        exclusive_lock(config.state_dir / "gcgated.lock", "state directory"),
        exclusive_lock(socket_path.with_name(socket_path.name + ".lock"), "socket"),
    ):
        remove_stale_socket(socket_path)
        owner_key = create_owner_key(config.state_dir)
        store = open_store(
            config.store_dir,
            size_limit_bytes=config.store_size_limit_mb * 1024 * 1024,
            retention_seconds=config.retention_days * 86400,
            unread_retention_seconds=config.unread_retention_days * 86400,
        )
        remote = build_globus_backend(config, store, credentials)
        local = LocalBackend(
            workers=config.worker_count,
            task_dir=config.task_dir,
            max_payload_mb=config.local_max_payload_mb,
            max_result_mb=config.local_max_result_mb,
        )
        router = Router(local=local, remote=remote)
        core = TaskLifecycle(store, router)
        services = build_services(core, router, store)
        services.status.config_file = config.config_file
        service = Service(
            config, services, store, socket_path, notifier, credentials, credential_env, reload
        )
        try:
            await core.start()
            await _serve_grpc(service, core, remote, owner_key, ready)
        finally:
            await core.stop()
            store.close()
            with contextlib.suppress(FileNotFoundError):
                socket_path.unlink()
    log.info("gcgated stopped")


class Service:
    """What systemd is told (READY, STATUS, WATCHDOG, STOPPING) and SIGHUP reloads."""

    def __init__(
        self,
        config: Config,
        services: Services,
        store: Store,
        socket_path: Path,
        notifier: Notifier,
        credentials: ClientCredentials | None,
        credential_env: dict[str, str],
        reloader: Reloader | None,
    ) -> None:
        self.config = config
        self.services = services
        #: Its retention and size limit follow SIGHUP reloads.
        self.store = store
        self.socket_path = socket_path
        self.notifier = notifier
        self.credentials = credentials
        self._credential_env = credential_env
        self._reloader = reloader
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_status = ""

    @property
    def login(self) -> str:
        if self.credentials is None:
            return "not configured"
        return f"client {self.credentials.client_id}"

    def status_line(self) -> str:
        counts = self.services.status.counts()
        line = (
            f"serving on {self.socket_path}; login: {self.login};"
            f" tasks: {counts['pending']} pending, {counts['success']} succeeded,"
            f" {counts['failed']} failed, {counts['cancelled']} cancelled"
        )
        if reload_error := self.services.status.last_reload.error:
            line += f"; last reload failed: {reload_error}"
        return line

    def ready(self) -> None:
        if self.notifier.watchdog_interval:
            log.info("systemd watchdog: pinging every %.3gs", self.notifier.watchdog_interval)
        self._last_status = self.status_line()
        self.notifier.ready(self._last_status)
        if self.notifier.enabled:
            self._spawn(self._notify_loop())

    def stopping(self) -> None:
        self.notifier.stopping(f"stopping: finishing in-flight calls on {self.socket_path}")

    def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify_loop(self) -> None:
        """WATCHDOG=1 at half the watchdog timeout, from the event loop itself (a
        stuck loop stops the pings and systemd restarts the daemon), and STATUS=
        whenever the task counts change."""
        interval = self.notifier.watchdog_interval
        tick = min(interval, STATUS_REFRESH_SECONDS) if interval else STATUS_REFRESH_SECONDS
        last_ping = time.monotonic()
        while True:
            await asyncio.sleep(tick)
            lines = []
            now = time.monotonic()
            if interval and now - last_ping >= interval * 0.999:
                lines.append("WATCHDOG=1")
                last_ping = now
            try:
                line = self.status_line()
            except Exception:  # the store failing must not stop the pings
                log.exception("cannot read task counts for the service status")
            else:
                if line != self._last_status:
                    lines.append(f"STATUS={line}")
                    self._last_status = line
            if lines:
                self.notifier.send(*lines)

    # ------------------------------------------------------------- reload

    def request_reload(self) -> None:
        if self._reloader is None:
            log.warning("SIGHUP: this daemon was not started with a reloadable configuration")
            return
        self._spawn(self.reload())

    async def reload(self) -> None:
        """Re-read the config file and check the credentials; apply what can change live."""
        assert self._reloader is not None
        self.notifier.reloading()
        log.info("SIGHUP: reloading the configuration")
        try:
            new = self._reloader()
            credentials = load_client_credentials(new, self._credential_env)
        except StartupError as exc:
            self.services.status.reloaded(str(exc))
            log.error("reload failed, keeping the running configuration: %s", exc)
        except Exception as exc:  # systemd waits for READY=1 whatever happened
            self.services.status.reloaded(f"internal error ({type(exc).__name__}); see the log")
            log.exception("reload failed, keeping the running configuration")
        else:
            self._apply(new, credentials)
            self.services.status.config_file = new.config_file
            self.services.status.reloaded()
        self._last_status = self.status_line()
        self.notifier.ready(self._last_status)

    def _apply(self, new: Config, credentials: ClientCredentials | None) -> None:
        old = self.config
        for name in (f.name for f in fields(Config)):
            if name in RELOADABLE or name in NOT_COMPARED:
                continue
            if getattr(new, name) != getattr(old, name):
                log.warning(
                    "reload: %s changed (%s -> %s); it takes effect when the daemon restarts",
                    name,
                    getattr(old, name),
                    getattr(new, name),
                )
        changed = [n for n in RELOADABLE if getattr(new, n) != getattr(old, n)]
        for name in changed:
            setattr(old, name, getattr(new, name))
        logs.configure(old)
        store = self.store
        store.retention_seconds = old.retention_days * 86400
        store.unread_retention_seconds = old.unread_retention_days * 86400
        store.size_limit_bytes = old.store_size_limit_mb * 1024 * 1024
        # The Globus backend logged in with the credentials it started with:
        # new ones are checked now (a bad file fails the reload) and used after
        # a restart; the running login stays what Status and STATUS= show.
        if _identity(credentials) != _identity(self.credentials):
            log.warning(
                "reload: the service-account credentials changed (client %s);"
                " they take effect when the daemon restarts",
                credentials.client_id if credentials else "none",
            )
        log.info("reload done%s", f" (changed: {', '.join(changed)})" if changed else "")


def _identity(credentials: ClientCredentials | None) -> tuple[str, str] | None:
    if credentials is None:
        return None
    return credentials.client_id, credentials.client_secret.get_secret_value()


def report_globus_health(globus: GlobusBackend, health: HealthServicer) -> None:
    """Health service name ``gcgate.globus``: SERVING while the Globus login works,
    NOT_SERVING when logged out or refused (the daemon itself keeps serving)."""
    pending: set[asyncio.Task[None]] = set()

    def report(serving: bool) -> None:
        status = health_pb2.HealthCheckResponse
        task = asyncio.get_running_loop().create_task(
            health.set(GLOBUS_HEALTH, status.SERVING if serving else status.NOT_SERVING)
        )
        pending.add(task)
        task.add_done_callback(pending.discard)

    globus.on_health(report)


async def start_metrics_listener(config: Config, services: Services) -> MetricsListener | None:
    """The HTTP metrics listener ``metrics_listen`` asks for (None when unset); a Unix
    socket gets the main socket's permissions."""
    if not config.metrics_listen:
        return None
    listener = MetricsListener(
        parse_listen(config.metrics_listen), services.metrics.exposition, METRICS_CONTENT_TYPE
    )
    await listener.start()
    if listener.address.path is not None:
        restrict_socket(listener.address.path, config.group_id)
    return listener


async def _serve_grpc(
    service: Service,
    core: TaskLifecycle,
    globus: GlobusBackend,
    owner_key: str,
    ready: asyncio.Event | None,
) -> None:
    config, socket_path = service.config, service.socket_path
    # Before the gRPC server: a listener that cannot start stops the daemon before
    # any client is served (the backends have started; the core's stop ends them).
    metrics = await start_metrics_listener(config, service.services)
    # RpcMetrics outermost: it also counts the calls RequestDecoding refuses.
    interceptors = [RpcMetrics(service.services.metrics.rpc), RequestDecoding()]
    server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=interceptors)
    servicer = GatewayServicer(
        service.services, socket_path=socket_path, state_dir=config.state_dir, owner_key=owner_key
    )
    pb_grpc.add_GatewayServicer_to_server(servicer, server)
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
    gid = config.group_id
    await server.start()
    restrict_socket(socket_path, gid)
    for name in ("", SERVICE_NAME):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    report_globus_health(globus, health)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, service.request_reload)
    log.info(
        "gcgated serving on %s (state in %s%s)",
        socket_path,
        config.state_dir,
        "" if gid is None else f"; group {group_name(gid)} may connect",
    )
    service.ready()
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        service.stopping()
        log.info(
            "shutting down: finishing in-flight calls (grace %.0fs)", config.shutdown_grace_seconds
        )
        await health.enter_graceful_shutdown()
        core.begin_shutdown()
        loop.remove_signal_handler(signal.SIGHUP)
        service.cancel()
        if metrics is not None:
            await metrics.close()
        await server.stop(config.shutdown_grace_seconds)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
