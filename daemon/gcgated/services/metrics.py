"""The daemon's Prometheus metrics: one registry per daemon, rendered on request.

A per-daemon ``CollectorRegistry`` (never prometheus_client's global one), so
daemons in one process (the in-process tests) never mix their numbers. It holds
the :class:`~.collector.DaemonCollector` (tasks, store, backends, Globus
traffic, read when scraped), the process, Python GC and platform collectors, the build
info, and the gRPC call instruments the server's interceptor feeds (see
``gcgated.server.rpcmetrics``). GetMetrics and the optional HTTP listener both
render :meth:`MetricsService.exposition`.
"""

from __future__ import annotations

from typing import Any

import grpc
from gcgate import __version__
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from gcgated.core import TaskLifecycle
from gcgated.routing import Router
from gcgated.store import Store

from .collector import DaemonCollector

#: What :meth:`MetricsService.exposition` returns: the text format 0.0.4, which
#: every Prometheus-compatible scraper reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Seconds: from a cached read (well under a millisecond) to a long GetResult wait
#: or a watch stream (whose duration is the stream's life).
RPC_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip


class RpcInstruments:
    """Per-method call counts by status code and latency histograms."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._duration = Histogram(
            "gcgate_rpc_duration_seconds",
            "Seconds from a gRPC call's arrival to its answer (for a stream: its last message).",
            ["service", "method"],
            buckets=RPC_BUCKETS,
            registry=registry,
        )
        self._calls = Counter(
            "gcgate_rpc_requests",
            "gRPC calls answered, by service, method and status code.",
            ["service", "method", "code"],
            registry=registry,
        )
        #: The label children by method and (method, code): ``labels()`` takes a
        #: lock and builds its key at every call; a dict lookup is a tenth of that.
        self._durations: dict[str, Any] = {}
        self._counts: dict[tuple[str, grpc.StatusCode], Any] = {}

    def observe(self, full_method: str, code: grpc.StatusCode, seconds: float) -> None:
        """One finished call of ``full_method`` ("/package.Service/Method")."""
        duration = self._durations.get(full_method)
        if duration is None:
            duration = self._durations[full_method] = self._duration.labels(*_names(full_method))
        duration.observe(seconds)
        calls = self._counts.get((full_method, code))
        if calls is None:
            labels = (*_names(full_method), code.name)
            calls = self._counts[(full_method, code)] = self._calls.labels(*labels)
        calls.inc()


def _names(full_method: str) -> tuple[str, str]:
    """("package.Service", "Method") of "/package.Service/Method"."""
    _, service, method = full_method.split("/", 2)
    return service, method


class MetricsService:
    """The registry of one daemon and its text exposition."""

    def __init__(self, core: TaskLifecycle, router: Router, store: Store) -> None:
        # No ``*_created`` series (a setting of the library, process-wide): the
        # process start time says when every counter began, and they would double
        # what a scrape carries.
        disable_created_metrics()
        self.registry = CollectorRegistry()
        self.registry.register(DaemonCollector(core, router, store))
        ProcessCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        Info("gcgate_build", "The daemon's gcgate version.", registry=self.registry).info(
            {"version": __version__}
        )
        self.rpc = RpcInstruments(self.registry)

    def exposition(self) -> str:
        """Every metric in the text format :data:`CONTENT_TYPE`; on the event loop."""
        return generate_latest(self.registry).decode()
