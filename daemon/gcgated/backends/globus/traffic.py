"""What the Globus backend sent and received, counted for the daemon's metrics.

Counts only: the metrics collector (``gcgated.services.collector``) reads them
when scraped, so the request path pays one locked dict increment. Paths are
counted as templates (``/v3/endpoints/{id}/submit``): ids in a label would make
one time series per task or endpoint and grow without bound.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit

#: A path segment that names one thing (a UUID, a number, a long hex or base64
#: token), not a kind of thing; replaced by ``{id}`` in templates.
_ID_SEGMENT = re.compile(
    r"^(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|\d+|[0-9a-fA-F]{16,}|[A-Za-z0-9_-]{33,})$"
)
#: Label value of a request that got no HTTP answer (network error, timeout).
NO_ANSWER = "none"


def path_template(url: str) -> str:
    """The path of ``url`` with every id segment replaced by ``{id}``, no query."""
    path = urlsplit(url).path or "/"
    return "/".join("{id}" if _ID_SEGMENT.match(s) else s for s in path.split("/"))


class RequestCounts:
    """HTTP requests by (method, path template, status code), from any thread
    (globus-sdk sends from worker threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str, str]] = Counter()

    def count(self, method: str | None, url: str | None, status: int | None) -> None:
        """One request sent; ``status`` None when no answer came."""
        key = (
            method or "GET",
            path_template(url or ""),
            NO_ANSWER if status is None else str(status),
        )
        with self._lock:
            self._counts[key] += 1

    def snapshot(self) -> dict[tuple[str, str, str], int]:
        with self._lock:
            return dict(self._counts)


@dataclass(frozen=True)
class Traffic:
    """The Globus backend's counts and gauges for one scrape (all cheap to read:
    none walks the tasks in flight)."""

    #: "ready", "degraded", "unavailable" or "stopped", as Status shows it.
    state: str
    #: Tasks accepted and not yet taken by the service (queued or being submitted).
    submitting: int
    #: Tasks the service has, whose results are awaited (pushed or polled).
    in_flight: int
    #: Tasks of a client's token that cannot be polled until a client brings one.
    parked: int
    submit_requests: int
    tasks_submitted: int
    submit_answers_lost: int
    polls: int
    poll_answers_lost: int
    #: Outcomes taken from pushed messages, and pushes ignored as repeats.
    results_pushed: int
    push_repeats: int
    #: Over every AMQP connection: messages received, acknowledged, rejected; connects.
    push: dict[str, int]
    #: (method, path template, status code) -> requests.
    requests: dict[tuple[str, str, str], int]
    #: Why a call was retried ("429", "503", "401", "network") -> retries.
    retries: dict[str, int]
    #: The rate budget: requests per window, the window, requests sent in the last
    #: window, seconds of the current pause, 429/Retry-After pauses, seconds waited.
    rate_limit: int
    rate_window_seconds: float
    rate_used: int
    rate_paused_seconds: float
    throttled: int
    rate_wait_seconds: float
