"""HTTP to Globus Compute: globus-sdk clients in worker threads, one budget, our retries.

globus-sdk is blocking, so every call runs in a small thread pool and the event
loop never waits on the network. Two decisions about retries, deliberately:

- The Compute clients are built with ``RetryConfig(max_retries=0)``: globus-sdk
  would otherwise sleep and resend inside a worker thread (up to 5 times, after
  429s and 5xx), invisible to the daemon's rate limiter. :meth:`ComputeAPI.call`
  retries instead, taking a fresh slot from the limiter for every attempt and
  turning a ``Retry-After`` into a pause of *all* requests.
- Every request any globus-sdk client of this backend sends (Compute calls and
  Globus Auth token requests alike) goes through :class:`LimitedSession`, which
  counts it and, unless the caller already holds a slot, waits for one.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import globus_sdk
import requests
from globus_sdk.transport import RequestsTransport, RetryConfig

from gcgated.errors import (
    GatewayError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
    Unauthenticated,
)

from .limiter import RateLimiter
from .passthrough import CLIENT_TOKEN

log = logging.getLogger(__name__)


class Slot:
    """One request's worth of budget, just taken from the limiter.

    The first request sent with it pays with it; later ones wait for their own.
    The limiter counted it at the time it was granted, so it is only good for
    :attr:`GRACE` seconds: a holder that waited for something else first (a
    registration, a token) must take a new one, or requests would bunch up.
    """

    GRACE = 0.1

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._available = True
        self._granted = time.monotonic()

    @property
    def available(self) -> bool:
        return self._available and time.monotonic() - self._granted <= self.GRACE

    def take(self) -> bool:
        with self._lock:
            available = self.available
            self._available = False
            return available


#: The slot that pays for the next request sent in this context.
_PREPAID: contextvars.ContextVar[Slot | None] = contextvars.ContextVar(
    "gcgate_prepaid_slot", default=None
)

#: HTTP statuses worth retrying: throttling and server-side trouble.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Back-off when the service gives no Retry-After (seconds, doubled per attempt).
BASE_BACKOFF = 0.5
MAX_BACKOFF = 15.0


class LimitedSession(requests.Session):
    """A requests session whose every send takes a slot from the limiter."""

    def __init__(self, limiter: RateLimiter) -> None:
        super().__init__()
        self._limiter = limiter

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        slot = _PREPAID.get()
        if slot is None or not slot.take():
            self._limiter.acquire_blocking()
        self._limiter.note_sent()
        return super().send(request, **kwargs)


class LimitedTransport(RequestsTransport):
    """globus-sdk's transport on a :class:`LimitedSession`."""

    def __init__(self, limiter: RateLimiter, http_timeout: float | None = None) -> None:
        super().__init__(http_timeout=http_timeout)
        self.session.close()
        self.session = LimitedSession(limiter)


def no_retries() -> RetryConfig:
    """globus-sdk retries off: ComputeAPI.call retries through the limiter."""
    return RetryConfig(max_retries=0)


def describe_api_error(exc: globus_sdk.GlobusAPIError) -> str:
    """``CODE: message`` from a service error document, without any header."""
    data = exc.raw_json if isinstance(exc.raw_json, dict) else {}
    code = exc.code if exc.code and exc.code != "Error" else data.get("code")
    message = exc.message or data.get("reason") or data.get("detail") or data.get("error")
    if not message:
        message = (exc.text or "").strip()[:500] or f"HTTP {exc.http_status}"
    return f"{code}: {message}" if code else str(message)


def retry_after(exc: globus_sdk.GlobusAPIError) -> float | None:
    value = exc.headers.get("Retry-After") if exc.headers else None
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


def map_api_error(exc: globus_sdk.GlobusAPIError, what: str) -> GatewayError:
    """A final Globus error as the daemon's error, with the service's own words
    (its code, e.g. ``FUNCTION_NOT_FOUND``, also kept as ``service_code``)."""
    error = _map_api_error(exc, what)
    error.service_code = exc.code or ""  # type: ignore[attr-defined]
    return error


def _map_api_error(exc: globus_sdk.GlobusAPIError, what: str) -> GatewayError:
    detail = describe_api_error(exc)
    status = exc.http_status
    if isinstance(exc, globus_sdk.AuthAPIError):
        return Unauthenticated(
            f"{what}: Globus Auth refused the daemon's credentials ({detail}); check the"
            " service account's client id and secret, or log in again with `gcgate login`"
        )
    if status == 401:
        return Unauthenticated(
            f"{what}: Globus Compute did not accept the daemon's login ({detail});"
            " log in again with `gcgate login` or check the service account's credentials"
        )
    if status == 403:
        return PermissionDenied(
            f"{what}: Globus Compute refused this for the daemon's identity ({detail})"
        )
    if status == 404:
        return NotFound(f"{what}: Globus Compute does not know it ({detail})")
    if status in (400, 409, 413, 422):
        return InvalidArgument(f"{what}: Globus Compute refused the request ({detail})")
    if status in RETRY_STATUSES:
        return ServiceUnavailable(
            f"{what}: Globus Compute is unavailable or throttling (HTTP {status}: {detail})"
            " and did not recover within the retry budget; retry later"
        )
    return ServiceUnavailable(f"{what}: unexpected answer from Globus Compute ({detail})")


