"""Coalesced submission before the answer: the path of a client's own token.

Tasks submitted with the daemon's login are answered with the daemon's ids and
sent in the background (:mod:`.submitter`). A client passing its own token
(:class:`gcgated.caller.Caller`) is answered with the service's ids instead, since its
token lives only in the call: the submit must be made before the answer. The
functions below (registration, the request body and its sending, packing sizes)
serve both.

Callers (Run and BatchRun RPCs of clients passing a token) that share an endpoint, task
group, resource specification, user endpoint config and result serializers
join one queue. A flusher per queue waits the coalescing window, then waits for
a slot from the rate limiter; everyone who arrived until the slot is granted
goes into the submission. Under load the limiter spaces requests out, so the
batches grow by themselves: the request count follows the rate budget, not the
number of calls.

A caller's own submission is never split (it is validated to be at most
10 MB), so it is accepted or refused as a whole: each caller is packed whole
into a request of at most ``max_tasks`` tasks and ``max_bytes`` of payload (a
caller larger than ``max_tasks`` gets a request of its own). Every caller gets
exactly one answer: its own task ids, or the error of the request it was in.

Functions are registered with Globus lazily, on their first submission per
Globus identity (``POST /v3/functions`` with the SDK's body, the code passed
through untouched); the assigned id is kept in the store, so the registration
is never sent again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from gcgated.backends.base import Accepted, SubmitGroup, SubmitOptions
from gcgated.caller import Caller
from gcgated.errors import GatewayError, NotFound, ServiceUnavailable
from gcgated.store import Store

from .http import AnswerLost, ComputeAPI, Slot
from .limiter import RateLimiter

log = logging.getLogger(__name__)


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

    def __init__(self, store: Store, api: ComputeAPI, identity: Callable[[Caller], str]) -> None:
        self.store = store
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
        known = self.store.get_globus_function(identity, local_id)
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
            self.store.put_globus_function(identity, local_id, globus_id)
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

    def forget(self, caller: Caller, function_id: str) -> None:
        """The service no longer knows ``caller``'s registration of a function."""
        self.store.forget_globus_function(self.identity(caller), function_id)


@dataclass
class Waiting:
    """One submission waiting for its ids."""

    groups: Sequence[SubmitGroup]
    options: SubmitOptions
    future: asyncio.Future[Accepted]
    tasks: int
    size: int


@dataclass
class Queue:
    caller: Caller
    endpoint_id: str
    options: SubmitOptions
    callers: list[Waiting] = field(default_factory=list)


#: Bytes of a submit body that are not task payloads (keys, ids, user_runtime, ...).
BODY_OVERHEAD = 16 * 1024


def json_size(payload: str) -> int:
    """Bytes ``payload`` takes in the JSON body (escapes, quotes, separator)."""
    return len(json.dumps(payload)) + 2


def submit_body(
    tasks: dict[str, list[str]], options: SubmitOptions, user_runtime: dict[str, Any] | None
) -> dict[str, Any]:
    """The SDK's ``Batch.prepare()`` body: payloads by Globus function id, and options."""
    body: dict[str, Any] = {"create_queue": False, "tasks": tasks}
    if options.task_group_id:
        body["task_group_id"] = options.task_group_id
    if options.resource_specification:
        body["resource_specification"] = options.resource_specification
    if options.user_endpoint_config:
        body["user_endpoint_config"] = options.user_endpoint_config
    if user_runtime:
        body["user_runtime"] = user_runtime
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
        return await _post_submit_once(registry, caller, endpoint_id, work, options, slot)
    except NotFound as exc:
        if getattr(exc, "service_code", "") != "FUNCTION_NOT_FOUND":
            raise
    for function_id in {function["function_id"] for function, _ in work}:
        registry.forget(caller, function_id)
    log.info("Globus Compute no longer knows a registered function; registering again")
    return await _post_submit_once(registry, caller, endpoint_id, work, options, None)


