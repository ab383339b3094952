"""The one submit pipeline: every Globus task goes out through here.

Tasks wait in a *lane* per who submits (:class:`~gcgated.caller.Caller`: the
daemon's login, or one client's token, so a token never carries another's
tasks) and per what one submit request must share (endpoint, task group at the
service, resource specification, user endpoint config, user runtime, result
serializers). A lane holds *units*:

- a task the daemon accepted under its own id (the daemon's login: answered
  as soon as it was on disk, with a :mod:`.ledger` row) is a unit of its own,
  queued with :meth:`Pipeline.enqueue` once the core stored it; a submission
  of many such tasks may be split across requests;
- a submission whose caller waits for the service's ids (a client passing its
  own token, which lives only in the call: :meth:`Pipeline.submit`) is one
  unit, packed whole into one request, and gets exactly one answer: its task
  ids, or the error of its request.

A lane's runner sends what is queued in as few ``POST /v3/endpoints/{ep}/submit``
requests as the published limits allow (``max_tasks`` tasks, ``max_bytes`` of
body each):

- it gathers: it sends once nothing arrived for the gather window
  (``window``), or the lane has gathered for :data:`MAX_GATHER` seconds or
  holds a full request. A lone task (or a client that waits for each result)
  goes out after the window; a stream of ``run()`` calls from many processes
  goes in a request per :data:`MAX_GATHER`, however fast it comes;
- it never sends sooner than ``share`` limiter intervals after the previous
  submit, so submits use at most ``1 / share`` of the rate budget (result
  polls, which the tracker holds to the same share, use the rest);
- units arriving while a submit is in flight wait for the next one;
- functions new to the service are registered first (once per identity), so
  the submit's slot is taken only when it can go out at once;
- every submit asks the service for a result queue (``"create_queue": true``),
  and one without a task group of the client's joins the caller's home task
  group (:mod:`.groups`): the results of all its tasks come through one queue.

Every unit ends one way or another, never waits forever:

- answered: the daemon's tasks get their service ids (and task group) written
  to the ledger, then the backend tracks them (``on_sent``); a waiting caller
  gets its ids;
- unavailable (429, 5xx other than 504, service unreachable: the request
  certainly did not arrive) beyond the transport's ``retry_seconds`` of
  retries: nothing ran; the daemon's tasks go back to the head of the lane and
  are sent after :data:`RETRY_PAUSE` (a queue, like tasks waiting at the
  service for an offline endpoint); a waiting caller gets UNAVAILABLE;
- refused (4xx such as an unknown endpoint or task group, the login or token
  refused, a registration refused): nothing ran; the tasks fail with the reason
  (``on_failed``), a waiting caller gets the error;
- answer lost (connection reset or timeout after sending, 504): the service
  may have accepted them, and a resend could run them twice, so they are never
  resent: the daemon's tasks fail saying they may have run (:data:`MAY_HAVE_RUN`),
  a waiting caller gets DEADLINE_EXCEEDED saying the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from itertools import repeat
from typing import Any

from gcgated.backends.base import Accepted, SubmitGroup
from gcgated.caller import DAEMON, Caller
from gcgated.errors import GatewayError, NotFound, ServiceUnavailable
from gcgated.model import SubmitOptions

from .groups import HomeGroups
from .http import AnswerLost, Slot
from .ledger import QUEUED, SENDING, Ledger
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
#: Why a task failed that the service (or the way to it) refused.
REFUSED = "gcgate could not submit this task to Globus Compute; it did not run there: {why}"
#: What a waiting caller hears when its submit's answer was lost.
LOST_FOR_CALLER = (
    "{lost}. Globus Compute may have accepted and run these task(s); gcgated stored"
    " nothing for this call. Resubmit only if they must run, knowing they may then"
    " run twice"
)
#: Why everything queued failed when the pipeline itself broke (a bug).
INTERNAL = "an internal error in gcgated; its log has the details"
#: Seconds a lane gathers a stream of tasks before sending, at most: what a
#: task of a busy stream waits for its submit, beyond the rate limiter.
MAX_GATHER = 0.5
#: Seconds before sending again after the service was unavailable (the
#: transport already retried for ``retry_seconds`` before giving up).
RETRY_PAUSE = 5.0

#: Called with (daemon task id, service task id, service task group id) of the
#: daemon's own tasks once the ledger has them.
OnSent = Callable[[list[tuple[str, str, str]]], None]
#: Called with daemon task ids and why they failed.
OnFailed = Callable[[list[str], str], None]


@dataclass(frozen=True)
class Queued:
    """One task waiting to be sent."""

    #: The daemon's id; "" in a waiting caller's unit (its id will be the service's).
    task_id: str
    #: The function's store record (registered with the service on demand).
    function: dict[str, Any]
    payload: str


@dataclass(frozen=True)
class Sent:
    """What the service answered for one waiting caller's unit."""

    request_id: str
    task_group_id: str
    #: The service's task ids, in the order of the unit's tasks.
    task_ids: list[str]


