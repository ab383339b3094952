"""Domain errors of the daemon core; the gRPC layer maps each to one status code.

The core raises these with messages written for the person at the client, so the
servicer passes the message through unchanged.
"""

from __future__ import annotations


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