async def _post_submit_once(
    registry: FunctionRegistry,
    caller: Caller,
    endpoint_id: str,
    work: Sequence[tuple[dict[str, Any], str]],
    options: SubmitOptions,
    slot: Slot | None,
) -> tuple[dict[str, Any], dict[str, str]]:
    globus_ids: dict[str, str] = {}
    tasks: dict[str, list[str]] = {}
    for function, payload in work:
        local_id = function["function_id"]
        if local_id not in globus_ids:
            globus_ids[local_id] = await registry.globus_id(caller, function, slot)
        tasks.setdefault(globus_ids[local_id], []).append(payload)
    body = submit_body(tasks, options, options.user_runtime)
    answer = await registry.api.call(
        f"submitting {len(work)} task(s) to endpoint {endpoint_id}",
        lambda _v2, v3: v3.submit(endpoint_id, body),
        slot=slot,
        resend=False,
        token=caller.token,
    )
    return answer, globus_ids


def queue_key(caller: Caller, endpoint_id: str, options: SubmitOptions) -> tuple[str, ...]:
    """What callers must share to go into one submit request (the token they act
    with included: a client's own token never carries another client's tasks)."""
    return (
        caller.key,
        endpoint_id,
        options.task_group_id or "",
        json.dumps(options.resource_specification, sort_keys=True),
        json.dumps(options.user_endpoint_config, sort_keys=True),
        json.dumps(list(options.result_serializers)),
    )


class Coalescer:
    """Merges concurrent submissions into few submit requests."""

    def __init__(
        self,
        *,
        api: ComputeAPI,
        limiter: RateLimiter,
        registry: FunctionRegistry,
        window: float,
        max_tasks: int,
        max_bytes: int,
    ) -> None:
        self.api = api
        self.limiter = limiter
        self.registry = registry
        self.window = window
        self.max_tasks = max_tasks
        #: The service limits the request body, so payloads are packed by their
        #: JSON-encoded size with room for the rest of the body.
        self.max_bytes = max(max_bytes - BODY_OVERHEAD, 1)
        self._queues: dict[tuple[str, ...], Queue] = {}
        self._flushers: set[asyncio.Task[None]] = set()
        self.requests = 0
        self.tasks_submitted = 0
        #: Submits sent whose answer was lost (not resent: see http.AnswerLost).
        self.answers_lost = 0
        self._closed = False

    @property
    def waiting(self) -> int:
        return sum(len(q.callers) for q in self._queues.values())

    async def submit(
        self,
        caller: Caller,
        endpoint_id: str,
        groups: Sequence[SubmitGroup],
        options: SubmitOptions,
    ) -> Accepted:
        if self._closed:
            raise ServiceUnavailable("gcgated is shutting down; retry once it is back")
        loop = asyncio.get_running_loop()
        waiting = Waiting(
            groups=groups,
            options=options,
            future=loop.create_future(),
            tasks=sum(len(g.payloads) for g in groups),
            size=sum(json_size(p) for g in groups for p in g.payloads),
        )
        key = queue_key(caller, endpoint_id, options)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = Queue(caller, endpoint_id, options)
            task = loop.create_task(self._flush(key, queue))
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        queue.callers.append(waiting)
        # The request goes out whether or not this caller is still there to hear
        # the answer; shielding keeps a cancelled RPC from cancelling the others.
        return await asyncio.shield(waiting.future)

    async def _flush(self, key: tuple[str, ...], queue: Queue) -> None:
        try:
            await asyncio.sleep(self.window)
            # Functions new to Globus are registered first (each registration
            # takes its own slot), so the submit's slot is taken only when the
            # submit can go out at once: a slot held while waiting is wasted.
            await self._register(queue)
            await self.limiter.acquire()
        except BaseException as exc:
            self._queues.pop(key, None)
            _fail(queue.callers, exc)
            raise
        # From here on, arrivals start a new queue (and wait for the next slot).
        self._queues.pop(key, None)
        slot = Slot()
        requests = self._pack(queue.callers)
        await asyncio.gather(
            *(self._send(queue, callers, slot) for callers in requests),
            return_exceptions=True,
        )

    async def _register(self, queue: Queue) -> None:
        functions = {g.function["function_id"]: g.function for c in queue.callers for g in c.groups}
        for function in functions.values():
            await self.registry.globus_id(queue.caller, function)

    def _pack(self, callers: list[Waiting]) -> list[list[Waiting]]:
        """First-fit in arrival order; a caller is never split."""
        requests: list[list[Waiting]] = []
        current: list[Waiting] = []
        tasks = size = 0
        for caller in callers:
            if current and (
                tasks + caller.tasks > self.max_tasks or size + caller.size > self.max_bytes
            ):
                requests.append(current)
                current, tasks, size = [], 0, 0
            current.append(caller)
            tasks += caller.tasks
            size += caller.size
        if current:
            requests.append(current)
        return requests

    async def _send(self, queue: Queue, callers: list[Waiting], slot: Slot) -> None:
        try:
            accepted = await self._submit(queue, callers, slot)
        except BaseException as exc:
            _fail(callers, exc)
            if not isinstance(exc, Exception):
                raise
            return
        for caller, answer in zip(callers, accepted, strict=True):
            if not caller.future.done():
                caller.future.set_result(answer)

    async def _submit(self, queue: Queue, callers: list[Waiting], slot: Slot) -> list[Accepted]:
        # One runtime for the request: the callers share everything else (queue_key).
        runtime = next((c.options.user_runtime for c in callers if c.options.user_runtime), None)
        work = [
            (group.function, payload)
            for caller in callers
            for group in caller.groups
            for payload in group.payloads
        ]
        try:
            answer, globus_ids = await post_submit(
                self.registry,
                queue.caller,
                queue.endpoint_id,
                work,
                replace(queue.options, user_runtime=runtime),
                slot,
            )
        except AnswerLost as exc:
            self.answers_lost += 1
            log.warning("%s", exc)
            raise AnswerLost(
                f"{exc}. Globus Compute may have accepted and run these task(s); gcgated"
                " stored nothing for this call. Resubmit only if they must run, knowing"
                " they may then run twice",
                exc.kind,
            ) from None
        self.requests += 1
        self.tasks_submitted += len(work)
        log.debug(
            "submitted %d task(s) of %d caller(s) to %s in one request",
            len(work),
            len(callers),
            queue.endpoint_id,
        )
        return _split_answer(answer, callers, globus_ids)

    def close(self) -> None:
        self._closed = True
        for task in self._flushers:
            task.cancel()
        for queue in self._queues.values():
            _fail(queue.callers, ServiceUnavailable("gcgated is shutting down"))
        self._queues.clear()


