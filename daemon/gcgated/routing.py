"""Which backend serves an endpoint id.

The local endpoint has a fixed UUID (and the alias ``local``); every other UUID
belongs to Globus Compute, served by the Globus backend (logged in or not).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gcgate.constants import ENDPOINT_ID_HINT, LOCAL_ENDPOINT_ALIAS, LOCAL_ENDPOINT_ID

from gcgated.backends.base import Backend

if TYPE_CHECKING:
    from gcgated.backends.globus import GlobusBackend
from gcgated.errors import InvalidArgument
from gcgated.validation import parse_uuid, shown


class Router:
    """Resolves endpoint ids (and aliases) to backends."""

    def __init__(self, local: Backend, remote: GlobusBackend):
        self.local = local
        self.remote = remote

    @property
    def backends(self) -> list[Backend]:
        return [self.local, self.remote]

    def name_of(self, endpoint_id: str) -> str:
        """The name of the backend of a stored task's (canonical) endpoint id."""
        return self.local.name if endpoint_id == LOCAL_ENDPOINT_ID else self.remote.name

    def resolve(self, endpoint_id: str) -> tuple[str, Backend]:
        """The canonical endpoint id and its backend, or INVALID_ARGUMENT."""
        if endpoint_id == LOCAL_ENDPOINT_ALIAS:
            return LOCAL_ENDPOINT_ID, self.local
        if endpoint_id.strip().lower() == LOCAL_ENDPOINT_ALIAS:
            raise InvalidArgument(
                f"endpoint_id: {shown(endpoint_id)} is not a UUID; the alias of the daemon's"
                f" own local endpoint is {LOCAL_ENDPOINT_ALIAS!r}, in lower case"
            )
        canonical = parse_uuid(endpoint_id, "endpoint_id", ENDPOINT_ID_HINT)
        if canonical == LOCAL_ENDPOINT_ID:
            return canonical, self.local
        return canonical, self.remote

    def backend_of(self, canonical_id: str) -> Backend:
        """The backend of an endpoint id already resolved (a stored task's); never raises."""
        return self.local if canonical_id == LOCAL_ENDPOINT_ID else self.remote
