"""Results from Globus Compute pushed over AMQP, end to end: a real gcgated, the
Compute stand-in publishing into a real RabbitMQ (tests/broker.py), and the
safety-net polling around it.

Each scenario checks what a user sees (every result right, none lost, none
twice) and what crossed the wire (status requests at the stand-in, messages
left in the broker's queues, the daemon's own counters).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import globus_sdk
import pytest
from broker import Broker
from gcgate import Client, Executor
from gcgate.v1 import gateway_pb2 as pb
from harness import GlobusDaemon, script_function, wait_until
from standin import StandIn

WAIT = 60.0


@script_function
def double(x):
    return x * 2


@script_function
def nap(x, seconds):
    import time

    time.sleep(seconds)
    return x * 2


@script_function
def broken(x):
    raise ValueError(f"no good: {x}")


def details(client: Client) -> dict[str, Any]:
    """The Globus backend's details, as `gcgate status --json` shows them."""
    status = client._conn.call(client._conn.stub.Status, pb.StatusRequest(), timeout=10)
    return dict(json.loads(next(b for b in status.backends if b.name == "globus").details_json))


def status_requests(standin: StandIn) -> int:
    """Status polls the stand-in answered (batch and single)."""
    return standin.stats.count(service="compute", path="/v2/batch_status") + standin.stats.count(
        service="compute", where=lambda r: r.path.startswith("/v2/tasks/")
    )


def queue_of(standin: StandIn, client: Client, task_id: str) -> str:
    """The broker queue a daemon task's result went through."""
    globus_id = client.get_task(task_id)["details"]["globus_task_id"]
    group = standin.compute.task_groups[standin.compute.task(globus_id).task_group_id]
    assert group.queue is not None
    return group.queue


@pytest.fixture
def daemon(standin: StandIn, tmp_path: Path) -> Iterator[GlobusDaemon]:
    d = GlobusDaemon(tmp_path / "state", standin).start()
    try:
        yield d
    finally:
        d.close()


def test_run_batch_and_executor_results_arrive_by_push_alone(
    daemon: GlobusDaemon, standin: StandIn, broker: Broker
) -> None:
    standin.stats.reset()
    with Client(socket_path=daemon.socket_path) as client:
        fid = client.register_function(double)
        bad = client.register_function(broken)
        one = client.run(21, endpoint_id=standin.endpoint_id, function_id=fid)
        assert client.get_result(one, wait=WAIT) == 42
        batch = client.create_batch()
        for x in range(20):
            batch.add(fid, args=(x,))
        batch.add(bad, args=(7,))
        ids = [
            t
            for tasks in client.batch_run(standin.endpoint_id, batch)["tasks"].values()
            for t in tasks
        ]
        results = client.get_tasks(ids, wait=WAIT)
        assert sorted(r["result"] for r in results.values() if r["status"] == "success") == [
            2 * x for x in range(20)
        ]
        failed = [r for r in results.values() if r["status"] == "failed"]
        assert len(failed) == 1 and "no good: 7" in str(failed[0]["exception"])
        with Executor(endpoint_id=standin.endpoint_id, client=client) as ex:
            assert list(ex.map(double, range(10))) == [2 * x for x in range(10)]
        state = details(client)
        queue = queue_of(standin, client, one)
    # Not one status request: every result came through the queue.
    assert status_requests(standin) == 0
    assert state["result_push"]["state"] == "connected"
    assert state["results_pushed"] >= 32
    assert state["polled_not_pushed"] == 0
    # Every message was acknowledged (after its outcome was stored).
    assert broker.queue_counts(queue) == (0, 0)
    submits = standin.compute.submits
    assert submits and all(s.create_queue for s in submits)
    # One home task group: every submit without a client task group joined it.
    assert len({s.task_group_id for s in submits}) == 1


