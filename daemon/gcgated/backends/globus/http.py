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

A request that fails without an answer is resent only when it cannot have
reached the service (the connection was never made, or the failure was getting
a token from Globus Auth), or when the call is safe to repeat. A submission is
not: the service has no idempotency key, so a resent submit whose first copy
arrived runs its tasks twice. Such a call fails with :class:`AnswerLost`
instead, saying the service may have accepted it.
"""

from __future__ import annotations

import asyncio
import contextvars
import http
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import globus_sdk
import requests
import urllib3
from globus_sdk.transport import RequestsTransport, RetryConfig

from gcgated.errors import (
    GatewayError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
    Unauthenticated,
)
from gcgated.network import cause, chain, failed_url, host_of, unreachable

from .limiter import RateLimiter

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
#: Seconds each request sent in this context may take, when shorter than the
#: transport's own ``http_timeout`` (a caller is waiting: see INTERACTIVE_TIMEOUT).
_TIMEOUT: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "gcgate_request_timeout", default=None
)

#: A caller waits for the answer (an endpoint lookup, a login): one request may
#: take this long at most (or http_timeout_seconds when that is shorter) ...
INTERACTIVE_TIMEOUT = 10.0
#: ... and a host that cannot be reached is tried again for this long at most,
#: so the caller hears UNAVAILABLE naming the host in seconds. Work the daemon
#: does on its own (submits of held tasks, result polls) keeps retry_seconds.
INTERACTIVE_NETWORK_SECONDS = 3.0

#: HTTP statuses worth retrying: throttling and server-side trouble.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Of those, the ones that do not say the service left the request alone: a
#: gateway that timed out waiting for the service (it may still act on it).
NO_VERDICT_STATUSES = frozenset({504})


class AnswerLost(ServiceUnavailable):
    """A request reached (or may have reached) the service, and its answer was
    lost: the connection broke or timed out after it was sent.

    DEADLINE_EXCEEDED, the gRPC status for "the operation may have completed":
    unlike UNAVAILABLE, it does not invite a blind retry.
    """

    code = "DEADLINE_EXCEEDED"

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        #: What broke: the exception's name (``ReadTimeout``) or a gateway's status.
        self.kind = kind


def maybe_delivered(exc: globus_sdk.NetworkError) -> bool:
    """Whether the failed request may have reached the service: False only when
    no connection was made (refused, unresolvable, connect timeout)."""
    if isinstance(exc, globus_sdk.GlobusConnectionTimeoutError):
        return False
    # NameResolutionError is a NewConnectionError too.
    return not any(
        isinstance(e, urllib3.exceptions.NewConnectionError)
        for e in chain(exc.underlying_exception)
    )


#: Back-off when the service gives no Retry-After (seconds, doubled per attempt).
BASE_BACKOFF = 0.5
MAX_BACKOFF = 15.0
#: New tokens one call may fetch after 401s. More than one: a token renewed
#: because it was refused can itself expire or be revoked before the retry is
#: sent (the retry waits for the limiter); a login that is really refused costs
#: this many grants before UNAUTHENTICATED.
MAX_REAUTHORIZATIONS = 3


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
        timeout = _TIMEOUT.get()
        if timeout is not None:
            kwargs["timeout"] = timeout
        try:
            response = super().send(request, **kwargs)
        except Exception:
            self._limiter.answers.count(request.method, request.url, None)
            raise
        self._limiter.answers.count(request.method, request.url, response.status_code)
        return response


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
    """``CODE: message`` from a service error document, without any header.

    An answer that is not a JSON document is usually a load balancer's page (its
    502/503/504 are HTML): that is described by its status's reason phrase, since
    its markup would fill ``gcgate status`` and the log with many lines of tags; a
    plain-text body is kept, on one line.
    """
    data = exc.raw_json if isinstance(exc.raw_json, dict) else {}
    code = exc.code if exc.code and exc.code != "Error" else data.get("code")
    message = exc.message or data.get("reason") or data.get("detail") or data.get("error")
    if not message:
        text = " ".join((exc.text or "").split())
        if "html" in (exc.content_type or "").lower() or text.lower().startswith("<"):
            text = _reason_phrase(exc.http_status)
        message = text[:500] or f"HTTP {exc.http_status}"
    return f"{code}: {message}" if code else str(message)


def _reason_phrase(status: int) -> str:
    """``Service Unavailable`` for 503; empty for a status HTTP does not name."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def retry_after(exc: globus_sdk.GlobusAPIError) -> float | None:
    value = exc.headers.get("Retry-After") if exc.headers else None
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


