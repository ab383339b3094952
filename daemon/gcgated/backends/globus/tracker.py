"""Result tracking: every Globus task the daemon has in flight, to its outcome.

Results come by push: every submit asks for a result queue, and the service
publishes each result of the task group to it (:mod:`.push`, one AMQP
connection per caller). A pushed result becomes an :class:`Outcome` whose
``on_stored`` acknowledges the message: the broker keeps it until the outcome
is in the store, so a crash means redelivery, never loss. A message for a task
that is already final (a redelivery) is acknowledged and ignored; one for a
task whose submit answer is still on its way (the service can finish a quick
task before the daemon has read the answer) is held until the task is tracked.

Polling ``POST /v2/batch_status`` is the safety net, for the tasks whose
results are not pushed right now:

- while their caller's AMQP connection is down, or for a group whose queue the
  broker does not know (the reason shows in ``gcgate status``);
- once after each reconnect (anything the queue did not keep), and once for
  tasks resumed after a restart;
- for a task that waited ``overdue`` seconds with no push (then after twice
  that, and so on, up to an hour): a queue that never gets its messages;
- for tasks of the service's task group unknown (ledger rows of older versions).

A poll asks about up to ``chunk`` tasks per request. The interval between
polling rounds adapts:

- it starts short (``min_interval``) whenever tasks are added or a round
  brings results, so quick tasks are answered quickly;
- it grows by half after each round that brought nothing, up to
  ``max_interval``, so long-running tasks cost few requests;
- a round of ``n`` requests is never repeated sooner than ``n`` times
  ``share`` of the limiter's spacing, and the rate limiter itself holds polls
  back when submissions are using the budget.

A final document (``success`` or ``failed``) becomes an :class:`Outcome`; the
core writes it to the store before anyone is told, and the task leaves the
tracker.

The service hands a status result out once. A poll whose answer was lost
(connection broken or timed out after the request was sent) may have carried
results that are now gone from the status API, but not from the task group's
queue: a task whose results are pushed waits for its message when the service
no longer knows it. Without a queue, such tasks are remembered, and if the
service then no longer knows one, it fails with a message saying what
happened, not a bare "unknown task id".
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from gcgate.constants import FINAL_STATUSES, TaskStatus

from gcgated.backends.base import Outcome, OutcomeCallback
from gcgated.caller import DAEMON, Caller
from gcgated.errors import GatewayError, Unauthenticated
from gcgated.timeouts import within

from .http import AnswerLost, ComputeAPI
from .limiter import RateLimiter
from .push import ResultQueues

log = logging.getLogger(__name__)

#: Longest wait, in seconds, between two safety-net polls of a task whose
#: results are pushed (the wait doubles from ``overdue`` up to this).
MOST_PATIENCE = 3600.0
#: Seconds a task group stays consumed after its last task in flight ended
#: (a caller's home group is used again and again).
GROUP_IDLE = 60.0
#: Seconds between checks of held messages (results of tasks not tracked yet).
HELD_CHECK = 1.0

#: ``expected(caller key, service task id)``: whether a submit that may hold
#: the task is still on its way to being tracked.
Expected = Callable[[str, str], bool]
#: ``connection_info(caller)``: the service's result queue connection document.
ConnectionInfo = Callable[[Caller], Awaitable[dict[str, Any]]]

LOST_RESULT = (
    "the result of this task was lost on the way from Globus Compute: a status answer"
    " that may have carried it never arrived ({why}), and the service hands a result out"
    " only once, so it no longer knows the task. The task did run at the service; run it"
    " again to get its result"
)

#: A task of the daemon's own login that the service no longer knows, with no
#: lost answer on record (tests/test_crash_restart.py shows it after kill -9).
FORGOTTEN = (
    "Globus Compute no longer knows this task ({reason}). The service hands a result"
    " out only once and abandons results not fetched within 30 minutes, so its result"
    " was either handed to gcgated in a status answer not yet written when gcgated"
    " stopped (killed or crashed), or abandoned while gcgated was down. The task ran"
    " at the service; run it again to get its result"
)


def outcome_from(task_id: str, doc: dict[str, Any]) -> Outcome | None:
    """The Outcome for a final task document, None while the task is pending."""
    status = str(doc.get("status", "")).lower()
    if status not in FINAL_STATUSES:
        return None
    try:
        completion_t = float(doc.get("completion_t") or 0) or time.time()
    except (TypeError, ValueError):
        completion_t = time.time()
    details = doc.get("details")
    details = details if isinstance(details, dict) else {}
    if status == TaskStatus.SUCCESS and "result" in doc:
        return Outcome(
            task_id,
            TaskStatus.SUCCESS,
            result=doc["result"],
            completion_t=completion_t,
            details=details,
        )
    exception = doc.get("exception") or doc.get("reason")
    if status == TaskStatus.SUCCESS:  # success without a result: say so rather than invent one
        exception = "Globus Compute reported success but sent no result"
    return Outcome(
        task_id,
        TaskStatus.FAILED,
        exception=str(exception or "Globus Compute reported the task failed, without a reason"),
        completion_t=completion_t,
        details=details,
    )


class Tracker:
    """Takes pushed results, polls for the rest, and reports each outcome once."""

    def __init__(
        self,
        *,
        api: ComputeAPI,
        limiter: RateLimiter,
        on_outcome: OutcomeCallback,
        chunk: int = 500,
        min_interval: float = 0.5,
        max_interval: float = 10.0,
        share: float = 2.0,
        push: bool = True,
        overdue: float = 120.0,
        connection_info: ConnectionInfo | None = None,
        expected: Expected = lambda key, task_id: False,
    ) -> None:
        self.api = api
        self.limiter = limiter
        self.on_outcome = on_outcome
        self.chunk = chunk
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.share = share
        self.push = push
        self.overdue = overdue
        self._connection_info = connection_info or self._fetch_connection_info
        self._expected = expected
        self._inflight: dict[str, float] = {}
        #: Tasks created with a client's own token: task -> the caller with that
        #: token, who polls them (memory only).
        self._callers: dict[str, Caller] = {}
        #: Task -> (caller key, service task group) for tasks whose group is known.
        self._groups: dict[str, tuple[str, str]] = {}
        #: Tasks of a client's token that cannot be polled now (restart, token
        #: refused): task -> token fingerprint, until a client adopts them.
        self._parked: dict[str, str] = {}
        #: Called with a task id once the outcome of a client-token task is stored.
        self.on_passthrough_done: Callable[[str], None] | None = None
        #: One AMQP connection per caller key ("" = the daemon's login), and the
        #: caller whose token fetches its connection URL.
        self._queues: dict[str, ResultQueues] = {}
        self._queue_callers: dict[str, Caller] = {}
        #: Tasks in flight per (caller key, group): a group is consumed while > 0.
        self._group_tasks: Counter[tuple[str, str]] = Counter()
        #: Pushed tasks: task -> (loop time of its next safety-net poll, patience).
        self._overdue: dict[str, tuple[float, float]] = {}
        #: Tasks to poll once in the next round (catch-up, high-assurance results).
        self._due: set[str] = set()
        #: Tasks whose pushed message carried no result (high assurance): their
        #: result is fetched by status, so a lost status answer is not covered.
        self._by_status: set[str] = set()
        #: Acks of messages whose task's outcome is not stored yet.
        self._acks: dict[str, list[Callable[[], None]]] = {}
        #: Messages for tasks not tracked yet: task -> (caller key, outcome, acks).
        self._held: dict[str, tuple[str, Outcome | None, list[Callable[[], None]]]] = {}
        self._held_check: asyncio.TimerHandle | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.interval = min_interval
        self.polls = 0
        self.completed = 0
        self.pushed = 0
        self.duplicates = 0
        self.last_error = ""
        #: Tasks asked about in a poll whose answer was lost -> why it was lost.
        self._unanswered: dict[str, str] = {}
        #: Polls whose answer was lost after they were sent.
        self.answers_lost = 0

    @property
    def in_flight(self) -> int:
        return len(self._inflight) + len(self._parked)

    @property
    def parked(self) -> int:
        return len(self._parked)

    # ------------------------------------------------------------ tasks

    def add(
        self,
        task_ids: Iterable[str],
        caller: Caller = DAEMON,
        group: str = "",
        *,
        resumed: bool = False,
    ) -> None:
        """Track tasks of ``caller`` (the daemon's login, or a client's token), sent
        to the service task group ``group`` ("" if not known); ``resumed``: tasks of
        a previous run, polled once whatever the push says."""
        now = asyncio.get_running_loop().time()
        added = []
        for task_id in task_ids:
            if caller.token is not None:
                self._callers[task_id] = caller
            if task_id not in self._inflight:
                self._inflight[task_id] = now
                added.append(task_id)
            if task_id not in self._groups and group:
                self._follow(task_id, caller.key, group, now, caller)
            if resumed:
                self._due.add(task_id)
        if added:
            self.interval = self.min_interval
            self._wake.set()
            self._release_held(added)
        if group and not resumed and (queues := self._queues.get(caller.key)) is not None:
            queues.renew(group)  # just submitted with create_queue: its queue exists

    def _follow(
        self, task_id: str, key: str, group: str, now: float, caller: Caller | None
    ) -> None:
        """Count ``task_id`` in its group, whose queue ``caller`` (if known now:
        parked tasks wait for one) consumes."""
        self._groups[task_id] = (key, group)
        self._overdue[task_id] = (now + self.overdue, self.overdue)
        if not self.push:
            return
        self._group_tasks[key, group] += 1
        if caller is not None:
            self._queue_callers[key] = caller
            self._queues_of(key).watch([group])

    def _unfollow(self, task_id: str) -> tuple[str, str] | None:
        """Undo :meth:`_follow`; a group none of whose tasks is left is let go
        after GROUP_IDLE (home groups come back at once)."""
        self._overdue.pop(task_id, None)
        self._by_status.discard(task_id)
        followed = self._groups.pop(task_id, None)
        if followed is not None and self.push:
            self._group_tasks[followed] -= 1
            if self._group_tasks[followed] <= 0:
                del self._group_tasks[followed]
                loop = asyncio.get_running_loop()
                loop.call_later(GROUP_IDLE, self._maybe_unwatch, followed)
        return followed

    def _release(self, task_id: str) -> None:
        """The task's outcome is handed over: it leaves the tracker."""
        self._inflight.pop(task_id, None)
        self._parked.pop(task_id, None)
        self._unanswered.pop(task_id, None)
        self._due.discard(task_id)
        self._unfollow(task_id)

    def untrack(self, task_ids: Iterable[str]) -> None:
        """Stop following these tasks (cancelled): no poll asks for them, and a
        result pushed for them later is acknowledged and dropped (as a repeat)."""
        for task_id in task_ids:
            passthrough = self._callers.pop(task_id, None) is not None or task_id in self._parked
            self._release(task_id)
            self._held.pop(task_id, None)
            if passthrough and self.on_passthrough_done:
                self.on_passthrough_done(task_id)

    def drain(self, group: str, caller: Caller = DAEMON) -> None:
        """Consume ``group``'s queue for GROUP_IDLE seconds though none of its tasks
        is in flight. A result stored by status poll (a resumed task is polled
        once) can still have its pushed copy queued when the daemon stops; only a
        consumer acknowledges such copies (as repeats), so a run that starts with
        nothing in flight would leave them piling up at the broker."""
        if not self.push:
            return
        self._queue_callers.setdefault(caller.key, caller)
        self._queues_of(caller.key).watch([group])
        loop = asyncio.get_running_loop()
        loop.call_later(GROUP_IDLE, self._maybe_unwatch, (caller.key, group))

    def _maybe_unwatch(self, followed: tuple[str, str]) -> None:
        key, group = followed
        if self._group_tasks[followed] <= 0 and key in self._queues:
            self._queues[key].unwatch([group])

    def park(self, task_ids: Iterable[str], fingerprint: str, group: str = "") -> None:
        """Hold tasks of a client's token until a client brings a token for them
        (their results are still taken when pushed)."""
        now = asyncio.get_running_loop().time()
        for task_id in task_ids:
            if task_id not in self._groups and group:
                self._follow(task_id, fingerprint, group, now, None)
            self._inflight.pop(task_id, None)
            self._callers.pop(task_id, None)
            self._unanswered.pop(task_id, None)
            self._parked[task_id] = fingerprint

    def adopt(self, task_ids: Iterable[str], caller: Caller) -> int:
        """A client passing a token (``caller``) asked about these tasks: poll
        parked ones (and its own tasks) with its current token, and consume their
        queues with it. Returns how many were resumed."""
        resumed = []
        for task_id in task_ids:
            if task_id in self._parked:
                del self._parked[task_id]
                resumed.append(task_id)
            elif task_id in self._callers:
                self._callers[task_id] = caller
        if caller.key in self._queue_callers:
            self._queue_callers[caller.key] = caller  # its fresh token fetches URLs
        for task_id in resumed:
            followed = self._unfollow(task_id)
            self.add([task_id], caller, followed[1] if followed else "")
        return len(resumed)

    # ------------------------------------------------------------ push

    def _queues_of(self, key: str) -> ResultQueues:
        queues = self._queues.get(key)
        if queues is None:
            queues = self._queues[key] = ResultQueues(
                name=key or "daemon login",
                connection_info=lambda: self._connection_info(self._queue_callers[key]),
                deliver=lambda task_id, outcome, ack: self._pushed(key, task_id, outcome, ack),
                on_connected=lambda after_loss: self._connected(key, after_loss),
                on_change=self._wake.set,
            )
        return queues

    async def _fetch_connection_info(self, caller: Caller) -> dict[str, Any]:
        return await self.api.call(
            "fetching the result queue connection",
            lambda v2, _v3: v2.get_result_amqp_url(),
            token=caller.token,
            retry_seconds=0.0,  # the result queues retry with their own backoff
        )

    def _pushes(self, task_id: str) -> bool:
        """Whether ``task_id``'s result arrives by push right now."""
        followed = self._groups.get(task_id)
        if followed is None or not self.push:
            return False
        queues = self._queues.get(followed[0])
        return queues is not None and queues.pushing(followed[1])

    def _queued(self, task_id: str) -> bool:
        """Whether ``task_id``'s result goes to a queue the broker keeps for us."""
        followed = self._groups.get(task_id)
        if followed is None or not self.push:
            return False
        queues = self._queues.get(followed[0])
        return queues is not None and followed[1] not in queues.polled

    def _connected(self, key: str, after_loss: bool) -> None:
        """After a connection was lost, poll the caller's tasks once: results the
        broker did not keep meanwhile are caught up."""
        if after_loss:
            self._due.update(t for t, (k, _) in self._groups.items() if k == key)
        self._wake.set()

    def _pushed(
        self, key: str, task_id: str, outcome: Outcome | None, ack: Callable[[], None]
    ) -> None:
        """A message from ``key``'s queues: the task's outcome (None: fetch it by
        status), and the ack to send once it is stored."""
        if task_id in self._acks:  # its outcome is on the way to the store
            self._acks[task_id].append(ack)
        elif task_id in self._inflight or task_id in self._parked:
            self._acks[task_id] = [ack]
            if outcome is None:
                self._by_status.add(task_id)
                self._due.add(task_id)
                self._wake.set()
            else:
                self.pushed += 1
                self._complete(task_id, outcome)
        elif self._expected(key, task_id):
            held = self._held.setdefault(task_id, (key, outcome, []))
            held[2].append(ack)
            self._check_held_later()
        else:  # already final (a redelivery), or not a task of this daemon's
            self.duplicates += 1
            ack()

    def _release_held(self, task_ids: list[str]) -> None:
        for task_id in task_ids:
            held = self._held.pop(task_id, None)
            if held is not None:
                key, outcome, acks = held
                for ack in acks:
                    self._pushed(key, task_id, outcome, ack)

    def _check_held_later(self) -> None:
        if self._held_check is None:
            loop = asyncio.get_running_loop()
            self._held_check = loop.call_later(HELD_CHECK, self._check_held)

    def _check_held(self) -> None:
        """Held messages whose task no submit will bring: acknowledged as foreign."""
        self._held_check = None
        for task_id, (key, _, acks) in list(self._held.items()):
            if task_id in self._inflight or task_id in self._parked:
                self._release_held([task_id])
            elif not self._expected(key, task_id):
                del self._held[task_id]
                self.duplicates += len(acks)
                for ack in acks:
                    ack()
        if self._held:
            self._check_held_later()

    def _complete(self, task_id: str, outcome: Outcome) -> None:
        """Hand ``outcome`` over; once stored, its messages are acknowledged."""
        passthrough = task_id in self._callers or task_id in self._parked
        self._callers.pop(task_id, None)
        self._release(task_id)
        done: list[Callable[[], None]] = [functools.partial(self._acked, task_id)]
        if passthrough and self.on_passthrough_done:
            done.append(functools.partial(self.on_passthrough_done, task_id))
        self._acks.setdefault(task_id, [])
        self.completed += 1
        self.on_outcome(dataclasses.replace(outcome, on_stored=_all(done)))

    def _acked(self, task_id: str) -> None:
        for ack in self._acks.pop(task_id, ()):
            ack()

    # ------------------------------------------------------------ polling

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._held_check is not None:
            self._held_check.cancel()
        for queues in self._queues.values():
            await queues.close()  # unacknowledged messages go back to their queues

    def waits_for_token(self, task_id: str) -> bool:
        """Whether ``task_id`` (a client-token task) waits for its client's token."""
        return task_id in self._parked

    def delivery(self) -> str:
        """How the daemon's results come now, in words, for a pending reason."""
        own = self._queues.get("")
        if self.push and own is not None and own.state == "connected":
            return "its result is pushed to gcgated when it is done"
        return f"gcgated polls for its result (every {self.interval:.0f} s)"

    def push_counts(self) -> Counter[str]:
        """Messages received, acknowledged and rejected, and connects, summed over
        every AMQP connection (the daemon's and each client token's)."""
        totals: Counter[str] = Counter()
        for queues in self._queues.values():
            totals.update(queues.counts())
        return totals

    def describe(self) -> dict[str, Any]:
        """The push side, for ``gcgate status``."""
        own = self._queues.get("")
        return {
            "result_push": own.describe() if own else {"state": "idle" if self.push else "off"},
            "client_token_connections": sum(1 for key in self._queues if key),
            "results_pushed": self.pushed,
            "pushes_ignored_as_repeats": self.duplicates,
            "polled_not_pushed": sum(1 for t in self._inflight if not self._pushes(t)),
        }

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            # Looked at again after max_interval at the latest: whether results
            # are pushed can change without a wake-up (a first connection slow
            # to come up).
            due_in = self._until_due(loop.time())
            wait = self.max_interval if due_in is None else min(due_in, self.max_interval)
            if wait > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await within(self._wake.wait(), wait)
                continue
            # Wait the interval (results rarely exist sooner); new tasks do not
            # shorten a wait already begun: they join this round.
            await asyncio.sleep(self.interval)
            try:
                progressed, requests = await self._round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("polling Globus Compute for results failed; will retry")
                progressed, requests = False, 1
            floor = requests * self.share * self.limiter.interval
            if progressed:
                self.interval = max(self.min_interval, floor)
            else:
                self.interval = min(max(self.interval * 1.5, floor), self.max_interval)

    def _until_due(self, now: float) -> float | None:
        """Seconds until some task is due for a poll (0: now), None: none will be."""
        soonest: float | None = None
        for task_id in self._inflight:
            if task_id in self._due or not self._pushes(task_id):
                return 0.0
            at = self._overdue.get(task_id, (now, 0.0))[0]
            soonest = at if soonest is None else min(soonest, at)
        return None if soonest is None else max(0.0, soonest - now)

    def _due_now(self, now: float) -> list[str]:
        """The tasks this round polls (see the module doc), pushed ones rescheduled."""
        due = []
        for task_id in self._inflight:
            if task_id in self._due or not self._pushes(task_id):
                due.append(task_id)
                continue
            at, patience = self._overdue.get(task_id, (now, 0.0))
            if at <= now:
                patience = min(patience * 2, MOST_PATIENCE)
                self._overdue[task_id] = (now + patience, patience)
                due.append(task_id)
        self._due.clear()
        return due

    async def _round(self) -> tuple[bool, int]:
        # One group per caller: the daemon's login, and each client token.
        groups: dict[Caller, list[str]] = {}
        for task_id in self._due_now(asyncio.get_running_loop().time()):
            groups.setdefault(self._callers.get(task_id, DAEMON), []).append(task_id)
        progressed = False
        requests = 0
        for caller, ids in groups.items():
            for start in range(0, len(ids), self.chunk):
                requests += 1
                moved, ok = await self._poll(ids[start : start + self.chunk], caller)
                progressed = progressed or moved
                if not ok:
                    break
        return progressed, requests

    async def _poll(self, chunk: list[str], caller: Caller) -> tuple[bool, bool]:
        """One batch_status request as ``caller``: (any task final, request answered)."""
        log.debug("polling %d task(s) (%s)", len(chunk), caller)
        try:
            answer = await self.api.call(
                f"polling {len(chunk)} task(s)",
                lambda _v2, _v3: _v2.get_task_batch(chunk),
                retry_seconds=0.0,
                resend=False,
                token=caller.token,
            )
        except AnswerLost as exc:
            self.last_error = str(exc)
            self.answers_lost += 1
            log.warning("polling Globus Compute: %s", exc)
            for task_id in chunk:
                self._unanswered[task_id] = exc.kind
            return False, False
        except Unauthenticated as exc:
            self.last_error = str(exc)
            if caller.token is not None:
                # The client's token expired or was revoked: wait for a fresh one.
                log.info("parking %d task(s): the client's token was refused", len(chunk))
                self.park(chunk, caller.key)
            else:
                log.warning("polling Globus Compute: %s", exc)
            return False, False
        except GatewayError as exc:
            self.last_error = str(exc)
            log.warning("polling Globus Compute: %s", exc)
            return False, False
        self.polls += 1
        progressed = False
        results = answer.get("results") or {}
        log.debug("poll answered for %d of %d task(s)", len(results), len(chunk))
        for task_id in chunk:
            doc = results.get(task_id)
            if not isinstance(doc, dict) or task_id not in self._inflight:
                continue  # pushed meanwhile
            lost = self._unanswered.pop(task_id, None)
            outcome = outcome_from(task_id, doc)
            if outcome is None:
                continue
            if _unknown_to(doc) and self._queued(task_id) and task_id not in self._by_status:
                continue  # handed out already (a lost answer, a crash): the queue has it
            if caller.token is None and _unknown_to(doc):
                why = FORGOTTEN.format(reason=doc.get("reason"))
                if lost is not None:
                    why = LOST_RESULT.format(why=lost)
                outcome = dataclasses.replace(outcome, exception=why)
            if caller.token is not None and _unknown_to(doc):
                # Not this token's task (another identity's token adopted it):
                # park it rather than fail a task its owner may still fetch.
                self.park([task_id], caller.key)
                continue
            progressed = True
            self._complete(task_id, outcome)
        return progressed, True


def _all(callbacks: list[Callable[[], None]]) -> Callable[[], None]:
    """One ``on_stored`` calling each of ``callbacks``."""

    def call_each() -> None:
        for callback in callbacks:
            callback()

    return callbacks[0] if len(callbacks) == 1 else call_each


def _unknown_to(doc: dict[str, Any]) -> bool:
    """A 'failed' document that is the service not knowing the task for this identity."""
    return (
        str(doc.get("status", "")).lower() == TaskStatus.FAILED
        and "exception" not in doc
        and "result" not in doc
        and "unknown" in str(doc.get("reason", "")).lower()
    )
