"""Endpoints: the local one and Globus's, resolved by id or alias."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from gcgate.constants import LOCAL_ENDPOINT_ID

from gcgated.backends.base import Backend
from gcgated.caller import Caller
from gcgated.routing import Router
from gcgated.validation import check_endpoint_role

#: One of a backend's endpoint operations: (endpoint id, caller) -> document.
EndpointOperation = Callable[[str, Caller], Awaitable[dict[str, Any]]]


class EndpointService:
    """Endpoint documents in the Compute service's shapes, whichever backend serves
    the endpoint; each answer is (canonical endpoint id, document)."""

    def __init__(self, router: Router) -> None:
        self._router = router

    async def _on_backend(
        self, endpoint_id: str, caller: Caller, operation: Callable[[Backend], EndpointOperation]
    ) -> tuple[str, dict[str, Any]]:
        endpoint_id, backend = self._router.resolve(endpoint_id)
        return endpoint_id, await operation(backend)(endpoint_id, caller)

    async def status(self, endpoint_id: str, caller: Caller) -> tuple[str, dict[str, Any]]:
        """Its status document as ``caller`` may see it."""
        return await self._on_backend(endpoint_id, caller, lambda b: b.endpoint_status)

    async def metadata(self, endpoint_id: str, caller: Caller) -> tuple[str, dict[str, Any]]:
        """Its metadata document as ``caller`` may see it."""
        return await self._on_backend(endpoint_id, caller, lambda b: b.endpoint_metadata)

    async def allowed_functions(
        self, endpoint_id: str, caller: Caller
    ) -> tuple[str, dict[str, Any]]:
        """The functions it allows: ``{"endpoint_id", "restricted", "functions"}``."""
        return await self._on_backend(endpoint_id, caller, lambda b: b.allowed_functions)

    async def stop(self, endpoint_id: str, caller: Caller) -> tuple[str, dict[str, Any]]:
        """Stop it (the service drops its connections); the service's answer."""
        return await self._on_backend(endpoint_id, caller, lambda b: b.stop_endpoint)

    async def delete(self, endpoint_id: str, caller: Caller) -> tuple[str, dict[str, Any]]:
        """Delete its registration; the service's answer."""
        return await self._on_backend(endpoint_id, caller, lambda b: b.delete_endpoint)

    async def list(self, role: str, caller: Caller) -> list[dict[str, Any]]:
        """The local endpoint first, then what Globus lists for ``caller`` and ``role``."""
        role = check_endpoint_role(role)
        documents = [await self._router.local.endpoint_metadata(LOCAL_ENDPOINT_ID, caller)]
        documents.extend(await self._router.remote.list_endpoints(role, caller))
        return documents
