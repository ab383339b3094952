"""``gcgated --check-config``: what a start would refuse, found without starting.

A start reads the settings, loads the service-account credentials, makes the
state and socket directories private and takes their locks. This module asks
the same questions of a loaded :class:`~gcgated.config.Config` and creates or
changes nothing, so it can run beside a running daemon (before ``systemctl
reload``) or as ``ExecStartPre=``. Locks are not checked: a running daemon
holds them, and that is no fault of the configuration.
"""

from __future__ import annotations

import os
from pathlib import Path

from gcgated.config import Config
from gcgated.credentials import load_client_credentials
from gcgated.daemon import check_private_dir, group_name
from gcgated.errors import StartupError
from gcgated.metrics_listener import parse_listen


def problems(config: Config) -> list[str]:
    """Every reason a start with ``config`` would fail, each a sentence to act on."""
    found: list[str] = []
    try:
        load_client_credentials(config)
    except StartupError as exc:
        found.append(str(exc))
    gid = config.group_id
    socket_path = config.socket_path.absolute()
    for path, what, group in (
        (config.state_dir, "state directory", None),
        (socket_path.parent, "socket directory", gid),
    ):
        found.extend(_directory_problems(path, what, group))
    if os.path.lexists(socket_path) and not socket_path.is_socket():
        found.append(
            f"{socket_path} exists and is not a socket; a start would refuse to replace it"
        )
    found.extend(_metrics_socket_problems(config))
    if gid is not None and os.getuid() != 0 and gid not in (os.getgid(), *os.getgroups()):
        found.append(
            f"this user (uid {os.getuid()}) is not a member of group {group_name(gid)}, so the"
            " daemon could not give the socket to it; under gcgated.service the unit's Group="
            " must be that group"
        )
    return found


def _directory_problems(path: Path, what: str, gid: int | None) -> list[str]:
    """Why ``path`` could not become the daemon's private directory, if it could not."""
    if path.is_dir():
        try:
            check_private_dir(path, gid)
        except StartupError as exc:
            return [f"{what}: {exc}"]
        return []
    if path.exists() or path.is_symlink():
        return [f"{what} {path} exists and is not a directory"]
    parent = next(p for p in path.parents if p.exists())
    if not parent.is_dir():
        return [f"{what} {path} cannot be created: {parent} is not a directory"]
    if not os.access(parent, os.W_OK | os.X_OK):
        return [f"{what} {path} cannot be created: this user may not create anything in {parent}"]
    return []


def _metrics_socket_problems(config: Config) -> list[str]:
    """What a start would refuse about a ``metrics_listen = "unix:/path"`` socket
    (gcgated.metrics_listener): a missing directory, or another kind of file at the
    path. Whether another process listens there is left to the start: it may be
    the running daemon itself."""
    if not config.metrics_listen:
        return []
    path = parse_listen(config.metrics_listen).path
    if path is None:
        return []
    if not path.parent.is_dir():
        return [f"metrics_listen: the directory of {path} does not exist; create it first"]
    if os.path.lexists(path) and not path.is_socket():
        return [f"metrics_listen: {path} exists and is not a socket; a start would not replace it"]
    return []
