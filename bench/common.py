"""What every figure shares: the result rows, the run settings, the daemon, timing helpers.

A figure measures gcgate and a baseline in the same run, in this process tree,
so the ratio between them is what carries across machines; the absolute values
are printed too, with the machine they were taken on (see :mod:`bench.machine`).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
# The test harness (a real gcgated on a real socket) and the Globus stand-in live
# in tests/; the benchmarks use them as the tests do rather than keeping copies.
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

from harness import ConfiguredDaemon  # noqa: E402

if TYPE_CHECKING:
    from broker import Broker

#: Seconds any single wait may take before a figure is declared broken.
WAIT = 300.0


@dataclass(frozen=True)
class Target:
    """A goal from the issue: ``on`` the ratio to the baseline or the value itself."""

    op: str  # "<=" or ">="
    bound: float
    on: str = "ratio"  # "ratio" or "value"

    def met(self, value: float, ratio: float | None) -> bool | None:
        x = ratio if self.on == "ratio" else value
        if x is None:
            return None
        return x <= self.bound if self.op == "<=" else x >= self.bound

    def __str__(self) -> str:
        return f"{self.op} {self.bound:g}x" if self.on == "ratio" else f"{self.op} {self.bound:g}"


@dataclass
class Row:
    """One measured number of a figure, with its baseline and target where it has them."""

    figure: str
    metric: str
    unit: str
    value: float
    baseline: float | None = None
    #: A numeric :class:`Target`, or a goal in words judged by the figure (``passed``).
    target: Target | str | None = None
    #: What the baseline is, for the table ("ProcessPoolExecutor", ...).
    baseline_name: str = ""
    note: str = ""
    passed: bool | None = None
    ratio: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.baseline:
            self.ratio = self.value / self.baseline
        if isinstance(self.target, Target):
            self.passed = self.target.met(self.value, self.ratio)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["target"] = str(self.target) if self.target else None
        return d


class Shared:
    """What the figures of one run share, started by the first figure that asks for it
    and stopped by :meth:`close` at the end of the run.

    The RabbitMQ broker (``tests/broker.py``, about 3 s to start) that the stand-in
    pushes results into, as the Globus Compute service does: the daemon submits with
    result queues and fetches the AMQP connection URL, which the stand-in answers
    with 503 (retried by globus-sdk for about 16 s) when it has no broker.
    """

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self._broker: Broker | None = None

    def broker(self) -> Broker:
        if self._broker is None:
            from broker import Broker

            self._broker = Broker(self.work_dir / "rabbitmq").start()
        return self._broker

    def close(self) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            broker.stop()


@dataclass(frozen=True)
class Settings:
    """How big each figure is: the full run, or the CI smoke run (``--quick``)."""

    quick: bool
    workers: int
    work_dir: Path
    shared: Shared

    def pick(self, full: int, quick: int) -> int:
        return quick if self.quick else full


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100), interpolated, of at least one value."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def median(values: list[float]) -> float:
    return statistics.median(values)


class BenchDaemon(ConfiguredDaemon):
    """The harness's configured daemon at the production log level.

    The harness logs at DEBUG for test diagnostics; a benchmark measures the
    daemon as it is run (INFO). ``config`` goes into the daemon's config file;
    ``env`` is added for the daemon and its clients (e.g. the stand-in's URLs
    and service account).
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        workers: int,
        config: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        state_dir.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(state_dir, config, env, workers=workers, log_level="INFO")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


@contextmanager
def running_daemon(settings: Settings, name: str, **kwargs: Any) -> Iterator[BenchDaemon]:
    """A started :class:`BenchDaemon` in a fresh state dir, stopped (or killed) after."""
    state = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=settings.work_dir)) / "state"
    daemon = BenchDaemon(state, workers=settings.workers, **kwargs).start()
    try:
        yield daemon
    finally:
        daemon.close()


def timed(fn: Callable[[], object]) -> float:
    """Seconds ``fn()`` took, by the monotonic high-resolution clock."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def wait_idle(client: Any, timeout: float = WAIT) -> None:
    """Until the daemon has no unfinished task, by its Status counts.

    Status does not read results, so waiting this way leaves every result
    unretrieved (its first retrieval is what some figures measure).
    """
    deadline = time.monotonic() + timeout
    while client.status()["tasks"]["pending"]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"tasks still pending after {timeout:g} s")
        time.sleep(0.05)
