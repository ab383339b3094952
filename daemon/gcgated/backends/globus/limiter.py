"""One request budget for everything the daemon sends to Globus.

The Compute service publishes a limit of 20 requests per 10 seconds per
client. :class:`RateLimiter` hands out *send times* so that, whatever asks
(submits, registrations, polls, endpoint lookups, token requests), the daemon
as a whole stays within ``limit`` requests in every ``window`` seconds:

- a sliding window: request ``n`` may not start before request ``n - limit``
  started plus ``window`` (plus a small guard for arrival jitter; a hard cap,
  counting reserved slots, so it holds under any interleaving of threads and
  coroutines);
- smoothing (GCRA, the leaky bucket as a meter): at most ``burst`` requests
  back to back, then one per ``window / limit``. Spacing requests out is what
  makes coalescing work: submissions that arrive while the next slot is not
  yet due are merged into one request instead of using up the budget early;
- a pause: a ``429`` (or ``503``) answer with ``Retry-After`` stops every
  request until that time has passed, not only the one that was refused.

It is thread-safe: coroutines ``await acquire()``; globus-sdk's own calls in
worker threads (token requests) take a slot with :meth:`acquire_blocking`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from typing import Any

from .traffic import RequestCounts


class RateLimiter:
    """``limit`` requests per ``window`` seconds, at most ``burst`` back to back."""

    #: Extra seconds between request ``n`` and ``n + limit``, so that the service,
    #: which sees each request a little after its slot's start, never counts
    #: ``limit + 1`` in one window. It must exceed that delay: up to
    #: ``http.Slot.GRACE`` (0.1 s) for a prepaid slot, plus the hand-off to a
    #: worker thread and the network on a busy host (0.05 s was measured short:
    #: 20 requests in a 10 s window under the soak test's faults).
    GUARD = 0.3

    def __init__(self, limit: int, window: float, burst: int = 3) -> None:
        if limit < 1 or window <= 0:
            raise ValueError(f"rate limit must be >= 1 request per > 0 s, got {limit}/{window}")
        self.limit = limit
        self.window = float(window)
        self.burst = max(1, min(burst, limit))
        #: Spacing of sustained requests (GCRA emission interval).
        self.interval = self.window / limit
        self._lock = threading.Lock()
        #: Start times handed out (monotonic), the last ``limit`` of them.
        self._starts: deque[float] = deque(maxlen=limit)
        #: GCRA's theoretical arrival time.
        self._tat = 0.0
        self._pause_until = 0.0
        #: Requests actually sent (counted by the transport), and 429s seen.
        self.sent = 0
        self.throttled = 0
        #: Requests sent, by method, path template and answer (every request passes here).
        self.answers = RequestCounts()
        #: Seconds callers were told to wait for their slot, in total.
        self.waited = 0.0
        self._sent_times: deque[float] = deque(maxlen=4 * limit)

    # ------------------------------------------------------------ reserving

    def reserve(self) -> float:
        """Claim the earliest start time allowed; the caller must not send before it."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._pause_until, self._tat - (self.burst - 1) * self.interval)
            if len(self._starts) == self.limit:
                start = max(start, self._starts[0] + self.window + self.GUARD)
            self._tat = max(self._tat, start) + self.interval
            self._starts.append(start)
            self.waited += start - now
            return start

    def _paused(self, start: float) -> bool:
        return self._pause_until > start + 1e-3

    async def acquire(self) -> None:
        """Wait until this coroutine may send one request."""
        while True:
            start = self.reserve()
            delay = start - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            # A pause that began while we waited moves us behind it (the slot we
            # held stays counted: the budget errs on the safe side).
            if not self._paused(time.monotonic()):
                return

    def acquire_blocking(self) -> None:
        """:meth:`acquire` for worker threads."""
        while True:
            start = self.reserve()
            delay = start - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if not self._paused(time.monotonic()):
                return

    # ------------------------------------------------------------- feedback

    def pause(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (the service asked us to back off)."""
        with self._lock:
            self.throttled += 1
            self._pause_until = max(self._pause_until, time.monotonic() + max(seconds, 0.0))

    def note_sent(self) -> None:
        """Called by the transport for each request that actually goes out."""
        with self._lock:
            self.sent += 1
            self._sent_times.append(time.monotonic())

    def pressure(self) -> float:
        """How far ahead the budget is booked, in windows (0: idle, 1: a full window)."""
        with self._lock:
            ahead = self._tat - time.monotonic()
        return max(ahead, 0.0) / self.window

    def describe(self) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            recent = sum(1 for t in self._sent_times if t > now - self.window)
            paused = max(self._pause_until - now, 0.0)
        return {
            "limit": self.limit,
            "window_seconds": self.window,
            "sent_in_window": recent,
            "available": max(self.limit - recent, 0),
            "paused_seconds": round(paused, 3),
            "requests_sent": self.sent,
            "throttled": self.throttled,
        }
