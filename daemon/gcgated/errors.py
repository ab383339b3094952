"""Domain errors of the daemon core; the gRPC layer maps each to one status code.

The core raises these with messages written for the person at the client, so the
servicer passes the message through unchanged.
"""

from __future__ import annotations

import errno
import sqlite3


class GatewayError(Exception):
    """Base class: a request the daemon refuses, with a message a person can act on."""

    #: Name of the grpc.StatusCode the servicer answers with.
    code = "INTERNAL"


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
