"""A stand-in for the Globus Compute web service and its endpoints.

The paths and JSON documents are those globus-sdk 4.10's ``ComputeClientV2`` /
``ComputeClientV3`` call and globus-compute-sdk 4.19's ``Client`` reads (see
``globus_sdk/services/compute/client.py``, ``globus_sdk/testing/data/compute``
and ``globus_compute_sdk/sdk/client.py``, ``batch.py``):

* ``POST /v3/functions`` (and ``/v2/functions``) → ``{"function_uuid"}``;
  ``GET`` / ``DELETE /v2/functions/{id}``;
* ``POST /v3/endpoints/{ep}/submit`` with the body of ``Batch.prepare()`` →
  ``{"request_id", "task_group_id", "endpoint_id", "tasks": {fn: [task ids]}}``;
* ``GET /v2/tasks/{id}``, ``POST /v2/batch_status`` → ``{"response": "batch",
  "results": {tid: doc}}``; a final document is ``{"task_id", "status":
  "success"|"failed", "result"|"exception", "completion_t", "details"}``, a
  pending one ``{"task_id", "status"}`` with status ``waiting-for-ep`` or
  ``running``;
* ``GET /v2/taskgroup/{id}``, ``GET /v2/endpoints``, ``GET /v2/endpoints/{id}``,
  ``GET /v2/endpoints/{id}/status``, ``GET /v3/endpoints/{id}/allowed_functions``,
  ``GET /v2/version``;
* ``POST /v3/endpoints/{id}/lock`` (``Client.stop_endpoint``) → ``{"endpoint_id",
  "lock_expiration_timestamp"}``: the endpoint's connection is dropped (it goes
  offline; its tasks wait); ``DELETE /v2/endpoints/{id}`` (``Client.delete_endpoint``)
  → ``{"result": 302}``: it is gone (404 afterwards). Both for the endpoint's owner
  only (403 ``ENDPOINT_ACCESS_FORBIDDEN``);
* ``GET /v2/get_amqp_result_connection_url`` (``ComputeClientV2.get_result_amqp_url``)
  → ``{"connection_url": "amqp://<user>:<password>@127.0.0.1:<port>/%2F",
  "queue_prefix": "gc.<identity id>."}``: the caller's credentials on the broker,
  allowed to consume from (read) queues starting with that prefix and nothing else
  (no configure, no write: declare the queue passively or not at all). ``amqps://``
  on the broker's TLS port with :attr:`ComputeService.amqp_tls` (clients trust the
  test CA through ``Broker.tls_env()``, or ``?cafile=`` for aiormq with
  :attr:`ComputeService.amqp_ca_in_url`). 503 ``AMQP_UNAVAILABLE`` when the stand-in
  has no broker.

Every call but ``/v2/version`` needs a live Compute-scoped bearer token from the
Auth stand-in (401 otherwise). Errors are Globus "type zero" documents
(``{"code", "message", "request_id"}``) that globus-sdk parses into a
``GlobusAPIError`` with ``http_status`` and ``code``; path ids that are not UUIDs
get FastAPI's 422 validation document.

Limits as published: a submission body over :attr:`ComputeService.max_payload_bytes`
(10 MB) is refused with 413 ``TASK_PAYLOAD_TOO_LARGE``; results over 10 MiB fail
the task on the endpoint (``MaxResultSizeExceeded``); a final result is handed out
once and then forgotten (:attr:`ComputeService.consume_on_fetch`), and results not
fetched within :attr:`ComputeService.result_ttl` (30 minutes) are abandoned.
Forgotten tasks are unknown afterwards: ``GET /v2/tasks/{id}`` answers 404 and
``batch_status`` reports ``{"task_id", "status": "failed", "reason": "unknown task
id"}`` for them, as the Compute service does for ids it does not hold.

Results pushed over AMQP, with a broker (``StandIn(broker=Broker(...))``), as the
service pushes them to SDK ``Executor``s: a submit with ``"create_queue": true``
whose task group has no queue yet (a new group, or an existing one created
without) gets a durable queue ``queue_prefix + task_group_id`` on the broker,
declared before the submit is answered. Every task of that group that becomes
final afterwards is published there (:mod:`standin.publisher`: default exchange,
routing key = queue name, ``delivery_mode=2``, ``timestamp`` = completion time in
whole seconds, no headers) as the body
``globus_compute_common.messagepack.pack(Result(task_id, data, details,
error_details))``: ``data`` is the serialized result, or for a failure the
exception text with ``error_details`` ``{"code": "RemoteExecutionError",
"user_message": "An error occurred during the execution of this task"}`` (the
endpoint's own errors: their class name and ``"remote error: ..."``); ``details``
is the task document's. A message stays queued until a consumer acks it, and the
result stays fetchable once through ``/v2/tasks`` / ``batch_status`` besides:
publishing does not consume it, fetching does not unpublish it. Without a broker,
``create_queue`` is recorded (:attr:`SubmitRecord.create_queue`) and ignored.
Test controls: :attr:`ComputeService.publish_results` (``False``: queues are
declared, nothing is published), :attr:`ComputeService.declare_queues`
(``False``: no queue is made), :meth:`ComputeService.published` /
:meth:`ComputeService.wait_published` / :attr:`ComputeService.publications`.

Tasks run as on an endpoint (:mod:`standin.worker`) in a pool of spawned worker
processes, one pool shared by all endpoints of the stand-in.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import queue
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from standin.auth import COMPUTE_RESOURCE_SERVER, AuthService
from standin.http import HTTPError, Request, Response, Route, Service
from standin.publisher import Operation, ResultPublisher
from standin.stats import RATE_LIMIT, RATE_WINDOW, Stats
from standin.worker import RESULT_SIZE_LIMIT, execute_task, warm_up

if TYPE_CHECKING:
    from broker import Broker

#: What ``GET /v2/version?service=all`` reports.
API_VERSION = "1.23.0"
FINAL_STATUSES = ("success", "failed")
#: The published limit on one submission (single task or batch).
MAX_PAYLOAD_BYTES = 10_000_000
#: Finished results not fetched within this many seconds are abandoned (docs: 30 min).
RESULT_TTL = 30 * 60.0
UNKNOWN_TASK_REASON = "unknown task id"
WORKER_LOST = (
    "globus_compute_endpoint.engines.high_throughput.engine.WorkerLost:"
    " Task failure due to loss of worker on the stand-in endpoint"
)
#: ``Result.error_details`` of a task failure that is not one of the endpoint's own.
REMOTE_EXECUTION_ERROR = {
    "code": "RemoteExecutionError",
    "user_message": "An error occurred during the execution of this task",
}
#: How long a submit waits for the broker to confirm its new queue before answering
#: anyway (the declaration stays queued for when the broker is back).
DECLARE_TIMEOUT = 10.0
#: How long a locked endpoint may not register again (its answer's expiry).
LOCK_SECONDS = 300.0


def _new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Endpoint:
    uuid: str
    name: str
    display_name: str
    #: ``"online"`` runs tasks; ``"offline"`` holds them as ``waiting-for-ep``.
    status: str = "online"
    #: Owner identity; ``None`` lists it as owned by whoever asks.
    owner: str | None = None
    public: bool = False
    multi_user: bool = False

    def document(self) -> dict[str, Any]:
        """``GET /v2/endpoints/{id}`` (globus_sdk.testing data's shape)."""
        return {
            "uuid": self.uuid,
            "name": self.name,
            "display_name": self.display_name,
            "multi_user": self.multi_user,
            "public": self.public,
            "endpoint_config": f"display_name: {self.display_name}\nengine:\n"
            "  type: GlobusComputeEngine",
            "user_config_template": "",
            "user_config_schema": {},
            "description": f"stand-in endpoint {self.name}",
            "hostname": "standin.localhost",
            "local_user": "standin",
            "ip_address": "127.0.0.1",
            "endpoint_version": "2.31.0",
            "sdk_version": "2.31.0",
            "subscription_uuid": None,
        }


@dataclass
class FunctionRecord:
    function_uuid: str
    function_name: str
    function_code: str
    serialized: bool
    meta: dict[str, Any]
    owner: str
    description: str | None = None
    public: bool = False
    group: str | None = None
    ha_endpoint_id: str | None = None
    created: float = field(default_factory=time.time)
    deleted: bool = False

    @property
    def endpoint_code(self) -> str:
        """The function as the endpoint receives it: one packed, serialized buffer.

        Source registrations (``serialized: false``) are sent in the
        ``PureSourceTextInspect`` format (``st\\n{name}:{source}``).
        """
        if self.serialized:
            return self.function_code
        buf = f"st\n{self.function_name}:{self.function_code}"
        return f"{len(buf)}\n{buf}"

    def document(self) -> dict[str, Any]:
        """``GET /v2/functions/{id}``."""
        return {
            "function_uuid": self.function_uuid,
            "function_name": self.function_name,
            "function_code": self.function_code,
            "description": self.description,
            "metadata": dict(self.meta),
        }


@dataclass
class TaskRecord:
    task_id: str
    function_id: str
    endpoint_id: str
    task_group_id: str
    request_id: str
    owner: str
    payload: str
    submitted_at: float
    result_serializers: list[str] | None = None
    resource_specification: dict[str, Any] | None = None
    user_endpoint_config: dict[str, Any] | None = None
    status: str = "waiting-for-ep"
    result: str | None = None
    exception: str | None = None
    #: ``{"code", "user_message"}`` of a failure, as the endpoint reports it.
    error_details: dict[str, str] | None = None
    completion_t: float | None = None
    details: dict[str, Any] | None = None
    #: How many times a final document (with result or exception) was handed out.
    fetches: int = 0
    #: The service no longer holds it (result fetched, or abandoned).
    forgotten: bool = False
    abandoned: bool = False
    future: concurrent.futures.Future[dict[str, Any]] | None = field(default=None, repr=False)

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass
class SubmitRecord:
    """One accepted ``POST /v3/endpoints/{ep}/submit``."""

    request_id: str
    endpoint_id: str
    task_group_id: str
    identity: str
    t: float
    body_bytes: int
    task_ids: list[str]
    tasks_by_function: dict[str, int]
    create_queue: bool
    resource_specification: dict[str, Any] | None
    user_endpoint_config: dict[str, Any] | None
    result_serializers: list[str] | None
    user_runtime: dict[str, Any] | None


@dataclass
class TaskGroup:
    task_group_id: str
    owner: str
    create_queue: bool = False
    task_ids: list[str] = field(default_factory=list)
    #: The broker queue its results are published to (``queue_prefix + id``), once made.
    queue: str | None = None


def _validation_error(loc: list[str], msg: str, typ: str = "value_error") -> HTTPError:
    err = HTTPError(422, "", msg)
    err.extra = {"__detail__": [{"loc": loc, "msg": msg, "type": typ}]}
    return err


def _uuid(value: str, loc: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise _validation_error(
            ["path", loc], "Input should be a valid UUID", "uuid_parsing"
        ) from None


class ComputeService(Service):
    """The Compute web service's state and routes, plus the endpoints behind it."""

    name = "compute"

    def __init__(
        self,
        auth: AuthService,
        stats: Stats,
        *,
        endpoints: Iterable[Endpoint] | None = None,
        workers: int = 2,
        broker: Broker | None = None,
    ) -> None:
        self.auth = auth
        self.stats = stats
        self.workers = workers
        #: The RabbitMQ node results are pushed to (``None``: fetch only).
        self.broker = broker
        self.publisher: ResultPublisher | None = None
        #: Every publish the broker confirmed or refused, oldest first.
        self.publications: list[Operation] = []
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        # Finished futures are recorded by a thread of our own, never inside the
        # pool's callback (which may run while the pool holds its own locks).
        self._completions: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
        self._completer: threading.Thread | None = None

        # Settings (tests may change them; StandIn.reset() restores them).
        self.max_payload_bytes = MAX_PAYLOAD_BYTES
        self.result_size_limit = RESULT_SIZE_LIMIT
        self.consume_on_fetch = True
        self.result_ttl = RESULT_TTL
        #: Answer 429 (with Retry-After) past the published rate limit per identity.
        self.enforce_rate_limit = False
        self.rate_limit = RATE_LIMIT
        self.rate_window = RATE_WINDOW
        #: Publish final results to their task group's queue (``False``: the queue
        #: exists and never gets a message).
        self.publish_results = True
        #: Make queues for ``create_queue`` submits (``False``: the group's queue is
        #: never declared, so the broker does not know it).
        self.declare_queues = True
        #: Hand out ``amqps://`` URLs (the broker's TLS port) instead of ``amqp://``.
        self.amqp_tls = False
        #: With :attr:`amqp_tls`, add ``?cafile=<test CA>`` (the query aiormq reads).
        self.amqp_ca_in_url = False

        self.endpoints: dict[str, Endpoint] = {}
        self.functions: dict[str, FunctionRecord] = {}
        self.tasks: dict[str, TaskRecord] = {}
        self.task_groups: dict[str, TaskGroup] = {}
        self.submits: list[SubmitRecord] = []
        for ep in endpoints if endpoints is not None else self._default_endpoints():
            self.endpoints[ep.uuid] = ep

    @staticmethod
    def _default_endpoints() -> list[Endpoint]:
        return [
            Endpoint(_new_id(), f"standin-endpoint-{i}", f"Stand-in endpoint {i}") for i in (1, 2)
        ]

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        with self._lock:
            if self._completer is None:
                self._completer = threading.Thread(
                    target=self._complete_loop, name="standin-completions", daemon=True
                )
                self._completer.start()
            if self._pool is None:
                self._pool = self._new_pool()
            if self.broker is not None and self.publisher is None:
                self.publisher = ResultPublisher(self.broker.admin_url, self._published)
                self.publisher.start()

    def _complete_loop(self) -> None:
        while (item := self._completions.get()) is not None:
            self._done(*item)

    def _new_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=self.workers, mp_context=multiprocessing.get_context("spawn")
        )
        for _ in range(self.workers):  # start the workers now, not on the first task
            pool.submit(warm_up)
        return pool

    def stop(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if self._completer is not None:
            self._completions.put(None)
            self._completer.join(timeout=10)
            self._completer = None
        publisher, self.publisher = self.publisher, None
        if publisher is not None:
            publisher.stop()

    # ------------------------------------------------------------ test controls

    def add_endpoint(
        self, endpoint_id: str | None = None, name: str | None = None, *, status: str = "online"
    ) -> Endpoint:
        ep_id = endpoint_id or _new_id()
        name = name or f"standin-endpoint-{ep_id[:8]}"
        ep = Endpoint(ep_id, name, name, status=status)
        with self._lock:
            self.endpoints[ep_id] = ep
        return ep

    def remove_endpoint(self, endpoint_id: str) -> None:
        """Forget an endpoint a test added (the module's stand-in outlives the test)."""
        with self._lock:
            self.endpoints.pop(endpoint_id, None)

    def set_endpoint_status(self, endpoint_id: str, status: str) -> None:
        """``"offline"`` holds new and queued tasks; ``"online"`` runs them."""
        with self._lock:
            self.endpoints[endpoint_id].status = status
            if status == "online":
                for task in self.tasks.values():
                    if task.endpoint_id == endpoint_id and task.future is None:
                        self._dispatch(task)

    def task(self, task_id: str) -> TaskRecord:
        with self._lock:
            return self.tasks[task_id]

    def wait(self, task_ids: Iterable[str] | None = None, timeout: float = 60.0) -> bool:
        """Block until the given (default: all) tasks have finished on the endpoint."""
        deadline = time.monotonic() + timeout
        with self._changed:
            ids = list(task_ids) if task_ids is not None else list(self.tasks)
            while True:
                if all(self.tasks[t].final for t in ids if t in self.tasks):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.5))

    def copies(self, task_ids: Iterable[str] | None = None) -> Counter[str]:
        """How many tasks the service created per payload, over ``task_ids`` (default
        all): a payload counted twice is a submission the service received twice."""
        with self._lock:
            ids = list(self.tasks) if task_ids is None else list(task_ids)
            return Counter(self.tasks[t].payload for t in ids if t in self.tasks)

    @staticmethod
    def queue_prefix(identity: str) -> str:
        """The ``queue_prefix`` of ``identity``'s result queues."""
        return f"gc.{identity}."

    def published(self, task_group_id: str | None = None) -> int:
        """Results the broker confirmed for ``task_group_id``'s queue (default: all)."""
        with self._lock:
            return sum(
                1
                for op in self.publications
                if op.outcome == "ok"
                and (task_group_id is None or op.task_group_id == task_group_id)
            )

    def published_task_ids(self, task_group_id: str | None = None) -> list[str]:
        """Task ids of the confirmed publishes, in order (a republish shows twice)."""
        with self._lock:
            return [
                op.task_id
                for op in self.publications
                if op.outcome == "ok"
                and op.task_id is not None
                and (task_group_id is None or op.task_group_id == task_group_id)
            ]

    def wait_published(self, task_ids: Iterable[str], timeout: float = 60.0) -> bool:
        """Block until the broker has confirmed a publish of each of ``task_ids``."""
        wanted = set(task_ids)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                done = {op.task_id for op in self.publications if op.outcome == "ok"}
                if wanted <= done:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.5))

    def _published(self, op: Operation) -> None:
        """The publisher's report of a finished operation (its thread)."""
        if op.kind != "publish":
            return
        with self._changed:
            self.publications.append(op)
            self._changed.notify_all()

    def reset_state(self) -> None:
        """Forget functions, tasks, submissions and publications (endpoints stay)."""
        with self._lock:
            self.functions.clear()
            self.tasks.clear()
            self.task_groups.clear()
            self.submits.clear()
            self.publications.clear()

    # ------------------------------------------------------------ execution

    def _dispatch(self, task: TaskRecord) -> None:
        """Hand a task to a worker if its endpoint is online (lock held)."""
        if self.endpoints[task.endpoint_id].status != "online":
            return
        if self._pool is None:
            self._pool = self._new_pool()
        fn = self.functions[task.function_id]
        buffer = fn.endpoint_code + task.payload
        try:
            fut = self._pool.submit(
                execute_task, buffer, task.result_serializers, self.result_size_limit
            )
        except BrokenProcessPool:
            self._pool = self._new_pool()
            fut = self._pool.submit(
                execute_task, buffer, task.result_serializers, self.result_size_limit
            )
        task.future = fut
        fut.add_done_callback(lambda f, tid=task.task_id: self._completions.put((tid, f)))

    def _done(self, task_id: str, fut: concurrent.futures.Future[dict[str, Any]]) -> None:
        try:
            out = fut.result()
        except BrokenProcessPool:
            out = {"exception": WORKER_LOST, "completion_t": time.time(), "details": {}}
            with self._lock:
                if self._pool is not None and getattr(self._pool, "_broken", False):
                    old, self._pool = self._pool, None
                    threading.Thread(target=old.shutdown, daemon=True).start()
        except concurrent.futures.CancelledError:
            return
        except Exception as exc:  # the worker could not even report back
            out = {"exception": repr(exc), "completion_t": time.time(), "details": {}}
        with self._changed:
            task = self.tasks.get(task_id)
            if task is None:
                return
            details = dict(out.get("details") or {})
            details["endpoint_id"] = task.endpoint_id
            task.details = details
            task.completion_t = out["completion_t"]
            if "result" in out:
                task.result, task.status = out["result"], "success"
            else:
                task.exception, task.status = out["exception"], "failed"
                task.error_details = out.get("error_details") or dict(REMOTE_EXECUTION_ERROR)
            self._publish(task)
            self._changed.notify_all()

    def publish_again(self, task_id: str) -> None:
        """Publish a final task's result to its group's queue once more: the copy a
        daemon finds queued when it stored the result by status poll and was then
        stopped before the pushed one reached it (at-least-once delivery)."""
        with self._lock:
            task = self.tasks[task_id]
            assert task.final, f"task {task_id} is not final"
            self._publish(task)

    def _publish(self, task: TaskRecord) -> None:
        """Send a final task's ``Result`` to its group's queue, if it has one (lock held)."""
        group = self.task_groups.get(task.task_group_id)
        if group is None or group.queue is None or self.publisher is None:
            return
        if not self.publish_results:
            return
        import pika
        from globus_compute_common import messagepack
        from globus_compute_common.messagepack.message_types import Result, ResultErrorDetails

        if task.status == "success":
            message = Result(
                task_id=uuid.UUID(task.task_id), data=task.result, details=task.details
            )
        else:
            message = Result(
                task_id=uuid.UUID(task.task_id),
                data=task.exception or "",
                details=task.details,
                error_details=ResultErrorDetails(**(task.error_details or REMOTE_EXECUTION_ERROR)),
            )
        properties = pika.BasicProperties(
            delivery_mode=2, timestamp=int(task.completion_t or time.time())
        )
        self.publisher.publish(
            group.queue,
            messagepack.pack(message),
            properties,
            task_id=task.task_id,
            task_group_id=group.task_group_id,
        )

    def _status_of(self, task: TaskRecord) -> str:
        if task.final:
            return task.status
        if task.future is not None and task.future.running():
            return "running"
        return "waiting-for-ep"

    # ------------------------------------------------------------ documents

    def _forget_if_abandoned(self, task: TaskRecord) -> None:
        if (
            task.final
            and not task.forgotten
            and task.completion_t is not None
            and time.time() - task.completion_t > self.result_ttl
        ):
            task.forgotten = task.abandoned = True

    def _task_doc(self, task: TaskRecord) -> dict[str, Any] | None:
        """The task's document, consuming a final result; ``None`` if forgotten."""
        self._forget_if_abandoned(task)
        if task.forgotten:
            return None
        status = self._status_of(task)
        doc: dict[str, Any] = {"task_id": task.task_id, "status": status}
        if status in FINAL_STATUSES:
            if task.result is not None:
                doc["result"] = task.result
            else:
                doc["exception"] = task.exception
            doc["completion_t"] = f"{task.completion_t}"
            doc["details"] = task.details
            task.fetches += 1
            if self.consume_on_fetch:
                task.forgotten = True
        return doc

    # ------------------------------------------------------------ plumbing

    def identify(self, request: Request) -> tuple[str | None, str | None]:
        tok = self.auth.token(request.bearer_token)
        return (tok.identity_id, tok.client_id) if tok else (None, None)

    def preflight(self, request: Request) -> Response | None:
        if not self.enforce_rate_limit or request.record is None:
            return None
        me = request.record
        if me.identity is None:
            return None
        since = me.t - self.rate_window
        recent = [
            r.t
            for r in self.stats.select(service=self.name, identity=me.identity, since=since)
            if r is not me and r.outcome != "rate_limited" and r.t <= me.t
        ]
        if len(recent) < self.rate_limit:
            return None
        retry_after = max(1, int(min(recent) + self.rate_window - me.t + 0.999))
        err = HTTPError(
            429,
            "RATE_LIMIT_EXCEEDED",
            f"Rate limit of {self.rate_limit} requests per {self.rate_window:g} s exceeded",
            headers={"Retry-After": str(retry_after)},
        )
        return self.error_response(err)

    def error_response(self, err: HTTPError) -> Response:
        if "__detail__" in err.extra:
            return Response.json({"detail": err.extra["__detail__"]}, err.status, err.headers)
        doc = {"code": err.code, "message": err.message, "request_id": _new_id(), **err.extra}
        return Response.json(doc, err.status, err.headers)

    def _authenticate(self, request: Request) -> str:
        """The caller's identity id; 401 without a live Compute token."""
        token = request.bearer_token
        if token is None:
            raise HTTPError(
                401,
                "UNAUTHORIZED",
                "Missing bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        tok = self.auth.token(token)
        if tok is None or not tok.active:
            why = "expired" if tok is not None and not tok.revoked else "invalid"
            raise HTTPError(
                401,
                "UNAUTHORIZED",
                f"Token is {why}",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        if tok.resource_server != COMPUTE_RESOURCE_SERVER:
            raise HTTPError(
                403,
                "FORBIDDEN",
                f"Token is for {tok.resource_server}, not {COMPUTE_RESOURCE_SERVER}",
            )
        return tok.identity_id

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/v2/version", self._version),
            Route("POST", "/v3/functions", self._register_function),
            Route("POST", "/v2/functions", self._register_function),
            Route("GET", "/v2/functions/{function_id}", self._get_function),
            Route("DELETE", "/v2/functions/{function_id}", self._delete_function),
            Route("POST", "/v3/endpoints/{endpoint_id}/submit", self._submit),
            Route("GET", "/v2/tasks/{task_id}", self._get_task),
            Route("POST", "/v2/batch_status", self._batch_status),
            Route("GET", "/v2/taskgroup/{task_group_id}", self._get_task_group),
            Route("GET", "/v2/endpoints", self._get_endpoints),
            Route("GET", "/v2/endpoints/{endpoint_id}", self._get_endpoint),
            Route("GET", "/v2/endpoints/{endpoint_id}/status", self._get_endpoint_status),
            Route("GET", "/v3/endpoints/{endpoint_id}/allowed_functions", self._allowed_functions),
            Route("POST", "/v3/endpoints/{endpoint_id}/lock", self._lock_endpoint),
            Route("DELETE", "/v2/endpoints/{endpoint_id}", self._delete_endpoint),
            Route("GET", "/v2/get_amqp_result_connection_url", self._amqp_url),
        ]

    # ------------------------------------------------------------ routes

    def _version(self, request: Request) -> Response:
        if request.arg("service") == "all":
            return Response.json(
                {
                    "api": API_VERSION,
                    "min_sdk_version": "1.0.0",
                    "min_ep_version": "1.0.0",
                    "min_endpoint_version": "1.0.0",
                    "git_sha": "0" * 40,
                }
            )
        return Response.json(API_VERSION)

    def _register_function(self, request: Request) -> Response:
        identity = self._authenticate(request)
        body = request.json()
        if not isinstance(body, dict):
            raise _validation_error(["body"], "Input should be a valid dictionary", "dict_type")
        for key in ("function_name", "function_code"):
            if not isinstance(body.get(key), str):
                raise _validation_error(["body", key], "Field required", "missing")
        meta = body.get("meta") or {}
        if not isinstance(meta, dict):
            raise _validation_error(["body", "meta"], "Input should be a valid dictionary")
        fn = FunctionRecord(
            function_uuid=_new_id(),
            function_name=body["function_name"],
            function_code=body["function_code"],
            serialized=bool(body.get("serialized", True)),
            meta={k: v for k, v in meta.items() if v is not None},
            owner=identity,
            description=body.get("description"),
            public=bool(body.get("public", False)),
            group=body.get("group"),
            ha_endpoint_id=body.get("ha_endpoint_id"),
        )
        with self._lock:
            self.functions[fn.function_uuid] = fn
        return Response.json({"function_uuid": fn.function_uuid})

    def _function_for(
        self, function_id: str, identity: str, *, write: bool = False
    ) -> FunctionRecord:
        with self._lock:
            fn = self.functions.get(function_id)
        if fn is None or fn.deleted:
            raise HTTPError(404, "FUNCTION_NOT_FOUND", f"Function {function_id} not found")
        readable = fn.owner == identity or (not write and (fn.public or fn.group is not None))
        if not readable:
            raise HTTPError(
                403,
                "FUNCTION_ACCESS_FORBIDDEN",
                f"Identity {identity} may not access function {function_id}",
            )
        return fn

    def _get_function(self, request: Request) -> Response:
        identity = self._authenticate(request)
        fid = _uuid(request.params["function_id"], "function_uuid")
        return Response.json(self._function_for(fid, identity).document())

    def _delete_function(self, request: Request) -> Response:
        identity = self._authenticate(request)
        fid = _uuid(request.params["function_id"], "function_uuid")
        fn = self._function_for(fid, identity, write=True)
        with self._lock:
            fn.deleted = True
        return Response.json({"result": 302})

    def _endpoint(self, endpoint_id: str) -> Endpoint:
        ep_id = _uuid(endpoint_id, "endpoint_uuid")
        with self._lock:
            ep = self.endpoints.get(ep_id)
        if ep is None:
            raise HTTPError(404, "ENDPOINT_NOT_FOUND", f"Endpoint {ep_id} not found")
        return ep

    def _submit(self, request: Request) -> Response:
        identity = self._authenticate(request)
        if len(request.body) > self.max_payload_bytes:
            raise HTTPError(
                413,
                "TASK_PAYLOAD_TOO_LARGE",
                f"Task payload of {len(request.body)} bytes exceeds the"
                f" {self.max_payload_bytes} byte limit",
            )
        ep = self._endpoint(request.params["endpoint_id"])
        body = request.json()
        if not isinstance(body, dict):
            raise _validation_error(["body"], "Input should be a valid dictionary", "dict_type")
        tasks = body.get("tasks")
        if not isinstance(tasks, dict) or not all(
            isinstance(v, list) and all(isinstance(p, str) for p in v) for v in tasks.values()
        ):
            raise _validation_error(["body", "tasks"], "Input should be a valid dictionary")
        functions = {}
        for fid in tasks:
            try:
                canon = str(uuid.UUID(fid))
            except ValueError:
                raise _validation_error(
                    ["body", "tasks", fid], "Input should be a valid UUID", "uuid_parsing"
                ) from None
            functions[fid] = self._function_for(canon, identity)
        rs = body.get("result_serializers")
        if rs is not None and not (isinstance(rs, list) and all(isinstance(s, str) for s in rs)):
            raise _validation_error(["body", "result_serializers"], "Input should be a valid list")

        with self._lock:
            tg_id = body.get("task_group_id")
            if tg_id:
                group = self.task_groups.get(str(tg_id))
                if group is None:
                    raise HTTPError(404, "TASK_GROUP_NOT_FOUND", f"Task group {tg_id} not found")
                if group.owner != identity:
                    raise HTTPError(
                        403,
                        "TASK_GROUP_ACCESS_FORBIDDEN",
                        f"Identity {identity} may not use task group {tg_id}",
                    )
            else:
                group = TaskGroup(_new_id(), identity, bool(body.get("create_queue")))
                self.task_groups[group.task_group_id] = group
            declared = None
            if body.get("create_queue") and group.queue is None:
                # "create a queue for the task group if it isn't already created"
                group.create_queue = True
                if self.publisher is not None and self.declare_queues:
                    group.queue = self.queue_prefix(identity) + group.task_group_id
                    # Queued before any task runs: its publishes follow the declaration.
                    declared = self.publisher.declare(group.queue)

            request_id = _new_id()
            now = time.time()
            out: dict[str, list[str]] = {}
            all_ids: list[str] = []
            for fid, payloads in tasks.items():
                fn = functions[fid]
                ids = out.setdefault(fid, [])
                for payload in payloads:
                    task = TaskRecord(
                        task_id=_new_id(),
                        function_id=fn.function_uuid,
                        endpoint_id=ep.uuid,
                        task_group_id=group.task_group_id,
                        request_id=request_id,
                        owner=identity,
                        payload=payload,
                        submitted_at=now,
                        result_serializers=rs,
                        resource_specification=body.get("resource_specification"),
                        user_endpoint_config=body.get("user_endpoint_config"),
                    )
                    self.tasks[task.task_id] = task
                    group.task_ids.append(task.task_id)
                    ids.append(task.task_id)
                    all_ids.append(task.task_id)
                    self._dispatch(task)
            self.submits.append(
                SubmitRecord(
                    request_id=request_id,
                    endpoint_id=ep.uuid,
                    task_group_id=group.task_group_id,
                    identity=identity,
                    t=now,
                    body_bytes=len(request.body),
                    task_ids=all_ids,
                    tasks_by_function={fid: len(p) for fid, p in tasks.items()},
                    create_queue=bool(body.get("create_queue")),
                    resource_specification=body.get("resource_specification"),
                    user_endpoint_config=body.get("user_endpoint_config"),
                    result_serializers=rs,
                    user_runtime=body.get("user_runtime"),
                )
            )
        if declared is not None:
            declared.done.wait(DECLARE_TIMEOUT)
        return Response.json(
            {
                "request_id": request_id,
                "task_group_id": group.task_group_id,
                "endpoint_id": ep.uuid,
                "tasks": out,
            }
        )

    def _get_task(self, request: Request) -> Response:
        identity = self._authenticate(request)
        tid = _uuid(request.params["task_id"], "task_uuid")
        with self._lock:
            task = self.tasks.get(tid)
            if task is not None and task.owner != identity:
                raise HTTPError(
                    403, "TASK_ACCESS_FORBIDDEN", f"Identity {identity} may not access task {tid}"
                )
            doc = self._task_doc(task) if task is not None else None
        if doc is None:
            raise HTTPError(404, "TASK_NOT_FOUND", f"Task {tid} not found")
        return Response.json(doc)

    def _batch_status(self, request: Request) -> Response:
        identity = self._authenticate(request)
        body = request.json()
        ids = body.get("task_ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not all(isinstance(t, str) for t in ids):
            raise _validation_error(["body", "task_ids"], "Input should be a valid list")
        results: dict[str, Any] = {}
        with self._lock:
            for tid in ids:
                task = self.tasks.get(tid)
                doc = None
                if task is not None and task.owner == identity:
                    doc = self._task_doc(task)
                results[tid] = doc or {
                    "task_id": tid,
                    "status": "failed",
                    "reason": UNKNOWN_TASK_REASON,
                }
        return Response.json({"response": "batch", "results": results})

    def _get_task_group(self, request: Request) -> Response:
        identity = self._authenticate(request)
        tg_id = _uuid(request.params["task_group_id"], "task_group_uuid")
        with self._lock:
            group = self.task_groups.get(tg_id)
            if group is None or group.owner != identity:
                raise HTTPError(404, "TASK_GROUP_NOT_FOUND", f"Task group {tg_id} not found")
            tasks = [
                {
                    "id": tid,
                    "created_at": time.strftime(
                        "%Y-%m-%dT%H:%M:%S.000000", time.gmtime(self.tasks[tid].submitted_at)
                    ),
                }
                for tid in group.task_ids
                if tid in self.tasks
            ]
        return Response.json(
            {
                "taskgroup_id": tg_id,
                "create_websockets_queue": group.create_queue,
                "tasks": tasks,
            }
        )

    def _get_endpoints(self, request: Request) -> Response:
        identity = self._authenticate(request)
        role = request.arg("role") or "owner"
        with self._lock:
            eps = list(self.endpoints.values())
        listed = [
            {
                "uuid": ep.uuid,
                "name": ep.name,
                "display_name": ep.display_name,
                "owner": ep.owner or identity,
            }
            for ep in eps
            if role == "any" or ep.owner in (None, identity)
        ]
        return Response.json(listed)

    def _get_endpoint(self, request: Request) -> Response:
        self._authenticate(request)
        return Response.json(self._endpoint(request.params["endpoint_id"]).document())

    def _get_endpoint_status(self, request: Request) -> Response:
        self._authenticate(request)
        ep = self._endpoint(request.params["endpoint_id"])
        with self._lock:
            mine = [t for t in self.tasks.values() if t.endpoint_id == ep.uuid and not t.final]
            running = sum(1 for t in mine if self._status_of(t) == "running")
        online = ep.status == "online"
        return Response.json(
            {
                "status": ep.status,
                "details": {
                    "total_workers": self.workers if online else 0,
                    "idle_workers": max(0, self.workers - running) if online else 0,
                    "pending_tasks": len(mine) - running,
                    "outstanding_tasks": len(mine),
                    "managers": 1 if online else 0,
                },
            }
        )

    def _amqp_url(self, request: Request) -> Response:
        """``{"connection_url", "queue_prefix"}``: the caller's credentials on the
        broker, allowed to read its own queues only."""
        identity = self._authenticate(request)
        if self.broker is None:
            raise HTTPError(
                503,
                "AMQP_UNAVAILABLE",
                "This stand-in has no AMQP broker (StandIn(broker=...)): results are"
                " not pushed; fetch them with /v2/tasks or /v2/batch_status",
            )
        prefix = self.queue_prefix(identity)
        try:
            user, password = self.broker.user(
                identity, configure="^$", write="^$", read="^" + re.escape(prefix)
            )
        except Exception as exc:  # the broker is down: as the service when its MQ is
            raise HTTPError(503, "AMQP_UNAVAILABLE", f"AMQP service unavailable: {exc}") from None
        url = self.broker.url_for(
            user, password, tls=self.amqp_tls, ca_in_query=self.amqp_tls and self.amqp_ca_in_url
        )
        return Response.json({"connection_url": url, "queue_prefix": prefix})

    def _owned_endpoint(self, request: Request) -> Endpoint:
        identity = self._authenticate(request)
        ep = self._endpoint(request.params["endpoint_id"])
        if ep.owner not in (None, identity):
            raise HTTPError(
                403,
                "ENDPOINT_ACCESS_FORBIDDEN",
                f"Identity {identity} may not change endpoint {ep.uuid}",
            )
        return ep

    def _lock_endpoint(self, request: Request) -> Response:
        ep = self._owned_endpoint(request)
        with self._lock:
            ep.status = "offline"
        expires = time.strftime("%Y-%m-%dT%H:%M:%S.000000", time.gmtime(time.time() + LOCK_SECONDS))
        return Response.json({"endpoint_id": ep.uuid, "lock_expiration_timestamp": expires})

    def _delete_endpoint(self, request: Request) -> Response:
        ep = self._owned_endpoint(request)
        with self._lock:
            self.endpoints.pop(ep.uuid, None)
        return Response.json({"result": 302})

    def _allowed_functions(self, request: Request) -> Response:
        self._authenticate(request)
        ep = self._endpoint(request.params["endpoint_id"])
        return Response.json({"endpoint_id": ep.uuid, "restricted": False, "functions": []})
