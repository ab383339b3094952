"""The gRPC connection to the daemon, and the translation of gRPC failures.

Every RPC the client makes goes through :class:`Connection`, so there is exactly
one place that decides what a ``grpc.RpcError`` means to a person: "the daemon is
not running, start it like this", "you may not use this socket", or the daemon's
own refusal as a :class:`~gcgate.errors.GatewayError` subclass.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc

from gcgate import errors
from gcgate._diagnose import not_a_socket, not_answering, not_grpc
from gcgate.constants import (
    MAX_MESSAGE_BYTES,
    MAX_SUBMISSION_BYTES,
    SOCKET_ENV,
    UPSTREAM_UNAVAILABLE_METADATA,
)
from gcgate.v1 import gateway_pb2_grpc as pb_grpc

_Resp = TypeVar("_Resp")

#: Why gRPC could not connect: the socket took the connection, nothing answered.
NO_ANSWER = "the socket accepted the connection but nothing answered"
#: Why gRPC could not connect: an HTTP/1 server answered (metrics_listen's, another).
NOT_GRPC = "the server listening there does not speak gRPC"
#: How to get a daemon running, appended to every "cannot reach the daemon" message.
START_HINT = f"start it with `gcgated` (or `gcgated --socket PATH`), or set {SOCKET_ENV}"
#: The longest path a Unix socket address holds (sun_path, less its final NUL).
MAX_SOCKET_PATH_BYTES = 107

_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # gRPC's reconnect backoff is tuned for remote servers (up to 120 s). A local
    # daemon that restarts is back within a second or two, and a long backoff would
    # make a client fail fast with UNAVAILABLE long after the daemon is up again.
    # (Not grpc.min_reconnect_backoff_ms: that is also the connect timeout, and a
    # busy daemon must get more than a few milliseconds to answer a connection.)
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def _connect_failure(details: str, socket_path: Path) -> str | None:
    """Why gRPC could not connect, for a person; None if the connection was made.

    gRPC reports every transport failure as UNAVAILABLE and tells them apart only
    in the details text, so this is the one place that text is read. The daemon's
    own UNAVAILABLE (stopping; Globus cannot be reached: "... connection refused")
    is not one: gRPC's texts say "failed to connect" and name the socket.
    """
    if "failed to connect" not in details and f"unix:{socket_path}" not in details:
        return None
    if "Permission denied" in details:
        return "permission"
    if "timed out" in details:
        return NO_ANSWER
    if "Failed parsing HTTP/2" in details or "http1.x server" in details:
        return NOT_GRPC
    if "failed to connect" in details or "No such file" in details or "refused" in details:
        return "no such socket" if not socket_path.exists() else "nobody is listening"
    return None


def _from_upstream(err: grpc.RpcError) -> bool:
    """Whether the daemon answered UNAVAILABLE for Globus, not for itself."""
    trailing = err.trailing_metadata() if isinstance(err, grpc.Call) else None
    return any(key == UPSTREAM_UNAVAILABLE_METADATA for key, _ in trailing or ())


def unavailable_error(socket_path: Path, reason: str) -> errors.DaemonUnavailable:
    """A :class:`DaemonUnavailable` naming the socket and how to start the daemon."""
    return errors.DaemonUnavailable(
        f"cannot reach the gcgate daemon at {socket_path}: {reason}; {START_HINT}"
    )


def connect_error(socket_path: Path, reason: str) -> errors.DaemonUnavailable:
    """The :class:`DaemonUnavailable` for a failed connection, once the path was
    looked at: not a socket, or a socket another kind of server listens on (fix
    the path), a daemon that accepted and did not answer (stopped or wedged: no
    use starting another), else ``reason`` with how to start the daemon."""
    wrong_path = not_a_socket(socket_path)
    if wrong_path is None and reason == NOT_GRPC:
        wrong_path = not_grpc(socket_path)
    if wrong_path is not None:
        return errors.DaemonUnavailable(f"cannot reach the gcgate daemon: {wrong_path}")
    if reason == NO_ANSWER:
        return not_answering_error(socket_path, None)
    return unavailable_error(socket_path, reason)


def not_answering_error(socket_path: Path, waited: float | None) -> errors.DaemonUnavailable:
    """A :class:`DaemonUnavailable` for a daemon that took the connection and did
    not answer (within ``waited`` seconds, if known): its pid and how to check it."""
    return errors.DaemonUnavailable(not_answering(socket_path, waited))


def translate(err: grpc.RpcError, socket_path: Path) -> errors.GcgateError:
    """Turn a failed RPC into the gcgate exception a caller should see.

    - cannot connect (no socket, nobody listening): :class:`DaemonUnavailable`
      with the socket path and how to start the daemon;
    - the socket exists but this user may not connect: :class:`DaemonUnavailable`
      explaining the permission problem (it is not the daemon refusing, so it is
      not a :class:`~gcgate.errors.PermissionDenied`);
    - anything else: the :class:`~gcgate.errors.GatewayError` subclass for the
      status code, carrying the daemon's message unchanged.
    """
    code: grpc.StatusCode | None = err.code() if isinstance(err, grpc.Call) else None
    details = (err.details() if isinstance(err, grpc.Call) else None) or str(err)
    if code is grpc.StatusCode.UNAVAILABLE:
        reason = _connect_failure(details, socket_path)
        if reason == "permission":
            return errors.DaemonUnavailable(
                f"permission denied connecting to the gcgate daemon socket {socket_path}:"
                " your user may not open it. Ask whoever runs the daemon to add you to"
                f" the socket's group, or run your own daemon: {START_HINT}"
            )
        if reason is not None:
            return connect_error(socket_path, reason)
        if _from_upstream(err):
            return errors.ServiceUnavailable(details)
        # The connection was made and then lost, or the daemon said it is stopping.
        return errors.Unavailable(f"{details} (daemon socket {socket_path})")
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED and (too_big := _too_large_to_send(details)):
        return errors.ResourceExhausted(too_big)
    if code is None:
        return errors.GatewayError(details)
    return errors.error_for(code.name, details)


#: gRPC's text when a request is over the channel's send limit; the request never left.
_SEND_LIMIT = re.compile(r"^CLIENT: Sent message larger than max \((\d+) vs\. (\d+)\)")


def _too_large_to_send(details: str) -> str | None:
    """What to do about a request over the message limit (a batch of big
    arguments, a function closing over big data), instead of gRPC's bare
    "CLIENT: Sent message larger than max (81055102 vs. 67108864)"; None for
    any other RESOURCE_EXHAUSTED (the daemon's store is full, its answer too big)."""
    match = _SEND_LIMIT.match(details)
    if match is None:
        return None
    size, limit = (int(n) for n in match.groups())
    return (
        f"this request to the gcgate daemon is {size / 1e6:.1f} MB, over the"
        f" {limit / 2**20:g} MiB ({limit:,} bytes) one call can carry, so it was not"
        " sent. Submit a large batch in smaller ones (Globus Compute takes at most"
        f" {MAX_SUBMISSION_BYTES / 1e6:g} MB per submission anyway; an Executor splits"
        " its own), and pass large data by reference (e.g. a file path the task"
        f" reads) rather than as arguments or in a function's closure. ({details})"
    )


class _CallDetails(grpc.ClientCallDetails):  # type: ignore[misc]
    def __init__(self, details: grpc.ClientCallDetails, metadata: list[tuple[str, str]]) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = details.wait_for_ready
        self.compression = details.compression


class _MetadataInterceptor(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
):
    """Adds ``metadata()`` (computed per call, e.g. a fresh access token) to every call."""

    def __init__(self, metadata: Callable[[], list[tuple[str, str]]]) -> None:
        self._metadata = metadata

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _CallDetails(details, [*(details.metadata or ()), *self._metadata()])

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)


