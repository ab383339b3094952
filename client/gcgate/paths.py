"""Where the daemon's socket lives, as both the daemon and its clients see it.

Kept in the client package (stdlib only) so a thin client finds the daemon
without importing any daemon dependency.
"""

from __future__ import annotations

import os
from pathlib import Path

from gcgate.constants import SOCKET_ENV

#: Socket of the system-wide service (systemd ``RuntimeDirectory=gcgate``).
SYSTEM_SOCKET = Path("/run/gcgate/gcgate.sock")


def user_socket_path() -> Path:
    """The per-user default: ``$XDG_RUNTIME_DIR/gcgate/gcgate.sock``.

    Without ``XDG_RUNTIME_DIR`` (root in a container, cron) fall back to a
    per-uid directory under /tmp; the daemon verifies it owns that directory
    and that nobody else can write to it before binding there.
    """
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) if runtime else Path("/tmp") / f"gcgate-{os.getuid()}"
    return (base / "gcgate" / "gcgate.sock") if runtime else (base / "gcgate.sock")


def daemon_socket_path() -> Path:
    """The socket a daemon binds when no ``--socket`` flag is given."""
    if env := os.environ.get(SOCKET_ENV):
        return Path(env)
    if runtime_dir := os.environ.get("RUNTIME_DIRECTORY"):  # set by systemd
        return Path(runtime_dir.split(":")[0]) / "gcgate.sock"
    return user_socket_path()


def client_socket_path() -> Path:
    """The socket a client connects to when none is given.

    ``GCGATE_SOCKET`` wins; else the user's own daemon; else the system
    service's socket if one exists.
    """
    if env := os.environ.get(SOCKET_ENV):
        return Path(env)
    user = user_socket_path()
    if not user.exists() and SYSTEM_SOCKET.exists():
        return SYSTEM_SOCKET
    return user
