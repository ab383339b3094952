"""A real gcgated process on a real Unix socket, for tests.

Each daemon gets its own state dir and a short socket path under /tmp (Unix
socket paths are limited to 107 bytes, pytest's tmp paths can be longer).
Readiness is the socket accepting a gRPC connection, which the daemon only
allows after its store is open and its backends are started.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from gcgate.v1 import gateway_pb2 as pb
from gcgate.v1 import gateway_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from standin import StandIn

START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0


class Daemon:
    """Start, stop, kill and restart one gcgated on a fixed socket and state dir."""

    def __init__(
        self,
        state_dir: Path,
        *,
        workers: int = 2,
        extra_args: tuple[str, ...] = (),
        daemon_env: dict[str, str] | None = None,
        log_level: str = "DEBUG",
    ):
        self.state_dir = state_dir
        self.socket_dir = Path(tempfile.mkdtemp(prefix="gcg-", dir="/tmp"))
        self.socket_path = self.socket_dir / "gcgate.sock"
        self.log_path = state_dir.parent / f"{state_dir.name}-gcgated.log"
        self.workers = workers
        self.extra_args = extra_args
        #: DEBUG for test diagnostics; a benchmark measures the daemon as run (INFO).
        self.log_level = log_level
        #: Extra variables for the daemon process only (not for its clients).
        self.daemon_env = dict(daemon_env or {})
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """Environment for clients of this daemon (subprocesses included)."""
        return {**os.environ, "GCGATE_SOCKET": str(self.socket_path)}

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gcgated.cli.daemon",
            "--socket",
            str(self.socket_path),
            "--state-dir",
            str(self.state_dir),
            "--workers",
            str(self.workers),
            "--log-level",
            self.log_level,
            *self.extra_args,
        ]

    def start(self) -> Daemon:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**self.env, **self.daemon_env},
        )
        log.close()
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        """Block until the daemon answers Status (or fail with its log)."""
        channel = grpc.insecure_channel(f"unix:{self.socket_path}")
        try:
            future = grpc.channel_ready_future(channel)
            try:
                future.result(timeout=START_TIMEOUT)
            except grpc.FutureTimeoutError:
                raise RuntimeError(f"gcgated did not start:\n{self.log()}") from None
            pb_grpc.GatewayStub(channel).Status(pb.StatusRequest(), timeout=10)
        finally:
            channel.close()

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=STOP_TIMEOUT)
        self.process = None
        return code

    def kill(self) -> None:
        """kill -9 the daemon (its workers notice their closed pipe and exit)."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=STOP_TIMEOUT)
        self.process = None

    def restart(self) -> Daemon:
        if self.process is not None:
            self.stop()
        return self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)
            self.process = None
        shutil.rmtree(self.socket_dir, ignore_errors=True)


D = TypeVar("D", bound=Daemon)


def serve(daemon: D) -> Iterator[D]:
    """For a fixture to ``yield from``: ``daemon`` (started), then a clean stop (exit
    code 0, else the test fails with its log) unless a test stopped or killed it, and
    its socket dir removed."""
    try:
        yield daemon
    finally:
        try:
            if daemon.process is not None:
                assert daemon.stop() == 0, daemon.log()
        finally:
            daemon.close()  # kills a daemon that did not stop, rather than orphan it


def write_private(path: Path, text: str, mode: int = 0o600) -> Path:
    """``path`` holding ``text`` with permissions ``mode``: by default its owner's
    only, as gcgated requires of a config or credential file holding a secret."""
    path.write_text(text)
    os.chmod(path, mode)
    return path


def script_function(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` defined again from its source in a fresh ``__main__`` namespace.

    As if written in a user's script: dill then pickles it by value, as it would
    a script's function (the daemon's workers cannot import the test modules).
    """
    source = textwrap.dedent(inspect.getsource(fn))
    source = "\n".join(line for line in source.splitlines() if not line.startswith("@"))
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(source, f"<script: {fn.__name__}>", "exec"), namespace)
    return namespace[fn.__name__]


class LoginlessDaemon(Daemon):
    """A daemon with no Globus login of its own (no service account), pointed at
    the Globus services that ``service_env`` names (the stand-in's)."""

    def __init__(self, state_dir: Path, service_env: dict[str, str]) -> None:
        super().__init__(state_dir)
        self._service_env = service_env

    @property
    def env(self) -> dict[str, str]:
        env = {**super().env, **self._service_env}
        for name in ("GLOBUS_COMPUTE_CLIENT_ID", "GLOBUS_COMPUTE_CLIENT_SECRET"):
            env.pop(name, None)
        return env


class ConfiguredDaemon(Daemon):
    """A daemon with ``settings`` in a ``0600`` TOML config file (the only place some
    settings may come from) and ``env`` added for the daemon and its clients."""

    def __init__(
        self,
        state_dir: Path,
        settings: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        *,
        workers: int = 2,
        log_level: str = "DEBUG",
    ) -> None:
        config = write_private(
            state_dir.parent / f"{state_dir.name}-gcgated.toml",
            "".join(f"{k} = {json.dumps(v)}\n" for k, v in (settings or {}).items()),
        )
        super().__init__(
            state_dir, workers=workers, extra_args=("--config", str(config)), log_level=log_level
        )
        self._extra_env = dict(env or {})

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, **self._extra_env}


class GlobusDaemon(ConfiguredDaemon):
    """A daemon whose environment points globus-sdk and gcgated at the stand-in
    (its URLs and service account), ``env`` added on top."""

    def __init__(
        self,
        state_dir: Path,
        standin: StandIn,
        settings: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(state_dir, settings, {**standin.env(), **(env or {})})


def wait_until(what: str, condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Return once ``condition()`` is true (checked every 20 ms), or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