class Connection:
    """One channel to the daemon plus the stub; every call translates its errors.

    ``metadata``, when given, is called for every call and its entries are sent
    with it (the client's own Globus token, for ``Client(authorizer=...)``).
    """

    def __init__(
        self,
        socket_path: str | os.PathLike[str],
        metadata: Callable[[], list[tuple[str, str]]] | None = None,
    ) -> None:
        self.socket_path = Path(socket_path)
        size = len(os.fsencode(self.socket_path))
        if size > MAX_SOCKET_PATH_BYTES:
            # gRPC would print its own error lines on stderr and fail with UNKNOWN.
            raise errors.DaemonUnavailable(
                f"cannot reach the gcgate daemon at {self.socket_path}: the path is {size}"
                f" bytes, longer than the {MAX_SOCKET_PATH_BYTES} a Unix socket address"
                " holds, so no daemon can listen there; give a shorter path"
                f" (`gcgated` logs its socket when it starts), or unset {SOCKET_ENV}"
                " to use the default"
            )
        self._channel = grpc.insecure_channel(f"unix:{self.socket_path}", options=_CHANNEL_OPTIONS)
        channel: grpc.Channel = self._channel
        if metadata is not None:
            channel = grpc.intercept_channel(channel, _MetadataInterceptor(metadata))
        self.stub = pb_grpc.GatewayStub(channel)
        self._closed = False

    def closed_error(self) -> errors.GcgateError | None:
        """The error for using this connection after :meth:`close`; None while open."""
        if not self._closed:
            return None
        return errors.GcgateError(
            f"this gcgate client is closed (daemon socket {self.socket_path})"
        )

    def call(
        self,
        method: Callable[..., _Resp],
        request: Any,
        *,
        timeout: float | None = None,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> _Resp:
        """Invoke a unary RPC of :attr:`stub`, raising gcgate errors instead of grpc's;
        ``metadata`` goes with this call only."""
        if closed := self.closed_error():
            raise closed
        try:
            return method(request, timeout=timeout, metadata=tuple(metadata) or None)
        except grpc.RpcError as err:
            raise self.closed_error() or translate(err, self.socket_path) from None

    def stream(
        self,
        method: Callable[..., Iterator[_Resp]],
        request: Any,
        *,
        timeout: float | None = None,
    ) -> Iterator[_Resp]:
        """Iterate a server-streaming RPC of :attr:`stub`, translating its errors.

        Closing the returned generator (or dropping it) cancels the call, so a
        consumer that stops early does not leave the daemon streaming into the void.
        """
        if closed := self.closed_error():
            raise closed
        call = method(request, timeout=timeout)
        try:
            yield from call
        except grpc.RpcError as err:
            raise self.closed_error() or translate(err, self.socket_path) from None
        finally:
            call.cancel()

    def close(self) -> None:
        """Close the channel; calls in flight and later calls fail with a clear error."""
        self._closed = True
        self._channel.close()
