"""The AMQP result consumer (gcgated.backends.globus.push) against a real RabbitMQ.

The test plays the service: it declares the task group's durable queue and
publishes messagepack ``Result`` messages into it, as Globus Compute does for a
submit with ``create_queue``; the consumer under test hands each to ``deliver``
and acknowledges only when told (the backend does so after the store commit).
Broker-side counts (ready / unacknowledged) are read from the broker itself.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import pytest
from gcgated.backends.base import Outcome
from gcgated.backends.globus.push import ResultQueues, scrub
from globus_compute_common import messagepack
from globus_compute_common.messagepack.message_types import Result, ResultErrorDetails

PREFIX = "test-results."
#: Seconds any one condition may take to come true.
DEADLINE = 20.0


async def until(check: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    """Wait for ``check()`` to be true (polled on the loop), or fail naming ``what``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not check():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def packed(task_id: str, data: str = "00\nresult", error: bool = False) -> bytes:
    details = ResultErrorDetails(code="RemoteExecutionError", user_message=data) if error else None
    return messagepack.pack(
        Result(
            task_id=uuid.UUID(task_id), data=data, details={"os": "linux"}, error_details=details
        )
    )


class Service:
    """The service's side of the broker: declares result queues and publishes to them."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.connection: Any = None
        self.channel: Any = None

    async def __aenter__(self) -> Service:
        self.connection = await aio_pika.connect(self.url)
        self.channel = await self.connection.channel()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close()

    async def declare(self, group: str) -> None:
        await self.channel.declare_queue(PREFIX + group, durable=True)

    async def publish(self, group: str, body: bytes, **headers: Any) -> None:
        message = aio_pika.Message(
            body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, headers=headers or None
        )
        await self.channel.default_exchange.publish(message, routing_key=PREFIX + group)


class Consumer:
    """A ResultQueues with recording callbacks."""

    def __init__(self, info: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        self.delivered: list[tuple[str, Outcome | None, Callable[[], None]]] = []
        self.connected = 0
        #: Per connect: whether an open connection had been lost before it.
        self.after_loss: list[bool] = []
        self.changes = 0
        self.queues = ResultQueues(
            name="test",
            connection_info=info,
            deliver=lambda tid, outcome, ack: self.delivered.append((tid, outcome, ack)),
            on_connected=self._connected,
            on_change=self._changed,
        )

    def _connected(self, after_loss: bool) -> None:
        self.connected += 1
        self.after_loss.append(after_loss)

    def _changed(self) -> None:
        self.changes += 1


@pytest.fixture
def account(broker) -> dict[str, Any]:
    """A user of the test broker and a connection-info function that counts its calls."""
    user, password = broker.user(f"identity-{uuid.uuid4()}")
    state: dict[str, Any] = {"user": user, "fetches": 0}

    async def info() -> dict[str, Any]:
        state["fetches"] += 1
        _, current = broker.user_password(user)
        return {"connection_url": broker.url_for(user, current), "queue_prefix": PREFIX}

    state["info"] = info
    state["url"] = broker.url_for(user, password)
    return state


def test_results_are_delivered_and_acked_only_when_told(broker, account) -> None:
    group = str(uuid.uuid4())
    ids = [str(uuid.uuid4()) for _ in range(3)]

    async def scenario() -> None:
        async with Service(account["url"]) as service:
            await service.declare(group)
            consumer = Consumer(account["info"])
            consumer.queues.watch([group])
            await until(lambda: consumer.queues.consuming(group), "consuming")
            await service.publish(group, packed(ids[0], "00\nfirst"))
            await service.publish(group, packed(ids[1], "Traceback: boom", error=True))
            await service.publish(group, packed(ids[2], "00\nthird"))
            await until(lambda: len(consumer.delivered) == 3, "three deliveries")
            by_id = {tid: outcome for tid, outcome, _ in consumer.delivered}
            assert by_id[ids[0]] is not None and by_id[ids[0]].status == "success"
            assert by_id[ids[0]].result == "00\nfirst"
            assert by_id[ids[0]].details == {"os": "linux"}
            assert by_id[ids[1]] is not None and by_id[ids[1]].status == "failed"
            assert by_id[ids[1]].exception == "Traceback: boom"
            assert by_id[ids[0]].completion_t > 0
            # Nothing acknowledged yet: all three are unacked at the broker.
            assert broker.queue_counts(PREFIX + group) == (0, 3)
            consumer.delivered[0][2]()  # stored: ack the first one only
            await until(lambda: broker.queue_counts(PREFIX + group) == (0, 2), "one ack")
            await consumer.queues.close()
            # Closing hands the unacknowledged two back to the queue.
            await until(lambda: broker.queue_counts(PREFIX + group) == (2, 0), "requeued")
            assert consumer.queues.describe()["results_pushed"] == 3

    asyncio.run(scenario())


def test_a_redelivered_message_comes_again_after_the_connection_drops(broker, account) -> None:
    group = str(uuid.uuid4())
    task_id = str(uuid.uuid4())

    async def scenario() -> None:
        async with Service(account["url"]) as service:
            await service.declare(group)
            consumer = Consumer(account["info"])
            consumer.queues.watch([group])
            await until(lambda: consumer.queues.consuming(group), "consuming")
            await service.publish(group, packed(task_id))
            await until(lambda: len(consumer.delivered) == 1, "delivery")
            # Delivered, not yet acknowledged: the broker drops every connection.
            broker.close_connections(user=account["user"])
            await until(lambda: consumer.connected >= 2, "reconnect")
            await until(lambda: len(consumer.delivered) == 2, "redelivery")
            assert consumer.delivered[1][0] == task_id
            # The second connect follows a lost one: the caller catches up.
            assert consumer.after_loss[:2] == [False, True]
            consumer.delivered[0][2]()  # an ack on the dead channel is moot, never an error
            consumer.delivered[1][2]()
            await until(lambda: broker.queue_counts(PREFIX + group) == (0, 0), "acked")
            await consumer.queues.close()

    asyncio.run(scenario())


def test_malformed_messages_are_rejected_and_consuming_goes_on(broker, account) -> None:
    group = str(uuid.uuid4())
    task_id = str(uuid.uuid4())

    async def scenario() -> None:
        async with Service(account["url"]) as service:
            await service.declare(group)
            consumer = Consumer(account["info"])
            consumer.queues.watch([group])
            await until(lambda: consumer.queues.consuming(group), "consuming")
            await service.publish(group, b"not messagepack at all")
            await service.publish(group, b'{"message_type": "result"}')
            await service.publish(group, packed(task_id))
            await until(lambda: len(consumer.delivered) == 1, "the good message")
            assert consumer.queues.describe()["messages_rejected"] == 2
            assert consumer.queues.consuming(group)
            consumer.delivered[0][2]()
            # The rejected ones are gone (not requeued), the good one acked.
            await until(lambda: broker.queue_counts(PREFIX + group) == (0, 0), "queue empty")
            await consumer.queues.close()

    asyncio.run(scenario())


def test_high_assurance_results_are_delivered_without_an_outcome(broker, account) -> None:
    group = str(uuid.uuid4())
    task_id = str(uuid.uuid4())

    async def scenario() -> None:
        async with Service(account["url"]) as service:
            await service.declare(group)
            consumer = Consumer(account["info"])
            consumer.queues.watch([group])
            await until(lambda: consumer.queues.consuming(group), "consuming")
            await service.publish(group, packed(task_id, "redacted"), high_assurance=True)
            await until(lambda: len(consumer.delivered) == 1, "delivery")
            assert consumer.delivered[0][:2] == (task_id, None)
            await consumer.queues.close()

    asyncio.run(scenario())


def test_a_queue_the_broker_does_not_know_is_polled_until_renewed(broker, account) -> None:
    known, unknown = str(uuid.uuid4()), str(uuid.uuid4())

    async def scenario() -> None:
        async with Service(account["url"]) as service:
            await service.declare(known)
            consumer = Consumer(account["info"])
            consumer.queues.watch([unknown, known])
            await until(lambda: consumer.queues.consuming(known), "consuming the known group")
            await until(lambda: unknown in consumer.queues.polled, "the unknown one polled")
            assert not consumer.queues.consuming(unknown) and not consumer.queues.pushing(unknown)
            why = consumer.queues.describe()["groups_polled"][unknown]
            assert PREFIX + unknown in why and "no queue" in why
            # The other group's channel is unaffected.
            task_id = str(uuid.uuid4())
            await service.publish(known, packed(task_id))
            await until(lambda: len(consumer.delivered) == 1, "delivery on the known group")
            consumer.delivered[0][2]()
            # A renewal for a group whose queue is fine changes nothing.
            consumer.queues.renew(known)
            assert consumer.queues.consuming(known)
            # The service declares the missing queue (a later submit asked for it):
            # renewed, the group is consumed, and its results are pushed.
            await service.declare(unknown)
            consumer.queues.renew(unknown)
            await until(lambda: consumer.queues.consuming(unknown), "consuming the renewed group")
            assert unknown not in consumer.queues.polled and consumer.queues.pushing(unknown)
            late = str(uuid.uuid4())
            await service.publish(unknown, packed(late))
            await until(lambda: len(consumer.delivered) == 2, "delivery on the renewed group")
            assert consumer.delivered[1][0] == late
            consumer.delivered[1][2]()
            await consumer.queues.close()

    asyncio.run(scenario())


def test_a_renewal_while_the_queue_is_looked_up_is_not_lost(
    broker, account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service declares the queue and the submit's answer renews the group
    while the consumer's lookup (made before the declaration) is on its way back:
    the group is looked up again, not polled until the next reconnect."""
    group = str(uuid.uuid4())
    lookups: list[str] = []
    real_consume = aio_pika.Queue.consume

    async def scenario() -> None:
        async with Service(account["url"]) as service:
            consumer = Consumer(account["info"])

            async def consume(queue: Any, *args: Any, **kwargs: Any) -> Any:
                lookups.append(queue.name)
                try:
                    return await real_consume(queue, *args, **kwargs)
                except Exception:
                    if len(lookups) == 1:  # the submit lands between lookup and answer
                        await service.declare(group)
                        consumer.queues.renew(group)
                    raise

            monkeypatch.setattr(aio_pika.Queue, "consume", consume)
            consumer.queues.watch([group])
            await until(lambda: consumer.queues.consuming(group), "consuming after the renewal")
            assert group not in consumer.queues.polled
            assert lookups == [PREFIX + group] * 2
            task_id = str(uuid.uuid4())
            await service.publish(group, packed(task_id))
            await until(lambda: len(consumer.delivered) == 1, "a pushed result")
            consumer.delivered[0][2]()
            await consumer.queues.close()

    asyncio.run(scenario())


