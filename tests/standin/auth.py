"""A stand-in for Globus Auth: OAuth2 token grants, introspection, revocation, OIDC.

Implements what globus-sdk 4.10's login and token machinery calls (its
``AuthLoginClient``/``ConfidentialAppAuthClient``/``NativeAppAuthClient``,
``GlobusApp``, the authorizers and the ``IDTokenDecoder``):

* ``POST /v2/oauth2/token`` with ``grant_type`` ``client_credentials`` (HTTP
  Basic client authentication), ``authorization_code`` (native apps: PKCE S256
  with ``client_id`` in the form; confidential apps: Basic) and
  ``refresh_token``. Responses have Globus Auth's shape: one token per resource
  server, the first at the top level (``auth.globus.org`` when requested) and the
  others in ``other_tokens``, each with ``access_token``, ``expires_in``,
  ``resource_server``, ``scope``, ``token_type`` and ``refresh_token`` when
  ``access_type=offline`` was asked for; an RS512-signed ``id_token`` at the top
  level when ``openid`` was requested (globus-sdk verifies it against
  ``/.well-known/openid-configuration`` and ``jwks_uri``, both served here).
* ``POST /v2/oauth2/token/introspect`` and ``/v2/oauth2/token/revoke``;
  ``GET /v2/oauth2/userinfo``; ``GET /v2/api/identities``.
* ``GET /v2/oauth2/authorize``: consents at once as a configured user (the
  "browser" is the test) and redirects to ``redirect_uri`` with the code; the
  default native-app redirect ``/v2/web/auth-code`` shows the code.

Tokens are opaque random strings held in memory; access tokens expire after
:attr:`AuthService.access_token_lifetime` seconds, and tests can expire or revoke
them early to exercise renewal.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from globus_sdk.scopes import ComputeScopes

from standin.http import HTTPError, Request, Response, Route, Service

#: The Globus Compute SDK's native app client id (``UserApp`` default).
SDK_NATIVE_CLIENT_ID = "4cf29807-cf21-49ec-9443-ff9a3fb9f81c"
#: The Compute scope and the resource server its tokens are for.
COMPUTE_SCOPE = str(ComputeScopes.all)
COMPUTE_RESOURCE_SERVER = ComputeScopes.resource_server
AUTH_RESOURCE_SERVER = "auth.globus.org"
#: Globus Auth's lifetime for access tokens (48 h).
DEFAULT_ACCESS_TOKEN_LIFETIME = 172800
IDENTITY_PROVIDER_ID = "41143743-f3c8-4d60-bbdb-eeecaba85bd9"
_OIDC_SCOPES = {"openid", "profile", "email"}
_URN_PREFIX = "urn:globus:auth:scope:"
_SCOPE_URL = re.compile(r"^https://auth\.globus\.org/scopes/([^/\s\[]+)/")


def resource_server_for(scope: str) -> str:
    """The resource server a scope string belongs to, as Globus Auth maps it."""
    base = scope.split("[", 1)[0].strip()
    if base in _OIDC_SCOPES:
        return AUTH_RESOURCE_SERVER
    if base == COMPUTE_SCOPE:
        return COMPUTE_RESOURCE_SERVER
    if base.startswith(_URN_PREFIX):
        return base[len(_URN_PREFIX) :].split(":", 1)[0]
    m = _SCOPE_URL.match(base)
    return m.group(1) if m else base


def split_scopes(scope: str) -> list[str]:
    """Top-level scope strings of a space-separated list (brackets kept whole)."""
    out: list[str] = []
    depth = 0
    current = ""
    for ch in scope:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch.isspace() and depth == 0:
            if current:
                out.append(current)
            current = ""
        else:
            current += ch
    if current:
        out.append(current)
    return out


def _oauth_error(status: int, error: str, description: str) -> HTTPError:
    err = HTTPError(status, error, description)
    err.extra = {"__oauth__": True}
    return err


@dataclass
class Identity:
    id: str
    username: str
    name: str
    email: str | None = None
    organization: str = "Stand-in University"
    identity_provider: str = IDENTITY_PROVIDER_ID
    identity_provider_display_name: str = "Stand-in Identity Provider"
    status: str = "used"

    def document(self) -> dict[str, object]:
        """As ``GET /v2/api/identities`` lists it."""
        return {
            "id": self.id,
            "username": self.username,
            "name": self.name,
            "email": self.email,
            "organization": self.organization,
            "identity_provider": self.identity_provider,
            "identity_type": "login",
            "status": self.status,
        }


@dataclass
class AuthClient:
    client_id: str
    #: ``None`` for a native (public) client.
    secret: str | None
    name: str
    #: A confidential client acts as its own identity (same id as the client).
    identity: Identity | None = None

    @property
    def confidential(self) -> bool:
        return self.secret is not None


@dataclass
class TokenRecord:
    access_token: str
    resource_server: str
    scopes: list[str]
    client_id: str
    identity_id: str
    grant: str
    issued_at: float
    expires_at: float
    refresh_token: str | None = None
    revoked: bool = False
    #: When the service stops accepting it, earlier than ``expires_at`` says
    #: (see :attr:`AuthService.revoke_after`).
    dies_at: float | None = None

    @property
    def active(self) -> bool:
        now = time.time()
        return (
            not self.revoked
            and now < self.expires_at
            and (self.dies_at is None or now < self.dies_at)
        )

    @property
    def scope(self) -> str:
        return " ".join(self.scopes)


@dataclass
class RefreshRecord:
    refresh_token: str
    resource_server: str
    scopes: list[str]
    client_id: str
    identity_id: str
    revoked: bool = False
    access_tokens: list[str] = field(default_factory=list)


@dataclass
class AuthCode:
    code: str
    client_id: str
    identity_id: str
    scopes: list[str]
    redirect_uri: str | None
    code_challenge: str | None
    code_challenge_method: str
    access_type: str
    state: str | None
    expires_at: float
    used: bool = False


class AuthService(Service):
    """Globus Auth's state and routes (see the module doc)."""

    name = "auth"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.base_url = "http://127.0.0.1"  # set by the server once it listens
        self.access_token_lifetime: float = DEFAULT_ACCESS_TOKEN_LIFETIME
        self.auth_code_lifetime: float = 600.0
        #: Access tokens stop working this many seconds after issue while their
        #: ``expires_in`` still says ``access_token_lifetime`` (revoked or expired
        #: early, a clock skewed): clients learn it from a 401. ``None``: never.
        self.revoke_after: float | None = None
        self.clients: dict[str, AuthClient] = {}
        self.identities: dict[str, Identity] = {}
        self.tokens: dict[str, TokenRecord] = {}
        self.refresh_tokens: dict[str, RefreshRecord] = {}
        self.codes: dict[str, AuthCode] = {}
        #: Token grants served, by grant type (``"refresh_token"`` counts renewals).
        self.grants: Counter[str] = Counter()
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._kid = uuid.uuid4().hex

        # Defaults: the SDK's native app, one service account, one user.
        self.add_native_client(SDK_NATIVE_CLIENT_ID, name="Globus Compute SDK")
        self.service_account = self.add_client(name="standin service account")
        self.user = self.add_user("alice@example.org", name="Alice Example")
        #: Who "logs in" when the authorize URL is visited without naming someone.
        self.browser_identity: Identity = self.user

    # ----------------------------------------------------------------- directory

    def add_client(
        self, client_id: str | None = None, secret: str | None = None, name: str | None = None
    ) -> AuthClient:
        """Register a confidential client (a service account) and its identity."""
        client_id = client_id or str(uuid.uuid4())
        name = name or f"client {client_id[:8]}"
        identity = Identity(
            id=client_id, username=f"{client_id}@clients.auth.globus.org", name=name
        )
        client = AuthClient(client_id, secret or secrets.token_urlsafe(32), name, identity)
        with self._lock:
            self.clients[client_id] = client
            self.identities[identity.id] = identity
        return client

    def add_native_client(
        self, client_id: str | None = None, name: str = "native app"
    ) -> AuthClient:
        client = AuthClient(client_id or str(uuid.uuid4()), None, name)
        with self._lock:
            self.clients[client.client_id] = client
        return client

    def add_user(
        self, username: str, name: str | None = None, email: str | None = None
    ) -> Identity:
        identity = Identity(
            id=str(uuid.uuid4()), username=username, name=name or username, email=email or username
        )
        with self._lock:
            self.identities[identity.id] = identity
        return identity

    # ------------------------------------------------------------- test controls

    def issue_auth_code(
        self,
        client_id: str = SDK_NATIVE_CLIENT_ID,
        *,
        identity: Identity | str | None = None,
        scopes: str | list[str] = f"openid {COMPUTE_SCOPE}",
        redirect_uri: str | None = None,
        code_challenge: str | None = None,
        code_challenge_method: str = "S256",
        access_type: str = "offline",
        state: str | None = None,
    ) -> str:
        """An authorization code, as if ``identity`` had logged in and consented.

        Without ``code_challenge`` the exchange needs no ``code_verifier``; with it
        (what :meth:`authorize` passes on), PKCE is checked as Globus Auth does.
        """
        if client_id not in self.clients:
            raise ValueError(f"unknown client {client_id}")
        ident = self._identity(identity)
        scope_list = split_scopes(scopes) if isinstance(scopes, str) else list(scopes)
        code = secrets.token_urlsafe(24)
        with self._lock:
            self.codes[code] = AuthCode(
                code=code,
                client_id=client_id,
                identity_id=ident.id,
                scopes=scope_list,
                redirect_uri=redirect_uri,
                code_challenge=code_challenge,
                code_challenge_method=code_challenge_method,
                access_type=access_type,
                state=state,
                expires_at=time.time() + self.auth_code_lifetime,
            )
        return code

    def authorize(self, authorize_url: str, identity: Identity | str | None = None) -> str:
        """Log in at an authorize URL (as printed by the SDK); return the code shown."""
        q = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
        if q.get("response_type", "code") != "code":
            raise ValueError("only response_type=code is supported")
        return self.issue_auth_code(
            q["client_id"],
            identity=identity,
            scopes=q.get("scope", ""),
            redirect_uri=q.get("redirect_uri"),
            code_challenge=q.get("code_challenge"),
            code_challenge_method=q.get("code_challenge_method", "S256"),
            access_type=q.get("access_type", "online"),
            state=q.get("state"),
        )

    def expire_tokens(
        self, *, resource_server: str | None = None, identity_id: str | None = None
    ) -> int:
        """Expire matching live access tokens now (refresh tokens stay valid)."""
        now = time.time()
        n = 0
        with self._lock:
            for tok in self.tokens.values():
                if not tok.active:
                    continue
                if resource_server is not None and tok.resource_server != resource_server:
                    continue
                if identity_id is not None and tok.identity_id != identity_id:
                    continue
                tok.expires_at = now
                n += 1
        return n

    def revoke_refresh_tokens(self, *, identity_id: str | None = None) -> int:
        """Revoke refresh tokens (and their access tokens): "log in again" next time."""
        n = 0
        with self._lock:
            for rec in self.refresh_tokens.values():
                if rec.revoked or (identity_id is not None and rec.identity_id != identity_id):
                    continue
                self._revoke_refresh(rec)
                n += 1
        return n

    def token(self, access_token: str | None) -> TokenRecord | None:
        """What the service knows of an access token (active or not)."""
        if not access_token:
            return None
        with self._lock:
            return self.tokens.get(access_token)

    def live_tokens(self, resource_server: str | None = None) -> list[TokenRecord]:
        with self._lock:
            return [
                t
                for t in self.tokens.values()
                if t.active and (resource_server is None or t.resource_server == resource_server)
            ]

    def mint_token(
        self,
        identity: Identity | str | None = None,
        *,
        client_id: str | None = None,
        scopes: str = COMPUTE_SCOPE,
        lifetime: float | None = None,
    ) -> str:
        """An access token issued directly (as if obtained elsewhere), e.g. for
        ``AccessTokenAuthorizer``; one resource server's scopes only."""
        ident = self._identity(identity)
        scope_list = split_scopes(scopes)
        rs = {resource_server_for(s) for s in scope_list}
        if len(rs) != 1:
            raise ValueError("mint_token takes the scopes of one resource server")
        rec = self._new_access_token(
            rs.pop(), scope_list, client_id or SDK_NATIVE_CLIENT_ID, ident.id, "minted", lifetime
        )
        return rec.access_token

    # ------------------------------------------------------------ service plumbing

    def identify(self, request: Request) -> tuple[str | None, str | None]:
        basic = request.basic_credentials
        if basic:
            client = self.clients.get(basic[0])
            return (client.identity.id if client and client.identity else None), basic[0]
        tok = self.token(request.bearer_token)
        if tok:
            return tok.identity_id, tok.client_id
        return None, request.form().get("client_id") if request.method == "POST" else None

    def error_response(self, err: HTTPError) -> Response:
        if err.extra.get("__oauth__"):
            # OAuth2 token-endpoint errors: {"error", "error_description"}.
            doc = {"error": err.code, "error_description": err.message}
            return Response.json(doc, err.status, err.headers)
        # Globus Auth API errors: a JSON:API-style "errors" array plus the OAuth
        # fields (globus-sdk's AuthAPIError reads code/message from "errors").
        error_id = str(uuid.uuid4())
        doc = {
            "errors": [
                {
                    "status": str(err.status),
                    "id": error_id,
                    "code": err.code,
                    "detail": err.message,
                    "title": err.code.replace("_", " ").title(),
                }
            ],
            "error_description": err.message,
            "error": err.code.lower(),
        }
        return Response.json(doc, err.status, err.headers)

    def routes(self) -> list[Route]:
        return [
            Route("POST", "/v2/oauth2/token", self._token),
            Route("POST", "/v2/oauth2/token/introspect", self._introspect),
            Route("POST", "/v2/oauth2/token/revoke", self._revoke),
            Route("GET", "/v2/oauth2/userinfo", self._userinfo),
            Route("POST", "/v2/oauth2/userinfo", self._userinfo),
            Route("GET", "/v2/oauth2/authorize", self._authorize),
            Route("GET", "/v2/web/auth-code", self._auth_code_page),
            Route("GET", "/v2/api/identities", self._identities),
            Route("GET", "/.well-known/openid-configuration", self._openid_configuration),
            Route("GET", "/jwk.json", self._jwks),
        ]

    # -------------------------------------------------------------------- helpers

    def _identity(self, identity: Identity | str | None) -> Identity:
        if identity is None:
            return self.browser_identity
        if isinstance(identity, Identity):
            return identity
        with self._lock:
            for ident in self.identities.values():
                if identity in (ident.id, ident.username):
                    return ident
        raise ValueError(f"unknown identity {identity}")

    def _authenticate_client(self, request: Request, form: dict[str, str]) -> AuthClient:
        basic = request.basic_credentials
        if basic is not None:
            client = self.clients.get(basic[0])
            if client is None or not client.confidential or client.secret != basic[1]:
                raise _oauth_error(401, "invalid_client", "Invalid client credentials")
            return client
        client = self.clients.get(form.get("client_id", ""))
        if client is None:
            raise _oauth_error(401, "invalid_client", "Client authentication failed")
        if client.confidential:
            raise _oauth_error(401, "invalid_client", "This client must authenticate")
        return client

    def _new_access_token(
        self,
        resource_server: str,
        scopes: list[str],
        client_id: str,
        identity_id: str,
        grant: str,
        lifetime: float | None = None,
        refresh_token: str | None = None,
    ) -> TokenRecord:
        now = time.time()
        life = self.access_token_lifetime if lifetime is None else lifetime
        rec = TokenRecord(
            access_token=secrets.token_urlsafe(32),
            resource_server=resource_server,
            scopes=scopes,
            client_id=client_id,
            identity_id=identity_id,
            grant=grant,
            issued_at=now,
            expires_at=now + life,
            refresh_token=refresh_token,
            dies_at=None if self.revoke_after is None else now + self.revoke_after,
        )
        with self._lock:
            self.tokens[rec.access_token] = rec
            if refresh_token and refresh_token in self.refresh_tokens:
                self.refresh_tokens[refresh_token].access_tokens.append(rec.access_token)
        return rec

    def _token_doc(self, rec: TokenRecord) -> dict[str, object]:
        doc: dict[str, object] = {
            "access_token": rec.access_token,
            "expires_in": max(0, int(rec.expires_at - rec.issued_at)),
            "resource_server": rec.resource_server,
            "token_type": "Bearer",
            "scope": rec.scope,
        }
        if rec.refresh_token:
            doc["refresh_token"] = rec.refresh_token
        return doc

    def _grant_tokens(
        self,
        scopes: list[str],
        client: AuthClient,
        identity: Identity,
        grant: str,
        *,
        refresh: bool,
        state: str | None = None,
    ) -> dict[str, object]:
        """Tokens for ``scopes`` grouped per resource server, in Globus Auth's shape."""
        groups: dict[str, list[str]] = {}
        for s in scopes:
            groups.setdefault(resource_server_for(s), []).append(s)
        order = sorted(groups, key=lambda rs: rs != AUTH_RESOURCE_SERVER)  # auth first
        docs = []
        for rs in order:
            rt = None
            if refresh:
                rt = secrets.token_urlsafe(40)
                with self._lock:
                    self.refresh_tokens[rt] = RefreshRecord(
                        rt, rs, groups[rs], client.client_id, identity.id
                    )
            rec = self._new_access_token(
                rs, groups[rs], client.client_id, identity.id, grant, refresh_token=rt
            )
            docs.append(self._token_doc(rec))
        top = docs[0]
        if "openid" in scopes:
            top["id_token"] = self._id_token(identity, client.client_id, scopes)
        if state is not None:
            top["state"] = state
        top["other_tokens"] = docs[1:]
        return top

    def _id_token(self, identity: Identity, client_id: str, scopes: list[str]) -> str:
        now = int(time.time())
        claims: dict[str, object] = {
            "sub": identity.id,
            "iss": self.issuer,
            "aud": client_id,
            "iat": now,
            "exp": now + int(self.access_token_lifetime),
            "nbf": now,
            "organization": identity.organization,
            "name": identity.name,
            "preferred_username": identity.username,
            "identity_provider": identity.identity_provider,
            "identity_provider_display_name": identity.identity_provider_display_name,
            "email": identity.email,
            "last_authentication": now,
            "at_hash": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("="),
        }
        if f"{_URN_PREFIX}auth.globus.org:view_identity_set" in scopes:
            claims["identity_set"] = [self._userinfo_doc(identity, False)]
        return jwt.encode(claims, self._key, algorithm="RS512", headers={"kid": self._kid})

    def _revoke_refresh(self, rec: RefreshRecord) -> None:
        rec.revoked = True
        for at in rec.access_tokens:
            tok = self.tokens.get(at)
            if tok is not None:
                tok.revoked = True

    def _userinfo_doc(self, identity: Identity, with_set: bool) -> dict[str, object]:
        doc: dict[str, object] = {
            "sub": identity.id,
            "preferred_username": identity.username,
            "name": identity.name,
            "email": identity.email,
            "organization": identity.organization,
            "identity_provider": identity.identity_provider,
            "identity_provider_display_name": identity.identity_provider_display_name,
            "last_authentication": int(time.time()),
        }
        if with_set:
            doc["identity_set"] = [self._userinfo_doc(identity, False)]
        return doc

    @property
    def issuer(self) -> str:
        return self.base_url.rstrip("/")

    # --------------------------------------------------------------------- routes

    def _token(self, request: Request) -> Response:
        form = request.form()
        client = self._authenticate_client(request, form)
        grant = form.get("grant_type")
        if grant == "client_credentials":
            body = self._client_credentials(client, form)
        elif grant == "authorization_code":
            body = self._authorization_code(client, form)
        elif grant == "refresh_token":
            body = self._refresh(client, form)
        else:
            raise _oauth_error(400, "unsupported_grant_type", f"Unsupported grant_type {grant}")
        with self._lock:
            self.grants[grant] += 1
        return Response.json(body)

    def _client_credentials(self, client: AuthClient, form: dict[str, str]) -> dict[str, object]:
        if not client.confidential or client.identity is None:
            raise _oauth_error(401, "unauthorized_client", "Native clients cannot do this")
        scopes = split_scopes(form.get("scope", ""))
        if not scopes:
            raise _oauth_error(400, "invalid_scope", "No scopes requested")
        return self._grant_tokens(
            scopes, client, client.identity, "client_credentials", refresh=False
        )

    def _authorization_code(self, client: AuthClient, form: dict[str, str]) -> dict[str, object]:
        with self._lock:
            code = self.codes.get(form.get("code", ""))
            if code is None or code.used or time.time() > code.expires_at:
                raise _oauth_error(401, "invalid_grant", "Invalid or expired authorization code")
            if code.client_id != client.client_id:
                raise _oauth_error(401, "invalid_grant", "Code was issued to another client")
            if code.redirect_uri is not None and form.get("redirect_uri") != code.redirect_uri:
                raise _oauth_error(401, "invalid_grant", "redirect_uri mismatch")
            if code.code_challenge is not None:
                verifier = form.get("code_verifier", "")
                if code.code_challenge_method == "S256":
                    digest = hashlib.sha256(verifier.encode()).digest()
                    computed = base64.urlsafe_b64encode(digest).decode().rstrip("=")
                else:
                    computed = verifier
                if computed != code.code_challenge:
                    raise _oauth_error(401, "invalid_grant", "PKCE verification failed")
            code.used = True
        identity = self.identities[code.identity_id]
        return self._grant_tokens(
            code.scopes,
            client,
            identity,
            "authorization_code",
            refresh=code.access_type == "offline",
            state=code.state or "_default",
        )

    def _refresh(self, client: AuthClient, form: dict[str, str]) -> dict[str, object]:
        with self._lock:
            rec = self.refresh_tokens.get(form.get("refresh_token", ""))
            if rec is None or rec.revoked or rec.client_id != client.client_id:
                raise _oauth_error(401, "invalid_grant", "Invalid refresh token")
        tok = self._new_access_token(
            rec.resource_server,
            rec.scopes,
            client.client_id,
            rec.identity_id,
            "refresh_token",
            refresh_token=rec.refresh_token,
        )
        doc = self._token_doc(tok)
        doc["other_tokens"] = []
        return doc

    def _introspect(self, request: Request) -> Response:
        form = request.form()
        self._authenticate_client(request, form)
        tok = self.token(form.get("token"))
        if tok is None or not tok.active:
            return Response.json({"active": False})
        ident = self.identities.get(tok.identity_id)
        doc: dict[str, object] = {
            "active": True,
            "token_type": "Bearer",
            "scope": tok.scope,
            "client_id": tok.client_id,
            "sub": tok.identity_id,
            "username": ident.username if ident else None,
            "name": ident.name if ident else None,
            "email": ident.email if ident else None,
            "exp": int(tok.expires_at),
            "iat": int(tok.issued_at),
            "nbf": int(tok.issued_at),
            "aud": [tok.resource_server, tok.client_id],
            "iss": self.issuer,
        }
        if "identity_set" in (form.get("include") or "") and ident:
            doc["identity_set"] = [ident.id]
        return Response.json(doc)

    def _revoke(self, request: Request) -> Response:
        form = request.form()
        self._authenticate_client(request, form)
        token = form.get("token", "")
        with self._lock:
            if token in self.refresh_tokens:
                self._revoke_refresh(self.refresh_tokens[token])
            elif token in self.tokens:
                self.tokens[token].revoked = True
        return Response.json({"active": False})

    def _bearer(self, request: Request) -> TokenRecord:
        tok = self.token(request.bearer_token)
        if tok is None or not tok.active:
            raise HTTPError(401, "UNAUTHORIZED", "Call must be authenticated")
        return tok

    def _userinfo(self, request: Request) -> Response:
        tok = self._bearer(request)
        if tok.resource_server != AUTH_RESOURCE_SERVER or "openid" not in tok.scopes:
            raise HTTPError(403, "FORBIDDEN", "The token lacks the openid scope")
        with_set = f"{_URN_PREFIX}auth.globus.org:view_identity_set" in tok.scopes
        return Response.json(self._userinfo_doc(self.identities[tok.identity_id], with_set))

    def _identities(self, request: Request) -> Response:
        basic = request.basic_credentials
        if basic is not None:
            self._authenticate_client(request, {})
        else:
            self._bearer(request)
        ids = {i for v in request.query.get("ids", []) for i in v.split(",") if i}
        names = {n for v in request.query.get("usernames", []) for n in v.split(",") if n}
        with self._lock:
            found = [
                i.document() for i in self.identities.values() if i.id in ids or i.username in names
            ]
        return Response.json({"identities": found})

    def _authorize(self, request: Request) -> Response:
        q = {k: v[0] for k, v in request.query.items()}
        try:
            code = self.issue_auth_code(
                q.get("client_id", ""),
                scopes=q.get("scope", ""),
                redirect_uri=q.get("redirect_uri"),
                code_challenge=q.get("code_challenge"),
                code_challenge_method=q.get("code_challenge_method", "S256"),
                access_type=q.get("access_type", "online"),
                state=q.get("state"),
            )
        except ValueError as e:
            return Response.html(f"<h1>Error</h1><p>{e}</p>", 400)
        target = q.get("redirect_uri") or f"{self.issuer}/v2/web/auth-code"
        params = {"code": code, **({"state": q["state"]} if "state" in q else {})}
        sep = "&" if "?" in target else "?"
        return Response(302, b"", {"Location": f"{target}{sep}{urlencode(params)}"})

    def _auth_code_page(self, request: Request) -> Response:
        code = request.arg("code", "") or ""
        page = (
            "<html><body><p>Native App Authorization Code</p>"
            f'<pre id="code">{code}</pre></body></html>'
        )
        return Response.html(page)

    def _openid_configuration(self, request: Request) -> Response:
        base = self.issuer
        return Response.json(
            {
                "issuer": base,
                "authorization_endpoint": f"{base}/v2/oauth2/authorize",
                "token_endpoint": f"{base}/v2/oauth2/token",
                "userinfo_endpoint": f"{base}/v2/oauth2/userinfo",
                "revocation_endpoint": f"{base}/v2/oauth2/token/revoke",
                "jwks_uri": f"{base}/jwk.json",
                "response_types_supported": ["code"],
                "id_token_signing_alg_values_supported": ["RS512"],
                "scopes_supported": ["openid", "email", "profile"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                "claims_supported": [
                    "at_hash",
                    "aud",
                    "email",
                    "exp",
                    "name",
                    "nonce",
                    "preferred_username",
                    "iat",
                    "iss",
                    "sub",
                ],
                "subject_types_supported": ["public"],
            }
        )

    def _jwks(self, request: Request) -> Response:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key()))
        jwk.update({"alg": "RS512", "use": "sig", "kid": self._kid})
        return Response.json({"keys": [jwk]})
