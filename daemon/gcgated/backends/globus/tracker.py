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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from gcgated.backends.base import Outcome, OutcomeCallback
from gcgated.errors import GatewayError

from .http import ComputeAPI
from .limiter import RateLimiter

log = logging.getLogger(__name__)

FINAL = frozenset({"success", "failed"})


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
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.interval = min_interval
        self.polls = 0
        self.completed = 0
        self.last_error = ""

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def add(self, task_ids: Iterable[str]) -> None:
        now = time.time()
        added = False
        for task_id in task_ids:
            if task_id not in self._inflight:
                self._inflight[task_id] = now
                added = True
        if added:
            self.interval = self.min_interval
            self._wake.set()

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
        ids = list(self._inflight)
        progressed = False
        requests = 0
        for start in range(0, len(ids), self.chunk):
            chunk = ids[start : start + self.chunk]
            requests += 1
            try:
                answer = await self.api.call(
                    f"polling {len(chunk)} task(s)",
                    lambda _v2, _v3, chunk=chunk: _v2.get_task_batch(chunk),
                    retry_seconds=0.0,
                )
            except GatewayError as exc:
                self.last_error = str(exc)
                log.warning("polling Globus Compute: %s", exc)
                return progressed, requests
            self.polls += 1
            results = answer.get("results") or {}
            for task_id in chunk:
                doc = results.get(task_id)
                if not isinstance(doc, dict):
                    continue
                outcome = outcome_from(task_id, doc)
                if outcome is None:
                    continue
                del self._inflight[task_id]
                self.completed += 1
                progressed = True
                self.on_outcome(outcome)
        return progressed, requests
