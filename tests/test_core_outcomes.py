"""The task life-cycle's outcome writes (gcgated.core), with a fake backend on a real store.

``Outcome.on_stored`` lets a backend drop its own record of a task (the Globus
submit ledger's row; an AMQP message to acknowledge) once the outcome cannot be
lost. These pin down when the core calls it: after the store transaction holding
the outcome committed, also for a repeat the store ignored, never after a failed
write, and a callback that raises stops neither the others nor the waiters.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeBackend
from gcgated import core
from gcgated.backends.base import Outcome
from gcgated.caller import DAEMON
from gcgated.core import TaskLifecycle
from gcgated.model import Registration, Submission, SubmitOptions, TaskQuery
from gcgated.routing import Router
from gcgated.store import Store
from gcgated.validation import json_payload

pytestmark = pytest.mark.fast

TIMEOUT = 10.0


async def _lifecycle(tmp_path: Path) -> tuple[TaskLifecycle, FakeBackend, list[str]]:
    """A started life-cycle on a fresh store, its backend, and one accepted task."""
    store = Store(tmp_path / "store", size_limit_bytes=1 << 30, retention_seconds=60)
    backend = FakeBackend()
    lifecycle = TaskLifecycle(store, Router(backend, FakeBackend()))  # type: ignore[arg-type]
    await lifecycle.start()
    function_id, _ = lifecycle.register_function(
        Registration("f", "def f(x):\n    return x\n", serialized=False, meta={})
    )
    receipt = await lifecycle.submit(
        Submission(
            endpoint_id="local",
            groups=[(function_id, [json_payload("[1]", ""), json_payload("[2]", "")])],
            options=SubmitOptions(task_group_id=""),
            caller=DAEMON,
        )
    )
    return lifecycle, backend, receipt.tasks[0][1]


def _recorded(store: Store, events: list[str]) -> Callable[..., Any]:
    """``store.complete_tasks`` that notes each commit in ``events``."""
    original = store.complete_tasks

    def complete_tasks(outcomes: Any) -> list[dict[str, Any]]:
        outcomes = list(outcomes)
        written = original(outcomes)
        events.append("committed " + ",".join(o["task_id"][-4:] for o in outcomes))
        return written

    return complete_tasks


async def _settle() -> None:
    """Let scheduled flushes (call_soon / call_later of a few ms) run."""
    for _ in range(5):
        await asyncio.sleep(0.01)


def test_on_stored_runs_after_the_outcome_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        lifecycle, backend, (first, second) = await _lifecycle(tmp_path)
        store = lifecycle.store
        events: list[str] = []
        monkeypatch.setattr(store, "complete_tasks", _recorded(store, events))
        backend.report(
            Outcome(
                first,
                "success",
                result="r1",
                on_stored=lambda: events.append(f"stored {first[-4:]}"),
            )
        )
        # Not before the write: nothing is committed yet on this loop turn.
        assert events == []
        await _settle()
        assert events == [f"committed {first[-4:]}", f"stored {first[-4:]}"]
        record = store.get_task(first)
        assert record is not None and record["status"] == "success"
        assert "on_stored" not in record  # the callback is not part of the record

        # A repeat of a task already final: ignored by the store, still acknowledged.
        events.clear()
        backend.report(
            Outcome(first, "failed", exception="again", on_stored=lambda: events.append("again"))
        )
        await _settle()
        assert events == [f"committed {first[-4:]}", "again"]
        assert store.get_task(first)["status"] == "success"  # type: ignore[index]

        # Outcomes without a callback are written as before.
        backend.report(Outcome(second, "success", result="r2"))
        await _settle()
        assert store.get_task(second)["status"] == "success"  # type: ignore[index]
        await lifecycle.stop()
        store.close()

    asyncio.run(asyncio.wait_for(scenario(), TIMEOUT))


def test_a_failed_write_calls_on_stored_only_once_it_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core, "STORE_RETRY_SECONDS", 0.5)

    async def scenario() -> None:
        lifecycle, backend, (task_id, _) = await _lifecycle(tmp_path)
        store = lifecycle.store
        events: list[str] = []
        recorded = _recorded(store, events)
        failures = [OSError("disk trouble")]

        def flaky(outcomes: Any) -> list[dict[str, Any]]:
            if failures:
                events.append("write failed")
                raise failures.pop()
            return recorded(outcomes)

        monkeypatch.setattr(store, "complete_tasks", flaky)
        backend.report(
            Outcome(task_id, "success", result="r", on_stored=lambda: events.append("stored"))
        )
        await _settle()
        assert events == ["write failed"]  # not stored, not acknowledged
        assert store.get_task(task_id)["status"] != "success"  # type: ignore[index]
        await asyncio.sleep(0.5)
        await _settle()
        assert events == ["write failed", f"committed {task_id[-4:]}", "stored"]
        await lifecycle.stop()
        store.close()

    asyncio.run(asyncio.wait_for(scenario(), TIMEOUT))


def test_a_raising_on_stored_stops_neither_the_others_nor_the_waiters(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        lifecycle, backend, (first, second) = await _lifecycle(tmp_path)
        calls: list[str] = []

        def broken() -> None:
            raise RuntimeError("bookkeeping bug")

        waiter = asyncio.ensure_future(lifecycle.wait_for(second, timeout=TIMEOUT))
        await asyncio.sleep(0)
        backend.report(Outcome(first, "success", result="1", on_stored=broken))
        backend.report(Outcome(second, "success", result="2", on_stored=lambda: calls.append("ok")))
        record = await waiter
        assert record["status"] == "success"
        assert calls == ["ok"]
        await lifecycle.stop()
        lifecycle.store.close()

    with caplog.at_level(logging.ERROR, logger="gcgated.core"):
        asyncio.run(asyncio.wait_for(scenario(), TIMEOUT))
    assert "on_stored callback failed" in caplog.text


def test_a_task_its_backend_runs_reads_running_until_it_is_final(tmp_path: Path) -> None:
    """The backend's ``on_running`` (start's second callback) is what makes a record
    read "running": the store's live status, which the outcome then replaces."""

    async def scenario() -> None:
        lifecycle, backend, (first, second) = await _lifecycle(tmp_path)
        assert backend.on_running is not None
        backend.on_running(first)
        assert [lifecycle.get_task(t)["status"] for t in (first, second)] == [
            "running",
            "waiting-for-ep",
        ]
        assert [
            r["task_id"] for r in lifecycle.recent_tasks(TaskQuery(limit=10, status="running"))
        ] == [first]
        backend.report(Outcome(first, "success", result="r1"))
        final = await lifecycle.wait_for(first, TIMEOUT)
        assert (final["status"], final["result"]) == ("success", "r1")
        assert lifecycle.recent_tasks(TaskQuery(limit=10, status="running")) == []
        await lifecycle.stop()
        lifecycle.store.close()

    asyncio.run(asyncio.wait_for(scenario(), TIMEOUT))
