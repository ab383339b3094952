"""A small routed HTTP/1.1 server for one stand-in service, in a background thread.

Real sockets on 127.0.0.1 with an ephemeral port, keep-alive like the real
services (globus-sdk pools connections through ``requests``), and the two
cross-cutting concerns of the stand-in applied to every request before the
service sees it: the request log (:mod:`standin.stats`) and fault injection
(:mod:`standin.faults`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import struct
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from standin.faults import Fault, FaultSet
from standin.stats import RequestRecord, Stats

#: How long an idle keep-alive connection may wait for its next request.
IDLE_TIMEOUT = 120.0


class HTTPError(Exception):
    """Raised by handlers: answered with the service's error document."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any  # http.client.HTTPMessage (case-insensitive)
    body: bytes
    params: dict[str, str] = field(default_factory=dict)
    record: RequestRecord | None = None
    #: What the service's authentication step attached (e.g. the token record).
    auth: Any = None

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    @property
    def bearer_token(self) -> str | None:
        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        return value.strip() or None if scheme.lower() == "bearer" else None

    @property
    def basic_credentials(self) -> tuple[str, str] | None:
        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except ValueError:
            return None
        return user, password

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError as e:
            raise HTTPError(400, "BAD_REQUEST", f"Request body is not valid JSON: {e}") from None

    def form(self) -> dict[str, str]:
        parsed = parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v[0] for k, v in parsed.items()}


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return cls(
            status,
            json.dumps(obj).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )

    @classmethod
    def html(cls, text: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return cls(status, text.encode(), {"Content-Type": "text/html", **(headers or {})})


Handler = Callable[[Request], Response]


@dataclass
class Route:
    method: str
    template: str
    handler: Handler
    pattern: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.template)
        self.pattern = re.compile(f"^{regex}$")

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"


class Service:
    """Base of the Compute and Auth stand-ins: routes plus hooks."""

    name = "service"

    def routes(self) -> list[Route]:
        raise NotImplementedError

    def identify(self, request: Request) -> tuple[str | None, str | None]:
        """``(identity_id, client_id)`` of the caller, for the request log only."""
        return None, None

    def preflight(self, request: Request) -> Response | None:
        """A chance to answer before processing (rate limiting); ``None`` goes on."""
        return None

    def error_response(self, err: HTTPError) -> Response:
        doc = {"code": err.code, "message": err.message, **err.extra}
        return Response.json(doc, err.status, err.headers)

    def not_found(self, request: Request) -> Response:
        return Response.json({"detail": "Not Found"}, 404)

    def method_not_allowed(self, request: Request) -> Response:
        return Response.json({"detail": "Method Not Allowed"}, 405)


