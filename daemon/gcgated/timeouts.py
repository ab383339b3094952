"""Awaiting something for at most so long, without losing a cancellation.

``asyncio.wait_for`` before Python 3.12 swallows a cancellation that arrives in
the same loop turn as its awaitable completes (CPython gh-86296): the caller
gets the result instead of ``CancelledError``. A loop around it then runs on
after ``task.cancel()``, and whoever awaits that task waits forever. That is how
a SIGTERM during a Globus submit hung the daemon's stop: the submit's answer
woke the tracker's poll loop in the very turn ``stop()`` cancelled it. The
daemon therefore never calls ``asyncio.wait_for`` (a ruff rule bans it); it
calls :func:`within`, built on ``asyncio.wait``, which always lets a
cancellation through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def within(awaitable: Awaitable[T], timeout: float | None) -> T:
    """``await awaitable`` for at most ``timeout`` seconds (None: no limit).

    :raises asyncio.TimeoutError: the time ran out; the awaitable is cancelled
        (not awaited: the callers' awaitables, an event, a queue or a process
        wait, end at their next step without anything to clean up)
    :raises asyncio.CancelledError: the caller was cancelled, whatever the
        awaitable did meanwhile; the awaitable is cancelled too
    """
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except BaseException:
        task.cancel()
        raise
    if not done:
        task.cancel()
        raise asyncio.TimeoutError
    return task.result()
