"""``Executor``: the Globus Compute SDK's ``concurrent.futures`` interface, via the daemon.

``submit()`` serializes the call at once (so argument errors surface in the
caller) and queues it. A submitter thread drains the queue into ``BatchRun``
calls as soon as there is something to send, and hands the new task ids to a
:class:`_ResultWatcher`, which resolves the futures from ``WatchTaskBatches`` server
streams: results are pushed by the daemon, never polled for. At interpreter
exit, every executor is shut down and its futures waited for, as in the SDK.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import itertools
import json
import logging
import queue
import threading
import time
import uuid
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import _base
from dataclasses import dataclass
from typing import Any, ClassVar

import grpc

from gcgate import errors, hardware
from gcgate._channel import translate
from gcgate.batch import UUID_LIKE_T, as_optional_uuid, as_uuid, by_size
from gcgate.client import Client, as_serializer, result_serializer_paths, task_dict
from gcgate.constants import (
    ENDPOINT_ID_HINT,
    LOCAL_ENDPOINT_ALIAS,
    LOCAL_ENDPOINT_ID,
    MAX_SUBMISSION_BYTES,
    TaskStatus,
)
from gcgate.serialize import Serializer, Strategylike
from gcgate.v1 import gateway_pb2 as pb

log = logging.getLogger(__name__)


class ComputeFuture(concurrent.futures.Future):
    """A Future with the id of the task behind it (the SDK's ``ComputeFuture``).

    ``task_id`` is None until the daemon has accepted the task. Unlike the SDK's,
    the future can be cancelled after that too: :meth:`cancel` then cancels the
    task at the daemon.
    """

    def __init__(self, task_id: str | None = None) -> None:
        super().__init__()
        self.task_id: str | None = task_id
        self._metadata: dict[str, Any] = {}
        #: The client that cancels the task at the daemon once it has a task id.
        self._client: Client | None = None

    def cancel(self) -> bool:
        """Cancel the task: before it is sent, as ``concurrent.futures`` does; once
        the daemon accepted it and it is not final, by cancelling it there
        (``Client.cancel_tasks``: a local task is dropped or its worker killed;
        a Globus task is no longer waited for). Then ``cancelled()`` is True and
        ``result()`` raises ``concurrent.futures.CancelledError``.

        :returns: False once the task finished, while its submission is on its
            way (no task id yet), or when the daemon could not be asked
        """
        if super().cancel():
            return True
        client, task_id = self._client, self.task_id
        if self.done() or client is None or task_id is None:
            return False
        try:
            answer = client.cancel_tasks([task_id])[task_id]
        except errors.GcgateError as exc:
            log.warning("could not cancel task %s: %s", task_id, exc)
            return False
        return answer["status"] == TaskStatus.CANCELLED and self._set_cancelled()

    def _set_cancelled(self) -> bool:
        """Move a running future to cancelled (its task was cancelled at the
        daemon), waking whoever waits on it; False if it has a result already."""
        with self._condition:
            if self._state == _base.FINISHED:
                return False
            if self._state not in (_base.CANCELLED, _base.CANCELLED_AND_NOTIFIED):
                self._state = _base.CANCELLED_AND_NOTIFIED
                for waiter in self._waiters:
                    waiter.add_cancelled(self)
                self._condition.notify_all()
            else:
                return True
        self._invoke_callbacks()
        return True


#: Every executor whose submitter thread may still be running. Its threads are
#: daemon threads (an executor nobody shuts down must not keep a program alive
#: forever), so without this a program that ends without ``shutdown()`` would
#: drop the tasks still queued in ``submit()`` unsent and never run the callbacks
#: of those sent: see :func:`_shutdown_at_exit`.
_LIVE_EXECUTORS: weakref.WeakSet[Executor] = weakref.WeakSet()


def _shutdown_at_exit() -> None:
    """At interpreter exit, shut down every executor and wait for its futures, as
    the SDK does (its exit thread calls ``shutdown()`` on each executor left open)
    and as ``concurrent.futures`` promises: the program exits once every pending
    future is done, whatever ``wait`` an earlier ``shutdown()`` was given, unless
    ``cancel_futures`` cancelled them."""
    for executor in list(_LIVE_EXECUTORS):
        executor.shutdown(wait=True)


# Run by threading._shutdown, before the interpreter stops threads and while new
# ones (a stream for the last batch) can still start; concurrent.futures'
# ThreadPoolExecutor waits for its work here too. atexit would be too late.
threading._register_atexit(_shutdown_at_exit)  # type: ignore[attr-defined]


#: At most this many tasks, for at most this many seconds, wait for the next
#: BatchRun call before their results are watched (see _submitter_loop).
WATCH_GATHER, WATCH_GATHER_SECONDS = 1024, 0.05


@dataclass(frozen=True)
class _SubmitOptions:
    """What tasks must share to travel in one BatchRun; hashable to group them."""

    endpoint_id: str
    task_group_id: str | None
    resource_specification: str  # canonical JSON, "null" for none
    user_endpoint_config: str
    result_serializers: tuple[str, ...]


@dataclass
class _QueuedTask:
    future: ComputeFuture
    options: _SubmitOptions
    function_id: uuid.UUID
    payload: str
    #: The payload's size as the daemon counts it against a submission's limit.
    size: int


class Executor(concurrent.futures.Executor):
    """Run functions on an endpoint and get ``concurrent.futures`` futures back.

    Mirrors ``globus_compute_sdk.Executor``: the same constructor, properties
    (``endpoint_id``, ``task_group_id``, ``resource_specification``,
    ``user_endpoint_config``, ``result_serializers``, ``serializer``,
    ``amqp_port``) and methods (``submit``, ``submit_to_registered_function``,
    ``register_function``, ``register_source_code``, ``reload_tasks``,
    ``get_worker_hardware_details``, ``shutdown``). ``map`` works (it is the
    base class's, built on ``submit``), where the SDK raises NotImplementedError.
    """

    #: Task group of the most recent executor that had one, per endpoint; new
    #: executors join it unless given another (as in the SDK, which keeps one for
    #: the process). Per endpoint, because a group made on the local endpoint is
    #: unknown to Globus Compute, which refuses it (TASK_GROUP_NOT_FOUND).
    _default_task_group_ids: ClassVar[dict[uuid.UUID | None, uuid.UUID]] = {}

    #: Default of :attr:`reconnect_timeout`.
    DEFAULT_RECONNECT_TIMEOUT: ClassVar[float] = 60.0

    def __init__(
        self,
        endpoint_id: UUID_LIKE_T | None = None,
        client: Client | None = None,
        task_group_id: UUID_LIKE_T | None = None,
        resource_specification: dict[str, Any] | None = None,
        user_endpoint_config: dict[str, Any] | None = None,
        label: str = "",
        batch_size: int = 128,
        amqp_port: int | None = None,
        api_burst_limit: int = 4,
        api_burst_window_s: int = 16,
        serializer: Serializer | None = None,
        result_serializers: Iterable[Strategylike] | None = None,
        *,
        reuse_results: bool | None = None,
        **kwargs: Any,
    ) -> None:
        """
        :param endpoint_id: endpoint to run tasks on; a UUID or ``"local"``
        :param client: the :class:`Client` to use; default: a new one (closed at
            shutdown) on the default socket
        :param task_group_id: task group to join; default: the last one used, else
            the daemon assigns one on first submission
        :param resource_specification: resource requirements for each task
        :param user_endpoint_config: user endpoint configuration values, a
            JSON-serializable dict
        :param label: a name for this executor, shown in its repr
        :param batch_size: most tasks sent in one BatchRun call [min: 1]; a call
            also carries at most 10 MB of arguments (a larger task goes alone)
        :param amqp_port: kept as :attr:`amqp_port`; results come from the daemon
            over its socket, so no result queue is opened here
        :param api_burst_limit: kept, clamped to 1..8 as in the SDK; the daemon
            budgets the requests of all its clients together (its rate_limit_*
            settings), so this executor limits nothing itself
        :param api_burst_window_s: kept, clamped to 1..32 as in the SDK; likewise
        :param serializer: serializer for args/kwargs and results (ours, or an SDK
            ``ComputeSerializer``); replaces the client's
        :param result_serializers: strategies the endpoint tries, in order, to
            serialize results (instances, classes or import paths)
        :param reuse_results: gcgate: futures of tasks identical to one that
            succeeded before with this option (same endpoint, function code,
            argument bytes and options) resolve from the daemon's store without
            running (see ``Client(reuse_results=...)``); None: the client's setting
        :param kwargs: anything else is a TypeError, as in the SDK
        """
        for key in kwargs:
            raise TypeError(f"'{key}' is an invalid argument for {type(self).__name__}")

        if client is not None and not isinstance(client, Client):
            # A half-ported script (this Executor from gcgate, its Client still
            # from globus_compute_sdk) would otherwise fail on some missing attribute.
            kind = f"{type(client).__module__}.{type(client).__qualname__}"
            raise TypeError(
                f"client must be a gcgate.Client, not {kind}: an Executor from gcgate talks"
                " to the gcgate daemon through a gcgate Client. Build it with"
                " `from gcgate import Client` (or leave client out for a default one)"
            )
        self._owns_client = client is None
        self.client = client if client is not None else Client()
        if serializer is not None:
            self.serializer = serializer

        self.endpoint_id = endpoint_id  # type: ignore[assignment]  # via setter
        self.task_group_id = task_group_id or Executor._default_task_group_ids.get(  # type: ignore[assignment]
            self.endpoint_id
        )
        self.resource_specification = resource_specification
        self.user_endpoint_config = user_endpoint_config
        self.result_serializers = result_serializers  # type: ignore[assignment]
        #: gcgate: whether submissions ask to reuse stored results (off by default).
        self.reuse_results: bool = (
            self.client.reuse_results if reuse_results is None else reuse_results
        )
        self.label = label
        self.batch_size = max(1, batch_size)
        self.amqp_port = amqp_port
        self.api_burst_limit = min(8, max(1, api_burst_limit))
        self.api_burst_window_s = min(32, max(1, api_burst_window_s))
        self.task_count_submitted = 0

        self._function_registry: dict[Any, tuple[Any, str]] = {}
        self._registry_lock = threading.Lock()
        self._shutdown_lock = threading.Lock()
        self._stopped = False
        #: _options(): the settings it last built options from, and those options
        #: (one attribute, so threads submitting at once never pair them wrongly).
        self._last_options: tuple[tuple[Any, ...], _SubmitOptions] | None = None
        self._queue: queue.SimpleQueue[_QueuedTask | None] = queue.SimpleQueue()
        self._watcher = _ResultWatcher(self.client, self.DEFAULT_RECONNECT_TIMEOUT)
        self._submitter = threading.Thread(
            target=self._submitter_loop, name=f"gcgate-submitter-{id(self):x}", daemon=True
        )
        self._submitter.start()
        _LIVE_EXECUTORS.add(self)

    def __repr__(self) -> str:
        label = f"{self.label}; " if self.label else ""
        ep_id = f"ep_id:{self.endpoint_id}; " if self.endpoint_id else ""
        return (
            f"{type(self).__name__}<{label}{ep_id}tg_id:{self.task_group_id}; bs:{self.batch_size}>"
        )

    # ---------------------------------------------------------------- properties

    @property
    def endpoint_id(self) -> uuid.UUID | None:
        """Where tasks run; always a UUID (``"local"`` becomes the local endpoint's)."""
        return self._endpoint_id

    @endpoint_id.setter
    def endpoint_id(self, endpoint_id: UUID_LIKE_T | None) -> None:
        if endpoint_id == LOCAL_ENDPOINT_ALIAS:
            endpoint_id = LOCAL_ENDPOINT_ID
        self._endpoint_id = as_optional_uuid(endpoint_id, "endpoint_id", ENDPOINT_ID_HINT)

    @property
    def task_group_id(self) -> uuid.UUID | None:
        """The task group new tasks join; set from the daemon's answer when None."""
        return self._task_group_id

    @task_group_id.setter
    def task_group_id(self, task_group_id: UUID_LIKE_T | None) -> None:
        tg_id = as_optional_uuid(task_group_id, "task_group_id")
        self._task_group_id = tg_id
        if tg_id:
            Executor._default_task_group_ids[self.endpoint_id] = tg_id

    @property
    def resource_specification(self) -> dict[str, Any] | None:
        """Resource requirements for each task; a JSON-serializable dict or None."""
        return self._resource_specification

    @resource_specification.setter
    def resource_specification(self, val: dict[str, Any] | None) -> None:
        _check_json_dict(
            val,
            "Resource specification must be of type dict,",
            "Resource specification must be JSON-serializable",
        )
        self._resource_specification = val

    @property
    def user_endpoint_config(self) -> dict[str, Any] | None:
        """User endpoint configuration values; a JSON-serializable dict or None."""
        return self._user_endpoint_config

    @user_endpoint_config.setter
    def user_endpoint_config(self, val: dict[str, Any] | None) -> None:
        _check_json_dict(
            val, "Config must be of type dict, ", "Configuration must be JSON-serializable"
        )
        self._user_endpoint_config = val

    @property
    def result_serializers(self) -> Iterable[Strategylike] | None:
        """Strategies the endpoint tries, in order, for results; falsy: its defaults."""
        return self._result_serializers

    @result_serializers.setter
    def result_serializers(self, val: Iterable[Strategylike] | None) -> None:
        # Validated now so a typo fails here, not on a background thread.
        self._result_serializer_paths = tuple(result_serializer_paths(val or ()))
        self._result_serializers = val

    @property
    def amqp_port(self) -> int | None:
        """The SDK's port for its AMQP result queue (443, 5671, 5672 or None), kept
        for code that reads it: gcgate's futures are resolved by the daemon, which
        consumes the result queues itself (on the port the service's URL names)."""
        return self._amqp_port

    @amqp_port.setter
    def amqp_port(self, p: int | None) -> None:
        self._amqp_port = p

    @property
    def reconnect_timeout(self) -> float:
        """Seconds a broken result stream waits for the daemon to be back (e.g. a
        restart) before its futures fail with :class:`~gcgate.errors.DaemonUnavailable`."""
        return self._watcher.reconnect_timeout

    @reconnect_timeout.setter
    def reconnect_timeout(self, seconds: float) -> None:
        self._watcher.reconnect_timeout = seconds

    @property
    def serializer(self) -> Serializer:
        """The client's serializer (args/kwargs out, results in)."""
        return self.client.fx_serializer

    @serializer.setter
    def serializer(self, s: Any) -> None:
        self.client.fx_serializer = as_serializer(s)

    # -------------------------------------------------------------- registration

    def _check_running(self, action: str) -> None:
        if self._stopped:
            raise RuntimeError(f"{self!r} is shutdown; {action}")

    def register_function(
        self, fn: Callable[..., Any], function_id: str | None = None, **func_register_kwargs: Any
    ) -> str:
        """Register ``fn`` with this executor (``submit`` does this on first use).

        :param function_id: the id ``fn`` is already registered under; skips the
            registration call
        :param func_register_kwargs: passed to :meth:`Client.register_function`
        :raises ValueError: ``fn`` is already registered with this executor
        """
        self._check_running("refusing to register function")
        with self._registry_lock:
            if id(fn) in self._function_registry:
                cached_fn_id = self._function_registry[id(fn)][1]
                msg = f"Function already registered as function id: {cached_fn_id}"
                if function_id:
                    if function_id == cached_fn_id:
                        log.warning(msg)
                        return cached_fn_id
                    msg += f" (attempted id: {function_id})"
                raise ValueError(msg)
            return self._register_locked(fn, function_id, func_register_kwargs)

    def _register_locked(
        self, fn: Callable[..., Any], function_id: str | None, kwargs: dict[str, Any]
    ) -> str:
        if not function_id:
            kwargs.pop("function", None)
            function_id = self.client.register_function(fn, **kwargs)
        # Keyed by identity, and holding ``fn`` so its id() cannot be reused by
        # another object while the entry exists.
        self._function_registry[id(fn)] = (fn, function_id)
        return function_id

    def register_source_code(
        self, source: str, function_name: str, **registration_kwargs: Any
    ) -> str:
        """Register source text defining ``function_name`` (see
        :meth:`Client.register_source_code`); returns the function id.

        :raises ValueError: this source is already registered with this executor
        """
        self._check_running("refusing to register function")
        key = ("source", source, function_name)
        with self._registry_lock:
            if key in self._function_registry:
                cached_fn_id = self._function_registry[key][1]
                raise ValueError(f"Function already registered as function id: {cached_fn_id}")
            fn_id = self.client.register_source_code(source, function_name, **registration_kwargs)
            self._function_registry[key] = (source, fn_id)
            return fn_id

    # ---------------------------------------------------------------- submission

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> ComputeFuture:
        """Run ``fn(*args, **kwargs)`` on the endpoint; returns its future.

        ``fn`` is registered the first time it is submitted to this executor.
        """
        self._check_running("no new functions may be executed")
        with self._registry_lock:
            entry = self._function_registry.get(id(fn))
            fn_id = entry[1] if entry else self._register_locked(fn, None, {})
        return self.submit_to_registered_function(fn_id, args=args, kwargs=kwargs)

    def submit_to_registered_function(
        self,
        function_id: UUID_LIKE_T,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> ComputeFuture:
        """Run an already registered function (e.g. a shared one) on the endpoint.

        The arguments are serialized now, so a bad argument raises here (TypeError,
        SerializationError) rather than failing later on a background thread.
        """
        self._check_running("no new functions may be executed")
        if not self.endpoint_id:
            raise ValueError(
                "No endpoint_id set.  Did you forget to set it at construction?\n"
                "  Hint:\n\n"
                "    gce = Executor(endpoint_id=<ep_id>)\n"
                "    gce.endpoint_id = <ep_id>    # alternative"
            )
        payload = self.serializer.task_payload(args, kwargs)
        task = _QueuedTask(
            ComputeFuture(),
            self._options(),
            _function_uuid(function_id),
            payload,
            len(payload) if payload.isascii() else len(payload.encode()),
        )
        # Checked again under the lock: a task queued behind shutdown's sentinel
        # would never be sent, and its future never resolved.
        with self._shutdown_lock:
            self._check_running("no new functions may be executed")
            self._queue.put(task)
        return task.future

    def _options(self) -> _SubmitOptions:
        """The options a task submitted now travels with; built again only when one
        of the settings changed (the dicts are compared as JSON: they may have been
        changed in place)."""
        key = (
            self._endpoint_id,
            self._task_group_id,
            _canonical_json(self._resource_specification),
            _canonical_json(self._user_endpoint_config),
            self._result_serializer_paths,
        )
        last = self._last_options
        if last is not None and last[0] == key:
            return last[1]
        endpoint_id, task_group_id, specification, config, serializers = key
        options = _SubmitOptions(
            endpoint_id=str(endpoint_id),
            task_group_id=str(task_group_id) if task_group_id else None,
            resource_specification=specification,
            user_endpoint_config=config,
            result_serializers=serializers,
        )
        self._last_options = (key, options)
        return options

    def _submitter_loop(self) -> None:
        """Send queued tasks in batches until the shutdown sentinel, then wait for
        every watched result before releasing the client."""
        unwatched: dict[str, ComputeFuture] = {}
        gathering_since = 0.0
        try:
            stopping = False
            while not stopping:
                item = self._queue.get()
                if item is None:
                    break
                batch = [item]
                # Take whatever else is queued right now, up to batch_size: a lone
                # submit goes out at once, a burst goes out in few calls.
                while len(batch) < self.batch_size:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stopping = True
                        break
                    batch.append(item)
                if not unwatched:
                    gathering_since = time.monotonic()
                self._send(batch, unwatched)
                # Watched at once unless more submissions already wait: then the
                # results of a burst's batches share streams (fewer ids re-sent as
                # the watcher merges its streams, fewer threads).
                if (
                    stopping
                    or self._queue.empty()
                    or len(unwatched) >= WATCH_GATHER
                    or time.monotonic() - gathering_since >= WATCH_GATHER_SECONDS
                ):
                    self._watcher.watch(unwatched)
                    unwatched = {}
        finally:
            self._watcher.watch(unwatched)
            self._watcher.join()
            if self._owns_client:
                self.client.close()

    def _send(self, batch: list[_QueuedTask], unwatched: dict[str, ComputeFuture]) -> None:
        """Send ``batch``; the futures of the tasks accepted go into ``unwatched``."""
        groups: dict[_SubmitOptions, list[_QueuedTask]] = defaultdict(list)
        for task in batch:
            # False if the caller cancelled it while queued; after this, it cannot be.
            if task.future.set_running_or_notify_cancel():
                groups[task.options].append(task)
        for options, tasks in groups.items():
            # The service takes at most 10 MB per submission (a Globus endpoint), gRPC
            # 64 MiB per call: a burst gathered up to batch_size could exceed either
            # though each task alone is fine.
            for chunk in by_size(tasks, MAX_SUBMISSION_BYTES):
                try:
                    unwatched.update(self._send_group(options, chunk))
                except Exception as exc:  # keep the submitter alive for later batches
                    for task in chunk:
                        if not task.future.done():
                            task.future.set_exception(exc)

    def _send_group(
        self, options: _SubmitOptions, tasks: list[_QueuedTask]
    ) -> dict[str, ComputeFuture]:
        tg_id = options.task_group_id or self.task_group_id
        batch = self.client.create_batch(
            task_group_id=tg_id,
            resource_specification=json.loads(options.resource_specification),
            user_endpoint_config=json.loads(options.user_endpoint_config),
            result_serializers=list(options.result_serializers) or None,
        )
        futures_by_fn: dict[str, list[ComputeFuture]] = defaultdict(list)
        for task in tasks:
            # Already serialized in submit(): add the payload as Batch.add would.
            batch.tasks[task.function_id].append(task.payload)
            futures_by_fn[str(task.function_id)].append(task.future)

        response = self.client._batch_run(
            options.endpoint_id, batch, reuse_results=self.reuse_results
        )

        new_tg_id = response["task_group_id"]
        if new_tg_id and str(self.task_group_id) != new_tg_id:
            self.task_group_id = new_tg_id  # type: ignore[assignment]
        # Keys as the Batch wrote them (str of a UUID), however the daemon spells them.
        returned = {str(as_uuid(fid)): tids for fid, tids in response["tasks"].items()}
        to_watch: dict[str, ComputeFuture] = {}
        for fn_id, futures in futures_by_fn.items():
            task_ids = returned.get(fn_id, [])
            if len(task_ids) != len(futures):
                exc = errors.Internal(
                    f"the daemon answered {len(task_ids)} task ids for {len(futures)} tasks"
                    f" of function {fn_id}; it is unclear which ran, so all are failed"
                )
                for future in futures:
                    future.set_exception(exc)
                continue
            for future, task_id in zip(futures, task_ids, strict=True):
                future.task_id = task_id
                future._client = self.client
                future._metadata.update(
                    request_uuid=response["request_id"],
                    endpoint_uuid=response["endpoint_id"],
                    task_group_uuid=new_tg_id,
                )
                to_watch[task_id] = future
        self.task_count_submitted += len(to_watch)
        return to_watch

    def reload_tasks(self, task_group_id: UUID_LIKE_T | None = None) -> list[ComputeFuture]:
        """Futures for the tasks of this executor's task group (or of
        ``task_group_id``, which then becomes this executor's), resolved as their
        results arrive: to reattach to tasks submitted earlier, by this process or
        another, to any endpoint.

        As the SDK's, which asks the Compute service for the group's tasks; here
        the daemon's store answers, so the tasks are those submitted through this
        daemon (its task group ids are the ones ``batch_run`` and the futures'
        submissions answered). Tasks whose results this executor is waiting for
        already are left out, as in the SDK.

        :raises ValueError: no task group id, given or set
        :raises NotFound: the daemon holds no task of that group
        """
        if task_group_id is not None:
            self.task_group_id = task_group_id  # type: ignore[assignment]
        if self.task_group_id is None:
            raise ValueError("must specify a task_group_id in order to reload tasks")
        self._check_running("refusing to reload tasks")
        task_group_id = self.task_group_id
        already = self._watcher.open_task_ids()
        futures = {
            tid: ComputeFuture(tid)
            for tid in self.client._task_ids_in_group(task_group_id)
            if tid not in already
        }
        for future in futures.values():
            future.set_running_or_notify_cancel()  # sent long ago: cancelled at the daemon
            future._client = self.client
        if futures:
            self._watcher.watch(futures)
        else:
            log.warning("Received no tasks for Task Group ID: %s", task_group_id)
        return list(futures.values())

    def get_worker_hardware_details(self) -> str:
        """The SDK's hardware report of a worker of this executor's endpoint
        (waits for it); see :mod:`gcgate.hardware`."""
        function_id = hardware.register(self.client)
        future = self.submit_to_registered_function(function_id, args=(hardware.EXECUTOR_ENV,))
        return future.result()  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ shutdown

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting tasks; safe to call more than once.

        :param wait: return only when every future of this executor is resolved
            and its threads have exited (without it, the program's exit still
            waits for them, as in the SDK)
        :param cancel_futures: cancel the tasks not yet sent to the daemon (sent
            tasks still resolve; ``future.cancel()`` cancels one at the daemon)
        """
        with self._shutdown_lock:
            if not self._stopped:
                self._stopped = True
                if cancel_futures:
                    while True:
                        try:
                            item = self._queue.get_nowait()
                        except queue.Empty:
                            break
                        if item is not None:
                            item.future.cancel()
                            item.future.set_running_or_notify_cancel()
                self._queue.put(None)
        # Joining from our own threads (a done-callback calling shutdown) would
        # deadlock; there it means "stop", and the threads finish on their own.
        if wait and not self._on_own_thread():
            self._submitter.join()

    def _on_own_thread(self) -> bool:
        current = threading.current_thread()
        return current is self._submitter or self._watcher.owns(current)


def _canonical_json(value: dict[str, Any] | None) -> str:
    return "null" if value is None else json.dumps(value, sort_keys=True)


def _function_uuid(function_id: UUID_LIKE_T) -> uuid.UUID:
    """``as_uuid``, remembered for strings: an executor submits the same few
    functions again and again (a bad id raises every time: errors are not cached)."""
    return (
        _uuid_of(function_id) if type(function_id) is str else as_uuid(function_id, "function_id")
    )


@functools.lru_cache(maxsize=256)
def _uuid_of(text: str) -> uuid.UUID:
    return as_uuid(text, "function_id")


def _check_json_dict(val: Any, type_msg: str, json_msg: str) -> None:
    """The SDK's checks on resource_specification / user_endpoint_config setters."""
    if val is None:
        return
    if not isinstance(val, dict):
        raise TypeError(f"{type_msg}not {type(val).__name__}")
    try:
        json.dumps(val)
    except Exception as e:
        raise TypeError(json_msg) from e


@dataclass(eq=False)
class _Stream:
    """One WatchTaskBatches call, iterated by its own thread.

    ``ids`` are the unresolved tasks this stream is responsible for (shrinking as
    they resolve). Once ``retired`` (under the watcher lock) the stream is
    responsible for nothing: its ids moved to a merged stream, or were resolved
    or failed, and its thread only has to exit.
    """

    ids: set[str]
    thread: threading.Thread | None = None
    call: Any = None
    retired: bool = False


class _ResultWatcher:
    """Resolves futures from WatchTaskBatches streams, with few streams and threads.

    Each flushed batch gets a stream of its own, so its results flow at once.
    To keep the number of streams (and threads) logarithmic in the number of
    outstanding tasks, two streams of the same size class (powers of two) are
    merged: both are cancelled and one stream is opened for their unresolved
    ids, so each id is re-sent at most log2(outstanding) times. A record that
    arrives on a stream being cancelled is harmless: a future is resolved by
    whichever stream pops it from ``_futures`` first.
    """

    #: Pauses between attempts to reach the daemon again after a stream broke.
    _RETRY_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0)
    #: Re-opens without receiving anything before giving up even though the daemon
    #: answers Status (it keeps breaking the stream for some other reason).
    _MAX_REOPENS = 20

    def __init__(self, client: Client, reconnect_timeout: float) -> None:
        self._client = client
        #: How long a broken stream waits for the daemon to be back before failing.
        self.reconnect_timeout = reconnect_timeout
        self._lock = threading.Lock()
        self._futures: dict[str, ComputeFuture] = {}
        self._owner: dict[str, _Stream] = {}
        self._streams: list[_Stream] = []
        self._threads: list[threading.Thread] = []

    def open_task_ids(self) -> set[str]:
        """The tasks whose futures this watcher still has to resolve."""
        with self._lock:
            return set(self._futures)

    def owns(self, thread: threading.Thread) -> bool:
        """Whether ``thread`` is one of this watcher's stream threads."""
        with self._lock:
            return thread in self._threads

    def watch(self, futures: dict[str, ComputeFuture]) -> None:
        """Resolve ``futures`` ({task_id: future}) as their tasks finish."""
        if not futures:
            return
        with self._lock:
            self._futures.update(futures)
            self._streams.append(self._new_stream_locked(set(futures)))
            self._compact_locked()
            new = [s for s in self._streams if s.thread is None]
            for stream in new:
                stream.thread = threading.Thread(
                    target=self._run, args=(stream,), name="gcgate-watcher", daemon=True
                )
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.extend(s.thread for s in new if s.thread is not None)
        for stream in new:
            assert stream.thread is not None
            stream.thread.start()

    def _new_stream_locked(self, ids: set[str]) -> _Stream:
        stream = _Stream(ids)
        for tid in ids:
            self._owner[tid] = stream
        return stream

    def _compact_locked(self) -> None:
        """Merge streams until no two have the same size class."""
        while True:
            self._streams = [s for s in self._streams if not s.retired and s.ids]
            by_class: dict[int, _Stream] = {}
            for stream in self._streams:
                other = by_class.setdefault(len(stream.ids).bit_length(), stream)
                if other is not stream:
                    break
            else:
                return
            self._retire_locked(other)
            self._retire_locked(stream)
            self._streams.append(self._new_stream_locked(other.ids | stream.ids))

    @staticmethod
    def _retire_locked(stream: _Stream) -> None:
        stream.retired = True
        if stream.call is not None:
            stream.call.cancel()

    def _run(self, stream: _Stream) -> None:
        """Thread body: no way out of it leaves a future of ``stream`` unresolved."""
        try:
            self._follow(stream)
        except BaseException as exc:  # a bug here must not leave callers waiting forever
            self._fail(stream, exc)
            raise

    def _follow(self, stream: _Stream) -> None:
        conn = self._client._conn
        reopens = 0
        while True:
            if closed := conn.closed_error():
                self._fail(stream, closed)
                return
            with self._lock:
                if stream.retired or not stream.ids:
                    stream.retired = True
                    return
                request = pb.WatchTasksRequest(task_ids=sorted(stream.ids))
                stream.call = conn.stub.WatchTaskBatches(request)
            try:
                for batch in stream.call:
                    reopens = 0
                    self._resolve(batch.tasks)
            except grpc.RpcError as err:
                if stream.retired:
                    return  # cancelled on purpose: its ids moved to a merged stream
                exc = conn.closed_error() or translate(err, conn.socket_path)
                # UNAVAILABLE: connection lost or daemon stopping; CANCELLED that we
                # did not ask for: the daemon cancelled the stream as it stopped.
                if isinstance(exc, (errors.DaemonUnavailable, errors.Cancelled)):
                    reopens += 1
                    last = self._await_daemon(stream) if reopens <= self._MAX_REOPENS else exc
                    if last is None:
                        continue
                    exc = errors.DaemonUnavailable(
                        f"lost the result stream from the gcgate daemon and it was not back"
                        f" within {self.reconnect_timeout:g} s: {last}. The tasks may still"
                        " finish: once the daemon is up, fetch their results with"
                        " Client.get_result(future.task_id)."
                    )
                self._fail(stream, exc)
                return
            # The daemon ends a stream only after sending every task named in it.
            self._fail(
                stream,
                errors.Internal("the daemon ended the result stream without this task's result"),
            )
            return

    def _await_daemon(self, stream: _Stream) -> errors.GcgateError | None:
        """Wait (bounded) until the daemon answers Status again.

        :returns: None once it does (or once ``stream`` needs nothing any more),
            else the last error seen when :attr:`reconnect_timeout` ran out
        """
        conn = self._client._conn
        deadline = time.monotonic() + self.reconnect_timeout
        for attempt in itertools.count():
            delay = self._RETRY_DELAYS[min(attempt, len(self._RETRY_DELAYS) - 1)]
            time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
            if stream.retired:
                return None
            try:
                conn.call(conn.stub.Status, pb.StatusRequest(), timeout=2.0)
            except errors.GcgateError as exc:
                if conn.closed_error() or time.monotonic() >= deadline:
                    return exc
                log.debug("gcgate daemon still unreachable: %s", exc)
            else:
                return None
        raise AssertionError("unreachable")

    def _resolve(self, records: Iterable[pb.TaskRecord]) -> None:
        """Resolve the futures of final ``records`` (one lock round for them all)."""
        found = []
        with self._lock:
            for record in records:
                future = None if record.pending else self._futures.pop(record.task_id, None)
                if future is None:
                    continue  # resolved already, via a stream this one replaced
                self._owner.pop(record.task_id).ids.discard(record.task_id)
                found.append((future, record))
        serializer = self._client.fx_serializer
        for future, record in found:
            if record.status == TaskStatus.CANCELLED:  # by this future, or anyone
                future._set_cancelled()
                continue
            task = task_dict(record, serializer)
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                if "exception" in task:
                    future.set_exception(task["exception"])
                else:
                    future.set_result(task["result"])

    def _fail(self, stream: _Stream, exc: BaseException) -> None:
        """Fail the futures ``stream`` is still responsible for (none if retired)."""
        with self._lock:
            if stream.retired:
                return
            stream.retired = True
            futures = []
            for tid in stream.ids:
                futures.append(self._futures.pop(tid))
                del self._owner[tid]
            stream.ids.clear()
        for future in futures:
            future.set_exception(exc)

    def join(self) -> None:
        """Wait until every stream thread has exited, i.e. every future is resolved."""
        me = threading.current_thread()
        while True:
            with self._lock:
                alive = [t for t in self._threads if t.is_alive() and t is not me]
            if not alive:
                return
            for thread in alive:
                thread.join()
