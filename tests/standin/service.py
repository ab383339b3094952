"""The stand-in as a whole: Auth and Compute servers, shared faults and request log."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from standin.auth import AuthClient, AuthService
from standin.compute import ComputeService, Endpoint
from standin.faults import FaultSet
from standin.http import ServiceServer
from standin.stats import Stats

if TYPE_CHECKING:
    from broker import Broker

_COMPUTE_SETTINGS = (
    "max_payload_bytes",
    "result_size_limit",
    "consume_on_fetch",
    "result_ttl",
    "enforce_rate_limit",
    "rate_limit",
    "rate_window",
    "publish_results",
    "declare_queues",
    "amqp_tls",
    "amqp_ca_in_url",
)
_AUTH_SETTINGS = (
    "access_token_lifetime",
    "auth_code_lifetime",
    "browser_identity",
    "revoke_after",
)


class StandIn:
    """Globus Auth and the Globus Compute web service (with endpoints), on 127.0.0.1.

    Use as a context manager, or :meth:`start` / :meth:`stop`::

        with StandIn() as s:
            s.compute_url, s.auth_url, s.endpoint_id
            s.faults.rate_limit(3, retry_after=1)
            s.stats.count(service="compute", path="/v2/batch_status")

    With ``broker`` (a running ``tests/broker.py`` :class:`Broker`, which the
    stand-in uses but neither starts nor stops), results of ``create_queue``
    submits are also pushed over AMQP as the service pushes them (see
    :mod:`standin.compute`); without, ``GET /v2/get_amqp_result_connection_url``
    answers 503.
    """

    def __init__(
        self,
        *,
        endpoints: Iterable[Endpoint] | None = None,
        workers: int = 2,
        broker: Broker | None = None,
    ) -> None:
        self.stats = Stats()
        self.faults = FaultSet()
        self.auth = AuthService()
        self.broker = broker
        self.compute = ComputeService(
            self.auth, self.stats, endpoints=endpoints, workers=workers, broker=broker
        )
        self._auth_server = ServiceServer(self.auth, self.faults, self.stats)
        self._compute_server = ServiceServer(self.compute, self.faults, self.stats)
        self._defaults: dict[str, dict[str, Any]] = {}
        self._started = False

    # ------------------------------------------------------------ lifecycle

    def start(self) -> StandIn:
        self._auth_server.start()
        self._compute_server.start()
        self.auth.base_url = self.auth_url
        self.compute.start()
        self._defaults = {
            "compute": {k: getattr(self.compute, k) for k in _COMPUTE_SETTINGS},
            "auth": {k: getattr(self.auth, k) for k in _AUTH_SETTINGS},
            "endpoints": {ep_id: ep.status for ep_id, ep in self.compute.endpoints.items()},
        }
        self._started = True
        return self

    def stop(self) -> None:
        if not self._started:
            return
        self._compute_server.stop()
        self._auth_server.stop()
        self.compute.stop()
        self._started = False

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _server(self, service: str) -> ServiceServer:
        return {"compute": self._compute_server, "auth": self._auth_server}[service]

    def go_down(self, service: str = "compute") -> None:
        """Close a service's port (``"compute"`` or ``"auth"``): connections are
        refused, open ones are cut, as when the service or its host is down.
        Its state (tasks, tokens) is kept for :meth:`come_back`."""
        self._server(service).stop()

    def come_back(self, service: str = "compute") -> None:
        """Listen again, on the same port, after :meth:`go_down`."""
        server = self._server(service)
        if not server.listening:
            server.start()

    def reset(self) -> None:
        """Clear faults and the logs (requests, submits, grant counts); restore
        settings and endpoint statuses.

        Functions, tasks and tokens are kept (a module's tests may share them).
        """
        self.faults.clear()
        for name in ("compute", "auth"):
            if self._started:
                self.come_back(name)
        self.stats.reset()
        self.auth.grants.clear()
        with self.compute._lock:
            self.compute.submits.clear()
        for k, v in self._defaults.get("compute", {}).items():
            setattr(self.compute, k, v)
        for k, v in self._defaults.get("auth", {}).items():
            setattr(self.auth, k, v)
        for ep_id, status in self._defaults.get("endpoints", {}).items():
            if ep_id in self.compute.endpoints:
                self.compute.set_endpoint_status(ep_id, status)

    # ------------------------------------------------------------ addresses

    @property
    def auth_url(self) -> str:
        """Base URL of Auth, with the trailing slash globus-sdk's own has
        (``https://auth.globus.org/``); the value for ``GLOBUS_SDK_SERVICE_URL_AUTH``."""
        return self._auth_server.base_url + "/"

    @property
    def compute_url(self) -> str:
        """Base URL of Compute, like ``https://compute.api.globus.org`` (no slash)."""
        return self._compute_server.base_url

    @property
    def endpoint_ids(self) -> list[str]:
        return list(self.compute.endpoints)

    @property
    def endpoint_id(self) -> str:
        """The first configured endpoint."""
        return self.endpoint_ids[0]

    @property
    def service_account(self) -> AuthClient:
        """The confidential client configured by default (id and secret)."""
        return self.auth.service_account

    def env(self, *, service_account: bool = True) -> dict[str, str]:
        """Environment variables that point globus-sdk, the Compute SDK's client
        credentials and gcgated at the stand-in (merge into ``os.environ``)."""
        env = {
            "GLOBUS_SDK_SERVICE_URL_AUTH": self.auth_url,
            "GLOBUS_SDK_SERVICE_URL_COMPUTE": self.compute_url,
            "GCGATE_COMPUTE_URL": self.compute_url,
        }
        if service_account:
            env["GLOBUS_COMPUTE_CLIENT_ID"] = self.service_account.client_id
            env["GLOBUS_COMPUTE_CLIENT_SECRET"] = self.service_account.secret or ""
        return env
