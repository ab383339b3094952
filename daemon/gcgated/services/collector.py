"""The daemon's state as Prometheus metric families, read when scraped.

Nothing here is updated on the hot path: tasks, store, backends and the Globus
traffic already keep their numbers (for ``gcgate status`` and their own
bookkeeping), and :class:`DaemonCollector` turns them into families at each
scrape. Every read is O(1) in the number of tasks: the store's counts are kept
counters, the Globus backend's :meth:`~gcgated.backends.globus.GlobusBackend.traffic`
walks nothing, and the local backend's ``describe()`` reads its pool's counters.
Labels are bounded: backend names, states, statuses, HTTP methods, path
templates and status codes; never a task, function or endpoint id.

The collector runs on the daemon's event loop (GetMetrics, the HTTP listener),
which owns the state it reads.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from gcgate.constants import FINAL_STATUSES
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from gcgated.backends.globus.traffic import Traffic
from gcgated.core import REUSED, TaskLifecycle
from gcgated.routing import Router
from gcgated.store import Store

#: The local backend's states (its pool's), then the Globus backend's, as
#: ``gcgate_backend_state`` lists them: every one, 1 for the current.
BACKEND_STATES = {
    "local": ("new", "starting", "ready", "degraded", "stopping", "stopped"),
    "globus": ("ready", "degraded", "unavailable", "stopped"),
}

#: Completions shown as 0 before the first one, so a rate is defined from the start.
COMPLETIONS = [
    (backend, status)
    for backend in BACKEND_STATES
    for status in (*sorted(s.value for s in FINAL_STATUSES), REUSED)
]


def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    """``name`` without ``_total``: the exposition adds it."""
    return CounterMetricFamily(name, documentation, value=value)


def labelled(
    family: GaugeMetricFamily | CounterMetricFamily, values: Mapping[tuple[str, ...], float]
) -> Metric:
    for labels, value in sorted(values.items()):
        family.add_metric(list(labels), value)
    return family


class DaemonCollector:
    """A ``prometheus_client`` collector over one daemon's core, router and store."""

    def __init__(self, core: TaskLifecycle, router: Router, store: Store) -> None:
        self._core = core
        self._router = router
        self._store = store

    def collect(self) -> Iterator[Metric]:
        counts = self._store.counts()
        local = self._router.local.describe()
        globus = self._router.remote.traffic()
        yield from self._tasks(counts, local, globus)
        yield from self._store_families(counts)
        yield from self._globus(globus)

    def _tasks(
        self, counts: Mapping[str, int], local: Mapping[str, Any], globus: Traffic
    ) -> Iterator[Metric]:
        yield gauge(
            "gcgate_tasks_pending",
            "Tasks accepted and not final, every backend (as gcgate status counts them).",
            counts["pending"],
        )
        yield labelled(
            GaugeMetricFamily(
                "gcgate_tasks",
                "Unfinished tasks by backend and where they are: local queued or running;"
                " globus submitting, in_flight (at the service) or parked (waiting for a"
                " client's token).",
                labels=["backend", "state"],
            ),
            {
                ("local", "queued"): local["queued"],
                ("local", "running"): local["running"],
                ("globus", "submitting"): globus.submitting,
                ("globus", "in_flight"): globus.in_flight,
                ("globus", "parked"): globus.parked,
            },
        )
        yield labelled(
            CounterMetricFamily(
                "gcgate_tasks_completed",
                "Tasks that became final since the daemon started, by backend and status"
                " (success, failed, cancelled; reused: answered from a stored result).",
                labels=["backend", "status"],
            ),
            {**dict.fromkeys(COMPLETIONS, 0), **self._core.completions},
        )
        states = {"local": str(local["state"]), "globus": globus.state}
        yield labelled(
            GaugeMetricFamily(
                "gcgate_backend_state",
                "1 for each backend's current state, 0 for its other states.",
                labels=["backend", "state"],
            ),
            {
                (backend, state): float(states[backend] == state)
                for backend, known in BACKEND_STATES.items()
                for state in {*known, states[backend]}
            },
        )
        yield gauge(
            "gcgate_local_workers", "Live worker processes of the local endpoint.", local["workers"]
        )

    def _store_families(self, counts: Mapping[str, int]) -> Iterator[Metric]:
        store = self._store
        yield gauge(
            "gcgate_store_size_bytes",
            "Bytes of the store's files on disk (database, write-ahead log, large values).",
            store.size_bytes(),
        )
        yield gauge(
            "gcgate_store_size_limit_bytes",
            "The store size beyond which new submissions are refused (store_size_limit_mb).",
            store.size_limit_bytes,
        )
        yield gauge(
            "gcgate_store_task_records", "Task records in the store.", counts["task_records"]
        )
        yield gauge("gcgate_store_functions", "Function records in the store.", counts["functions"])

    def _globus(self, t: Traffic) -> Iterator[Metric]:
        yield counter(
            "gcgate_globus_submit_requests", "Submit requests sent to Globus.", t.submit_requests
        )
        yield counter(
            "gcgate_globus_submitted_tasks",
            "Tasks Globus accepted in submit requests.",
            t.tasks_submitted,
        )
        yield counter(
            "gcgate_globus_submit_answers_lost",
            "Submits whose answer was lost (their tasks failed, never resent).",
            t.submit_answers_lost,
        )
        yield counter("gcgate_globus_status_polls", "Task status polls Globus answered.", t.polls)
        yield counter(
            "gcgate_globus_poll_answers_lost",
            "Status polls whose answer was lost.",
            t.poll_answers_lost,
        )
        yield counter(
            "gcgate_globus_pushed_results",
            "Task outcomes taken from results pushed over AMQP.",
            t.results_pushed,
        )
        yield counter(
            "gcgate_globus_push_repeats",
            "Pushed results ignored as repeats of final tasks (acknowledged anyway).",
            t.push_repeats,
        )
        for key, what in (
            ("received", "Result messages received from the AMQP broker."),
            ("acked", "Result messages acknowledged (after their outcome was stored)."),
            ("rejected", "Messages rejected as not results."),
        ):
            yield counter(f"gcgate_globus_push_messages_{key}", what, t.push.get(key, 0))
        yield counter(
            "gcgate_globus_push_connects",
            "AMQP connections opened to the result broker.",
            t.push.get("connects", 0),
        )
        yield labelled(
            CounterMetricFamily(
                "gcgate_globus_http_requests",
                "HTTP requests sent to Globus (Compute and Auth), by method, path template"
                ' and status code ("none": no answer came).',
                labels=["method", "path", "code"],
            ),
            t.requests,
        )
        yield labelled(
            CounterMetricFamily(
                "gcgate_globus_http_retries",
                'Requests sent again, by why: an HTTP status ("429", "503", "401") or "network".',
                labels=["reason"],
            ),
            {(reason,): n for reason, n in t.retries.items()},
        )
        yield gauge(
            "gcgate_globus_rate_limit_requests",
            "The rate budget: requests allowed per window (rate_limit_requests).",
            t.rate_limit,
        )
        yield gauge(
            "gcgate_globus_rate_window_seconds",
            "The rate budget's window (rate_limit_window_seconds).",
            t.rate_window_seconds,
        )
        yield gauge(
            "gcgate_globus_rate_used_requests",
            "Requests sent in the last window (of gcgate_globus_rate_limit_requests).",
            t.rate_used,
        )
        yield gauge(
            "gcgate_globus_rate_paused_seconds",
            "Seconds left of a pause Globus asked for (429 or Retry-After); 0 when none.",
            t.rate_paused_seconds,
        )
        yield counter(
            "gcgate_globus_throttled",
            "Pauses of every request because Globus throttled (429, or Retry-After).",
            t.throttled,
        )
        yield counter(
            "gcgate_globus_rate_wait_seconds",
            "Seconds requests waited for their slot in the rate budget, summed.",
            t.rate_wait_seconds,
        )
