"""Background submission of tasks the daemon accepted under its own ids.

A Run or BatchRun with the daemon's login is answered as soon as its tasks are
on disk (the store's records and a :mod:`.ledger` row each), with ids the
daemon made; the tasks then wait here, in a *lane* per what one submit request
must share (endpoint, task group at the service, resource specification, user
endpoint config, user runtime, result serializers). A lane's runner sends
whatever is queued in as few ``POST /v3/endpoints/{ep}/submit`` requests as the
published limits allow (``max_tasks`` tasks, ``max_bytes`` of body each):

- it gathers: it sends once no task arrived for the gather window
  (``window``), or the lane has gathered for :data:`MAX_GATHER` seconds or
  holds a full request. A lone task (or a client that waits for each result)
  goes out after the window; a stream of ``run()`` calls from many processes
  goes in a request per :data:`MAX_GATHER`, however fast it comes;
- it never sends sooner than ``share`` limiter intervals after the previous
  submit, so submits use at most ``1 / share`` of the rate budget (result
  polls, which the tracker holds to the same share, use the rest);
- tasks arriving while a submit is in flight wait for the next one;
- functions new to the service are registered first (once per identity).

Every task ends one way or another, never waits forever:

- answered: the service's task ids are written to the ledger, then the tracker
  polls them (and reports outcomes under the daemon's ids);
- unavailable (429, 5xx other than 504, service unreachable: the request
  certainly did not arrive) beyond the transport's ``retry_seconds`` of
  retries: nothing ran; the tasks go back to the head of the lane and are sent
  later (a queue, like tasks waiting at the service for an offline endpoint);
- refused (4xx such as an unknown endpoint or task group, the login refused,
  a registration refused): nothing ran; the tasks fail with the reason;
- answer lost (connection reset or timeout after sending, 504): the service
  may have accepted them, and a resend could run them twice, so they are not
  resent; they fail saying they may have run at the service (:data:`MAY_HAVE_RUN`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gcgated.backends.base import SubmitOptions
from gcgated.caller import DAEMON
from gcgated.errors import GatewayError, ServiceUnavailable

from .http import AnswerLost, ComputeAPI, Slot
from .ledger import Ledger
from .limiter import RateLimiter
from .submit import BODY_OVERHEAD, FunctionRegistry, json_size, post_submit

log = logging.getLogger(__name__)

#: Why a task failed whose submit request may have reached the service unanswered.
MAY_HAVE_RUN = (
    "gcgate sent this task to Globus Compute, and the answer never came ({why}). The"
    " service may have accepted and run it; gcgate does not send it again, since it"
    " could then run twice. Run it again only if it must run, knowing it may then run"
    " twice"
)
#: Why a task failed whose submit was interrupted by a stop of gcgated.
INTERRUPTED = (
    "gcgated stopped (killed, crashed or shut down) while sending this task to Globus"
    " Compute, before the service's answer was recorded. The service may have accepted"
    " and run it; gcgate does not send it again, since it could then run twice. Run it"
    " again only if it must run, knowing it may then run twice"
)
#: Seconds a lane gathers a stream of tasks before sending, at most: what a
#: task of a busy stream waits for its submit, beyond the rate limiter.
MAX_GATHER = 0.5
#: Seconds before sending again after the service was unavailable (the
#: transport already retried for ``retry_seconds`` before giving up).
RETRY_PAUSE = 5.0
#: Why a task failed that the service (or the way to it) refused.
REFUSED = "gcgate could not submit this task to Globus Compute; it did not run there: {why}"

#: Called with (daemon task id, service task id) pairs once the ledger has them.
OnSent = Callable[[list[tuple[str, str]]], None]
#: Called with task ids and why they failed.
OnFailed = Callable[[list[str], str], None]


@dataclass(frozen=True)
class Queued:
    """One accepted task waiting to be sent."""

    task_id: str
    #: The function's store record (registered with the service on demand).
    function: dict[str, Any]
    payload: str


@dataclass
class Lane:
    """Tasks that may share a submit request, and the runner sending them."""

    endpoint_id: str
    options: SubmitOptions
    items: list[Queued] = field(default_factory=list)
    runner: asyncio.Task[None] | None = None
    #: Tasks of the submit in flight (retried by the transport meanwhile).
    sending: int = 0
    #: Tasks ever queued in this lane (the gather watches it grow).
    arrivals: int = 0


def lane_doc(endpoint_id: str, options: SubmitOptions) -> dict[str, Any]:
    """What the ledger keeps of a lane for a task (JSON), so a restart can send it."""
    return {
        "endpoint_id": endpoint_id,
        "task_group_id": options.task_group_id,
        "resource_specification": options.resource_specification,
        "user_endpoint_config": options.user_endpoint_config,
        "user_runtime": options.user_runtime,
        "result_serializers": list(options.result_serializers),
    }


def _lane_options(doc: dict[str, Any]) -> SubmitOptions:
    return SubmitOptions(
        task_group_id=doc.get("task_group_id") or "",
        resource_specification=doc.get("resource_specification"),
        user_endpoint_config=doc.get("user_endpoint_config"),
        user_runtime=doc.get("user_runtime"),
        result_serializers=tuple(doc.get("result_serializers") or ()),
    )


class Submitter:
    """Sends queued tasks in few submit requests (see the module doc)."""

    def __init__(
        self,
        *,
        api: ComputeAPI,
        limiter: RateLimiter,
        registry: FunctionRegistry,
        ledger: Ledger,
        window: float,
        max_tasks: int,
        max_bytes: int,
        share: float = 2.0,
    ) -> None:
        self.api = api
        self.limiter = limiter
        self.registry = registry
        self.ledger = ledger
        self.window = window
        self.max_tasks = max_tasks
        self.max_bytes = max(max_bytes - BODY_OVERHEAD, 1)
        self.share = share
        #: Set by the backend before tasks are queued.
        self.on_sent: OnSent = lambda pairs: None
        self.on_failed: OnFailed = lambda ids, why: None
        self._lanes: dict[str, Lane] = {}
        self._next_send = 0.0
        self._closed = False
        self.requests = 0
        self.tasks_submitted = 0
        #: Submits sent whose answer was lost (their tasks failed, not resent).
        self.answers_lost = 0

    @property
    def waiting(self) -> int:
        """Tasks accepted and not yet taken by the service (queued or on their way)."""
        return sum(len(lane.items) + lane.sending for lane in self._lanes.values())

    def enqueue(self, doc: dict[str, Any], items: Sequence[Queued]) -> None:
        """Queue tasks of one lane (``doc``: :func:`lane_doc`) for sending."""
        if self._closed or not items:
            return  # still "queued" in the ledger: sent after the restart
        key = json.dumps(doc, sort_keys=True)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = Lane(doc["endpoint_id"], _lane_options(doc))
            lane.runner = asyncio.get_running_loop().create_task(self._run(key, lane))
        lane.items.extend(items)
        lane.arrivals += len(items)

    async def close(self, grace: float) -> None:
        """Stop sending: a submit in flight may finish within ``grace`` seconds
        (its answer recorded); queued tasks stay in the ledger for the restart."""
        self._closed = True
        runners = []
        for lane in self._lanes.values():
            if lane.runner is None:
                continue
            if not lane.sending:
                lane.runner.cancel()
            runners.append(lane.runner)
        if runners:
            _, late = await asyncio.wait(runners, timeout=grace)
            for runner in late:
                runner.cancel()
            for runner in runners:
                with contextlib.suppress(asyncio.CancelledError):
                    await runner
        self._lanes.clear()

    async def _run(self, key: str, lane: Lane) -> None:
        loop = asyncio.get_running_loop()
        try:
            while lane.items and not self._closed:
                await self._gather(lane)
                await asyncio.sleep(max(0.0, self._next_send - loop.time()))
                try:
                    await self._register(lane)
                except ServiceUnavailable as exc:
                    self._pause(exc, len(lane.items))
                    continue
                if not lane.items:
                    continue
                await self.limiter.acquire()
                slot = Slot()
                batch = self._take(lane)
                self._next_send = loop.time() + self.share * self.limiter.interval
                lane.sending = len(batch)
                try:
                    await self._send(lane, batch, slot)
                finally:
                    lane.sending = 0
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug: fail what is left rather than leave it waiting
            log.exception("submitting to Globus Compute failed unexpectedly")
            items, lane.items = lane.items, []
            self.on_failed(
                [i.task_id for i in items],
                REFUSED.format(why="an internal error in gcgated; its log has the details"),
            )
        finally:
            if self._lanes.get(key) is lane:
                del self._lanes[key]

    async def _gather(self, lane: Lane) -> None:
        """Wait while tasks keep arriving, up to MAX_GATHER or a full request."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + MAX_GATHER
        while True:
            seen = lane.arrivals
            await asyncio.sleep(self.window)
            if (
                lane.arrivals == seen
                or loop.time() >= deadline
                or len(lane.items) >= self.max_tasks
            ):
                return

    async def _register(self, lane: Lane) -> None:
        """Register functions new to the service; fail the tasks of those refused."""
        functions = {i.function["function_id"]: i.function for i in lane.items}
        for function_id, function in functions.items():
            try:
                await self.registry.globus_id(DAEMON, function)
            except ServiceUnavailable:
                raise
            except GatewayError as exc:
                mine = [i for i in lane.items if i.function["function_id"] == function_id]
                lane.items = [i for i in lane.items if i.function["function_id"] != function_id]
                why = f"registering function {function_id} failed: {exc}"
                self.on_failed([i.task_id for i in mine], REFUSED.format(why=why))

    def _pause(self, exc: ServiceUnavailable, count: int) -> None:
        """The service cannot be reached now: try again after ``RETRY_PAUSE``."""
        log.warning("%d task(s) wait to be submitted (retry in %.0fs): %s", count, RETRY_PAUSE, exc)
        loop = asyncio.get_running_loop()
        self._next_send = max(self._next_send, loop.time() + RETRY_PAUSE)

    def _take(self, lane: Lane) -> list[Queued]:
        """The first tasks of the lane that fit one request (at least one)."""
        count = size = 0
        for item in lane.items:
            item_size = json_size(item.payload)
            if count and (count >= self.max_tasks or size + item_size > self.max_bytes):
                break
            count += 1
            size += item_size
        batch, lane.items = lane.items[:count], lane.items[count:]
        return batch

    async def _send(self, lane: Lane, batch: list[Queued], slot: Slot) -> None:
        ids = [item.task_id for item in batch]
        self.ledger.sending(ids)
        try:
            answer, globus_ids = await self._submit(lane, batch, slot)
            pairs = _pair(answer, batch, globus_ids)
        except AnswerLost as exc:
            self.answers_lost += 1
            log.warning("%s", exc)
            self.on_failed(ids, MAY_HAVE_RUN.format(why=exc.kind))
            return
        except ServiceUnavailable as exc:  # it did not arrive: send it later
            lane.items[:0] = batch
            self.ledger.queued([(t, lane_doc(lane.endpoint_id, lane.options)) for t in ids])
            self._pause(exc, len(lane.items))
            return
        except GatewayError as exc:
            log.warning("submitting %d task(s): %s", len(ids), exc)
            self.on_failed(ids, REFUSED.format(why=exc))
            return
        self.ledger.sent(pairs)
        self.requests += 1
        self.tasks_submitted += len(pairs)
        log.debug("submitted %d task(s) to %s in one request", len(pairs), lane.endpoint_id)
        self.on_sent(pairs)

    async def _submit(
        self, lane: Lane, batch: list[Queued], slot: Slot
    ) -> tuple[dict[str, Any], dict[str, str]]:
        work = [(item.function, item.payload) for item in batch]
        return await post_submit(self.registry, DAEMON, lane.endpoint_id, work, lane.options, slot)


def _pair(
    answer: dict[str, Any], batch: list[Queued], globus_ids: dict[str, str]
) -> list[tuple[str, str]]:
    """(daemon id, service id) per task: the answer lists ids per function, in order."""
    by_function = {str(k): [str(t) for t in v] for k, v in (answer.get("tasks") or {}).items()}
    offsets: dict[str, int] = {}
    pairs = []
    for item in batch:
        globus_id = globus_ids[item.function["function_id"]]
        assigned = by_function.get(globus_id, [])
        at = offsets.get(globus_id, 0)
        if at >= len(assigned):
            raise AnswerLost(
                "Globus Compute answered the submission with fewer task ids than tasks"
                f" sent ({len(assigned)} for function {globus_id})",
                "an answer with ids missing",
            )
        pairs.append((item.task_id, assigned[at]))
        offsets[globus_id] = at + 1
    return pairs
