"""Functions: register, read and delete them."""

from __future__ import annotations

from typing import Any

from gcgated.backends.globus import GlobusBackend
from gcgated.caller import Caller
from gcgated.core import TaskLifecycle
from gcgated.model import FunctionRecord, Registration

#: Bounds on ListFunctions, so one call cannot read every registration.
DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT = 100, 10_000


class FunctionService:
    """Registrations live in the daemon's store (content-addressed ids); a function
    is registered with Globus lazily, per identity, by the Globus backend."""

    def __init__(self, core: TaskLifecycle, remote: GlobusBackend) -> None:
        self._core = core
        self._remote = remote

    def register(self, registration: Registration) -> tuple[str, bool]:
        """(function id, whether this call created the record, or revived a deleted
        one)."""
        return self._core.register_function(registration)

    def get(self, function_id: str) -> FunctionRecord:
        """The registration record; NOT_FOUND when this daemon never saw it, or it
        was deleted."""
        return FunctionRecord.from_stored(self._core.get_function(function_id))

    def list(self, limit: int, name: str, *, deleted: bool) -> list[FunctionRecord]:
        """Newest registration first, at most ``limit`` (0: the default; capped at
        MAX_LIST_LIMIT), those named ``name`` ("": any); deleted ones only with
        ``deleted``."""
        limit = min(limit or DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)
        records = self._core.functions(limit, name, deleted=deleted)
        return [FunctionRecord.from_stored(r) for r in records]

    async def delete(self, function_id: str, caller: Caller) -> tuple[bool, dict[str, Any]]:
        """Delete a function: ``caller``'s Globus registration of it, if any, then
        here, so it runs nowhere any more (as after the SDK's delete_function).
        Returns (whether Globus had one and deleted it, the service's answer).

        NOT_FOUND for a function unknown or already deleted (the service's 404).
        If Globus refuses, the function is not deleted here either: try again.
        """
        function_id = self.get(function_id).function_id
        deleted, answer = await self._remote.delete_function(function_id, caller)
        self._core.delete_function(function_id)
        return deleted, answer
