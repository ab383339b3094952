"""What the stand-in services were asked: every request, for assertions.

Each request is recorded once, when it arrives (before faults or processing), with
the identity and client of its bearer token where there is one. Counters are
derived from that log, so a test can ask any question of it afterwards:
requests per route, per token, per identity, and the most requests any client
sent within any window of the published rate limit (20 requests per 10 s).
"""

from __future__ import annotations

import fnmatch
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

#: The published Globus Compute rate limit: requests per window, and the window.
RATE_LIMIT = 20
RATE_WINDOW = 10.0


@dataclass
class RequestRecord:
    """One HTTP request as the service saw it."""

    t: float
    service: str
    method: str
    path: str
    #: The route template, e.g. ``"GET /v2/tasks/{task_id}"``; ``None`` if unrouted.
    route: str | None = None
    #: The bearer token sent, if any (kept in test memory only).
    token: str | None = None
    #: Identity id of the token's owner (user or client identity), if known.
    identity: str | None = None
    #: OAuth client the token was issued to, if known.
    client_id: str | None = None
    #: Filled in when the answer is known: HTTP status, or ``None`` if dropped.
    status: int | None = None
    #: ``"ok"``, or what a fault did: ``"status"``, ``"drop"``, ``"rate_limited"``.
    outcome: str = "ok"
    #: Size of the request body in bytes.
    body_bytes: int = 0
    extra: dict[str, object] = field(default_factory=dict)


class Stats:
    """A thread-safe request log with counting helpers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def add(self, record: RequestRecord) -> RequestRecord:
        with self._lock:
            self._records.append(record)
        return record

    def reset(self) -> None:
        with self._lock:
            self._records.clear()

    @property
    def records(self) -> list[RequestRecord]:
        """A snapshot of the log, oldest first."""
        with self._lock:
            return list(self._records)

    def select(
        self,
        *,
        service: str | None = None,
        method: str | None = None,
        path: str | None = None,
        route: str | None = None,
        identity: str | None = None,
        token: str | None = None,
        outcome: str | None = None,
        since: float | None = None,
        where: Callable[[RequestRecord], bool] | None = None,
    ) -> list[RequestRecord]:
        """Records matching every given filter; ``path`` is a glob (``/v2/tasks/*``)."""
        out = []
        for r in self.records:
            if service is not None and r.service != service:
                continue
            if method is not None and r.method != method.upper():
                continue
            if path is not None and not fnmatch.fnmatchcase(r.path, path):
                continue
            if route is not None and r.route != route:
                continue
            if identity is not None and r.identity != identity:
                continue
            if token is not None and r.token != token:
                continue
            if outcome is not None and r.outcome != outcome:
                continue
            if since is not None and r.t < since:
                continue
            if where is not None and not where(r):
                continue
            out.append(r)
        return out

    def count(self, **filters: object) -> int:
        """How many requests match (same filters as :meth:`select`)."""
        return len(self.select(**filters))  # type: ignore[arg-type]

    def by_route(self, service: str | None = None) -> Counter[str]:
        """Requests per route template (``"POST /v2/batch_status"``)."""
        return Counter(r.route or f"{r.method} {r.path}" for r in self.select(service=service))

    def by_path(self, service: str | None = None) -> Counter[str]:
        """Requests per concrete ``"METHOD /path"``."""
        return Counter(f"{r.method} {r.path}" for r in self.select(service=service))

    def by_token(self, service: str | None = None) -> Counter[str | None]:
        return Counter(r.token for r in self.select(service=service))

    def by_identity(self, service: str | None = None) -> Counter[str | None]:
        return Counter(r.identity for r in self.select(service=service))

    def max_in_window(
        self,
        window: float = RATE_WINDOW,
        *,
        service: str | None = "compute",
        identity: str | None = None,
        records: Iterable[RequestRecord] | None = None,
    ) -> int:
        """The most requests that fell within any ``window`` seconds (closed interval).

        By default over all Compute requests; pass ``identity`` for one client's.
        """
        if records is None:
            records = self.select(service=service, identity=identity)
        times = sorted(r.t for r in records)
        best = 0
        lo = 0
        for hi, t in enumerate(times):
            while t - times[lo] > window:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    def max_in_window_per_identity(
        self, window: float = RATE_WINDOW, *, service: str | None = "compute"
    ) -> dict[str | None, int]:
        """:meth:`max_in_window` for each identity that sent requests."""
        groups: dict[str | None, list[RequestRecord]] = {}
        for r in self.select(service=service):
            groups.setdefault(r.identity, []).append(r)
        return {k: self.max_in_window(window, records=v) for k, v in groups.items()}

    def within_rate_limit(
        self, limit: int = RATE_LIMIT, window: float = RATE_WINDOW, *, service: str = "compute"
    ) -> bool:
        """True if no identity ever sent more than ``limit`` requests in ``window`` s."""
        return all(
            n <= limit for n in self.max_in_window_per_identity(window, service=service).values()
        )
