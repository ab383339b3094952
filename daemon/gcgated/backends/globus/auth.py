"""The daemon's Globus login: a service account through globus-sdk's ClientApp.

Tokens live in one SQLite token storage file in the state directory (mode
0600), under a namespace per login kind and identity (``client/<client id>``
here; user logins get ``user/...``), so tokens of different logins never mix.

globus-sdk's ``GlobusApp`` is not thread-safe and neither is a SQLite
connection, while Compute calls run in several worker threads: every use of
the app, its authorizers and the token storage goes through one lock
(:class:`SerializedAuthorizer`). A token renewal therefore happens once, in one
thread, while the others wait for the new token.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import globus_sdk
from globus_sdk.authorizers import GlobusAuthorizer
from globus_sdk.globus_app import ClientApp, GlobusAppConfig
from globus_sdk.scopes import ComputeScopes
from globus_sdk.token_storage import SQLiteTokenStorage

from .http import LimitedTransport
from .limiter import RateLimiter

log = logging.getLogger(__name__)

#: The Compute service's scope, as globus-compute-sdk requests it.
COMPUTE_SCOPE = str(ComputeScopes.all)
#: Resource server name of the Compute service in token responses.
COMPUTE_RESOURCE_SERVER = ComputeScopes.resource_server
#: Token storage file in the state directory.
TOKEN_FILE = "globus-tokens.db"
APP_NAME = "gcgated"


def open_token_storage(state_dir: Path, namespace: str) -> SQLiteTokenStorage:
    """The daemon's token file (created 0600), under ``namespace``."""
    path = state_dir / TOKEN_FILE
    storage = SQLiteTokenStorage(
        path, namespace=namespace, connect_params={"check_same_thread": False}
    )
    os.chmod(path, 0o600)
    return storage


class SerializedAuthorizer(GlobusAuthorizer):
    """The app's Compute authorizer, used by one thread at a time."""

    def __init__(self, login: ServiceAccountLogin) -> None:
        self._login = login

    def get_authorization_header(self) -> str | None:
        with self._login.lock:
            return self._login.app.get_authorizer(
                COMPUTE_RESOURCE_SERVER
            ).get_authorization_header()

    def handle_missing_authorization(self) -> bool:
        with self._login.lock:
            return self._login.app.get_authorizer(
                COMPUTE_RESOURCE_SERVER
            ).handle_missing_authorization()


class ServiceAccountLogin:
    """A confidential client acting as itself (client-credentials grant)."""

    kind = "client"

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        state_dir: Path,
        limiter: RateLimiter,
        http_timeout: float = 30.0,
    ) -> None:
        self.client_id = client_id
        #: A client's Globus identity id is its client id.
        self.identity = client_id
        self.lock = threading.RLock()
        login_client = globus_sdk.ConfidentialAppAuthClient(
            client_id=client_id,
            client_secret=client_secret,
            app_name=APP_NAME,
            transport=LimitedTransport(limiter, http_timeout),
        )
        self.storage = open_token_storage(state_dir, f"client/{client_id}")
        self.app = ClientApp(
            APP_NAME,
            login_client=login_client,
            scope_requirements={COMPUTE_RESOURCE_SERVER: [COMPUTE_SCOPE]},
            config=GlobusAppConfig(token_storage=self.storage),
        )
        self.authorizer = SerializedAuthorizer(self)

    def describe(self) -> dict[str, Any]:
        return {"state": self.kind, "identity": self.identity}

    def close(self) -> None:
        with self.lock:
            self.app.close()
            self.storage.close()
