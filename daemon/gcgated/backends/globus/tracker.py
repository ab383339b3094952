"""Result tracking: one poller for every Globus task the daemon has in flight.

``POST /v2/batch_status`` asks about up to ``chunk`` tasks per request. The
interval between rounds adapts:

- it starts short (``min_interval``) whenever tasks are added or a round
  brings results, so quick tasks are answered quickly;
- it grows by half after each round that brought nothing, up to
  ``max_interval``, so long-running tasks cost few requests;
- a round of ``n`` requests is never repeated sooner than ``n`` times
  ``share`` of the limiter's spacing, and the rate limiter itself holds polls
  back when submissions are using the budget.

A final document (``success`` or ``failed``) becomes an :class:`Outcome`; the
core writes it to the store before anyone is told, and the task leaves the
tracker: a result is fetched from the cloud once.

The service hands a result out once. A poll whose answer was lost (connection
broken or timed out after the request was sent) may have carried results that
are now gone: such tasks are remembered, and if the service then no longer
knows one, it fails with a message saying what happened, not a bare
"unknown task id".
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from gcgated.backends.base import Outcome, OutcomeCallback
from gcgated.caller import DAEMON, Caller
from gcgated.errors import GatewayError, Unauthenticated

from .http import AnswerLost, ComputeAPI
from .limiter import RateLimiter

log = logging.getLogger(__name__)

FINAL = frozenset({"success", "failed"})

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
    if status not in FINAL:
        return None
    try:
        completion_t = float(doc.get("completion_t") or 0) or time.time()
    except (TypeError, ValueError):
        completion_t = time.time()
    details = doc.get("details")
    details = details if isinstance(details, dict) else {}
    if status == "success" and "result" in doc:
        return Outcome(
            task_id, "success", result=doc["result"], completion_t=completion_t, details=details
        )
    exception = doc.get("exception") or doc.get("reason")
    if status == "success":  # success without a result: say so rather than invent one
        exception = "Globus Compute reported success but sent no result"
    return Outcome(
        task_id,
        "failed",
        exception=str(exception or "Globus Compute reported the task failed, without a reason"),
        completion_t=completion_t,
        details=details,
    )


class Tracker:
    """Polls batch_status for in-flight tasks and reports their outcomes."""

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
    ) -> None:
        self.api = api
        self.limiter = limiter
        self.on_outcome = on_outcome
        self.chunk = chunk
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.share = share
        self._inflight: dict[str, float] = {}
        #: Tasks created with a client's own token: task -> the caller with that
        #: token, who polls them (memory only).
        self._callers: dict[str, Caller] = {}
        #: The service task group each task went to (its results' queue), for
        #: the tasks held here, in flight or parked, whose group is known.
        self.groups: dict[str, str] = {}
        #: Tasks of a client's token that cannot be polled now (restart, token
        #: refused): task -> token fingerprint, until a client adopts them.
        self._parked: dict[str, str] = {}
        #: Called with a task id once the outcome of a client-token task is stored.
        self.on_passthrough_done: Callable[[str], None] | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.interval = min_interval
        self.polls = 0
        self.completed = 0
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

    def add(self, task_ids: Iterable[str], caller: Caller = DAEMON, group: str = "") -> None:
        """Track tasks that ``caller`` (the daemon's login, or a client's token)
        polls, sent to the service task group ``group`` ("" if not known)."""
        now = time.time()
        added = False
        for task_id in task_ids:
            if caller.token is not None:
                self._callers[task_id] = caller
            if group:
                self.groups[task_id] = group
            if task_id not in self._inflight:
                self._inflight[task_id] = now
                added = True
        if added:
            self.interval = self.min_interval
            self._wake.set()

    def park(self, task_ids: Iterable[str], fingerprint: str, group: str = "") -> None:
        """Hold tasks of a client's token until a client brings a token for them."""
        for task_id in task_ids:
            if group:
                self.groups[task_id] = group
            self._inflight.pop(task_id, None)
            self._callers.pop(task_id, None)
            self._unanswered.pop(task_id, None)
            self._parked[task_id] = fingerprint

    def adopt(self, task_ids: Iterable[str], caller: Caller) -> int:
        """A client passing a token (``caller``) asked about these tasks: poll
        parked ones (and its own tasks) with its current token. Returns how many
        were resumed."""
        resumed = []
        for task_id in task_ids:
            if task_id in self._parked:
                del self._parked[task_id]
                resumed.append(task_id)
            elif task_id in self._callers:
                self._callers[task_id] = caller
        if resumed:
            self.add(resumed, caller)
        return len(resumed)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            if not self._inflight:
                self._wake.clear()
                await self._wake.wait()
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

    async def _round(self) -> tuple[bool, int]:
        # One group per caller: the daemon's login, and each client token.
        groups: dict[Caller, list[str]] = {}
        for task_id in self._inflight:
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
        for task_id in chunk:
            doc = results.get(task_id)
            if not isinstance(doc, dict):
                continue
            lost = self._unanswered.pop(task_id, None)
            outcome = outcome_from(task_id, doc)
            if outcome is None:
                continue
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
            del self._inflight[task_id]
            self.groups.pop(task_id, None)
            if self._callers.pop(task_id, None) is not None and self.on_passthrough_done:
                done = functools.partial(self.on_passthrough_done, task_id)
                outcome = dataclasses.replace(outcome, on_stored=done)
            self.completed += 1
            progressed = True
            self.on_outcome(outcome)
        return progressed, True


def _unknown_to(doc: dict[str, Any]) -> bool:
    """A 'failed' document that is the service not knowing the task for this identity."""
    return (
        str(doc.get("status", "")).lower() == "failed"
        and "exception" not in doc
        and "result" not in doc
        and "unknown" in str(doc.get("reason", "")).lower()
    )
