"""The optional HTTP listener a Prometheus scraper reads: ``GET /metrics``.

Off by default (``metrics_listen``): GetMetrics and ``gcgate metrics`` serve the
same text over the daemon's socket. When set, it listens on a loopback address
(``127.0.0.1:9464``, ``[::1]:9464``, ``localhost:9464``) or a Unix socket
(``unix:/run/gcgate/metrics.sock``, created 0600 like the daemon's socket, 0660
for its ``group``). Never on another interface: the metrics name the host's
workload and the daemon has no TLS or authentication to offer; a remote
Prometheus reaches them through a proxy or agent of the admin's choosing.

It runs on the daemon's event loop (asyncio streams), which owns the state the
metrics read, and speaks just enough HTTP/1.1 for a scraper: one request per
connection, ``GET``/``HEAD /metrics``, 404 for other paths, 405 for other methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gcgated.errors import StartupError
from gcgated.timeouts import within

log = logging.getLogger(__name__)

#: Seconds a scraper may take to send its request line and headers.
REQUEST_TIMEOUT = 10.0
#: Largest request head read (a scraper sends a few hundred bytes).
REQUEST_LIMIT = 16 * 1024
METRICS_PATH = "/metrics"
UNIX_PREFIX = "unix:"


@dataclass(frozen=True)
class ListenAddress:
    """Where the listener serves: a loopback ``host``:``port``, or a Unix ``path``."""

    host: str = ""
    port: int = 0
    path: Path | None = None

    def __str__(self) -> str:
        if self.path is not None:
            return f"{UNIX_PREFIX}{self.path} (GET {METRICS_PATH})"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{METRICS_PATH}"


def parse_listen(text: str) -> ListenAddress:
    """``HOST:PORT`` on loopback or ``unix:/path``; ValueError saying what is accepted."""
    text = text.strip()
    if text.startswith(UNIX_PREFIX):
        path = Path(text[len(UNIX_PREFIX) :]).expanduser()
        if not path.is_absolute():
            raise ValueError(f"{text!r}: the Unix socket path must be absolute (unix:/path)")
        if len(str(path).encode()) > 107:
            raise ValueError(f"{text!r}: longer than the 107 bytes a Unix socket path allows")
        return ListenAddress(path=path)
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(
            f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9464, [::1]:9464, localhost:9464)"
            " or unix:/path"
        )
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(
                f"{text!r} is not a loopback address: the metrics listener serves this host"
                " only (127.0.0.1, [::1] or localhost, or unix:/path); expose it further"
                " through a proxy or agent with TLS and authentication"
            )
    return ListenAddress(host=host, port=int(port_text))


class MetricsListener:
    """Serves ``render()`` at ``/metrics`` until :meth:`close`."""

    def __init__(self, address: ListenAddress, render: Callable[[], str], content_type: str):
        self.address = address
        self._render = render
        self._content_type = content_type
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen, or StartupError naming ``metrics_listen`` and the reason."""
        try:
            if self.address.path is not None:
                _remove_stale(self.address.path)
                old_umask = os.umask(0o177)  # the socket file is created 0600
                try:
                    self._server = await asyncio.start_unix_server(
                        self._serve, str(self.address.path), limit=REQUEST_LIMIT
                    )
                finally:
                    os.umask(old_umask)
            else:
                self._server = await asyncio.start_server(
                    self._serve, self.address.host, self.address.port, limit=REQUEST_LIMIT
                )
        except OSError as exc:
            raise StartupError(
                f"metrics_listen: cannot listen on {self.address} ({self._why(exc)});"
                " choose another address or port, or leave metrics_listen unset"
            ) from None
        log.info("metrics served at %s", self.address)

    def _why(self, exc: OSError) -> str:
        """The reason in the system's words, without asyncio's "error while attempting
        to bind on address (...)" that repeats the address; for a port in use, how to
        find who holds it."""
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        if exc.errno == errno.EADDRINUSE and self.address.path is None:
            reason += (
                f": another process listens on port {self.address.port}"
                f" (`ss -ltnp 'sport = :{self.address.port}'` names it)"
            )
        return reason

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        await self._server.wait_closed()
        self._server = None
        if self.address.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.address.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await within(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            method, target, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            writer.write(self._answer(method, target.split("?", 1)[0]))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError):
            pass  # a client that sent no complete request gets no answer
        except ValueError:  # not even a request line
            writer.write(_response(400, "Bad Request", b"bad request\n"))
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _answer(self, method: str, path: str) -> bytes:
        if path != METRICS_PATH:
            return _response(404, "Not Found", f"only {METRICS_PATH} is served here\n".encode())
        if method not in ("GET", "HEAD"):
            return _response(405, "Method Not Allowed", b"GET or HEAD only\n", "Allow: GET, HEAD")
        body = self._render().encode()
        return _response(200, "OK", body, content_type=self._content_type, head=method == "HEAD")


def _response(
    status: int,
    reason: str,
    body: bytes,
    extra: str = "",
    *,
    content_type: str = "text/plain; charset=utf-8",
    head: bool = False,
) -> bytes:
    headers = [
        f"HTTP/1.1 {status} {reason}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *([extra] if extra else []),
    ]
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + (b"" if head else body)


def _remove_stale(path: Path) -> None:
    """Remove a socket file no process listens on; refuse to replace anything else."""
    if not path.exists():
        if not path.parent.is_dir():
            raise StartupError(
                f"metrics_listen: the directory of {path} does not exist; create it first"
            )
        return
    if not path.is_socket():
        raise StartupError(f"metrics_listen: {path} exists and is not a socket; not replacing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise StartupError(f"metrics_listen: cannot check {path}: {exc.strerror}") from None
        log.info("removing stale metrics socket %s", path)
        path.unlink()
    else:
        raise StartupError(
            f"metrics_listen: another process listens on {path}; stop it or choose another path"
        )
    finally:
        probe.close()