def test_refused_credentials_fetch_a_fresh_connection_url(broker, account) -> None:
    group = str(uuid.uuid4())

    async def scenario() -> None:
        async with Service(account["url"]) as service:
            await service.declare(group)
        consumer = Consumer(account["info"])
        consumer.queues.watch([group])
        await until(lambda: consumer.queues.consuming(group), "consuming")
        assert account["fetches"] == 1
        old = broker.user_password(account["user"])[1]
        broker.rotate_password(account["user"])
        broker.close_connections(user=account["user"])
        await until(lambda: consumer.connected >= 2, "reconnect with fresh credentials")
        await until(lambda: consumer.queues.consuming(group), "consuming again")
        assert account["fetches"] >= 2
        # No error text ever quotes the credentials.
        assert old not in repr(consumer.queues.describe())
        await consumer.queues.close()

    asyncio.run(scenario())


def test_unwatch_stops_consuming_a_group(broker, account) -> None:
    group = str(uuid.uuid4())

    async def scenario() -> None:
        async with Service(account["url"]) as service:
            await service.declare(group)
            consumer = Consumer(account["info"])
            consumer.queues.watch([group])
            await until(lambda: consumer.queues.consuming(group), "consuming")
            consumer.queues.unwatch([group])
            await until(lambda: not consumer.queues.consuming(group), "stopped")
            await service.publish(group, packed(str(uuid.uuid4())))
            await until(lambda: broker.queue_counts(PREFIX + group) == (1, 0), "left queued")
            assert consumer.delivered == []
            await consumer.queues.close()

    asyncio.run(scenario())


