"""Endpoints: the local one and Globus's, resolved by id or alias."""

from __future__ import annotations

from typing import Any

from gcgate.constants import LOCAL_ENDPOINT_ID

from gcgated.caller import Caller
from gcgated.routing import Router
from gcgated.validation import check_endpoint_role


class EndpointService:
    """Endpoint documents in the Compute service's shapes, whichever backend serves
    the endpoint."""

    def __init__(self, router: Router) -> None:
        self._router = router

    async def status(self, endpoint_id: str, caller: Caller) -> tuple[str, dict[str, Any]]:
        """(canonical endpoint id, its status document as ``caller`` may see it)."""
        endpoint_id, backend = self._router.resolve(endpoint_id)
        return endpoint_id, await backend.endpoint_status(endpoint_id, caller)

    async def metadata(self, endpoint_id: str, caller: Caller) -> tuple[str, dict[str, Any]]:
        """(canonical endpoint id, its metadata document as ``caller`` may see it)."""
        endpoint_id, backend = self._router.resolve(endpoint_id)
        return endpoint_id, await backend.endpoint_metadata(endpoint_id, caller)

    async def list(self, role: str, caller: Caller) -> list[dict[str, Any]]:
        """The local endpoint first, then what Globus lists for ``caller`` and ``role``."""
        role = check_endpoint_role(role)
        documents = [await self._router.local.endpoint_metadata(LOCAL_ENDPOINT_ID, caller)]
        documents.extend(await self._router.remote.list_endpoints(role, caller))
        return documents