def test_a_client_token_task_is_pushed_too(daemon: GlobusDaemon, standin: StandIn) -> None:
    bob = standin.auth.add_user("bob-push@example.org", name="Bob")
    token = standin.auth.mint_token(bob)
    standin.stats.reset()
    with Client(
        socket_path=daemon.socket_path, authorizer=globus_sdk.AccessTokenAuthorizer(token)
    ) as client:
        fid = client.register_function(double)
        tasks = [client.run(x, endpoint_id=standin.endpoint_id, function_id=fid) for x in range(3)]
        assert [client.get_result(t, wait=WAIT) for t in tasks] == [0, 2, 4]
        state = details(client)
    assert status_requests(standin) == 0
    assert state["client_token_connections"] == 1
    # Its results came through Bob's own queue, on a connection fetched with his token.
    bob_urls = standin.stats.count(
        service="compute",
        path="/v2/get_amqp_result_connection_url",
        where=lambda r: r.identity == bob.id,
    )
    assert bob_urls == 1
    assert {standin.compute.task(t).owner for t in tasks} == {bob.id}


def test_a_result_queue_url_refused_is_reported_as_it_happened_and_results_are_polled(
    daemon: GlobusDaemon, standin: StandIn
) -> None:
    """The connection URL fetch is not retried within a budget (the result queues
    back off on their own), so its error does not claim it was; meanwhile the
    tasks are polled."""
    # For the rest of the test (the stand-in's faults are cleared after it).
    standin.faults.server_error(duration=3600, path="/v2/get_amqp_result_connection_url")
    with Client(socket_path=daemon.socket_path) as client:
        fid = client.register_function(double)
        task = client.run(4, endpoint_id=standin.endpoint_id, function_id=fid)
        assert client.get_result(task, wait=WAIT) == 8
        wait_until("the refusal reported", lambda: details(client)["result_push"]["last_error"])
        push = details(client)["result_push"]
    assert push["state"] == "down"
    assert "(HTTP 503: Service Unavailable); retry later" in push["last_error"]
    assert "retry budget" not in push["last_error"]


def test_a_queue_that_gets_no_messages_is_caught_by_the_overdue_poll(
    standin: StandIn, tmp_path: Path
) -> None:
    standin.compute.publish_results = False
    daemon = GlobusDaemon(tmp_path / "state", standin, {"push_overdue_seconds": 1.0}).start()
    try:
        with Client(socket_path=daemon.socket_path) as client:
            fid = client.register_function(double)
            ids = [client.run(x, endpoint_id=standin.endpoint_id, function_id=fid) for x in (1, 2)]
            assert [client.get_result(t, wait=WAIT) for t in ids] == [2, 4]
            state = details(client)
        assert state["result_push"]["state"] == "connected"
        assert state["results_pushed"] == 0
        assert status_requests(standin) >= 1
    finally:
        daemon.close()