class ComputeAPI:
    """Compute v2/v3 calls in worker threads, each attempt through the limiter."""

    def __init__(
        self,
        *,
        base_url: str | None,
        authorizer: globus_sdk.authorizers.GlobusAuthorizer,
        limiter: RateLimiter,
        http_timeout: float = 30.0,
        threads: int = 4,
        retry_seconds: float = 120.0,
    ) -> None:
        self.base_url = base_url
        self.authorizer = authorizer
        self.limiter = limiter
        self.http_timeout = http_timeout
        self.retry_seconds = retry_seconds
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="globus-http")
        self._local = threading.local()
        self._closed = False
        #: Consecutive calls that ended in a retryable failure (for describe()).
        self.failing_since: float | None = None
        self.last_error = ""
        #: Why the last call was refused for want of a valid login ("" when it was not).
        self.auth_error = ""
        #: Called (on the event loop) whenever ``auth_error`` changes.
        self.on_auth_change: Callable[[], None] | None = None

    def clients(self) -> tuple[globus_sdk.ComputeClientV2, globus_sdk.ComputeClientV3]:
        """This thread's clients (requests sessions are not shared between threads)."""
        pair = getattr(self._local, "clients", None)
        if pair is None:
            pair = tuple(
                cls(
                    base_url=self.base_url,
                    authorizer=self.authorizer,
                    transport=LimitedTransport(self.limiter, self.http_timeout),
                    retry_config=no_retries(),
                    app_name="gcgated",
                )
                for cls in (globus_sdk.ComputeClientV2, globus_sdk.ComputeClientV3)
            )
            self._local.clients = pair
        return pair  # type: ignore[return-value]

    async def in_thread(self, fn: Callable[[], Any], slot: Slot | None = None) -> Any:
        """Run ``fn`` in a worker thread; ``slot`` pays for its first request."""
        context = contextvars.copy_context()
        if slot is not None:
            context.run(_PREPAID.set, slot)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, context.run, fn)

    async def call(
        self,
        what: str,
        request: Callable[[globus_sdk.ComputeClientV2, globus_sdk.ComputeClientV3], Any],
        *,
        slot: Slot | None = None,
        retry_seconds: float | None = None,
    ) -> dict[str, Any]:
        """One logical call: retried on 429/5xx/network errors within the retry
        budget, re-authorised once on 401; the answer's JSON, or a GatewayError."""
        client_token = CLIENT_TOKEN.get() is not None
        try:
            answer = await self._call(what, request, slot=slot, retry_seconds=retry_seconds)
        except Unauthenticated as exc:
            if client_token:  # the client's token, not the daemon's login
                raise Unauthenticated(
                    f"{what}: Globus refused the access token this client passed"
                    " (expired or revoked?); get a fresh one and retry"
                ) from None
            self._note_auth(str(exc))
            raise
        if not client_token:
            self._note_auth("")
        return answer

    def _note_auth(self, error: str) -> None:
        if error != self.auth_error:
            self.auth_error = error
            if self.on_auth_change is not None:
                self.on_auth_change()

    async def _call(
        self,
        what: str,
        request: Callable[[globus_sdk.ComputeClientV2, globus_sdk.ComputeClientV3], Any],
        *,
        slot: Slot | None,
        retry_seconds: float | None,
    ) -> dict[str, Any]:
        if self._closed:
            raise ServiceUnavailable("gcgated is shutting down; retry once it is back")
        deadline = time.monotonic() + (
            self.retry_seconds if retry_seconds is None else retry_seconds
        )
        attempt = 0
        reauthorized = False
        while True:
            attempt += 1
            if slot is None or not slot.available:
                await self.limiter.acquire()
                slot = Slot()
            try:
                response = await self.in_thread(lambda: request(*self.clients()), slot)
            except globus_sdk.GlobusAPIError as exc:
                status = exc.http_status
                if (
                    status == 401
                    and not reauthorized
                    and not isinstance(exc, globus_sdk.AuthAPIError)
                ):
                    reauthorized = True
                    log.info("%s: HTTP 401; fetching a new access token", what)
                    await self.in_thread(self.authorizer.handle_missing_authorization)
                    slot = None
                    continue
                if status not in RETRY_STATUSES:
                    self._note_ok()
                    raise map_api_error(exc, what) from None
                wait = retry_after(exc)
                if wait is not None or status == 429:
                    self.limiter.pause(wait if wait is not None else self._backoff(attempt))
                    wait = 0.0  # the limiter holds everyone back
                else:
                    wait = self._backoff(attempt)
                self._note_failure(f"HTTP {status}: {describe_api_error(exc)}")
                if time.monotonic() + wait >= deadline:
                    raise map_api_error(exc, what) from None
                log.warning(
                    "%s: HTTP %s from Globus Compute (attempt %d); retrying", what, status, attempt
                )
            except globus_sdk.NetworkError as exc:
                wait = self._backoff(attempt)
                self._note_failure(f"network: {type(exc.exc).__name__}")
                if time.monotonic() + wait >= deadline:
                    raise ServiceUnavailable(
                        f"{what}: cannot reach Globus Compute at {self.describe_url()}"
                        f" ({type(exc.exc).__name__}); retry later"
                    ) from None
                log.warning(
                    "%s: network error talking to Globus Compute (%s, attempt %d); retrying",
                    what,
                    type(exc.exc).__name__,
                    attempt,
                )
            else:
                self._note_ok()
                data = response.data
                return data if isinstance(data, dict) else {"data": data}
            slot = None
            if wait > 0:
                await asyncio.sleep(wait)

    @staticmethod
    def _backoff(attempt: int) -> float:
        return min(BASE_BACKOFF * 2 ** (attempt - 1), MAX_BACKOFF) * (0.5 + random.random() / 2)

    def _note_failure(self, error: str) -> None:
        self.last_error = error
        if self.failing_since is None:
            self.failing_since = time.time()

    def _note_ok(self) -> None:
        self.failing_since = None

    def describe_url(self) -> str:
        return self.base_url or globus_sdk.config.get_service_url("compute")

    def close(self) -> None:
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
