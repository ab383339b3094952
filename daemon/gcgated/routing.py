"""Which backend serves an endpoint id.

The local endpoint has a fixed UUID (and the alias ``local``); every other UUID
belongs to Globus Compute, served by the Globus backend once one is configured.
"""

from __future__ import annotations

from gcgate.constants import LOCAL_ENDPOINT_ALIAS, LOCAL_ENDPOINT_ID

from gcgated.backends.base import Backend
from gcgated.errors import NotFound
from gcgated.validation import parse_uuid


class Router:
    """Resolves endpoint ids (and aliases) to backends."""

    def __init__(self, local: Backend, remote: Backend | None = None):
        self.local = local
        self.remote = remote

    @property
    def backends(self) -> list[Backend]:
        return [b for b in (self.local, self.remote) if b is not None]

    def resolve(self, endpoint_id: str) -> tuple[str, Backend]:
        """The canonical endpoint id and its backend, or NOT_FOUND/INVALID_ARGUMENT."""
        if endpoint_id == LOCAL_ENDPOINT_ALIAS:
            return LOCAL_ENDPOINT_ID, self.local
        canonical = parse_uuid(endpoint_id, "endpoint_id")
        if canonical == LOCAL_ENDPOINT_ID:
            return canonical, self.local
        if self.remote is None:
            raise NotFound(
                f"endpoint {canonical} is not known to this daemon: it serves the local"
                f" endpoint ({LOCAL_ENDPOINT_ID}, alias {LOCAL_ENDPOINT_ALIAS!r}) and has"
                " no Globus Compute backend configured"
            )
        return canonical, self.remote