def test_a_queue_the_broker_does_not_know_falls_back_to_polling_with_the_reason(
    standin: StandIn, tmp_path: Path
) -> None:
    standin.compute.declare_queues = False
    daemon = GlobusDaemon(tmp_path / "state", standin).start()
    try:
        with Client(socket_path=daemon.socket_path) as client:
            fid = client.register_function(double)
            task = client.run(5, endpoint_id=standin.endpoint_id, function_id=fid)
            assert client.get_result(task, wait=WAIT) == 10
            wait_until(
                "the reason in status", lambda: details(client)["result_push"]["groups_polled"]
            )
            polled = details(client)["result_push"]["groups_polled"]
            shown = subprocess.run(
                [sys.executable, "-m", "gcgate.cli", "status"],
                env=daemon.env,
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout
        ((group, why),) = polled.items()
        assert "no queue" in why
        assert status_requests(standin) >= 1
        # `gcgate status` says it in words, with the reason.
        assert f"polled instead: task group {group}: " in shown and "no queue" in shown
    finally:
        daemon.close()


def test_results_delivered_but_not_acknowledged_come_again_and_count_once(
    daemon: GlobusDaemon, standin: StandIn, broker: Broker
) -> None:
    """The daemon is frozen (SIGSTOP) with results delivered to its socket and not
    acknowledged; the broker drops its connection; thawed, it reconnects, the broker
    delivers them again, and each task completes once."""
    with Client(socket_path=daemon.socket_path) as client:
        fid = client.register_function(double)
        warm = client.run(0, endpoint_id=standin.endpoint_id, function_id=fid)
        assert client.get_result(warm, wait=WAIT) == 0
        queue = queue_of(standin, client, warm)
        standin.compute.set_endpoint_status(standin.endpoint_id, "offline")
        ids = [
            client.run(x, endpoint_id=standin.endpoint_id, function_id=fid) for x in range(1, 21)
        ]
        wait_until("all 20 at the service", lambda: details(client)["waiting_to_submit"] == 0)
        before = client.status()["tasks"]
    assert daemon.process is not None
    os.kill(daemon.process.pid, signal.SIGSTOP)
    try:
        standin.compute.set_endpoint_status(standin.endpoint_id, "online")
        wait_until(
            "20 results delivered, unacknowledged", lambda: broker.queue_counts(queue)[1] == 20
        )
        owner = standin.compute.task(standin.compute.published_task_ids()[-1]).owner
        broker.close_connections(user=broker.user(owner)[0])
        wait_until("the 20 back in the queue", lambda: broker.queue_counts(queue) == (20, 0))
    finally:
        os.kill(daemon.process.pid, signal.SIGCONT)
    with Client(socket_path=daemon.socket_path) as client:
        results = client.get_batch_result(ids, wait=WAIT)
        assert [results[t]["result"] for t in ids] == [2 * x for x in range(1, 21)]
        wait_until("reconnected", lambda: details(client)["result_push"]["connects"] >= 2)
        wait_until("every message acknowledged", lambda: broker.queue_counts(queue) == (0, 0))
        after = client.status()["tasks"]
        repeats = details(client)["pushes_ignored_as_repeats"]
    assert after["success"] - before["success"] == 20  # each once, however it came
    # What was redelivered was recognised as done (or was the first copy).
    assert repeats <= 20


def test_copies_queued_for_results_already_stored_are_drained_after_a_restart(
    daemon: GlobusDaemon, standin: StandIn, broker: Broker
) -> None:
    """A result stored by status poll can still have its pushed copy queued when
    the daemon stops (kill -9 right after a resumed task's poll). The next run has
    nothing in flight, yet it consumes its home group's queue for a while and
    acknowledges such copies as repeats, so they do not pile up at the broker."""
    with Client(socket_path=daemon.socket_path) as client:
        fid = client.register_function(double)
        ids = [client.run(x, endpoint_id=standin.endpoint_id, function_id=fid) for x in range(3)]
        assert [client.get_result(t, wait=WAIT) for t in ids] == [0, 2, 4]
        queue = queue_of(standin, client, ids[0])
        service_ids = [client.get_task(t)["details"]["globus_task_id"] for t in ids]
    wait_until("every message acknowledged", lambda: broker.queue_counts(queue) == (0, 0))
    daemon.kill()
    for service_id in service_ids:
        standin.compute.publish_again(service_id)
    wait_until("3 copies queued", lambda: broker.queue_counts(queue) == (3, 0))
    daemon.start()
    wait_until("the copies acknowledged", lambda: broker.queue_counts(queue) == (0, 0))
    with Client(socket_path=daemon.socket_path) as client:
        assert details(client)["pushes_ignored_as_repeats"] == 3
        assert client.status()["tasks"]["success"] == 3  # each completed once
        assert [client.get_result(t) for t in ids] == [0, 2, 4]


@pytest.mark.parametrize("answer_delay", [0.05, 0.4, 1.0])
def test_sigterm_while_a_submit_is_on_the_wire_stops_and_loses_nothing(
    daemon: GlobusDaemon, standin: StandIn, broker: Broker, answer_delay: float
) -> None:
    """The submit's answer arrives while the daemon stops: it is recorded, the
    tracker's poll loop (woken by those tasks in the turn stop() cancels it) and
    the result connection they open still end, and the daemon exits 0. It once
    hung here, its poll loop's cancellation lost in asyncio.wait_for
    (tests/test_timeouts.py). After the restart every result arrives."""
    standin.compute.set_endpoint_status(standin.endpoint_id, "offline")
    late = standin.faults.slow(answer_delay, count=1, path="/v3/endpoints/*/submit")
    with Client(socket_path=daemon.socket_path) as client:
        fid = client.register_function(double)
        batch = client.create_batch()
        for x in range(6):
            batch.add(fid, args=(x,))
        ids = [
            t for ts in client.batch_run(standin.endpoint_id, batch)["tasks"].values() for t in ts
        ]
        wait_until("the submit on the wire", lambda: late.hits == 1)
        assert daemon.stop() == 0, daemon.log()
    assert len(standin.compute.submits) == 1  # answered, and not sent again
    standin.compute.set_endpoint_status(standin.endpoint_id, "online")
    daemon.start()
    with Client(socket_path=daemon.socket_path) as client:
        results = client.get_tasks(ids, wait=WAIT)
        assert sorted(r["result"] for r in results.values()) == [2 * x for x in range(6)]
    assert len(standin.compute.submits) == 1


@pytest.fixture
def own_broker(tmp_path: Path, broker: Broker) -> Iterator[Broker]:
    """A broker this test may stop and restart (``broker``: skips without RabbitMQ)."""
    b = Broker(tmp_path / "rabbit")
    try:
        yield b
    finally:
        b.stop()


@pytest.mark.slow
def test_broker_restarted_mid_run_loses_nothing(own_broker: Broker, tmp_path: Path) -> None:
    own_broker.start()
    with StandIn(broker=own_broker, workers=4) as standin:
        daemon = GlobusDaemon(tmp_path / "state", standin).start()
        try:
            with Client(socket_path=daemon.socket_path) as client:
                fid = client.register_function(nap)
                ids = [
                    client.run(x, 0.3 * (x % 5), endpoint_id=standin.endpoint_id, function_id=fid)
                    for x in range(30)
                ]
                wait_until("some results in", lambda: client.status()["tasks"]["success"] >= 3)
                own_broker.restart()
                results = client.get_batch_result(ids, wait=WAIT)
                assert [results[t]["result"] for t in ids] == [2 * x for x in range(30)]
                wait_until("reconnected", lambda: details(client)["result_push"]["connects"] >= 2)
                state = details(client)
            assert state["result_push"]["state"] == "connected"
            assert client_success(daemon) == 30
        finally:
            daemon.close()


def client_success(daemon: GlobusDaemon) -> int:
    with Client(socket_path=daemon.socket_path) as client:
        return client.status()["tasks"]["success"]


@pytest.mark.slow
@pytest.mark.timeout(360)
def test_broker_down_at_daemon_start_polls_then_pushes(own_broker: Broker, tmp_path: Path) -> None:
    own_broker.start()
    own_broker.stop()
    with StandIn(broker=own_broker) as standin:
        daemon = GlobusDaemon(tmp_path / "state", standin).start()
        try:
            with Client(socket_path=daemon.socket_path) as client:
                fid = client.register_function(double)
                first = [
                    client.run(x, endpoint_id=standin.endpoint_id, function_id=fid)
                    for x in range(3)
                ]
                # The broker is down: the safety net polls them in.
                assert [client.get_result(t, wait=WAIT) for t in first] == [0, 2, 4]
                assert details(client)["result_push"]["state"] in ("down", "connecting")
                assert status_requests(standin) >= 1
                own_broker.start()
                # The stand-in declares the group's queue once the broker is back (the
                # submit could not); should the daemon look first, the queue is
                # missing and the group polled, until the next submit renews it.
                # Reconnect attempts back off up to 30 s, each after a URL fetch
                # that globus-sdk itself retries for ~16 s while the broker was down.
                wait_until(
                    "connected",
                    lambda: details(client)["result_push"]["state"] == "connected",
                    timeout=150,
                )
                polls = status_requests(standin)
                pushed = details(client)["results_pushed"]
                then = [
                    client.run(x, endpoint_id=standin.endpoint_id, function_id=fid)
                    for x in range(3, 6)
                ]
                assert [client.get_result(t, wait=WAIT) for t in then] == [6, 8, 10]
                now = details(client)
                pushes = [line for line in daemon.log().splitlines() if "result queues" in line]
                assert now["results_pushed"] >= pushed + 3, (now, pushes)
                assert status_requests(standin) - polls <= 1  # at most the catch-up
        finally:
            daemon.close()


#: Settings for the kill runs: the stand-in does not enforce the rate limit here,
#: so the daemon's budget need not pace the test.
FAST_BUDGET = {"rate_limit_requests": 500, "rate_limit_burst": 50, "poll_min_seconds": 0.2}
KILL_TASKS, KILLS = 2000, 10


@script_function
def maybe_nap(x, seconds):
    import time

    if seconds:
        time.sleep(seconds)
    return x * 2


def kill_while_pushing(tmp_path: Path, broker: Broker, seed: int) -> dict[str, Any]:
    """KILL_TASKS tasks (half of them slow) wait at an offline endpoint; it comes
    online and the daemon is killed with SIGKILL KILLS times, at seeded points of
    the stream of pushed results, restarted each time. Every task must end with its
    own result, completed once, having run once at the service."""
    import random

    rng = random.Random(seed)
    with StandIn(broker=broker, workers=6) as standin:
        daemon = GlobusDaemon(tmp_path / "state", standin, FAST_BUDGET).start()
        try:
            with Client(socket_path=daemon.socket_path) as client:
                fid = client.register_function(maybe_nap)
                standin.compute.set_endpoint_status(standin.endpoint_id, "offline")
                ids: list[str] = []
                for start in range(0, KILL_TASKS, 500):
                    batch = client.create_batch()
                    for x in range(start, start + 500):
                        batch.add(fid, args=(x, rng.uniform(0.02, 0.2) if x % 2 else 0))
                    answer = client.batch_run(standin.endpoint_id, batch)
                    ids += [t for tasks in answer["tasks"].values() for t in tasks]
                wait_until(
                    "every task at the service", lambda: details(client)["in_flight"] == KILL_TASKS
                )
            points = sorted(rng.sample(range(50, KILL_TASKS - 50), KILLS))
            standin.compute.set_endpoint_status(standin.endpoint_id, "online")
            restarts = []
            for point in points:
                wait_until(f"{point} results stored", lambda p=point: client_done(daemon) >= p)
                daemon.kill()
                began = time.monotonic()
                daemon.start()
                restarts.append(time.monotonic() - began)
            with Client(socket_path=daemon.socket_path) as client:
                results = client.get_tasks(ids, wait=120)
                status = client.status()
                state = details(client)
            try:
                wait_until("every message acknowledged", lambda: queues_empty(standin, broker))
            except AssertionError as exc:
                counts = {q: broker.queue_counts(q) for q in service_queues(standin)}
                with Client(socket_path=daemon.socket_path) as client:
                    raise AssertionError(f"{exc}: {counts}; daemon: {details(client)}") from None
        finally:
            daemon.close()
        by_input = {}
        for task_id in ids:
            task = results[task_id]
            assert task["status"] == "success", (task_id, task.get("exception"))
            by_input[task_id] = task["result"]
        assert sorted(by_input.values()) == [2 * x for x in range(KILL_TASKS)]
        # Completed once each: the counters match the records, nothing pending.
        counts = status["tasks"]
        assert counts["pending"] == 0
        assert counts["success"] == status["store"]["task_records"] == KILL_TASKS
        # Ran once each at the service (at most once: nothing was sent twice).
        assert max(standin.compute.copies().values()) == 1
        assert len(standin.compute.tasks) == KILL_TASKS
        return {
            "seed": seed,
            "kills": len(points),
            "restart_s_max": round(max(restarts), 2),
            "pushed_last_run": state["results_pushed"],
            "repeats_last_run": state["pushes_ignored_as_repeats"],
        }


def client_done(daemon: GlobusDaemon) -> int:
    with Client(socket_path=daemon.socket_path) as client:
        tasks = client.status()["tasks"]
    return tasks["success"] + tasks["failed"]


def service_queues(standin: StandIn) -> set[str]:
    """The result queues the stand-in declared for its task groups."""
    return {g.queue for g in standin.compute.task_groups.values() if g.queue}


def queues_empty(standin: StandIn, broker: Broker) -> bool:
    return all(broker.queue_counts(q) == (0, 0) for q in service_queues(standin))


@pytest.mark.slow
def test_kill_9_while_results_are_pushed_loses_nothing(tmp_path: Path, broker: Broker) -> None:
    figures = kill_while_pushing(tmp_path, broker, seed=0)
    print(f"\npush kill figures: {json.dumps(figures)}")


@pytest.mark.soak
@pytest.mark.parametrize("seed", range(1, 6))
def test_kill_9_while_results_are_pushed_soak(tmp_path: Path, broker: Broker, seed: int) -> None:
    figures = kill_while_pushing(tmp_path, broker, seed=seed)
    print(f"\npush kill figures: {json.dumps(figures)}")


@pytest.mark.slow
def test_status_answers_lost_while_push_works_lose_no_result(
    tmp_path: Path, own_broker: Broker
) -> None:
    """15 % of status answers are lost after the service handed their results out
    (it forgets them), while the daemon polls a lot: through a broker restart in the
    middle of the stream of results (polled while it is down), the catch-up rounds
    after it and after a forced reconnect, and tasks overdue for a push after 0.5 s.
    The queues still have every result: none is lost."""
    settings = {**FAST_BUDGET, "push_overdue_seconds": 0.5}
    broker = own_broker.start()
    with StandIn(broker=broker, workers=4) as standin:
        daemon = GlobusDaemon(tmp_path / "state", standin, settings).start()
        try:
            with Client(socket_path=daemon.socket_path) as client:
                fid = client.register_function(maybe_nap)
                standin.compute.set_endpoint_status(standin.endpoint_id, "offline")
                batch = client.create_batch()
                for x in range(800):  # ~6 s of work: polls run through the restart
                    batch.add(fid, args=(x, 0.03))
                answer = client.batch_run(standin.endpoint_id, batch)
                ids = [t for tasks in answer["tasks"].values() for t in tasks]
                wait_until(
                    "every task at the service",
                    lambda: details(client)["in_flight"] == 800,
                    timeout=180,
                )
                lossy = standin.faults.add(
                    drop="after", path="/v2/batch_status", fraction=0.15, seed=4
                )
                standin.compute.set_endpoint_status(standin.endpoint_id, "online")
                owner = next(iter(standin.compute.tasks.values())).owner
                wait_until("100 done", lambda: client_done(daemon) >= 100, timeout=180)
                broker.restart()
                # after the broker restart: a reconnect waits out its backoff (up to 30 s)
                wait_until("500 done", lambda: client_done(daemon) >= 500, timeout=180)
                broker.close_connections(user=broker.user(owner)[0])
                results = client.get_batch_result(ids, wait=WAIT)
                state = details(client)
                status = client.status()
        finally:
            daemon.close()
        assert sorted(r["result"] for r in results.values()) == [2 * x for x in range(800)]
        assert status["tasks"]["failed"] == 0
        assert status["tasks"]["success"] == status["store"]["task_records"] == 800
        # Answers were lost, some of them carrying results the service then forgot.
        assert lossy.hits >= 1 and state["poll_answers_lost"] >= 1
        assert state["result_push"]["connects"] >= 2
