"""One submit request, and what it needs: function registration, body, sizes.

The :mod:`.pipeline` decides what goes into a request and when; this module
makes the request. Functions are registered with Globus lazily, on their first
submission per Globus identity (``POST /v3/functions`` with the SDK's body, the
code passed through untouched); the assigned id is kept in the backend's table
of the store (``FUNCTIONS_TABLE``), so the registration is never sent again.
The request body is the SDK's ``Batch.prepare()``; payloads are packed by their
JSON-encoded size.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from gcgated.caller import Caller
from gcgated.errors import NotFound
from gcgated.model import SubmitOptions
from gcgated.store import Table

from .http import ComputeAPI, Slot

log = logging.getLogger(__name__)

#: The store table of registrations: ``<identity>/<local function id>`` ->
#: ``{"globus_function_id", "registered_at"}``.
FUNCTIONS_TABLE = "globus_functions"


def registration_body(function: dict[str, Any]) -> dict[str, Any]:
    """The SDK's ``FunctionRegistrationData.to_dict()`` for a stored function."""
    meta = {k: v for k, v in (function.get("meta") or {}).items() if v}
    body: dict[str, Any] = {
        "function_name": function["function_name"],
        "function_code": function["function_code"],
        "serialized": function["serialized"],
        "meta": meta or None,
    }
    if function.get("description"):
        body["description"] = function["description"]
    if function.get("public"):
        body["public"] = True
    if function.get("group"):
        body["group"] = function["group"]
    return body


class FunctionRegistry:
    """Local function id -> Globus function id, per identity, registering on demand."""

    def __init__(self, table: Table, api: ComputeAPI, identity: Callable[[Caller], str]) -> None:
        self.table = table
        self.api = api
        #: The Globus identity a caller registers as (a client token's by fingerprint).
        self.identity = identity
        self._pending: dict[tuple[str, str], asyncio.Future[str]] = {}
        self.registered = 0

    async def globus_id(
        self, caller: Caller, function: dict[str, Any], slot: Slot | None = None
    ) -> str:
        """The function's Globus id for ``caller``, registered as ``caller`` if new."""
        identity = self.identity(caller)
        local_id = function["function_id"]
        known = self.known(identity, local_id)
        if known is not None:
            return known
        key = (identity, local_id)
        if key in self._pending:  # someone is registering it right now
            return await asyncio.shield(self._pending[key])
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            answer = await self.api.call(
                f"registering function {function['function_name']!r} ({local_id})",
                lambda _v2, v3: v3.register_function(registration_body(function)),
                slot=slot,
                token=caller.token,
            )
            globus_id = str(answer["function_uuid"])
            self.table.set(
                f"{identity}/{local_id}",
                {"globus_function_id": globus_id, "registered_at": time.time()},
            )
            self.registered += 1
            log.info("registered function %s with Globus Compute as %s", local_id, globus_id)
            future.set_result(globus_id)
            return globus_id
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters (if any) re-raise it themselves
            raise
        finally:
            del self._pending[key]

    def known(self, identity: str, function_id: str) -> str | None:
        """The Globus function id registered for ``function_id`` as ``identity``."""
        entry = self.table.get(f"{identity}/{function_id}")
        return None if entry is None else str(entry["globus_function_id"])

    def forget(self, identity: str, function_id: str) -> None:
        """The service no longer honours ``identity``'s registration of a function."""
        self.table.delete(f"{identity}/{function_id}")


#: Bytes of a submit body that are not task payloads (keys, ids, user_runtime, ...).
BODY_OVERHEAD = 16 * 1024


def json_size(payload: str) -> int:
    """Bytes ``payload`` takes in the JSON body (escapes, quotes, separator)."""
    return len(json.dumps(payload)) + 2


def submit_body(
    tasks: dict[str, list[str]], options: SubmitOptions, create_queue: bool = True
) -> dict[str, Any]:
    """The SDK's ``Batch.prepare()`` body: payloads by Globus function id, and options.
    ``create_queue``: results of the task group are pushed to a queue (:mod:`.push`)."""
    body: dict[str, Any] = {"create_queue": create_queue, "tasks": tasks}
    if options.task_group_id:
        body["task_group_id"] = options.task_group_id
    if options.resource_specification:
        body["resource_specification"] = options.resource_specification
    if options.user_endpoint_config:
        body["user_endpoint_config"] = options.user_endpoint_config
    if options.user_runtime:
        body["user_runtime"] = options.user_runtime
    if options.result_serializers:
        body["result_serializers"] = list(options.result_serializers)
    return body


async def post_submit(
    registry: FunctionRegistry,
    caller: Caller,
    endpoint_id: str,
    work: Sequence[tuple[dict[str, Any], str]],
    options: SubmitOptions,
    slot: Slot | None,
    *,
    create_queue: bool = True,
) -> tuple[dict[str, Any], dict[str, str]]:
    """One submit request of (function, payload) pairs as ``caller``, registering
    the functions new to it; the service's answer and each local function's Globus id.

    The answer lists task ids per Globus function in the order of ``work``. A
    function the service no longer knows (deleted there, e.g. with the SDK) makes
    it refuse the whole request, so nothing ran: the stale ids are forgotten, the
    functions registered again and the request sent once more. The request itself
    is never resent (``resend=False``: see ``http.AnswerLost``).
    """
    try:
        return await _post_submit_once(
            registry, caller, endpoint_id, work, options, slot, create_queue
        )
    except NotFound as exc:
        if getattr(exc, "service_code", "") != "FUNCTION_NOT_FOUND":
            raise
    for function_id in {function["function_id"] for function, _ in work}:
        registry.forget(registry.identity(caller), function_id)
    log.info("Globus Compute no longer knows a registered function; registering again")
    return await _post_submit_once(registry, caller, endpoint_id, work, options, None, create_queue)


async def _post_submit_once(
    registry: FunctionRegistry,
    caller: Caller,
    endpoint_id: str,
    work: Sequence[tuple[dict[str, Any], str]],
    options: SubmitOptions,
    slot: Slot | None,
    create_queue: bool,
) -> tuple[dict[str, Any], dict[str, str]]:
    globus_ids: dict[str, str] = {}
    tasks: dict[str, list[str]] = {}
    for function, payload in work:
        local_id = function["function_id"]
        if local_id not in globus_ids:
            globus_ids[local_id] = await registry.globus_id(caller, function, slot)
        tasks.setdefault(globus_ids[local_id], []).append(payload)
    body = submit_body(tasks, options, create_queue)
    answer = await registry.api.call(
        f"submitting {len(work)} task(s) to endpoint {endpoint_id}",
        lambda _v2, v3: v3.submit(endpoint_id, body),
        slot=slot,
        resend=False,
        token=caller.token,
    )
    return answer, globus_ids