@dataclass
class Unit:
    """Tasks that go into one request together, and who hears the answer."""

    tasks: list[Queued]
    #: The waiting caller's, for its answer; None for the daemon's own tasks,
    #: whose answer goes to the ledger and ``on_sent``.
    future: asyncio.Future[Sent] | None = None
    #: Bytes of their payloads in the request body (JSON-encoded).
    size: int = 0

    @property
    def task_ids(self) -> list[str]:
        """The daemon's ids of its tasks (none for a waiting caller's unit)."""
        return [t.task_id for t in self.tasks] if self.future is None else []


@dataclass
class Lane:
    """Units that may share a submit request, and the runner sending them."""

    caller: Caller
    endpoint_id: str
    options: SubmitOptions
    units: list[Unit] = field(default_factory=list)
    runner: asyncio.Task[None] | None = None
    #: Tasks of the submit in flight (retried by the transport meanwhile).
    sending: int = 0
    #: Tasks ever queued in this lane (the gather watches it grow).
    arrivals: int = 0

    @property
    def queued(self) -> int:
        return sum(len(unit.tasks) for unit in self.units)


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


def lane_key(caller: Caller, doc: dict[str, Any]) -> tuple[str, str]:
    """What units must share to go into one submit request: who sends it, and
    the lane's document (JSON with sorted keys: equal options, equal key)."""
    return caller.key, json.dumps(doc, sort_keys=True)


def _lane_options(doc: dict[str, Any]) -> SubmitOptions:
    return SubmitOptions(
        task_group_id=doc.get("task_group_id") or "",
        resource_specification=doc.get("resource_specification"),
        user_endpoint_config=doc.get("user_endpoint_config"),
        user_runtime=doc.get("user_runtime"),
        result_serializers=tuple(doc.get("result_serializers") or ()),
    )


