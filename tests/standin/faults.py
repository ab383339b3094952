"""Faults the stand-in services inject on demand.

A :class:`Fault` matches requests by service, method and path glob, and applies
to the next ``count`` matching requests, or to all of them within ``duration``
seconds, or both (whichever ends first), or forever when neither is given. What
it does, in this order:

* ``delay``: wait that many seconds before answering (a slow service);
* ``drop="before"``: close the connection without answering and without
  processing the request (the client sees a connection error);
* ``status``: answer with that HTTP status instead of processing the request:
  429/503 carry ``Retry-After`` when ``retry_after`` is set; 502/503/504 have the
  HTML body a load balancer sends, others the service's JSON error document;
* ``drop="after"``: process the request (a submit creates its tasks, a status
  poll consumes the results it returns), then close the connection without
  sending the answer: the lost-response case that makes retries duplicate.

A fault with ``fraction`` below 1 applies to that share of its matching
requests only (drawn from a seeded generator: the same ones each run), as a
flaky network loses some answers and not others.

A drop closes the connection with a FIN (``RemoteDisconnected`` at the client),
or with ``reset=True`` a TCP RST (``ConnectionResetError``), as a load balancer
or a crashed server process does.

The first matching active fault wins; a fault with only ``delay`` lets the
request continue to later faults and processing.
"""

from __future__ import annotations

import fnmatch
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

DropWhen = Literal["before", "after"]


@dataclass
class Fault:
    """One injected fault; ``hits`` counts the requests it applied to."""

    service: str | None = None
    path: str | None = None
    method: str | None = None
    status: int | None = None
    retry_after: float | None = None
    body: bytes | str | dict | None = None
    delay: float = 0.0
    drop: DropWhen | None = None
    #: Drop with a TCP RST instead of a FIN.
    reset: bool = False
    count: int | None = None
    duration: float | None = None
    #: Only requests carrying this bearer token (e.g. one client's).
    token: str | None = None
    #: The share of matching requests it applies to, drawn from a generator
    #: seeded with ``seed`` (the same requests each run).
    fraction: float = 1.0
    seed: int = 0
    created: float = field(default_factory=time.monotonic)
    hits: int = 0
    #: Matching requests it let through (``fraction`` < 1).
    spared: int = 0
    _draw: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._draw = random.Random(self.seed)
        if self.drop not in (None, "before", "after"):
            raise ValueError(f"drop must be 'before' or 'after', not {self.drop!r}")
        if self.method is not None:
            self.method = self.method.upper()

    @property
    def exhausted(self) -> bool:
        if self.count is not None and self.hits >= self.count:
            return True
        return self.duration is not None and time.monotonic() - self.created > self.duration

    @property
    def remaining(self) -> int | None:
        """Requests still to hit (``None`` for a time- or un-bounded fault)."""
        return None if self.count is None else max(0, self.count - self.hits)

    def matches(self, service: str, method: str, path: str, token: str | None) -> bool:
        if self.service is not None and self.service != service:
            return False
        if self.method is not None and self.method != method:
            return False
        if self.path is not None and not fnmatch.fnmatchcase(path, self.path):
            return False
        return self.token is None or self.token == token

    def strikes(self) -> bool:
        """Whether it applies to this matching request (``fraction`` of them)."""
        if self.fraction >= 1.0 or self._draw.random() < self.fraction:
            return True
        self.spared += 1
        return False


class FaultSet:
    """The faults currently armed, shared by both services."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(
        self,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        delay: float = 0.0,
        drop: DropWhen | None = None,
        reset: bool = False,
        path: str | None = None,
        method: str | None = None,
        service: str | None = "compute",
        count: int | None = None,
        duration: float | None = None,
        body: bytes | str | dict | None = None,
        token: str | None = None,
        fraction: float = 1.0,
        seed: int = 0,
    ) -> Fault:
        """Arm a fault (see the module doc); returns it, to read ``hits`` later.

        ``service`` defaults to ``"compute"``; pass ``"auth"`` for the token
        endpoint or ``None`` for both.
        """
        if status is None and drop is None and not delay:
            raise ValueError("a fault needs a status, a drop or a delay")
        fault = Fault(
            service=service,
            path=path,
            method=method,
            status=status,
            retry_after=retry_after,
            body=body,
            delay=delay,
            drop=drop,
            reset=reset,
            count=count,
            duration=duration,
            token=token,
            fraction=fraction,
            seed=seed,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    # Convenience spellings of the common cases. Each applies to the next request
    # only, unless given a ``count`` or a ``duration`` (then all requests in it).

    @staticmethod
    def _bounds(count: int | None, kw: dict[str, Any]) -> dict[str, Any]:
        if count is None and kw.get("duration") is None:
            count = 1
        return {"count": count, **kw}

    def rate_limit(self, count: int | None = None, retry_after: float = 1, **kw: Any) -> Fault:
        """``429 Too Many Requests`` with ``Retry-After``."""
        return self.add(status=429, retry_after=retry_after, **self._bounds(count, kw))

    def server_error(self, count: int | None = None, status: int = 503, **kw: Any) -> Fault:
        """A 5xx (503 by default)."""
        return self.add(status=status, **self._bounds(count, kw))

    def slow(self, delay: float, count: int | None = None, **kw: Any) -> Fault:
        """Answer ``delay`` seconds late."""
        return self.add(delay=delay, **self._bounds(count, kw))

    def drop_connection(
        self, count: int | None = None, when: DropWhen = "before", **kw: Any
    ) -> Fault:
        """Close the connection without an answer, before or after processing."""
        return self.add(drop=when, **self._bounds(count, kw))

    def connection_reset(
        self, count: int | None = None, when: DropWhen = "before", **kw: Any
    ) -> Fault:
        """Reset the connection (TCP RST) without an answer, before or after processing."""
        return self.add(drop=when, reset=True, **self._bounds(count, kw))

    def remove(self, fault: Fault) -> None:
        with self._lock:
            if fault in self._faults:
                self._faults.remove(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def active(self) -> list[Fault]:
        with self._lock:
            return [f for f in self._faults if not f.exhausted]

    def take(self, service: str, method: str, path: str, token: str | None) -> list[Fault]:
        """The faults that apply to this request, each counted as hit.

        Delay-only faults accumulate; the first fault with a status or a drop ends
        the list (it decides the request's fate).
        """
        taken: list[Fault] = []
        with self._lock:
            self._faults = [f for f in self._faults if not f.exhausted]
            for fault in self._faults:
                if not fault.matches(service, method, path, token) or not fault.strikes():
                    continue
                fault.hits += 1
                taken.append(fault)
                if fault.status is not None or fault.drop is not None:
                    break
        return taken
