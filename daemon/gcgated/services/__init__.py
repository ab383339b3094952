"""The daemon's in-process services: the only way in for the gRPC servicer.

Containerd-style, each service is one narrow interface over what lies below it
(the task life-cycle, the router and its backends, the store): the servicer
decodes a request, calls one service method and encodes the answer, and never
sees a backend or the store. ``daemon.py`` builds them (:func:`build_services`);
the layering is checked by import-linter (``.importlinter``, tests/test_layering.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from gcgated.core import TaskLifecycle
from gcgated.routing import Router
from gcgated.store import Store

from .endpoints import EndpointService
from .functions import FunctionService
from .login import LoginService
from .metrics import MetricsService
from .status import StatusService
from .tasks import TaskService


@dataclass(frozen=True)
class Services:
    """Everything the servicer may call, one attribute per service."""

    tasks: TaskService
    functions: FunctionService
    endpoints: EndpointService
    login: LoginService
    status: StatusService
    metrics: MetricsService


def build_services(core: TaskLifecycle, router: Router, store: Store) -> Services:
    """The services over one daemon's core, router and store."""
    return Services(
        tasks=TaskService(core, router.remote),
        functions=FunctionService(core, router.remote),
        endpoints=EndpointService(router),
        login=LoginService(router.remote),
        status=StatusService(core, router, store),
        metrics=MetricsService(core, router, store),
    )
