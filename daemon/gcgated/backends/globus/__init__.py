"""The Globus Compute backend: every endpoint id that is not the local endpoint's.

:class:`GlobusBackend` forwards to the Globus Compute web service with the
daemon's own login (see :mod:`.auth`), so every client on the host shares one
session, one rate budget (:mod:`.limiter`) and one result store:

- every task goes to the service through one :mod:`.pipeline`, in lanes per
  caller and options, in few submit requests;
- with the daemon's login, ``accept`` answers with task ids the daemon makes,
  once the tasks are recorded in the :mod:`.ledger`; ``dispatch`` (after the
  core stored them) queues them in the pipeline, which sends them in the
  background and maps each to the id the service assigned. A client passing its
  own token (a :class:`~gcgated.caller.Caller` with a token) waits in ``accept``
  for its submit and gets the service's ids: the token lives only in memory, so
  nothing could send its tasks after a restart;
- results are pushed by the service to a queue per task group and taken by
  the tracker, which acknowledges each once its outcome is stored, and polls
  only as a safety net (:mod:`.tracker`, :mod:`.push`); it reports each final
  outcome once, under the daemon's id; on start the core
  dispatches every unfinished task again, and the ledger says whether it is
  to be sent, was being sent (it fails: it may have run), or is to be polled;
- endpoint status and metadata are cached for a few seconds.

Every HTTP call runs in a worker thread (:mod:`.http`); none blocks the loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from itertools import repeat
from typing import Any

import globus_sdk
from gcgate.constants import (
    LOCAL_ENDPOINT_ALIAS,
    LOCAL_ENDPOINT_ID,
    TaskStatus,
)

from gcgated.caller import DAEMON, Caller
from gcgated.config import Config, check_globus_settings
from gcgated.credentials import ClientCredentials
from gcgated.errors import FailedPrecondition, NotFound, StartupError, Unauthenticated
from gcgated.model import SubmitOptions
from gcgated.network import NETWORK_ERRORS, unreachable
from gcgated.store import Store
from gcgated.validation import check_submission_size

from ..base import Accepted, Outcome, OutcomeCallback, RunningCallback, SubmitGroup, TaskSpec
from .auth import Login, ServiceAccountLogin, UserLogin
from .http import ComputeAPI
from .ledger import QUEUED, SENDING, SENT, Ledger
from .ledger import TABLE as LEDGER_TABLE
from .limiter import RateLimiter
from .pipeline import INTERRUPTED, Pipeline, Queued, lane_doc
from .submit import FUNCTIONS_TABLE, FunctionRegistry
from .tracker import Tracker
from .traffic import Traffic

__all__ = ["HEALTH_SERVICE", "GlobusBackend", "GlobusSettings", "build_globus_backend"]

log = logging.getLogger(__name__)

#: Environment variable for the Compute service's base URL (tests, sandboxes).
COMPUTE_URL_ENV = "GCGATE_COMPUTE_URL"
#: Name under which the standard health service reports the Globus login.
HEALTH_SERVICE = "gcgate.globus"
#: What a cancelled Globus task's record says: taken out before it was sent, or
#: sent (Globus Compute has no way to cancel a task, so it may still run).
NOT_SENT = (
    "Cancelled at a client's request before it was submitted to Globus Compute;"
    " it was not sent and does not run."
)
MAY_STILL_RUN = (
    "Cancelled at a client's request: gcgate stopped waiting for it. Globus Compute"
    " has no way to cancel a task, so it may still run on its endpoint; its result,"
    " if one comes, is ignored."
)
#: The store table of the tasks created with a client's own token, while they are
#: in flight: task id -> ``{"owner": the token's fingerprint (never the token),
#: "group": the service task group}``, so a restarted daemon knows to wait for
#: that client's token before polling them.
OWNERS_TABLE = "globus_tasks"


@dataclass
class GlobusSettings:
    """The backend's tunables, taken from the daemon's :class:`Config` (where
    their defaults and meanings are documented), checked together."""

    compute_url: str
    rate_limit_requests: int
    rate_limit_window_seconds: float
    rate_limit_burst: int
    submit_window_ms: float
    submit_max_tasks: int
    submit_max_bytes: int
    poll_chunk: int
    poll_min_seconds: float
    poll_max_seconds: float
    result_push: bool
    push_overdue_seconds: float
    endpoint_cache_seconds: float
    retry_seconds: float
    http_timeout_seconds: float

    def validate(self) -> None:
        """Refuse settings that cannot work (StartupError names the setting); the
        rules are the config loader's, which applies them when a file is read."""
        try:
            check_globus_settings(self)
        except ValueError as exc:
            raise StartupError(str(exc)) from None

    @classmethod
    def from_config(cls, config: Config) -> GlobusSettings:
        settings = cls(**{f.name: getattr(config, f.name) for f in fields(cls)})
        if not settings.compute_url:
            settings.compute_url = os.environ.get(COMPUTE_URL_ENV, "")
        settings.compute_url = settings.compute_url.rstrip("/")
        settings.validate()
        return settings


