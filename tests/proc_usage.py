"""What a process holds, from /proc: resident memory and open file descriptors.

The bad-input tests compare a daemon's usage before and after abuse, to show its
growth is bounded (memory and fds come back once the clients are gone).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Usage:
    rss_kb: int
    fds: int

    @classmethod
    def of(cls, pid: int) -> Usage:
        return cls(rss_kb=rss_kb(pid), fds=len(os.listdir(f"/proc/{pid}/fd")))

    def as_dict(self) -> dict[str, int]:
        return {"rss_kb": self.rss_kb, "fds": self.fds}


def rss_kb(pid: int) -> int:
    """VmRSS of ``pid`` in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)
