"""Results pushed by Globus Compute over AMQP: the service's result queues.

A submit with ``"create_queue": true`` makes the service publish every result
of that task group to the queue ``queue_prefix + task_group_id`` of its AMQP
broker; ``GET /v2/get_amqp_result_connection_url`` gives a connection URL with
fresh credentials and the prefix. Each message body is a
``globus_compute_common.messagepack``-packed ``Result``, and it stays queued
until the consumer acknowledges it (the SDK's ``Executor`` reads results the
same way: ``globus_compute_sdk/sdk/executor.py``, ``_ResultWatcher``).

:class:`ResultQueues` is one AMQP connection for one caller (the daemon's login,
or one client's token): it consumes the queue of every task group it is told
to :meth:`~ResultQueues.watch`, each on a channel of its own, so a queue the
broker does not know closes only its own channel and that group is polled
instead (the reason shows in ``gcgate status``). Every message becomes an
outcome handed to ``deliver`` with an ``ack`` function; the backend calls
``ack`` only once the outcome is committed to the store. A crash before that
means the broker delivers the message again, never that the result is lost; a
redelivered result of a task already final is acknowledged and ignored by the
backend. A message that is not a ``Result`` is logged and rejected (not
requeued: it would only come back), never a crash.

The connection lives as long as there are groups to watch: it reconnects with
exponential backoff and jitter, fetches a fresh connection URL when the broker
refuses the credentials (and otherwise reuses the one it has: each fetch is a
request against the rate budget), reopens a group's channel after a channel
error, and takes the URL's scheme and parameters as given (``amqps://`` with
TLS, ``heartbeat``, ``cafile``, ... as aiormq reads them). The URL carries
credentials, so it is never logged or reported: errors are described with the
credentials cut out.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gcgate.constants import TaskStatus

from gcgated.backends.base import Outcome
from gcgated.errors import GatewayError

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
    from globus_compute_common.messagepack.message_types import Result

# aio-pika and globus-compute-common (pydantic) are imported on first use: about
# 20 MB a daemon that never reaches Globus does not need to carry.

log = logging.getLogger(__name__)

#: Unacknowledged messages the broker may have on the way to one group's channel.
PREFETCH = 1000
#: Seconds an AMQP connection attempt may take (TCP, TLS and the AMQP handshake).
CONNECT_TIMEOUT = 15.0
#: Backoff between connection attempts: first, and most, in seconds (then jittered).
BACKOFF_FIRST, BACKOFF_MOST = 0.5, 30.0
#: Seconds the first connection may take before the results it would bring are
#: polled meanwhile (fetching its URL and connecting take well under one).
FIRST_CONNECT_GRACE = 5.0
#: A group whose channel closes this many times within CHANNEL_WINDOW seconds is
#: polled instead (until the next reconnect): something is wrong with its queue.
CHANNEL_CLOSES, CHANNEL_WINDOW = 3, 10.0

#: ``deliver(service task id, outcome or None, ack)``: None when the message
#: says the result must be fetched by status (high-assurance endpoints).
Deliver = Callable[[str, Outcome | None, Callable[[], None]], None]

#: Why a group is polled when the broker does not know its queue.
NO_QUEUE = "the result broker has no queue {queue} for this task group ({why})"
#: Why a group is polled when its channel keeps closing.
CHANNEL_FAILING = "its result queue's channel closed {count} times in {window:.0f}s ({why})"


def outcome_of(task_id: str, result: Result, published_at: datetime | None) -> Outcome:
    """The outcome a pushed ``Result`` stands for (task id: the service's)."""
    completion_t = published_at.timestamp() if published_at is not None else time.time()
    details = dict(result.details or {})
    if result.is_error:
        return Outcome(
            task_id,
            TaskStatus.FAILED,
            exception=result.data,
            completion_t=completion_t,
            details=details,
        )
    return Outcome(
        task_id, TaskStatus.SUCCESS, result=result.data, completion_t=completion_t, details=details
    )


def scrub(text: str, url: str) -> str:
    """``text`` with the credentials of ``url`` cut out (errors may quote the URL)."""
    for secret in _credentials(url):
        text = text.replace(secret, "***")
    return text


def _credentials(url: str) -> list[str]:
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    found = [s for s in (parts.password, parts.username) if s]
    found += [unquote(s) for s in found]
    return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)


