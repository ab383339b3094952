"""The daemon's own Globus login, brokered for every client of the host."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gcgated.backends.globus import GlobusBackend
from gcgated.backends.globus.auth import LOGIN_TIMEOUT


@dataclass(frozen=True)
class LoginStart:
    """A native-app login waiting for the user's authorization code."""

    login_id: str
    authorize_url: str
    #: How long the daemon keeps the login open for CompleteLogin.
    expires_in_seconds: float


class LoginService:
    """Start, complete and end the daemon's user login; say who is logged in.

    Who-am-I answers are dicts with ``state``, ``identity`` and, for a user login,
    ``username``, ``name`` and ``email``.
    """

    def __init__(self, remote: GlobusBackend) -> None:
        self._remote = remote

    async def start(self, force: bool) -> LoginStart:
        login_id, url = await self._remote.start_login(force)
        return LoginStart(login_id, url, LOGIN_TIMEOUT)

    async def complete(self, login_id: str, auth_code: str) -> dict[str, Any]:
        await self._remote.complete_login(login_id, auth_code)
        return self._remote.whoami()

    async def logout(self) -> dict[str, Any]:
        await self._remote.logout()
        return self._remote.whoami()

    def whoami(self) -> dict[str, Any]:
        return self._remote.whoami()
