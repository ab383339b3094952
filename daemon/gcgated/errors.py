"""Domain errors of the daemon core; the gRPC layer maps each to one status code.

The core raises these with messages written for the person at the client, so the
servicer passes the message through unchanged.
"""

from __future__ import annotations

import errno
import sqlite3

#: Budget for a message on the wire. gRPC sends it percent-encoded (3 bytes for each
#: byte that is not printable ASCII) in a trailer that clients drop whole beyond
#: 8 KiB, answering RESOURCE_EXHAUSTED "metadata size exceeds soft limit" instead.
MAX_MESSAGE_WIRE_BYTES = 6000


class GatewayError(Exception):
    """Base class: a request the daemon refuses, with a message a person can act on."""

    #: Name of the grpc.StatusCode the servicer answers with.
    code = "INTERNAL"

    def __str__(self) -> str:
        """The message, cut to fit a gRPC trailer (it may quote a client's input)."""
        return fit_trailer(super().__str__())


def fit_trailer(text: str) -> str:
    """``text``, or its start with a note, within MAX_MESSAGE_WIRE_BYTES encoded."""
    size = 0
    for i, char in enumerate(text):
        size += 1 if " " <= char <= "~" and char != "%" else 3 * len(char.encode(errors="replace"))
        if size > MAX_MESSAGE_WIRE_BYTES:
            return f"{text[:i]}... (message cut: too long)"
    return text


class InvalidArgument(GatewayError):
    code = "INVALID_ARGUMENT"


class NotFound(GatewayError):
    code = "NOT_FOUND"


class StoreFull(GatewayError):
    code = "RESOURCE_EXHAUSTED"


class ShuttingDown(GatewayError):
    code = "UNAVAILABLE"


class StartupError(Exception):
    """The daemon cannot start (lock held, unsafe socket dir, bad config)."""


class Unauthenticated(GatewayError):
    """The daemon has no valid Globus login (or the service refused it)."""

    code = "UNAUTHENTICATED"


class PermissionDenied(GatewayError):
    """Logged in, but Globus does not allow this identity to do it."""

    code = "PERMISSION_DENIED"


class ServiceUnavailable(GatewayError):
    """Globus Compute did not answer usefully, even after retries (429/5xx/network)."""

    code = "UNAVAILABLE"


class FailedPrecondition(GatewayError):
    """The request is valid but the daemon is not in a state to serve it."""

    code = "FAILED_PRECONDITION"


def is_disk_full(exc: BaseException) -> bool:
    """A store write failed for want of room: SQLite's SQLITE_FULL ("database or
    disk is full") or ENOSPC/EDQUOT from a file write. The client can act on
    that (RESOURCE_EXHAUSTED), unlike an internal error."""
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
        return code == sqlite3.SQLITE_FULL if code is not None else "is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
