"""gcgated.timeouts.within: a time limit that never loses a cancellation.

Python 3.11's asyncio.wait_for returns the result when a cancellation arrives in
the turn its awaitable completes (CPython gh-86296); a loop around it then runs
on after cancel(), and a stop() awaiting that loop hangs (a SIGTERM during a
Globus submit did: tests/test_globus_push.py has that end to end).
"""

from __future__ import annotations

import asyncio

import pytest
from gcgated.timeouts import within

pytestmark = pytest.mark.fast


def test_a_cancellation_in_the_turn_the_awaitable_completes_ends_the_loop() -> None:
    async def main() -> None:
        wake = asyncio.Event()
        rounds = 0

        async def poll_loop() -> None:
            nonlocal rounds
            while True:
                await within(wake.wait(), 10)
                wake.clear()
                rounds += 1

        task = asyncio.create_task(poll_loop())
        await asyncio.sleep(0)  # the loop is waiting for its wake-up
        wake.set()  # a wake-up and a stop in the same turn
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        assert done, "the cancelled loop ran on"
        assert task.cancelled() and rounds == 0

    asyncio.run(main())


def test_a_result_within_the_time_is_returned() -> None:
    async def main() -> int:
        queue: asyncio.Queue[int] = asyncio.Queue()
        asyncio.get_running_loop().call_soon(queue.put_nowait, 7)
        return await within(queue.get(), 5)

    assert asyncio.run(main()) == 7


def test_time_running_out_raises_and_cancels_the_awaitable_leaving_the_item() -> None:
    async def main() -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        with pytest.raises(asyncio.TimeoutError):
            await within(queue.get(), 0.01)
        await asyncio.sleep(0)  # the cancelled get() ends
        queue.put_nowait(3)
        assert queue.get_nowait() == 3  # no cancelled getter took it

    asyncio.run(main())


def test_no_time_limit_waits_for_the_result() -> None:
    async def main() -> str:
        event = asyncio.Event()
        asyncio.get_running_loop().call_later(0.01, event.set)
        await within(event.wait(), None)
        return "set"

    assert asyncio.run(main()) == "set"
