"""What /proc says about the daemon and its workers: memory, CPU time, children."""

from __future__ import annotations

import os
import resource
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> dict[str, float]:
    """VmRSS of ``pid`` and its parts (RssAnon: heap; RssFile: mapped files, such as
    SQLite's memory-mapped databases), in MB (10^6 bytes)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile"):
            fields[name] = int(value.split()[0]) * 1024 / 1e6
    return fields


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (the daemon's workers)."""
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids.extend(int(c) for c in (task / "children").read_text().split())
    return kids


@contextmanager
def paused(pids: list[int]) -> Iterator[None]:
    """The processes stopped (SIGSTOP) inside the block, continued after."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuSplit:
    """Where the CPU time of a measured stretch went: this process (the client),
    the daemon, and the daemon's worker processes."""

    wall: float = 0.0
    client: float = 0.0
    daemon: float = 0.0
    workers: float = 0.0

    def per_task_us(self, n: int) -> str:
        return (
            f"CPU per task: daemon {self.daemon / n * 1e6:.0f} us,"
            f" client {self.client / n * 1e6:.0f} us, workers {self.workers / n * 1e6:.0f} us"
        )


@contextmanager
def cpu_split(daemon_pid: int) -> Iterator[CpuSplit]:
    """Measure the block; the result is filled in when it ends (workers must not be
    replaced inside it, or their CPU time is lost)."""

    def sample() -> tuple[float, float, float, float]:
        workers = sum(cpu_seconds(kid) for kid in children(daemon_pid))
        return time.perf_counter(), _own_cpu(), cpu_seconds(daemon_pid), workers

    split = CpuSplit()
    before = sample()
    yield split
    after = sample()
    split.wall, split.client, split.daemon, split.workers = (
        b - a for a, b in zip(before, after, strict=True)
    )