def test_scrub_cuts_credentials_out_of_error_text() -> None:
    url = "amqps://gc-user-1234:s3cr%2Ft-pass@broker.example:5671/vhost?heartbeat=30"
    text = f"could not connect to {url}: ACCESS_REFUSED for gc-user-1234 (s3cr/t-pass)"
    cleaned = scrub(text, url)
    assert "s3cr" not in cleaned and "gc-user-1234" not in cleaned
    assert "broker.example" in cleaned


@pytest.fixture
def own_broker(tmp_path, broker):
    """A broker of this test's own (stopped, restarted, or with TLS); ``broker``
    only makes the test skip where RabbitMQ is missing."""
    from broker import Broker

    made: list[Broker] = []

    def make(**kwargs: Any) -> Broker:
        made.append(Broker(tmp_path / f"rabbit{len(made)}", **kwargs))
        return made[-1]

    yield make
    for b in made:
        b.stop()


def test_amqps_urls_are_used_as_given(own_broker) -> None:
    tls = own_broker(tls=True).start()
    user, password = tls.user("tls-identity")
    url = tls.url_for(user, password, tls=True, ca_in_query=True)
    group = str(uuid.uuid4())

    async def info() -> dict[str, Any]:
        return {"connection_url": url, "queue_prefix": PREFIX}

    async def scenario() -> None:
        async with Service(url) as service:
            await service.declare(group)
            consumer = Consumer(info)
            consumer.queues.watch([group])
            await until(lambda: consumer.queues.consuming(group), "consuming over TLS")
            await service.publish(group, packed(str(uuid.uuid4())))
            await until(lambda: len(consumer.delivered) == 1, "delivery over TLS")
            await consumer.queues.close()

    asyncio.run(scenario())
    # Only the TLS port was used: the plain listener saw no login of this user.
    assert url.startswith("amqps://") and str(tls.amqps_port) in url


