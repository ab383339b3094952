"""The Compute service's side of the AMQP result path: declare task-group queues and
publish results to them, on a RabbitMQ broker (``tests/broker.py``).

One thread with one ``pika.BlockingConnection`` (pika connections are not
thread-safe) works through a FIFO of operations: ``declare`` a durable queue, or
``publish`` one message to the default exchange with the queue's name as routing
key, ``mandatory`` and with publisher confirms. An operation leaves the FIFO only
once the broker has confirmed it (or refused it for good: a publish to a queue the
broker does not know is *unroutable* and dropped, as a broker drops it). While the
broker is down or restarting, the connection is retried every 50-500 ms and
everything waits in the FIFO, in order: no result is ever dropped for a lost
connection, and a queue's declaration always precedes publishes to it.

A result whose confirm was lost with the connection is published again after the
reconnect, so a consumer may, rarely, see a result twice (at least once, as from
the real service).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

#: How long the thread sleeps between reconnection attempts, at most.
MAX_BACKOFF = 0.5
#: Idle wake-ups, to answer the broker's heartbeats on an idle connection.
IDLE_POLL = 1.0


@dataclass
class Operation:
    """One declare or publish, and what became of it."""

    kind: str  # "declare" | "publish"
    queue: str
    body: bytes = b""
    properties: Any = None  # pika.BasicProperties
    task_id: str | None = None
    task_group_id: str | None = None
    queued_at: float = field(default_factory=time.time)
    #: ``"ok"``, ``"unroutable"`` (no such queue) or ``"refused: <reason>"``.
    outcome: str | None = None
    done_at: float | None = None
    done: threading.Event = field(default_factory=threading.Event, repr=False)


class ResultPublisher:
    """Declares queues and publishes messages on ``url`` from a thread of its own."""

    def __init__(self, url: str, on_done: Callable[[Operation], None] | None = None) -> None:
        self.url = url
        self.on_done = on_done
        self._ops: collections.deque[Operation] = collections.deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Connections opened so far (1 + reconnects).
        self.connections = 0
        self.connected = False

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="standin-result-publisher", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    @property
    def pending(self) -> int:
        """Operations not yet confirmed by the broker."""
        with self._cond:
            return len(self._ops)

    def _add(self, op: Operation) -> Operation:
        with self._cond:
            self._ops.append(op)
            self._cond.notify_all()
        return op

    def declare(self, queue: str) -> Operation:
        """Queue the declaration of durable ``queue`` (returns at once; wait on
        ``op.done`` for the broker's answer). Publishes queued after it come after it."""
        return self._add(Operation("declare", queue))

    def publish(
        self,
        queue: str,
        body: bytes,
        properties: Any,
        *,
        task_id: str | None = None,
        task_group_id: str | None = None,
    ) -> Operation:
        """Queue one message for ``queue`` (returns at once)."""
        return self._add(
            Operation(
                "publish",
                queue,
                body,
                properties,
                task_id=task_id,
                task_group_id=task_group_id,
            )
        )

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        import pika
        import pika.exceptions

        params = pika.URLParameters(self.url)
        params.connection_attempts = 1
        params.socket_timeout = 2
        params.stack_timeout = 5
        conn = None
        channel = None
        backoff = 0.05
        while not self._stop.is_set():
            with self._cond:
                if not self._ops:
                    self._cond.wait(IDLE_POLL)
                op = self._ops[0] if self._ops else None
            if self._stop.is_set():
                break
            if conn is not None and conn.is_open and (channel is None or not channel.is_open):
                try:
                    channel = conn.channel()
                    channel.confirm_delivery()
                except (pika.exceptions.AMQPError, OSError):
                    channel = None
            if conn is None or not conn.is_open or channel is None or not channel.is_open:
                self._close(conn)
                conn = channel = None
                self.connected = False
                try:
                    conn = pika.BlockingConnection(params)
                    channel = conn.channel()
                    channel.confirm_delivery()
                except (pika.exceptions.AMQPError, OSError) as exc:
                    self._close(conn)
                    conn = channel = None
                    log.debug("publisher: broker unreachable (%r); retrying", exc)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
                    continue
                backoff = 0.05
                self.connections += 1
                self.connected = True
            if op is None:
                try:
                    conn.process_data_events(0)  # heartbeats
                except (pika.exceptions.AMQPError, OSError):
                    self._close(conn)
                    conn = channel = None
                continue
            try:
                if op.kind == "declare":
                    channel.queue_declare(op.queue, durable=True)
                else:
                    channel.basic_publish("", op.queue, op.body, op.properties, mandatory=True)
                outcome = "ok"
            except pika.exceptions.UnroutableError:
                outcome = "unroutable"
            except pika.exceptions.NackError:
                continue  # the broker could not take it: send it again
            except pika.exceptions.ChannelClosedByBroker as exc:
                outcome = f"refused: {exc}"
                channel = None  # a new one on the next round
            except (pika.exceptions.AMQPError, OSError) as exc:
                log.debug("publisher: connection lost (%r); reconnecting", exc)
                self._close(conn)
                conn = channel = None
                continue
            with self._cond:
                if self._ops and self._ops[0] is op:
                    self._ops.popleft()
            op.outcome = outcome
            op.done_at = time.time()
            if self.on_done is not None:
                try:
                    self.on_done(op)
                except Exception:
                    log.exception("publisher: on_done failed")
            op.done.set()
        self._close(conn)
        self.connected = False

    @staticmethod
    def _close(conn: Any) -> None:
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