class GlobusBackend:
    """Forwards tasks to Globus Compute and tracks them to their results."""

    name = "globus"

    def __init__(
        self, store: Store, login: Login, limiter: RateLimiter, settings: GlobusSettings
    ) -> None:
        self.store = store
        self.login = login
        self.limiter = limiter
        self.settings = settings
        self.api = ComputeAPI(
            base_url=settings.compute_url or None,
            authorizer=login.authorizer,
            limiter=limiter,
            http_timeout=settings.http_timeout_seconds,
            retry_seconds=settings.retry_seconds,
        )
        self.registry = FunctionRegistry(store.table(FUNCTIONS_TABLE), self.api, self.identity)
        self.ledger = Ledger(store.table(LEDGER_TABLE))
        self._owners = store.table(OWNERS_TABLE)
        self.pipeline = Pipeline(
            limiter=limiter,
            registry=self.registry,
            ledger=self.ledger,
            window=settings.submit_window_ms / 1000.0,
            max_tasks=settings.submit_max_tasks,
            max_bytes=settings.submit_max_bytes,
            create_queue=settings.result_push,
        )
        self.pipeline.on_sent = self._sent
        self.pipeline.on_failed = self._fail
        #: Accepted, not yet dispatched: daemon task id -> (lane, function record).
        self._accepted: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        #: Service task id -> daemon task id, for the tasks being polled.
        self._daemon_ids: dict[str, str] = {}
        #: Client-token tasks submitted, not yet dispatched: service task id ->
        #: the service task group it went to.
        self._submitted: dict[str, str] = {}
        #: Daemon-id tasks cancelled while their submit was on its way: not tracked
        #: when its answer comes (see _sent).
        self._cancelled: set[str] = set()
        #: Ledger rows whose outcomes are stored, dropped together (see _forget).
        self._forget_ids: list[str] = []
        self._ledger_open = True
        self._on_outcome: OutcomeCallback | None = None
        self.tracker: Tracker | None = None
        self._health_listeners: list[Callable[[bool], None]] = []
        self._healthy: bool | None = None
        self.api.on_auth_change = self._notify_health
        self._cache: dict[tuple[str, str, str], tuple[float, dict[str, Any]]] = {}
        self._lookups: dict[tuple[str, str, str], asyncio.Future[dict[str, Any]]] = {}
        self.state = "stopped"

    # ------------------------------------------------------------ lifecycle

    async def start(
        self, on_outcome: OutcomeCallback, on_running: RunningCallback | None = None
    ) -> None:
        """Start the submit pipeline and the result tracker. ``on_running`` is not
        used: the service's results arrive final, pushed, and its "running" state
        is not followed (the tasks stay "waiting-for-ep" here until then)."""
        self._on_outcome = on_outcome
        self.tracker = Tracker(
            api=self.api,
            limiter=self.limiter,
            on_outcome=self._report,
            chunk=self.settings.poll_chunk,
            min_interval=self.settings.poll_min_seconds,
            max_interval=self.settings.poll_max_seconds,
            push=self.settings.result_push,
            overdue=self.settings.push_overdue_seconds,
            expected=self._expected,
        )
        self.tracker.on_passthrough_done = self._owners.delete
        self.tracker.start()
        home = self.pipeline.homes.get(DAEMON) if self.login.logged_in else ""
        if home:
            self.tracker.drain(home)  # copies of results the last run stored by poll
        self.state = "ready"
        login = self.login.describe()
        log.info(
            "Globus Compute backend ready: %s, %s; rate limit %d requests / %.0fs",
            self.api.describe_url(),
            f"login: {login['state']} {login['identity']}".strip()
            if self.login.logged_in
            else "not logged in (`gcgate login`)",
            self.limiter.limit,
            self.limiter.window,
        )

    async def stop(self) -> None:
        self.state = "stopped"
        # A submit in flight gets to record its answer; queued tasks stay in the
        # ledger and are sent after the restart.
        await self.pipeline.close(grace=self.settings.http_timeout_seconds)
        if self.tracker is not None:
            await self.tracker.stop()
        self.api.close()
        self.login.close()
        # Rows of outcomes the core stores after this stay: a final task's row is
        # never read again.
        self._ledger_open = False

    # ---------------------------------------------------------------- tasks

    def identity(self, caller: Caller) -> str:
        """Whom ``caller`` acts as: a client's token (by fingerprint), or the daemon's login."""
        return caller.key or self.login.identity

    def _require_login(self, endpoint_id: str, caller: Caller) -> None:
        """Without any login, Globus endpoints cannot be reached: UNAUTHENTICATED."""
        if not self.login.logged_in and caller.token is None:
            raise Unauthenticated(
                f"endpoint {endpoint_id} is a Globus Compute endpoint, and gcgated is not"
                " logged in to Globus: run `gcgate login` (or configure a service account)."
                f" Without a login only the local endpoint ({LOCAL_ENDPOINT_ID}, alias"
                f" {LOCAL_ENDPOINT_ALIAS!r}) is served."
            )

    async def accept(
        self,
        endpoint_id: str,
        groups: Sequence[SubmitGroup],
        options: SubmitOptions,
        caller: Caller,
    ) -> Accepted:
        self._require_login(endpoint_id, caller)
        if caller.token is not None:
            accepted = await self.pipeline.submit(caller, endpoint_id, groups, options)
            # Results pushed from the caller's home group only (see Pipeline._answer).
            followed = "" if options.task_group_id else accepted.task_group_id
            for task_ids in accepted.task_ids:
                self._submitted.update(zip(task_ids, repeat(followed)))
            return accepted
        if self.api.auth_error:
            # The login was refused at the last request: tasks accepted now would
            # only fail; say so now (it clears with `gcgate login` or a success).
            raise Unauthenticated(self.api.auth_error)
        # The daemon's own ids, durable before the answer; sent in the background.
        task_group_id, new_group = options.task_group_id, ""
        if not task_group_id:
            task_group_id = new_group = str(uuid.uuid4())
        if new_group or self.ledger.is_group(task_group_id):
            options = dataclasses.replace(options, task_group_id="")  # unknown to the service
        lane = lane_doc(endpoint_id, options)
        ids = [[str(uuid.uuid4()) for _ in group.payloads] for group in groups]
        self.ledger.queued([(t, lane) for group_ids in ids for t in group_ids], new_group)
        for group, group_ids in zip(groups, ids, strict=True):
            for task_id in group_ids:
                self._accepted[task_id] = (lane, group.function)
        return Accepted(request_id=str(uuid.uuid4()), task_group_id=task_group_id, task_ids=ids)

    def dispatch(self, tasks: Sequence[TaskSpec], caller: Caller) -> None:
        if self.tracker is None:
            raise RuntimeError("GlobusBackend.dispatch() before start()")
        ids = [task.task_id for task in tasks]
        if caller.token is not None:  # created with a client's own token
            by_group: dict[str, list[str]] = {}
            for task_id in ids:
                by_group.setdefault(self._submitted.pop(task_id, ""), []).append(task_id)
            for group, group_ids in by_group.items():
                mark = {"owner": caller.key, "group": group}
                self._owners.set_many([(task_id, mark) for task_id in group_ids])
                self.tracker.add(group_ids, caller, group)
            return
        lanes: dict[int, tuple[dict[str, Any], list[Queued]]] = {}
        resumed = []
        for task in tasks:
            accepted = self._accepted.pop(task.task_id, None)
            if accepted is None:
                resumed.append(task)
                continue
            lane, function = accepted
            lanes.setdefault(id(lane), (lane, []))[1].append(
                Queued(task.task_id, function, task.payload)
            )
        for lane, items in lanes.values():
            self.pipeline.enqueue(lane, items)
        if resumed:
            self._resume(resumed)

    def _resume(self, tasks: Sequence[TaskSpec]) -> None:
        """Tasks of a previous run: send, fail, or poll each as its ledger row says."""
        assert self.tracker is not None
        rows = self.ledger.lookup([task.task_id for task in tasks])
        lanes: dict[str, tuple[dict[str, Any], list[Queued]]] = {}
        interrupted, own, parked = [], [], []
        sent: list[tuple[str, str, str]] = []
        for task in tasks:
            row = rows.get(task.task_id)
            state = row["state"] if row else None
            if row is not None and state == SENT:
                sent.append((task.task_id, row["service_id"], row.get("group", "")))
            elif state == SENDING:
                interrupted.append(task.task_id)
            elif row is not None and state == QUEUED:
                lane = {k: v for k, v in row.items() if k != "state"}
                function = self.store.get_function(task.function_id) or {}
                key = repr(sorted(lane.items()))
                lanes.setdefault(key, (lane, []))[1].append(
                    Queued(task.task_id, function, task.payload)
                )
            else:  # no row: created with a client's token (ids from the service)
                mark = self._owners.get(task.task_id)
                if mark is None:
                    own.append(task.task_id)
                else:
                    parked.append((task.task_id, mark["owner"], mark.get("group", "")))
        if interrupted:
            self._fail(interrupted, INTERRUPTED)
        for lane, items in lanes.values():
            self.pipeline.enqueue(lane, items)
        self._sent(sent, resumed=True)
        self.tracker.add(own, resumed=True)
        for task_id, owner, group in parked:
            self.tracker.park([task_id], owner, group)

    def _sent(self, sent: list[tuple[str, str, str]], resumed: bool = False) -> None:
        """The service took these tasks of the daemon's (daemon id, service id,
        service task group; the ledger has them): track them by the service's ids."""
        assert self.tracker is not None
        by_group: dict[str, list[str]] = {}
        for task_id, service_id, group in sent:
            if task_id in self._cancelled:  # cancelled while its submit was on its way
                self._cancelled.discard(task_id)
                self._forget(task_id)
                continue
            self._daemon_ids[service_id] = task_id
            by_group.setdefault(group, []).append(service_id)
        for group, service_ids in by_group.items():
            self.tracker.add(service_ids, DAEMON, group, resumed=resumed)

    def _fail(self, task_ids: list[str], why: str) -> None:
        """Tasks that will never reach the service (or must not be sent again)."""
        assert self._on_outcome is not None
        now = time.time()
        for task_id in task_ids:
            self._cancelled.discard(task_id)
            self._on_outcome(
                Outcome(
                    task_id,
                    TaskStatus.FAILED,
                    exception=why,
                    completion_t=now,
                    on_stored=functools.partial(self._forget, task_id),
                )
            )

    def _expected(self, caller_key: str, service_id: str) -> bool:
        """Whether a pushed result for ``service_id``, not tracked yet, may still
        belong to a task of ours: a submit of the caller's is on its way, or a
        client-token task is answered and not yet stored (see Tracker._pushed)."""
        return service_id in self._submitted or self.pipeline.sending(caller_key)

    def _report(self, outcome: Outcome) -> None:
        """The tracker's outcome, under the daemon's id (the service's in details);
        once stored, the tracker's part (acknowledging pushed messages), then the
        ledger row goes."""
        assert self._on_outcome is not None
        task_id = self._daemon_ids.pop(outcome.task_id, None)
        if task_id is not None:
            details = {**outcome.details, "globus_task_id": outcome.task_id}
            outcome = dataclasses.replace(
                outcome,
                task_id=task_id,
                details=details,
                on_stored=_then(outcome.on_stored, functools.partial(self._forget, task_id)),
            )
        self._on_outcome(outcome)

    def _forget(self, task_id: str) -> None:
        """A daemon-id task's outcome is stored (``Outcome.on_stored``): its ledger
        row goes. Not sooner: killed in between, the daemon would resume a task
        whose row is gone. The rows of one store write go in one ledger write."""
        if not self._ledger_open:
            return
        if not self._forget_ids:
            asyncio.get_running_loop().call_soon(self._forget_now)
        self._forget_ids.append(task_id)

    def _forget_now(self) -> None:
        forget, self._forget_ids = self._forget_ids, []
        if forget and self._ledger_open:
            self.ledger.forget(forget)

    def check_submission(self, payloads: Sequence[str]) -> None:
        """The Compute service's 10 MB per submission (its limit, not a setting)."""
        check_submission_size(list(payloads))

    def cancel(self, task_ids: Sequence[str]) -> dict[str, str]:
        """The Compute service cannot cancel a task (no such route in its v2 or v3
        API): a task not yet in a submit request is taken out and never sent;
        for the others the daemon stops waiting, and their results, should they
        come (pushed or polled), are acknowledged and dropped."""
        assert self.tracker is not None
        wanted = set(task_ids)
        withdrawn = self.pipeline.withdraw(wanted)
        service_ids = {d: s for s, d in self._daemon_ids.items() if d in wanted}
        reasons = {}
        for task_id in task_ids:
            if task_id in withdrawn:
                reasons[task_id] = NOT_SENT
                self._forget(task_id)
                continue
            reasons[task_id] = MAY_STILL_RUN
            service_id = service_ids.get(task_id)
            if service_id is not None:
                del self._daemon_ids[service_id]
                self.tracker.untrack([service_id])
                self._forget(task_id)
            elif self.ledger.lookup([task_id]):  # its submit is on its way
                self._cancelled.add(task_id)
            else:  # created with a client's token: tracked under the service's id
                self.tracker.untrack([task_id])
        return reasons

    def adopt(self, task_ids: Sequence[str], caller: Caller) -> int:
        """A client passing a token (``caller``) asked about these tasks: its tasks
        that wait for a token (after a restart, or an expired one) are polled with it."""
        if caller.token is None or self.tracker is None:
            return 0
        return self.tracker.adopt(task_ids, caller)

    # ------------------------------------------------------------ endpoints

    async def endpoint_status(self, endpoint_id: str, caller: Caller) -> dict[str, Any]:
        return await self._endpoint_doc(
            "status",
            endpoint_id,
            caller,
            lambda v2, _v3: v2.get_endpoint_status(endpoint_id),
        )

    async def endpoint_metadata(self, endpoint_id: str, caller: Caller) -> dict[str, Any]:
        return await self._endpoint_doc(
            "metadata", endpoint_id, caller, lambda v2, _v3: v2.get_endpoint(endpoint_id)
        )

    async def allowed_functions(self, endpoint_id: str, caller: Caller) -> dict[str, Any]:
        return await self._endpoint_doc(
            "allowed functions",
            endpoint_id,
            caller,
            lambda _v2, v3: v3.get_endpoint_allowlist(endpoint_id),
        )

    async def stop_endpoint(self, endpoint_id: str, caller: Caller) -> dict[str, Any]:
        """``POST /v3/endpoints/{id}/lock``: the service drops the endpoint's connections."""
        return await self._change_endpoint(
            "stopping", endpoint_id, caller, lambda _v2, v3: v3.lock_endpoint(endpoint_id)
        )

    async def delete_endpoint(self, endpoint_id: str, caller: Caller) -> dict[str, Any]:
        return await self._change_endpoint(
            "deleting", endpoint_id, caller, lambda v2, _v3: v2.delete_endpoint(endpoint_id)
        )

    async def _change_endpoint(
        self, what: str, endpoint_id: str, caller: Caller, request: Any
    ) -> dict[str, Any]:
        """One request that changes an endpoint; what was cached of endpoints is stale."""
        self._require_login(endpoint_id, caller)
        answer = await self.api.call(
            f"{what} endpoint {endpoint_id}", request, token=caller.token, interactive=True
        )
        self._cache.clear()
        return answer

    async def service_version(self, caller: Caller) -> dict[str, Any]:
        """``GET /v2/version?service=all`` as ``caller`` (cached like endpoint documents)."""
        if not self.login.logged_in and caller.token is None:
            raise Unauthenticated(
                "asking Globus Compute for its version needs a Globus login, and gcgated is"
                " not logged in: run `gcgate login` (or configure a service account)"
            )
        return await self._cached(
            ("version", "all"),
            caller,
            "asking for the service's version",
            lambda v2, _v3: v2.get_version(service="all"),
        )

    async def list_endpoints(self, role: str, caller: Caller) -> list[dict[str, Any]]:
        """What ``GET /v2/endpoints`` lists for ``caller``; [] without any login."""
        if not self.login.logged_in and caller.token is None:
            return []
        answer = await self._cached(
            ("list", role),
            caller,
            "listing endpoints",
            lambda v2, _v3: v2.get_endpoints(role=role or globus_sdk.MISSING),
        )
        endpoints = answer.get("data", [])
        return [e for e in endpoints if isinstance(e, dict)]

    async def delete_function(
        self, function_id: str, caller: Caller
    ) -> tuple[bool, dict[str, Any]]:
        """Delete ``caller``'s Globus registration of a function, if it has one."""
        identity = self.identity(caller)
        globus_id = self.registry.known(identity, function_id)
        if globus_id is None:
            return False, {}
        try:
            answer = await self.api.call(
                f"deleting function {function_id}",
                lambda v2, _v3: v2.delete_function(globus_id),
                token=caller.token,
                interactive=True,
            )
        except NotFound:
            answer = None  # already gone at the service
        self.registry.forget(identity, function_id)
        return answer is not None, answer or {}

    async def _endpoint_doc(
        self, kind: str, endpoint_id: str, caller: Caller, request: Any
    ) -> dict[str, Any]:
        self._require_login(endpoint_id, caller)
        return await self._cached(
            (kind, endpoint_id), caller, f"endpoint {endpoint_id} {kind}", request
        )

    async def _cached(
        self, what_key: tuple[str, str], caller: Caller, what: str, request: Any
    ) -> dict[str, Any]:
        """A lookup as ``caller``, answered from the cache for endpoint_cache_seconds
        (per identity), one request for concurrent askers."""
        key = (*what_key, self.identity(caller))
        cached = self._cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        if key in self._lookups:
            return await asyncio.shield(self._lookups[key])
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._lookups[key] = future
        try:
            doc = await self.api.call(what, request, token=caller.token, interactive=True)
            self._cache[key] = (time.monotonic() + self.settings.endpoint_cache_seconds, doc)
            future.set_result(doc)
            return doc
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        finally:
            del self._lookups[key]

    # --------------------------------------------------------------- health

    @property
    def healthy(self) -> bool:
        """Logged in, and the last request was not refused for the login."""
        return self.login.logged_in and not self.api.auth_error

    def on_health(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(healthy)`` now and whenever the login's health changes."""
        self._health_listeners.append(listener)
        listener(self.healthy)

    def _notify_health(self) -> None:
        healthy = self.healthy
        if healthy != self._healthy:
            self._healthy = healthy
            for listener in self._health_listeners:
                listener(healthy)

    # ---------------------------------------------------------------- login

    def _user_login(self) -> UserLogin:
        if not isinstance(self.login, UserLogin):
            raise FailedPrecondition(
                f"gcgated acts as the service account {self.login.identity} (client"
                " credentials are configured); remove them to log in as a user"
            )
        return self.login

    async def start_login(self, force: bool) -> tuple[str, str]:
        """(login id, authorize URL) of a new native-app login."""
        login = self._user_login()
        return await self._with_auth("starting a Globus login", lambda: login.start(force))

    async def complete_login(self, login_id: str, code: str) -> dict[str, str]:
        login = self._user_login()
        who = await self._with_auth(
            "completing the Globus login", lambda: login.complete(login_id, code)
        )
        self._cache.clear()  # a new login sees endpoints afresh
        self.api.auth_error = ""
        self._notify_health()
        return who

    async def logout(self) -> dict[str, str]:
        login = self._user_login()
        who = await self._with_auth("logging out of Globus", login.logout)
        self._cache.clear()
        self._notify_health()
        return who

    async def _with_auth(self, what: str, fn: Callable[[], Any]) -> Any:
        """``fn`` (which talks to Globus Auth, a person waiting) in a worker thread,
        each request within the interactive timeout; an unreachable Auth host is
        UNAVAILABLE naming it, logged as one line."""
        try:
            return await self.api.in_thread(fn, interactive=True)
        except NETWORK_ERRORS as exc:
            error = unreachable(
                exc,
                what,
                service="Globus Auth",
                url=globus_sdk.config.get_service_url("auth"),
                timeout=self.api.interactive_timeout,
            )
            log.warning("%s", error)
            raise error from None

    def whoami(self) -> dict[str, Any]:
        info = self.login.describe()
        if isinstance(self.login, UserLogin):
            info.update(self.login.who())
        return info

    # --------------------------------------------------------------- status

    def pending_reasons(self, tasks: Mapping[str, str]) -> dict[str, str]:
        """Accepted, waiting to be submitted (and why, since when), being submitted,
        or submitted and waiting for its endpoint (offline, if a status lookup
        said so; how its result will come): one pass over the pipeline, no I/O."""
        trouble = self._trouble()
        offline = self._offline_endpoints()
        states = self.pipeline.states(tasks.keys())
        reasons = {}
        for task_id, endpoint_id in tasks.items():
            state = states.get(task_id)
            if task_id in self._accepted:
                reasons[task_id] = "accepted; about to be queued for Globus Compute"
            elif state == QUEUED:
                reasons[task_id] = f"waiting to be submitted to Globus Compute{trouble}"
            elif state == SENDING:
                reasons[task_id] = f"being submitted to Globus Compute{trouble}"
            elif self.tracker is not None and self.tracker.waits_for_token(task_id):
                reasons[task_id] = (
                    "submitted to Globus Compute with a client's own token; gcgated asks for"
                    " its result once that client asks about it again (with its token)"
                )
            elif self.tracker is not None:
                seen = " (offline at the last status lookup)" if endpoint_id in offline else ""
                reasons[task_id] = (
                    f"submitted to Globus Compute; waiting for endpoint {endpoint_id}{seen}"
                    f" to run it; {self.tracker.delivery()}"
                )
        return reasons

    def _trouble(self) -> str:
        """Why submits do not go out, if they do not: ": <cause>, since <time>; ..."."""
        # The earlier of the two: requests fail (and are retried) before the
        # pipeline gives a round up and holds its tasks, and the time shown must
        # not move forward while the same outage goes on.
        times = [t for t in (self.pipeline.held_since, self.api.failing_since) if t is not None]
        if not times:
            return ""
        since = min(times)
        cause = self.api.last_error or self.pipeline.held_error
        return f": {cause}, since {utc_clock(since)}; gcgated keeps trying"

    def _offline_endpoints(self) -> set[str]:
        """Endpoints whose last status lookup (by anyone, still cached) said offline."""
        return {
            key[1]
            for key, (_, doc) in self._cache.items()
            if key[0] == "status" and doc.get("status") == "offline"
        }

    @property
    def held_error(self) -> str:
        """Why tasks still wait to be submitted, if a submit could not reach the service."""
        return self.pipeline.held_error if self.pipeline.waiting else ""

    @property
    def shown_state(self) -> str:
        """``state``, or "unavailable" (no login) or "degraded" (failing) when ready."""
        if self.state == "ready" and not self.healthy:
            return "unavailable"
        if self.state == "ready" and (self.api.failing_since is not None or self.held_error):
            return "degraded"
        return self.state

    def traffic(self) -> Traffic:
        """Counts and gauges for the daemon's metrics; cheap (unlike :meth:`describe`,
        nothing here walks the tasks in flight)."""
        tracker, pipeline, limiter = self.tracker, self.pipeline, self.limiter
        rate = limiter.describe()
        return Traffic(
            state=self.shown_state,
            submitting=pipeline.waiting,
            in_flight=tracker.in_flight - tracker.parked if tracker else 0,
            parked=tracker.parked if tracker else 0,
            submit_requests=pipeline.requests,
            tasks_submitted=pipeline.tasks_submitted,
            submit_answers_lost=pipeline.answers_lost,
            polls=tracker.polls if tracker else 0,
            poll_answers_lost=tracker.answers_lost if tracker else 0,
            results_pushed=tracker.pushed if tracker else 0,
            push_repeats=tracker.duplicates if tracker else 0,
            push=dict(tracker.push_counts()) if tracker else {},
            requests=limiter.answers.snapshot(),
            retries=dict(self.api.retries),
            rate_limit=limiter.limit,
            rate_window_seconds=limiter.window,
            rate_used=rate["sent_in_window"],
            rate_paused_seconds=rate["paused_seconds"],
            throttled=limiter.throttled,
            rate_wait_seconds=limiter.waited,
        )

    def describe(self) -> dict[str, Any]:
        tracker = self.tracker
        return {
            "state": self.shown_state,
            "endpoint_id": "",
            "compute_url": self.api.describe_url(),
            "login": self.login.describe(),
            "in_flight": tracker.in_flight if tracker else 0,
            "waiting_to_submit": self.pipeline.waiting,
            "submit_requests": self.pipeline.requests,
            "tasks_submitted": self.pipeline.tasks_submitted,
            "submit_answers_lost": self.pipeline.answers_lost,
            "poll_answers_lost": tracker.answers_lost if tracker else 0,
            "functions_registered": self.registry.registered,
            # Registrations this store holds (from any run): Globus was used here.
            "functions_at_globus": len(self.registry.table),
            "waiting_for_client_token": tracker.parked if tracker else 0,
            "polls": tracker.polls if tracker else 0,
            "poll_interval_seconds": round(tracker.interval, 3) if tracker else None,
            "requests_sent": self.limiter.sent,
            "rate": self.limiter.describe(),
            "last_error": self.api.last_error if self.api.failing_since else self.held_error,
            "login_error": self.api.auth_error,
            **(tracker.describe() if tracker else {}),
        }


def utc_clock(when: float) -> str:
    """A Unix time as a person reads it: ``12:03:04 UTC`` today, with the date before."""
    moment = time.gmtime(when)
    today = time.gmtime()[:3] == moment[:3]
    return time.strftime("%H:%M:%S UTC" if today else "%Y-%m-%d %H:%M:%S UTC", moment)


def _then(first: Callable[[], None] | None, second: Callable[[], None]) -> Callable[[], None]:
    """``first`` (if any), then ``second``: one ``Outcome.on_stored``."""
    if first is None:
        return second

    def both() -> None:
        first()
        second()

    return both


def build_globus_backend(
    config: Config, store: Store, credentials: ClientCredentials | None
) -> GlobusBackend:
    """The backend: the service account's when credentials are configured,
    else a user login (logged in or not, see ``gcgate login``)."""
    settings = GlobusSettings.from_config(config)
    limiter = RateLimiter(
        settings.rate_limit_requests,
        settings.rate_limit_window_seconds,
        settings.rate_limit_burst,
    )
    # globus-sdk logs request details at DEBUG (ID tokens among them); the
    # daemon's log never needs them.
    for name in ("globus_sdk", "urllib3"):
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLogger().level))
    login: Login
    if credentials is not None:
        login = ServiceAccountLogin(
            credentials.client_id,
            credentials.client_secret.get_secret_value(),
            state_dir=config.state_dir,
            limiter=limiter,
            http_timeout=settings.http_timeout_seconds,
        )
    else:
        login = UserLogin(
            state_dir=config.state_dir,
            limiter=limiter,
            http_timeout=settings.http_timeout_seconds,
        )
    return GlobusBackend(store, login, limiter, settings)
