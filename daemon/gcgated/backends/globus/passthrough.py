"""Tokens that clients pass through (``Client(authorizer=...)``, ``Client(app=...)``).

A client that holds its own Globus Compute access token sends it as gRPC
metadata (``authorization: Bearer <token>``) with every call. The servicer puts
it in :data:`CLIENT_TOKEN` for the duration of the call; the Globus backend then
acts with that token instead of the daemon's login: submissions, registrations
and endpoint lookups of that call, and the polls for the tasks it created.

The token lives in memory only (this context variable and the tracker's map of
task -> token); the store keeps only a fingerprint, to recognise after a
restart which tasks belong to a client's token.
"""

from __future__ import annotations

import contextvars
import hashlib
from collections.abc import Iterable

#: The bearer token of the client whose call is being served, if it sent one.
CLIENT_TOKEN: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "gcgate_client_token", default=None
)


def bearer_from(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The token of an ``authorization: Bearer ...`` metadata entry, if any."""
    for key, value in metadata or ():
        if key.lower() != "authorization" or not isinstance(value, str):
            continue
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


def fingerprint(token: str) -> str:
    """A stable, non-reversible name for a token (safe to store and log)."""
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:24]