def map_api_error(
    exc: globus_sdk.GlobusAPIError, what: str, *, retried: bool = True
) -> GatewayError:
    """A final Globus error as the daemon's error, with the service's own words
    (its code, e.g. ``FUNCTION_NOT_FOUND``, also kept as ``service_code``);
    ``retried``: whether a 429/5xx was retried within a budget before it was final."""
    error = _map_api_error(exc, what, retried)
    error.service_code = exc.code or ""  # type: ignore[attr-defined]
    return error


def _map_api_error(exc: globus_sdk.GlobusAPIError, what: str, retried: bool) -> GatewayError:
    detail = describe_api_error(exc)
    status = exc.http_status
    if isinstance(exc, globus_sdk.AuthAPIError) and status in RETRY_STATUSES:
        # Auth is down or throttling: the credentials were not refused.
        return ServiceUnavailable(
            f"{what}: Globus Auth is unavailable (HTTP {status}: {detail}), so gcgated"
            " cannot get an access token for Globus Compute; it keeps trying, retry later"
        )
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
            + (" and did not recover within the retry budget" if retried else "")
            + "; retry later"
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
        #: Attempts sent again, by why: the HTTP status ("429", "401") or "network".
        self.retries: Counter[str] = Counter()

    def clients(
        self, authorizer: globus_sdk.authorizers.GlobusAuthorizer
    ) -> tuple[globus_sdk.ComputeClientV2, globus_sdk.ComputeClientV3]:
        """This thread's clients (requests sessions are not shared between threads),
        sending with ``authorizer``: a thread serves one request at a time, and
        globus-sdk reads a client's authorizer when it sends."""
        pair = getattr(self._local, "clients", None)
        if pair is None:
            pair = tuple(
                cls(
                    base_url=self.base_url,
                    transport=LimitedTransport(self.limiter, self.http_timeout),
                    retry_config=no_retries(),
                    app_name="gcgated",
                )
                for cls in (globus_sdk.ComputeClientV2, globus_sdk.ComputeClientV3)
            )
            self._local.clients = pair
        for client in pair:
            client.authorizer = authorizer
        return pair  # type: ignore[return-value]

    @property
    def interactive_timeout(self) -> float:
        """Seconds one request may take while a caller waits for it."""
        return min(INTERACTIVE_TIMEOUT, self.http_timeout)

    async def in_thread(
        self, fn: Callable[[], Any], slot: Slot | None = None, *, interactive: bool = False
    ) -> Any:
        """Run ``fn`` in a worker thread; ``slot`` pays for its first request;
        ``interactive``: each of its requests within :attr:`interactive_timeout`."""
        context = contextvars.copy_context()
        if slot is not None:
            context.run(_PREPAID.set, slot)
        if interactive:
            context.run(_TIMEOUT.set, self.interactive_timeout)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, context.run, fn)

    async def call(
        self,
        what: str,
        request: Callable[[globus_sdk.ComputeClientV2, globus_sdk.ComputeClientV3], Any],
        *,
        slot: Slot | None = None,
        retry_seconds: float | None = None,
        resend: bool = True,
        token: str | None = None,
        interactive: bool = False,
    ) -> dict[str, Any]:
        """One logical call: retried on 429/5xx/network errors within the retry
        budget, re-authorised once on 401; the answer's JSON, or a GatewayError.

        ``interactive``: a client waits for this answer, so each request gets
        :attr:`interactive_timeout` and an unreachable host INTERACTIVE_NETWORK_SECONDS
        of retries before UNAVAILABLE (the service's own 429/5xx keep the budget).

        ``resend=False``: the request must not reach the service twice (a
        submit); once it may have arrived without an answer, :class:`AnswerLost`.
        ``token``: a client's own access token to send instead of the daemon's
        login (never renewed, and its refusal says nothing about the login).
        """
        authorizer = self.authorizer if token is None else globus_sdk.AccessTokenAuthorizer(token)
        try:
            answer = await self._call(
                what,
                request,
                authorizer,
                slot=slot,
                retry_seconds=retry_seconds,
                resend=resend,
                interactive=interactive,
            )
        except Unauthenticated as exc:
            if token is not None:  # the client's token, not the daemon's login
                raise Unauthenticated(
                    f"{what}: Globus refused the access token this client passed"
                    " (expired or revoked?); get a fresh one and retry"
                ) from None
            self._note_auth(str(exc))
            raise
        if token is None:
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
        authorizer: globus_sdk.authorizers.GlobusAuthorizer,
        *,
        slot: Slot | None,
        retry_seconds: float | None,
        resend: bool,
        interactive: bool,
    ) -> dict[str, Any]:
        if self._closed:
            raise ServiceUnavailable("gcgated is shutting down; retry once it is back")
        budget = self.retry_seconds if retry_seconds is None else retry_seconds
        started = time.monotonic()
        deadline = started + budget
        network_deadline = (
            min(deadline, started + INTERACTIVE_NETWORK_SECONDS) if interactive else deadline
        )
        timeout = self.interactive_timeout if interactive else self.http_timeout
        attempt = 0
        reauthorized = 0
        while True:
            attempt += 1
            if slot is None or not slot.available:
                await self.limiter.acquire()
                slot = Slot()
            try:
                response = await self.in_thread(
                    lambda: request(*self.clients(authorizer)), slot, interactive=interactive
                )
            except globus_sdk.GlobusAPIError as exc:
                status = exc.http_status
                auth = isinstance(exc, globus_sdk.AuthAPIError)
                if status == 401 and reauthorized < MAX_REAUTHORIZATIONS and not auth:
                    reauthorized += 1
                    self.retries["401"] += 1
                    log.info("%s: HTTP 401; fetching a new access token", what)
                    if not await self.in_thread(authorizer.handle_missing_authorization):
                        raise map_api_error(exc, what) from None  # a client's token
                    slot = None
                    continue
                if status not in RETRY_STATUSES:
                    self._note_ok()
                    raise map_api_error(exc, what) from None
                service = "Globus Auth" if auth else "Globus Compute"
                self._note_failure(f"{service}: HTTP {status}: {describe_api_error(exc)}")
                if not resend and not auth and status in NO_VERDICT_STATUSES:
                    raise self._answer_lost(what, f"HTTP {status} from a gateway") from None
                wait = retry_after(exc)
                if wait is not None or status == 429:
                    pause = wait if wait is not None else self._backoff(attempt)
                    self.limiter.pause(pause)
                    wait = 0.0  # the limiter holds everyone back
                    if time.monotonic() + pause >= deadline:
                        raise map_api_error(exc, what, retried=budget > 0) from None
                else:
                    wait = self._backoff(attempt)
                wait = min(wait, deadline - time.monotonic())
                if wait < 0:
                    raise map_api_error(exc, what, retried=budget > 0) from None
                self.retries[str(status)] += 1
                log.warning(
                    "%s: HTTP %s from %s (attempt %d); retrying", what, status, service, attempt
                )
            except globus_sdk.NetworkError as exc:
                kind = type(exc.underlying_exception).__name__
                url = failed_url(exc)
                compute = not url or url.startswith(self.describe_url())
                service = "Globus Compute" if compute else "Globus Auth"
                where = host_of(url or self.describe_url())
                self._note_failure(f"{service} at {where}: {cause(exc, timeout)}")
                if not resend and compute and maybe_delivered(exc):
                    raise self._answer_lost(what, kind) from None
                wait = min(self._backoff(attempt), network_deadline - time.monotonic())
                if wait < 0:
                    error = unreachable(
                        exc,
                        what,
                        service=service,
                        url=self.describe_url(),
                        timeout=timeout,
                        tried_for=time.monotonic() - started,
                    )
                    log.warning("%s", error)
                    raise error from None
                self.retries["network"] += 1
                log.log(
                    logging.INFO if interactive else logging.WARNING,
                    "%s: network error talking to %s (%s, attempt %d); retrying",
                    what,
                    service,
                    kind,
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
    def _answer_lost(what: str, kind: str) -> AnswerLost:
        return AnswerLost(
            f"{what}: the request may have reached Globus Compute, but its answer was lost"
            f" ({kind}); gcgated does not send it again (the service cannot recognise a"
            " repeat)",
            kind,
        )

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
