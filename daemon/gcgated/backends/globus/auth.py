"""The daemon's Globus login, through globus-sdk's GlobusApp machinery.

Two kinds, one active per daemon:

- :class:`ServiceAccountLogin`: a confidential client acting as itself
  (``ClientApp``, client-credentials grant), when credentials are configured;
- :class:`UserLogin`: a person, logged in once with the native-app flow
  (``UserApp`` with refresh tokens); ``gcgate login`` drives it through two RPCs
  (:meth:`UserLogin.start` gives the URL, :meth:`UserLogin.complete` takes the
  code), so the daemon never prompts on a terminal.

Tokens live in one SQLite token storage file in the state directory (mode
0600), under separate namespaces (``client/<client id>``, ``user``), so tokens
of different logins never mix.

globus-sdk's ``GlobusApp`` is not thread-safe and neither is a SQLite
connection, while Compute calls run in several worker threads: every use of
an app, its authorizers and the token storage goes through the login's lock
(:class:`SerializedAuthorizer`). A token renewal therefore happens once, in one
thread, while the others wait for the new token.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import globus_sdk
from globus_sdk.authorizers import GlobusAuthorizer
from globus_sdk.globus_app import ClientApp, GlobusAppConfig, UserApp
from globus_sdk.scopes import ComputeScopes
from globus_sdk.token_storage import SQLiteTokenStorage, TokenValidationError
from globus_sdk.token_storage.validating_token_storage import IdentityMismatchError

from gcgated.errors import FailedPrecondition, InvalidArgument, NotFound, Unauthenticated

from .http import LimitedTransport, no_retries
from .limiter import RateLimiter

log = logging.getLogger(__name__)

#: The Compute service's scope, as globus-compute-sdk requests it.
COMPUTE_SCOPE = str(ComputeScopes.all)
#: Resource server name of the Compute service in token responses.
COMPUTE_RESOURCE_SERVER = ComputeScopes.resource_server
#: The Globus Compute SDK's native app client, used for user logins.
NATIVE_CLIENT_ID = "4cf29807-cf21-49ec-9443-ff9a3fb9f81c"
#: Token storage file in the state directory.
TOKEN_FILE = "globus-tokens.db"
#: Who the user login is (identity id, username, name, email): not secret.
USER_FILE = "globus-user.json"
APP_NAME = "gcgated"
#: Seconds a started login waits for its code.
LOGIN_TIMEOUT = 900.0

NOT_LOGGED_IN = (
    "gcgated is not logged in to Globus: run `gcgate login` (or configure a service"
    " account: GLOBUS_COMPUTE_CLIENT_ID/GLOBUS_COMPUTE_CLIENT_SECRET)"
)


def open_token_storage(state_dir: Path, namespace: str) -> SQLiteTokenStorage:
    """The daemon's token file (created 0600), under ``namespace``."""
    path = state_dir / TOKEN_FILE
    storage = SQLiteTokenStorage(
        path, namespace=namespace, connect_params={"check_same_thread": False}
    )
    os.chmod(path, 0o600)
    return storage


class SerializedAuthorizer(GlobusAuthorizer):
    """The active login's Compute authorizer, used by one thread at a time."""

    def __init__(self, login: Login) -> None:
        self._login = login

    def get_authorization_header(self) -> str | None:
        with self._login.lock:
            return self._login.compute_authorizer().get_authorization_header()

    def handle_missing_authorization(self) -> bool:
        with self._login.lock:
            return self._login.compute_authorizer().handle_missing_authorization()


class Login:
    """What the backend needs from a login."""

    kind = ""
    lock: threading.RLock
    app: Any

    @property
    def identity(self) -> str:
        raise NotImplementedError

    @property
    def logged_in(self) -> bool:
        raise NotImplementedError

    def compute_authorizer(self) -> GlobusAuthorizer:
        try:
            return self.app.get_authorizer(COMPUTE_RESOURCE_SERVER)
        except TokenValidationError:
            raise Unauthenticated(NOT_LOGGED_IN) from None

    def describe(self) -> dict[str, Any]:
        if not self.logged_in:
            return {"state": "logged_out", "identity": ""}
        return {"state": self.kind, "identity": self.identity}

    def close(self) -> None:
        raise NotImplementedError


class ServiceAccountLogin(Login):
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
        self.lock = threading.RLock()
        # Its token requests happen inside Compute calls (the authorizer renews),
        # which ComputeAPI retries with back-off, a deadline and the limiter's
        # pauses: globus-sdk's own retries would only hold the login lock longer.
        login_client = globus_sdk.ConfidentialAppAuthClient(
            client_id=client_id,
            client_secret=client_secret,
            app_name=APP_NAME,
            transport=LimitedTransport(limiter, http_timeout),
            retry_config=no_retries(),
        )
        self.storage = open_token_storage(state_dir, f"client/{client_id}")
        self.app = ClientApp(
            APP_NAME,
            login_client=login_client,
            scope_requirements={COMPUTE_RESOURCE_SERVER: [COMPUTE_SCOPE]},
            config=GlobusAppConfig(token_storage=self.storage),
        )
        self.authorizer = SerializedAuthorizer(self)

    @property
    def identity(self) -> str:
        # A client's Globus identity id is its client id.
        return self.client_id

    @property
    def logged_in(self) -> bool:
        return True  # tokens are minted on demand

    def close(self) -> None:
        with self.lock:
            self.app.close()
            self.storage.close()


