"""A Globus host that cannot be reached, said the way a person can act on it.

globus-sdk wraps what requests, urllib3 and the socket layer raise in
``globus_sdk.NetworkError`` and nests the real cause several levels down (a
``socket.gaierror`` inside a ``NameResolutionError`` inside a
``MaxRetryError`` ...). This is the one place that digs the cause out and turns
it into UNAVAILABLE naming the host and what went wrong ("auth.globus.org:
name resolution failed"), so an expected outage is one clear message, never
INTERNAL with a traceback.
"""

from __future__ import annotations

import socket
import ssl
from urllib.parse import urlsplit

import globus_sdk
import requests
import urllib3

from gcgated.errors import ServiceUnavailable

#: What these are: the request never got an answer (no connection, or none in time).
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    globus_sdk.NetworkError,
    requests.ConnectionError,
    requests.Timeout,
    socket.gaierror,
    ConnectionRefusedError,
    ConnectionResetError,
)
#: What a person can do about an unreachable host.
HINT = "check this host's network connection, DNS and proxy settings, then retry"


def is_network_error(exc: BaseException) -> bool:
    """Whether ``exc`` says a Globus host could not be reached (see NETWORK_ERRORS)."""
    return isinstance(exc, NETWORK_ERRORS)


def chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps (args, ``reason``, causes), requests' and
    urllib3's nesting included."""
    seen: list[BaseException] = []
    todo: list[object] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        todo.extend(item.args)
        todo.extend((getattr(item, "reason", None), item.__cause__, item.__context__))
        if isinstance(item, globus_sdk.NetworkError):
            todo.append(item.underlying_exception)
    return seen


def failed_url(exc: BaseException) -> str:
    """The URL of the request that failed ('' if unknown)."""
    for item in chain(exc):
        request = getattr(item, "request", None)
        url = getattr(request, "url", "")
        if url:
            return str(url)
    return ""


def host_of(url: str) -> str:
    """``host:port`` of ``url`` (the scheme's port when it names none)."""
    parts = urlsplit(url)
    if not parts.hostname:
        return url
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def cause(exc: BaseException, timeout: float | None = None) -> str:
    """What went wrong, in words: "name resolution failed", "connection refused",
    "timed out after 10 s", ... (the exception's class name when none fits)."""
    items = chain(exc)
    after = f" after {timeout:g} s" if timeout else ""
    kinds: list[tuple[tuple[type[BaseException], ...], str]] = [
        ((socket.gaierror, urllib3.exceptions.NameResolutionError), "name resolution failed"),
        ((ConnectionRefusedError,), "connection refused"),
        ((ConnectionResetError,), "connection reset by the host"),
        (
            (requests.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError),
            f"connecting timed out{after}",
        ),
        (
            (requests.ReadTimeout, urllib3.exceptions.ReadTimeoutError, TimeoutError),
            f"connected, but no answer came: timed out{after}",
        ),
        ((ssl.SSLError, requests.exceptions.SSLError), "TLS handshake failed"),
        (
            (urllib3.exceptions.ProtocolError,),
            "the connection was closed before an answer came",
        ),
    ]
    for classes, words in kinds:
        if any(isinstance(item, classes) for item in items):
            return words
    if isinstance(exc, globus_sdk.GlobusTimeoutError):
        return f"timed out{after}"
    inner = exc.underlying_exception if isinstance(exc, globus_sdk.NetworkError) else exc
    return type(inner).__name__


def unreachable(
    exc: BaseException,
    what: str,
    *,
    service: str = "Globus",
    url: str = "",
    timeout: float | None = None,
    tried_for: float | None = None,
) -> ServiceUnavailable:
    """UNAVAILABLE for ``what`` (the operation, as the client asked for it):
    ``service`` at ``host:port`` (the failed request's, else ``url``'s) and why.
    A failed name lookup names the host alone: no port was involved."""
    words = cause(exc, timeout)
    where = host_of(failed_url(exc) or url) or "its host"
    if words == "name resolution failed":
        where = where.rsplit(":", 1)[0]
    tried = f" (tried for {tried_for:.0f} s)" if tried_for and tried_for >= 1 else ""
    return ServiceUnavailable(f"{what}: cannot reach {service} at {where}: {words}{tried}; {HINT}")