def _backoff(attempt: int) -> float:
    """Full-jitter exponential backoff: many daemons never reconnect in step."""
    return random.uniform(BACKOFF_FIRST, min(BACKOFF_MOST, BACKOFF_FIRST * 2**attempt))


class ResultQueues:
    """One AMQP connection consuming the result queues of one caller's task groups."""

    def __init__(
        self,
        *,
        name: str,
        connection_info: Callable[[], Awaitable[dict[str, Any]]],
        deliver: Deliver,
        on_connected: Callable[[bool], None],
        on_change: Callable[[], None],
        prefetch: int = PREFETCH,
    ) -> None:
        #: Who this is for, safe to log ("daemon login", "client token:ab12...").
        self.name = name
        self._connection_info = connection_info
        self._deliver = deliver
        #: Called after each connect, with whether an open connection was lost
        #: since the last one: results pushed meanwhile are queued, but a status
        #: round catches anything that was not.
        self._on_connected = on_connected
        #: Called whenever a group starts or stops being pushed (or may have).
        self._on_change = on_change
        self.prefetch = prefetch
        self._groups: set[str] = set()
        self._channels: dict[str, AbstractChannel] = {}
        self._closes: dict[str, list[float]] = {}
        #: Groups polled instead of pushed, until the next reconnect -> why.
        self.polled: dict[str, str] = {}
        #: Those of them whose queue the broker did not know (see :meth:`renew`).
        self._missing: set[str] = set()
        #: Groups renewed since their queue was last looked up: a lookup that was
        #: on its way then may have missed the queue the submit just declared.
        self._renewed: set[str] = set()
        self._info: dict[str, str] | None = None
        self._refused = False
        self._changed = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        #: Monotonic time the connection was first asked for.
        self._since = time.monotonic()
        self._acks: set[asyncio.Task[None]] = set()
        self._closed = False
        #: An open connection was lost and none has been opened since.
        self._lost = False
        self.state = "idle"
        self.last_error = ""
        self.connects = 0
        self.delivered = 0
        self.rejected = 0
        self.acked = 0

    # ------------------------------------------------------------ interface

    def watch(self, groups: Iterable[str]) -> None:
        """Consume these task groups' queues (from now until :meth:`unwatch`)."""
        new = set(groups) - self._groups
        if not new or self._closed:
            return
        self._groups |= new
        self._changed.set()
        if self._runner is None or self._runner.done():
            self._since = time.monotonic()
            self._runner = asyncio.get_running_loop().create_task(self._run())

    def unwatch(self, groups: Iterable[str]) -> None:
        """Stop consuming these groups' queues (none of their tasks is in flight)."""
        gone = self._groups & set(groups)
        if gone:
            self._groups -= gone
            for group in gone:
                self.polled.pop(group, None)
            self._missing -= gone
            self._renewed -= gone
            self._changed.set()

    def renew(self, group: str) -> None:
        """A submission to ``group`` asked the service for its queue, so it exists
        now even if the broker did not know it when this consumer last looked (the
        service declares it at each such submit): a group polled for a missing
        queue is tried again."""
        if group in self._groups:
            self._renewed.add(group)
        if group in self._missing:
            self._missing.discard(group)
            self.polled.pop(group, None)
            self._changed.set()
            self._on_change()

    def pushing(self, group: str) -> bool:
        """Whether results of ``group`` arrive by push: its queue is consumed, or
        about to be (its channel opening, or the first connection being made).
        False once an attempt failed, until the connection is back."""
        if group in self._channels:
            return True
        if group not in self._groups or group in self.polled:
            return False
        if self.state == "connected":
            return True
        first_try = self.state in ("idle", "connecting") and not self.last_error
        return first_try and time.monotonic() - self._since < FIRST_CONNECT_GRACE

    def consuming(self, group: str) -> bool:
        """Whether ``group``'s queue is being consumed right now."""
        return group in self._channels

    async def close(self) -> None:
        """Close the connection; unacknowledged messages go back to their queues."""
        self._closed = True
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        for task in list(self._acks):
            task.cancel()

    def counts(self) -> dict[str, int]:
        """Messages received, acknowledged and rejected, and connects, for the metrics."""
        return {
            "received": self.delivered,
            "acked": self.acked,
            "rejected": self.rejected,
            "connects": self.connects,
        }

    def describe(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "groups_pushed": len(self._channels),
            "groups_polled": dict(self.polled),
            "results_pushed": self.delivered,
            "messages_rejected": self.rejected,
            "connects": self.connects,
            "last_error": self.last_error,
        }

    # ------------------------------------------------------------ connection

    async def _run(self) -> None:
        attempt = 0
        while self._groups and not self._closed:
            self.state = "connecting"
            try:
                connection = await self._connect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._down(exc)
                await asyncio.sleep(_backoff(attempt))
                attempt += 1
                continue
            attempt = 0
            try:
                await self._serve(connection)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._lost = True
                self._down(exc)
            finally:
                self._drop_channels()
                with contextlib.suppress(Exception):
                    await asyncio.shield(connection.close())
        self.state = "idle"

    async def _connect(self) -> AbstractConnection:
        if self._info is None or self._refused:
            self._info = await self._fetch_info()
        import aio_pika
        import aiormq.exceptions

        url = self._info["connection_url"]
        try:
            connection = await aio_pika.connect(url, timeout=CONNECT_TIMEOUT)
        except (
            aiormq.exceptions.AuthenticationError,
            aiormq.exceptions.ProbableAuthenticationError,
            aiormq.exceptions.ConnectionNotAllowed,
        ):
            self._refused = True  # the credentials expired or were revoked: fetch new ones
            raise
        self._refused = False
        return connection

    async def _fetch_info(self) -> dict[str, str]:
        answer = await self._connection_info()
        url, prefix = answer.get("connection_url"), answer.get("queue_prefix")
        if not isinstance(url, str) or not isinstance(prefix, str) or "://" not in url:
            raise GatewayError(
                "Globus Compute's answer for the result queue connection had no"
                " connection_url and queue_prefix"
            )
        return {"connection_url": url, "queue_prefix": prefix}

    def _down(self, exc: BaseException) -> None:
        url = self._info["connection_url"] if self._info else ""
        why = scrub(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, url)
        if self.state == "connected" or why != self.last_error:
            log.warning("result queues (%s): %s; results are polled meanwhile", self.name, why)
        self.last_error = why
        self.state = "down"
        self._on_change()

    async def _serve(self, connection: AbstractConnection) -> None:
        """Consume every watched group until the connection closes."""
        self.state = "connected"
        self.connects += 1
        self.last_error = ""
        self.polled.clear()  # a reconnect tries every queue again
        self._missing.clear()
        self._closes.clear()
        log.info("result queues (%s): connected", self.name)
        self._on_connected(self._lost)
        self._lost = False
        self._on_change()
        closed = asyncio.ensure_future(connection.closed())
        try:
            while self._groups:
                self._changed.clear()
                for group in sorted(self._groups - self._channels.keys() - self.polled.keys()):
                    await self._consume(connection, group)
                for group in list(self._channels.keys() - self._groups):
                    await self._stop_consuming(group)
                changed = asyncio.ensure_future(self._changed.wait())
                await asyncio.wait({closed, changed}, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                if closed.done():
                    raise ConnectionError("the broker closed the connection")
        finally:
            closed.cancel()

    def _drop_channels(self) -> None:
        if self._channels:
            self._channels.clear()
            self._on_change()

    # ------------------------------------------------------------ channels

    async def _consume(self, connection: AbstractConnection, group: str) -> None:
        import aiormq.exceptions

        assert self._info is not None
        queue_name = self._info["queue_prefix"] + group
        self._renewed.discard(group)
        channel = await connection.channel(publisher_confirms=False)
        try:
            await channel.set_qos(prefetch_count=self.prefetch)
            queue = await channel.get_queue(queue_name, ensure=False)
            await queue.consume(functools.partial(self._on_message, group))
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            if group in self._renewed:  # declared by a submit meanwhile: look again
                self._changed.set()
                return
            self._poll_instead(group, NO_QUEUE.format(queue=queue_name, why=exc.args[0]))
            self._missing.add(group)
            return
        except aiormq.exceptions.ChannelClosed as exc:
            self._channel_closed(group, exc)
            return
        underlay = await channel.get_underlay_channel()
        underlay.on_consumer_cancel_callbacks.add(lambda _frame: self._cancelled(group, channel))
        channel.close_callbacks.add(lambda _ch, exc: self._channel_lost(group, channel, exc))
        self._channels[group] = channel
        self._on_change()

    async def _stop_consuming(self, group: str) -> None:
        channel = self._channels.pop(group)
        self._on_change()
        with contextlib.suppress(Exception):
            await channel.close()

    def _cancelled(self, group: str, channel: AbstractChannel) -> None:
        """The broker cancelled the consumer (queue deleted, node going down)."""
        log.warning("result queues (%s): the broker cancelled consuming group %s", self.name, group)
        task = asyncio.get_running_loop().create_task(channel.close())
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)

    def _channel_lost(
        self, group: str, channel: AbstractChannel, exc: BaseException | None
    ) -> None:
        if self._channels.get(group) is not channel:
            return  # closed on purpose (unwatched), or already replaced
        del self._channels[group]
        self._on_change()
        if not self._closed and self.state == "connected":
            self._channel_closed(group, exc)

    def _channel_closed(self, group: str, exc: BaseException | None) -> None:
        """Reopen a group's channel, unless it keeps closing: then poll the group."""
        now = time.monotonic()
        closes = [t for t in self._closes.get(group, []) if t > now - CHANNEL_WINDOW] + [now]
        self._closes[group] = closes
        why = f"{type(exc).__name__}: {exc}" if exc is not None else "closed"
        if len(closes) >= CHANNEL_CLOSES:
            self._poll_instead(
                group, CHANNEL_FAILING.format(count=len(closes), window=CHANNEL_WINDOW, why=why)
            )
        else:
            log.warning("result queues (%s): group %s's channel closed (%s)", self.name, group, why)
        self._changed.set()

    def _poll_instead(self, group: str, why: str) -> None:
        log.warning("result queues (%s): polling group %s: %s", self.name, group, why)
        self.polled[group] = why
        self._on_change()

    # ------------------------------------------------------------ messages

    async def _on_message(self, group: str, message: AbstractIncomingMessage) -> None:
        from globus_compute_common import messagepack
        from globus_compute_common.messagepack.message_types import Result

        try:
            result = messagepack.unpack(message.body)
            if not isinstance(result, Result):
                raise TypeError(f"a {type(result).__name__} message, not a Result")
        except Exception as exc:
            self.rejected += 1
            log.warning(
                "result queues (%s): rejected a message of group %s that is not a result (%s: %s)",
                self.name,
                group,
                type(exc).__name__,
                str(exc)[:200],
            )
            with contextlib.suppress(Exception):
                await message.reject(requeue=False)
            return
        self.delivered += 1
        high_assurance = bool((message.headers or {}).get("high_assurance"))
        task_id = str(result.task_id)
        outcome = None if high_assurance else outcome_of(task_id, result, message.timestamp)
        self._deliver(task_id, outcome, lambda: self._ack(message))

    def _ack(self, message: AbstractIncomingMessage) -> None:
        """Acknowledge (the outcome is in the store); a closed channel makes it moot:
        the broker delivers the message again, and it is then acknowledged as a
        duplicate."""
        log.debug("result queues (%s): acknowledging a stored result", self.name)
        task = asyncio.get_running_loop().create_task(self._send_ack(message))
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)

    async def _send_ack(self, message: AbstractIncomingMessage) -> None:
        with contextlib.suppress(Exception):
            await message.ack()
            self.acked += 1
