"""Who a call acts as at Globus: the daemon's own login, or a client's own token.

A client that holds a Globus Compute access token (``Client(authorizer=...)``,
``Client(app=...)``) sends it as gRPC metadata ``authorization: Bearer <token>``
with every call. The servicer turns that metadata into a :class:`Caller` and
hands it, as an argument, to everything the call does at Globus: the
submission and the functions it registers, endpoint lookups, and the polls for
the tasks it created. Nothing reads it from ambient state, so a background
task (a submit lane, the result tracker) acts as exactly the caller it was
given.

The token lives in memory only; the store and the log know a caller only by
:attr:`Caller.key`, a fingerprint that cannot be turned back into the token.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Caller:
    """The daemon's login (``token`` None) or one client's access token."""

    token: str | None = field(default=None, repr=False)

    @property
    def key(self) -> str:
        """A stable name for this caller, safe to store and log: "" for the
        daemon's login, else the token's fingerprint (a truncated SHA-256)."""
        return fingerprint(self.token) if self.token else ""

    def __repr__(self) -> str:
        return f"Caller({self.key or 'daemon login'})"

    __str__ = __repr__

    @classmethod
    def from_metadata(cls, metadata: Iterable[tuple[str, str | bytes]] | None) -> Caller:
        """The caller a gRPC call's metadata names (its bearer token, if any)."""
        return cls(bearer_from(metadata))


#: Acting with the daemon's own login (every call without a token, and the
#: daemon's own work: resumed tasks, background submits).
DAEMON = Caller()


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