class Pipeline:
    """Sends every Globus task in few submit requests (see the module doc)."""

    def __init__(
        self,
        *,
        limiter: RateLimiter,
        registry: FunctionRegistry,
        ledger: Ledger,
        window: float,
        max_tasks: int,
        max_bytes: int,
        share: float = 2.0,
        create_queue: bool = True,
    ) -> None:
        self.limiter = limiter
        #: Whether submits ask for a result queue (results pushed, see :mod:`.push`).
        self.create_queue = create_queue
        self.registry = registry
        self.ledger = ledger
        self.window = window
        self.max_tasks = max_tasks
        #: The service limits the request body, so payloads are packed by their
        #: JSON-encoded size with room for the rest of the body.
        self.max_bytes = max(max_bytes - BODY_OVERHEAD, 1)
        self.share = share
        self.homes = HomeGroups(ledger, registry.identity)
        #: Set by the backend before tasks are queued.
        self.on_sent: OnSent = lambda sent: None
        self.on_failed: OnFailed = lambda ids, why: None
        self._lanes: dict[tuple[str, str], Lane] = {}
        self._next_send = 0.0
        self._closed = False
        self.requests = 0
        self.tasks_submitted = 0
        #: Submits sent whose answer was lost (their tasks failed, not resent).
        self.answers_lost = 0
        #: Why tasks wait in a lane after a submit that could not reach the
        #: service; cleared by the next submit that does. Kept here because
        #: other requests (polls, URL fetches) may succeed meanwhile.
        self.held_error = ""
        #: Unix time tasks started to be held (None while none is).
        self.held_since: float | None = None
        #: The daemon's own tasks in a submit request on its way.
        self._in_request: set[str] = set()

    def sending(self, caller_key: str) -> bool:
        """Whether a submit of this caller's is on its way (its task ids not known yet)."""
        return any(lane.sending and lane.caller.key == caller_key for lane in self._lanes.values())

    @property
    def waiting(self) -> int:
        """Tasks accepted and not yet taken by the service (queued or on their way)."""
        return sum(lane.queued + lane.sending for lane in self._lanes.values())

    def states(self, task_ids: Collection[str]) -> dict[str, str]:
        """Which of the daemon's ``task_ids`` the pipeline holds: QUEUED in a lane,
        or SENDING in a request on its way (one pass over the lanes, none when
        nothing waits)."""
        wanted = set(task_ids)
        found = dict.fromkeys(self._in_request & wanted, SENDING)
        if not self.waiting:
            return found
        for lane in self._lanes.values():
            for unit in lane.units:
                found.update((t, QUEUED) for t in unit.task_ids if t in wanted)
        return found

    def enqueue(self, doc: dict[str, Any], tasks: Sequence[Queued]) -> None:
        """Queue tasks the daemon accepted under its own ids, with its own login,
        for one lane (``doc``: :func:`lane_doc`); each may go in any request."""
        if self._closed:
            return  # still "queued" in the ledger: sent after the restart
        units = [Unit([task], size=json_size(task.payload)) for task in tasks]
        if units:
            self._add(DAEMON, doc, units)

    def withdraw(self, task_ids: set[str]) -> set[str]:
        """Take the daemon's own tasks among ``task_ids`` out of the lanes if no
        request holds them yet (they are cancelled); returns the ids taken out."""
        taken: set[str] = set()
        for lane in self._lanes.values():
            kept = []
            for unit in lane.units:
                if unit.future is None and task_ids.issuperset(unit.task_ids):
                    taken.update(unit.task_ids)
                else:
                    kept.append(unit)
            lane.units = kept
        return taken

    async def submit(
        self,
        caller: Caller,
        endpoint_id: str,
        groups: Sequence[SubmitGroup],
        options: SubmitOptions,
    ) -> Accepted:
        """Submit as ``caller`` and wait for the service's ids: the submission is
        one unit, in one request, accepted or refused whole."""
        if self._closed:
            raise ServiceUnavailable("gcgated is shutting down; retry once it is back")
        tasks = [Queued("", g.function, p) for g in groups for p in g.payloads]
        future: asyncio.Future[Sent] = asyncio.get_running_loop().create_future()
        unit = Unit(tasks, future, sum(json_size(t.payload) for t in tasks))
        self._add(caller, lane_doc(endpoint_id, options), [unit])
        # The request goes out whether or not this caller is still there to hear
        # the answer; shielding keeps a cancelled RPC from cancelling the others.
        sent = await asyncio.shield(future)
        ids = iter(sent.task_ids)
        return Accepted(
            request_id=sent.request_id,
            task_group_id=sent.task_group_id or options.task_group_id,
            # A function of the submission with no tasks gets an empty list.
            task_ids=[[next(ids) for _ in group.payloads] for group in groups],
        )

    def _add(self, caller: Caller, doc: dict[str, Any], units: list[Unit]) -> None:
        key = lane_key(caller, doc)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = Lane(caller, doc["endpoint_id"], _lane_options(doc))
            lane.runner = asyncio.get_running_loop().create_task(self._run(key, lane))
        lane.units.extend(units)
        lane.arrivals += sum(len(unit.tasks) for unit in units)

    async def close(self, grace: float) -> None:
        """Stop sending: a submit in flight may finish within ``grace`` seconds
        (its answer recorded); the daemon's queued tasks stay in the ledger for
        the restart, waiting callers are told to retry."""
        self._closed = True
        lanes = list(self._lanes.values())
        runners = []
        for lane in lanes:
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
        stopping = ServiceUnavailable("gcgated is shutting down; retry once it is back")
        for lane in lanes:
            self._fail([u for u in lane.units if u.future is not None], stopping, "")
        self._lanes.clear()

    async def _run(self, key: tuple[str, str], lane: Lane) -> None:
        loop = asyncio.get_running_loop()
        try:
            while lane.units and not self._closed:
                await self._gather(lane)
                await asyncio.sleep(max(0.0, self._next_send - loop.time()))
                try:
                    await self._register(lane)
                except ServiceUnavailable as exc:
                    self._unavailable(lane, [], exc)
                    continue
                if not lane.units:
                    continue
                await self.limiter.acquire()
                slot = Slot()
                batch = self._take(lane)
                self._next_send = loop.time() + self.share * self.limiter.interval
                lane.sending = sum(len(unit.tasks) for unit in batch)
                try:
                    await self._send(lane, batch, slot)
                finally:
                    lane.sending = 0
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug: fail what is left rather than leave it waiting
            log.exception("submitting to Globus Compute failed unexpectedly")
            units, lane.units = lane.units, []
            self._fail(units, _internal_error(), REFUSED.format(why=INTERNAL))
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
            if lane.arrivals == seen or loop.time() >= deadline or lane.queued >= self.max_tasks:
                return

    async def _register(self, lane: Lane) -> None:
        """Register functions new to the service as the lane's caller; the units
        holding a function whose registration was refused fail. Raises
        ServiceUnavailable when the service cannot be reached."""
        functions = {t.function["function_id"]: t.function for u in lane.units for t in u.tasks}
        for function_id, function in functions.items():
            try:
                await self.registry.globus_id(lane.caller, function)
            except ServiceUnavailable:
                raise
            except GatewayError as exc:
                mine = [u for u in lane.units if _holds(u, function_id)]
                lane.units = [u for u in lane.units if not _holds(u, function_id)]
                why = f"registering function {function_id} failed: {exc}"
                self._fail(mine, exc, REFUSED.format(why=why))

    def _unavailable(self, lane: Lane, batch: list[Unit], exc: ServiceUnavailable) -> None:
        """The service cannot be reached now: waiting callers hear it; the
        daemon's tasks (``batch``'s back at the head of the lane) wait
        ``RETRY_PAUSE`` and go again."""
        waiting = [u for u in lane.units if u.future is not None]
        waiting += [u for u in batch if u.future is not None]
        lane.units = [u for u in batch + lane.units if u.future is None]
        self._fail(waiting, exc, "")
        requeued = [t for u in batch for t in u.task_ids]
        if requeued:
            doc = lane_doc(lane.endpoint_id, lane.options)
            self.ledger.queued([(task_id, doc) for task_id in requeued])
        if lane.units:
            self.held_error = str(exc)
            if self.held_since is None:
                self.held_since = time.time()
            log.warning(
                "%d task(s) wait to be submitted (retry in %.0fs): %s",
                lane.queued,
                RETRY_PAUSE,
                exc,
            )
            loop = asyncio.get_running_loop()
            self._next_send = max(self._next_send, loop.time() + RETRY_PAUSE)

    def _take(self, lane: Lane) -> list[Unit]:
        """The first units of the lane that fit one request (at least one: a
        unit larger than a request goes alone)."""
        count = tasks = size = 0
        for unit in lane.units:
            if count and (
                tasks + len(unit.tasks) > self.max_tasks or size + unit.size > self.max_bytes
            ):
                break
            count += 1
            tasks += len(unit.tasks)
            size += unit.size
        batch, lane.units = lane.units[:count], lane.units[count:]
        return batch

    async def _send(self, lane: Lane, batch: list[Unit], slot: Slot) -> None:
        own = [task_id for unit in batch for task_id in unit.task_ids]
        tasks = [task for unit in batch for task in unit.tasks]
        if own:
            self.ledger.sending(own)
        log.debug("submitting %d task(s) to %s in one request", len(tasks), lane.endpoint_id)
        self._in_request.update(own)
        try:
            answer, globus_ids = await self._post(lane, tasks, slot)
            service_ids = _pair(answer, tasks, globus_ids)
        except AnswerLost as exc:
            self.answers_lost += 1
            log.warning("%s", exc)
            lost = AnswerLost(LOST_FOR_CALLER.format(lost=exc), exc.kind)
            self._fail(batch, lost, MAY_HAVE_RUN.format(why=exc.kind))
            return
        except ServiceUnavailable as exc:  # it did not arrive
            self._unavailable(lane, batch, exc)
            return
        except GatewayError as exc:
            log.warning("submitting %d task(s): %s", len(tasks), exc)
            self._fail(batch, exc, REFUSED.format(why=exc))
            return
        except asyncio.CancelledError:  # stopping while the request was on its way
            self._fail(batch, _interrupted(), INTERRUPTED)
            raise
        except Exception:  # a bug; the request may have gone out
            log.exception("submitting to Globus Compute failed unexpectedly")
            self._fail(batch, _internal_error(), MAY_HAVE_RUN.format(why=INTERNAL))
            return
        finally:
            self._in_request.difference_update(own)
        self.requests += 1
        self.tasks_submitted += len(tasks)
        self.held_error = ""
        self.held_since = None
        log.debug("Globus Compute accepted %d task(s) for %s", len(tasks), lane.endpoint_id)
        self._answer(batch, answer, service_ids, home=not lane.options.task_group_id)

    async def _post(
        self, lane: Lane, tasks: list[Queued], slot: Slot
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """One submit request of ``tasks``, to the client's task group or else the
        caller's home group; a home group the service forgot is replaced once."""
        given = lane.options.task_group_id
        home = "" if given else self.homes.get(lane.caller)
        options = replace(lane.options, task_group_id=given or home)
        work = [(task.function, task.payload) for task in tasks]

        async def send(
            options: SubmitOptions, slot: Slot | None
        ) -> tuple[dict[str, Any], dict[str, str]]:
            return await post_submit(
                self.registry,
                lane.caller,
                lane.endpoint_id,
                work,
                options,
                slot,
                create_queue=self.create_queue,
            )

        try:
            answer, globus_ids = await send(options, slot)
        except NotFound as exc:
            if not home or getattr(exc, "service_code", "") != "TASK_GROUP_NOT_FOUND":
                raise
            # Refused whole, so nothing ran: send it once more, for a new home.
            log.info("Globus Compute no longer knows task group %s; submitting without it", home)
            self.homes.forget(lane.caller, home)
            answer, globus_ids = await send(replace(options, task_group_id=""), None)
        group = str(answer.get("task_group_id") or "")
        if not given and group:
            self.homes.keep(lane.caller, group)
        return answer, globus_ids

    def _answer(
        self, batch: list[Unit], answer: dict[str, Any], service_ids: list[str], home: bool
    ) -> None:
        """Hand each unit its share of the service's ids (in the order sent). The
        daemon's tasks are tracked with their service task group only if it is the
        caller's home group (``home``): a group the client named may have other
        consumers (an SDK Executor), whose results the daemon must not take."""
        request_id = str(answer.get("request_id") or "")
        group = str(answer.get("task_group_id") or "")
        followed = group if home else ""
        ids = iter(service_ids)
        sent = []
        for unit in batch:
            mine = [next(ids) for _ in unit.tasks]
            if unit.future is None:
                sent.extend(zip(unit.task_ids, mine, repeat(followed)))
            elif not unit.future.done():
                unit.future.set_result(Sent(request_id, group, mine))
        if sent:
            self.ledger.sent(sent)
            self.on_sent(sent)

    def _fail(self, units: Sequence[Unit], error: GatewayError, why: str) -> None:
        """Waiting callers get ``error``; the daemon's tasks fail saying ``why``."""
        own = []
        for unit in units:
            if unit.future is None:
                own.extend(unit.task_ids)
            elif not unit.future.done():
                unit.future.set_exception(error)
                unit.future.exception()  # marked retrieved: the caller may be gone
        if own:
            self.on_failed(own, why)


def _holds(unit: Unit, function_id: str) -> bool:
    return any(task.function["function_id"] == function_id for task in unit.tasks)


def _internal_error() -> ServiceUnavailable:
    return ServiceUnavailable(f"submission to Globus Compute failed: {INTERNAL}")


def _interrupted() -> AnswerLost:
    return AnswerLost(
        "gcgated stopped while this submission was on its way to Globus Compute."
        " The service may have accepted and run these task(s); resubmit only if they"
        " must run, knowing they may then run twice",
        "gcgated stopped",
    )


def _pair(answer: dict[str, Any], tasks: list[Queued], globus_ids: dict[str, str]) -> list[str]:
    """The service's id of each task, in order: the answer lists ids per function."""
    by_function = {str(k): [str(t) for t in v] for k, v in (answer.get("tasks") or {}).items()}
    offsets: dict[str, int] = {}
    service_ids = []
    for task in tasks:
        globus_id = globus_ids[task.function["function_id"]]
        assigned = by_function.get(globus_id, [])
        at = offsets.get(globus_id, 0)
        if at >= len(assigned):
            raise AnswerLost(
                "Globus Compute answered the submission with fewer task ids than tasks"
                f" sent ({len(assigned)} for function {globus_id})",
                "an answer with ids missing",
            )
        service_ids.append(assigned[at])
        offsets[globus_id] = at + 1
    return service_ids
