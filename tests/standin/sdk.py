"""The real Globus SDKs, configured against a running stand-in.

globus-sdk finds Auth through ``GLOBUS_SDK_SERVICE_URL_AUTH`` (or an explicit
``base_url``), and a bare ``ComputeClientV2()``/``V3()`` finds Compute through
``GLOBUS_SDK_SERVICE_URL_COMPUTE``. globus-compute-sdk's ``Client`` ignores
those for Compute: it takes its base URL from
``globus_compute_sdk.sdk._environments.get_web_service_url()`` (production unless
``GLOBUS_SDK_ENVIRONMENT`` names another Globus environment), so
:func:`compute_client` substitutes the stand-in's URL for that lookup while the
``Client`` is constructed (the only moment it is read).
"""

from __future__ import annotations

import re
import threading
from typing import Any
from unittest import mock

import globus_sdk
import requests
from globus_sdk.gare import GlobusAuthorizationParameters
from globus_sdk.login_flows import CommandLineLoginFlowManager

from standin.auth import AuthClient, Identity
from standin.service import StandIn

_construct_lock = threading.Lock()


def compute_client(
    standin: StandIn,
    *,
    app: globus_sdk.GlobusApp | None = None,
    authorizer: globus_sdk.authorizers.GlobusAuthorizer | None = None,
    **kwargs: Any,
) -> Any:
    """A ``globus_compute_sdk.Client`` talking to the stand-in's Compute service."""
    import globus_compute_sdk.sdk.client as gc_client

    with (
        _construct_lock,
        mock.patch.object(gc_client, "get_web_service_url", lambda *_a, **_k: standin.compute_url),
    ):
        return gc_client.Client(app=app, authorizer=authorizer, **kwargs)


def login_client(standin: StandIn, client: AuthClient | None = None) -> globus_sdk.AuthLoginClient:
    """A login client for ``client`` (default: the service account) at the stand-in."""
    client = client or standin.service_account
    if client.secret is None:
        return globus_sdk.NativeAppAuthClient(client.client_id, base_url=standin.auth_url)
    return globus_sdk.ConfidentialAppAuthClient(
        client.client_id, client.secret, base_url=standin.auth_url
    )


def client_app(
    standin: StandIn, client: AuthClient | None = None, *, app_name: str = "standin-test"
) -> globus_sdk.ClientApp:
    """A ``ClientApp`` (service account, client credentials) with in-memory tokens."""
    config = globus_sdk.GlobusAppConfig(token_storage="memory", request_refresh_tokens=True)
    return globus_sdk.ClientApp(app_name, login_client=login_client(standin, client), config=config)


def browse_for_code(authorize_url: str) -> str:
    """What a user does with the printed URL: open it, log in, copy the code.

    Follows the authorize redirect to the auth-code page and reads the code there.
    """
    page = requests.get(authorize_url, timeout=30, allow_redirects=True)
    page.raise_for_status()
    m = re.search(r'<pre id="code">([^<]+)</pre>', page.text)
    if not m:
        raise AssertionError(f"no authorization code on {page.url}:\n{page.text}")
    return m.group(1)


class StandInLoginFlowManager(CommandLineLoginFlowManager):
    """The SDK's command-line login flow, with the stand-in's "browser" answering.

    ``authorize_urls`` keeps every URL that would have been printed.
    """

    def __init__(
        self, login_client: globus_sdk.AuthLoginClient, standin: StandIn, **kwargs: Any
    ) -> None:
        super().__init__(login_client, **kwargs)
        self.standin = standin
        self.identity: Identity | None = None
        self.authorize_urls: list[str] = []

    def run_login_flow(
        self, auth_parameters: GlobusAuthorizationParameters
    ) -> globus_sdk.OAuthTokenResponse:
        authorize_url = self._get_authorize_url(auth_parameters, self.redirect_uri)
        self.authorize_urls.append(authorize_url)
        if self.identity is None:
            code = browse_for_code(authorize_url)
        else:
            code = self.standin.auth.authorize(authorize_url, identity=self.identity)
        return self.login_client.oauth2_exchange_code_for_tokens(code)


def user_app(
    standin: StandIn,
    *,
    identity: Identity | None = None,
    client_id: str | None = None,
    app_name: str = "standin-test",
    request_refresh_tokens: bool = True,
) -> globus_sdk.UserApp:
    """A ``UserApp`` (native app login, as the Compute SDK's default) whose login
    flow is completed by the stand-in's browser as ``identity`` (default user)."""
    from standin.auth import SDK_NATIVE_CLIENT_ID

    native = globus_sdk.NativeAppAuthClient(
        client_id or SDK_NATIVE_CLIENT_ID, base_url=standin.auth_url
    )
    flow = StandInLoginFlowManager(native, standin, request_refresh_tokens=request_refresh_tokens)
    flow.identity = identity
    config = globus_sdk.GlobusAppConfig(
        token_storage="memory",
        request_refresh_tokens=request_refresh_tokens,
        login_flow_manager=flow,
    )
    return globus_sdk.UserApp(app_name, login_client=native, config=config)
