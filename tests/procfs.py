"""What /proc says about a process: memory, open fds, limits, children, cmdline, environ.

The bad-input tests compare a daemon's usage before and after abuse, to show its
growth is bounded (memory and fds come back once the clients are gone); the
isolation tests look for secrets and limits where any local user could read them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


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


def proc_text(pid: int, name: str) -> str:
    """``/proc/<pid>/<name>`` as text, NUL separators (cmdline, environ) as newlines."""
    return Path(f"/proc/{pid}/{name}").read_bytes().replace(b"\0", b"\n").decode(errors="replace")


def proc_limit(pid: int, name: str) -> tuple[str, str]:
    """Soft and hard value of the resource limit ``name`` ("Max open files") of ``pid``."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith(name):
            soft, hard = line[len(name) :].split()[:2]
            return soft, hard
    raise AssertionError(f"no {name!r} in /proc/{pid}/limits")


def children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (a process gone while looking is skipped)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat_fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat_fields[1]) == pid:
                found.append(int(entry.name))
    return found


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)