class UserLogin(Login):
    """A person's login (native app, refresh tokens), driven by StartLogin/CompleteLogin."""

    kind = "user"

    def __init__(
        self,
        *,
        state_dir: Path,
        limiter: RateLimiter,
        client_id: str = NATIVE_CLIENT_ID,
        http_timeout: float = 30.0,
    ) -> None:
        self.client_id = client_id
        self.state_dir = state_dir
        self.lock = threading.RLock()
        # No retries inside globus-sdk (5, with back-off, by default): a person
        # waits on CompleteLogin and Logout, which should fail in seconds when
        # Auth cannot be reached; token refreshes happen inside Compute calls,
        # which ComputeAPI retries.
        self.login_client = globus_sdk.NativeAppAuthClient(
            client_id,
            app_name=APP_NAME,
            transport=LimitedTransport(limiter, http_timeout),
            retry_config=no_retries(),
        )
        self.storage = open_token_storage(state_dir, "user")
        self.app = self._new_app()
        self.authorizer = SerializedAuthorizer(self)
        self._who: dict[str, str] = self._read_who()
        #: The login in progress: (login id, started at, forced).
        self._pending: tuple[str, float, bool] | None = None

    def _new_app(self) -> UserApp:
        # No validation error handler: a missing or expired login must fail the
        # request (UNAUTHENTICATED), never start an interactive flow in the daemon.
        return UserApp(
            APP_NAME,
            login_client=self.login_client,
            scope_requirements={COMPUTE_RESOURCE_SERVER: [COMPUTE_SCOPE]},
            config=GlobusAppConfig(
                token_storage=self.storage,
                request_refresh_tokens=True,
                token_validation_error_handler=None,
            ),
        )

    # ------------------------------------------------------------- identity

    @property
    def _who_path(self) -> Path:
        return self.state_dir / USER_FILE

    def _read_who(self) -> dict[str, str]:
        try:
            data = json.loads(self._who_path.read_text())
        except (OSError, ValueError):
            return {}
        return {k: str(v) for k, v in data.items() if v is not None}

    def _write_who(self, who: dict[str, str]) -> None:
        tmp = self._who_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(who, f)
        os.replace(tmp, self._who_path)
        self._who = who

    @property
    def identity(self) -> str:
        with self.lock:
            data = self.storage.get_token_data(COMPUTE_RESOURCE_SERVER)
        if data is not None and data.identity_id:
            return data.identity_id
        return self._who.get("identity_id", "")

    @property
    def logged_in(self) -> bool:
        with self.lock:
            return self.storage.get_token_data(COMPUTE_RESOURCE_SERVER) is not None

    def who(self) -> dict[str, str]:
        if not self.logged_in:
            return {}
        return {**self._who, "identity_id": self.identity}

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        if info["state"] == "user" and self._who.get("username"):
            info["username"] = self._who["username"]
        return info

    # ---------------------------------------------------------------- flows

    def start(self, force: bool) -> tuple[str, str]:
        """Begin a login: (login id, URL to open). Replaces a login in progress."""
        scopes = [COMPUTE_SCOPE, "openid", "profile", "email"]
        with self.lock:
            self.login_client.oauth2_start_flow(scopes, refresh_tokens=True)
            url = self.login_client.oauth2_get_authorize_url(
                **({"prompt": "login"} if force else {})
            )
            login_id = str(uuid.uuid4())
            self._pending = (login_id, time.monotonic(), force)
        return login_id, url

    def complete(self, login_id: str, code: str) -> dict[str, str]:
        """Exchange the code for tokens and keep them; who is now logged in."""
        code = code.strip()
        if not code:
            raise InvalidArgument("the authorization code is empty")
        with self.lock:
            pending = self._pending
            if pending is None or pending[0] != login_id:
                raise NotFound(
                    "no login in progress with this id (another `gcgate login` replaced it,"
                    " or the daemon restarted); run `gcgate login` again"
                )
            if time.monotonic() - pending[1] > LOGIN_TIMEOUT:
                self._pending = None
                raise FailedPrecondition("this login took too long; run `gcgate login` again")
            try:
                response = self.login_client.oauth2_exchange_code_for_tokens(code)
            except globus_sdk.AuthAPIError as exc:
                raise InvalidArgument(
                    f"Globus Auth did not accept the code ({exc.code}: {exc.message});"
                    " run `gcgate login` again and paste the code it shows"
                ) from None
            self._pending = None
            try:
                self.app.token_storage.store_token_response(response)
            except IdentityMismatchError:
                # `gcgate login --force` as someone else: the old user's tokens go.
                for resource_server in list(self.storage.get_token_data_by_resource_server()):
                    self.storage.remove_token_data(resource_server)
                self.app = self._new_app()  # its storage wrapper remembers no identity
                self.app.token_storage.store_token_response(response)
            claims = self.app.token_storage.id_token_decoder.decode(response["id_token"])
            self._write_who(
                {
                    "identity_id": str(claims.get("sub", "")),
                    "username": str(claims.get("preferred_username", "")),
                    "name": str(claims.get("name", "")),
                    "email": str(claims.get("email", "") or ""),
                }
            )
            self.app = self._new_app()  # authorizers built afresh from the new tokens
        log.info("logged in to Globus as %s", self._who.get("username") or self.identity)
        return self.who()

    def logout(self) -> dict[str, str]:
        """Revoke and delete the user's tokens; who was logged in (empty if nobody)."""
        with self.lock:
            who = self.who()
            if who:
                self.app.logout(sweep=True)
            self._pending = None
            self._who = {}
            self._who_path.unlink(missing_ok=True)
            self.app = self._new_app()
        if who:
            log.info("logged out of Globus (%s)", who.get("username") or who.get("identity_id"))
        return who

    def close(self) -> None:
        with self.lock:
            self.app.close()
            self.storage.close()