def test_a_broker_down_at_start_is_reached_once_it_is_up(own_broker) -> None:
    down = own_broker().start()
    user, password = down.user("late-identity")
    url = down.url_for(user, password)
    group = str(uuid.uuid4())

    async def declare() -> None:  # durable: there again after the restart
        async with Service(url) as service:
            await service.declare(group)

    asyncio.run(declare())
    down.stop()

    async def info() -> dict[str, Any]:
        return {"connection_url": url, "queue_prefix": PREFIX}

    async def scenario() -> None:
        consumer = Consumer(info)
        consumer.queues.watch([group])
        await until(lambda: consumer.queues.state == "down", "the first attempt failing")
        assert consumer.queues.last_error and password not in consumer.queues.last_error
        assert not consumer.queues.pushing(group)
        await asyncio.get_running_loop().run_in_executor(None, down.start)
        async with Service(url) as service:
            await until(lambda: consumer.queues.consuming(group), "consuming after the start")
            await service.publish(group, packed(str(uuid.uuid4())))
            await until(lambda: len(consumer.delivered) == 1, "delivery")
        assert consumer.after_loss == [False]  # never connected before: nothing to catch up
        await consumer.queues.close()

    asyncio.run(scenario())


def test_a_queue_deleted_under_the_consumer_is_polled_with_the_reason(broker, account) -> None:
    """The broker cancels the consumer of a deleted queue: the channel is closed and
    reopened, the queue is not there, and the group is polled instead."""
    group, other = str(uuid.uuid4()), str(uuid.uuid4())

    async def scenario() -> None:
        async with Service(account["url"]) as service:
            await service.declare(group)
            await service.declare(other)
            consumer = Consumer(account["info"])
            consumer.queues.watch([group, other])
            await until(lambda: consumer.queues.consuming(group), "consuming")
            await until(lambda: consumer.queues.consuming(other), "consuming the other")
            assert broker.delete_queue(PREFIX + group)
            await until(lambda: group in consumer.queues.polled, "the deleted one polled")
            assert not consumer.queues.pushing(group)
            assert "no queue" in consumer.queues.describe()["groups_polled"][group]
            # The same connection goes on consuming the other group.
            task_id = str(uuid.uuid4())
            await service.publish(other, packed(task_id))
            await until(lambda: len(consumer.delivered) == 1, "delivery on the other group")
            assert consumer.connected == 1
            await consumer.queues.close()

    asyncio.run(scenario())