def _split_answer(
    answer: dict[str, Any], callers: list[Waiting], globus_ids: dict[str, str]
) -> list[Accepted]:
    """Each caller's task ids, in its own order, from the merged answer."""
    by_function = {str(k): list(v) for k, v in (answer.get("tasks") or {}).items()}
    offsets = dict.fromkeys(by_function, 0)
    request_id = str(answer.get("request_id") or "")
    task_group_id = str(answer.get("task_group_id") or "")
    results = []
    for caller in callers:
        ids: list[list[str]] = []
        for group in caller.groups:
            globus_id = globus_ids[group.function["function_id"]]
            assigned = by_function.get(globus_id, [])
            start = offsets.get(globus_id, 0)
            chunk = assigned[start : start + len(group.payloads)]
            if len(chunk) != len(group.payloads):
                raise ServiceUnavailable(
                    "Globus Compute answered the submission with fewer task ids than tasks"
                    f" sent ({len(assigned)} for function {globus_id}); nothing is known"
                    " about the missing tasks"
                )
            offsets[globus_id] = start + len(group.payloads)
            ids.append([str(t) for t in chunk])
        results.append(
            Accepted(
                request_id=request_id,
                task_group_id=task_group_id or caller.options.task_group_id,
                task_ids=ids,
            )
        )
    return results


def _fail(callers: list[Waiting], exc: BaseException) -> None:
    if not isinstance(exc, GatewayError):
        if isinstance(exc, asyncio.CancelledError):
            exc = ServiceUnavailable("gcgated is shutting down; retry once it is back")
        else:
            log.error("submission failed unexpectedly", exc_info=exc)
            exc = ServiceUnavailable(
                f"submission to Globus Compute failed: {type(exc).__name__}; the daemon log"
                " has the details"
            )
    for caller in callers:
        if not caller.future.done():
            caller.future.set_exception(exc)
            caller.future.exception()  # marked retrieved: the caller may be gone