_REASONS = {429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway"}
_REASONS |= {503: "Service Unavailable", 504: "Gateway Timeout"}


def fault_response(service: Service, fault: Fault) -> Response:
    """The answer an injected ``status`` fault gives."""
    status = fault.status
    assert status is not None
    headers: dict[str, str] = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = f"{fault.retry_after:g}"
    body = fault.body
    if isinstance(body, dict):
        return Response.json(body, status, headers)
    if isinstance(body, (str, bytes)):
        raw = body.encode() if isinstance(body, str) else body
        return Response(status, raw, {"Content-Type": "text/plain", **headers})
    reason = _REASONS.get(status, "Error")
    if status in (502, 503, 504):
        # What a load balancer in front of the service answers: HTML, not JSON.
        page = (
            f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
            f"<center><h1>{status} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
        )
        return Response.html(page, status, headers)
    code = "TOO_MANY_REQUESTS" if status == 429 else reason.upper().replace(" ", "_")
    err = HTTPError(status, code, f"Injected fault: {status} {reason}", headers=headers)
    err.extra["request_id"] = str(uuid.uuid4())
    return service.error_response(err)


class _Dropped(Exception):
    """The connection was closed on purpose; nothing more to send."""


class ServiceServer:
    """Serves one :class:`Service` on ``127.0.0.1:<ephemeral>`` until :meth:`stop`."""

    def __init__(self, service: Service, faults: FaultSet, stats: Stats) -> None:
        self.service = service
        self.faults = faults
        self.stats = stats
        self._routes = service.routes()
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._port = 0
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._port, "not started"
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceServer:
        """Listen (again on the same port, after :meth:`stop`)."""
        handler = self._handler_class()
        httpd = ThreadingHTTPServer(("127.0.0.1", self._port), handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False
        self._httpd = httpd
        self._port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"standin-{self.service.name}",
            daemon=True,
        )
        self._thread.start()
        return self

    @property
    def listening(self) -> bool:
        return self._httpd is not None

    def stop(self) -> None:
        """Close the port and every open connection: clients get "connection refused"."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._conn_lock:
            conns = list(self._connections)
        for conn in conns:  # idle keep-alive connections would otherwise linger
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._httpd = None

    # ----------------------------------------------------------------- dispatching

    def _route(self, request: Request) -> Route | bool | None:
        """The matching route; ``False`` when the path exists for another method."""
        path_known = False
        for route in self._routes:
            m = route.pattern.match(request.path)
            if not m:
                continue
            if route.method == request.method:
                request.params = m.groupdict()
                return route
            path_known = True
        return False if path_known else None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "standin"
            sys_version = ""
            timeout = IDLE_TIMEOUT

            def setup(self) -> None:
                super().setup()
                with server._conn_lock:
                    server._connections.add(self.connection)

            def finish(self) -> None:
                with contextlib.suppress(OSError):
                    super().finish()
                with server._conn_lock:
                    server._connections.discard(self.connection)

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _read_body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline().strip():
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _send(self, response: Response) -> None:
                self.send_response(response.status)
                headers = {"Content-Type": "application/json", **response.headers}
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(response.body)

            def _drop(self, reset: bool) -> None:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    if reset:  # linger 0: close() sends RST, not FIN
                        linger = struct.pack("ii", 1, 0)
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                        self.connection.close()
                    else:
                        self.connection.shutdown(socket.SHUT_RDWR)
                raise _Dropped

            def _handle(self) -> None:
                try:
                    self._handle_inner()
                except _Dropped:
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    # The client gave up first (its timeout ran out): as a server does,
                    # drop the answer quietly.
                    self.close_connection = True

            def _handle_inner(self) -> None:
                split = urlsplit(self.path)
                body = self._read_body()
                request = Request(
                    method=self.command,
                    path=split.path,
                    query=parse_qs(split.query, keep_blank_values=True),
                    headers=self.headers,
                    body=body,
                )
                svc = server.service
                token = request.bearer_token
                identity, client_id = svc.identify(request)
                route = server._route(request)
                record = server.stats.add(
                    RequestRecord(
                        t=time.time(),
                        service=svc.name,
                        method=request.method,
                        path=request.path,
                        route=route.name if isinstance(route, Route) else None,
                        token=token,
                        identity=identity,
                        client_id=client_id,
                        body_bytes=len(body),
                    )
                )
                request.record = record

                faults = server.faults.take(svc.name, request.method, request.path, token)
                for fault in faults:
                    if fault.delay:
                        time.sleep(fault.delay)
                final = faults[-1] if faults else None
                if final is not None and final.drop == "before":
                    record.outcome, record.status = "drop", None
                    self._drop(final.reset)
                if final is not None and final.status is not None:
                    response = fault_response(svc, final)
                    record.outcome, record.status = "status", response.status
                    self._send(response)
                    return

                response = svc.preflight(request)
                if response is not None:
                    record.outcome = "rate_limited"
                elif route is None:
                    response = svc.not_found(request)
                elif route is False:
                    response = svc.method_not_allowed(request)
                else:
                    try:
                        response = route.handler(request)
                    except HTTPError as err:
                        response = svc.error_response(err)
                    except Exception as exc:  # a stand-in bug: say so loudly
                        traceback.print_exc(file=sys.stderr)
                        err = HTTPError(500, "INTERNAL_ERROR", f"stand-in bug: {exc!r}")
                        response = svc.error_response(err)

                if final is not None and final.drop == "after":
                    record.outcome, record.status = "drop", None
                    self._drop(final.reset)
                record.status = response.status
                self._send(response)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

        return _Handler
