"""The owner key: proof that a client runs as the daemon's own user.

gRPC Python cannot see a caller's uid, and with ``--group`` other users may
connect. Some calls act on what every client shares (Logout ends the Globus
login they all use), so they are allowed only to whoever can read a file that
only the daemon's user (and root) can: the daemon writes a random key to
``<state dir>/owner.key`` (0600, in the 0700 state directory) at each start,
and such calls must carry it as ``gcgate-owner-key`` metadata. The key is
compared in constant time and never logged or answered.
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from gcgate.constants import OWNER_KEY_FILE, OWNER_KEY_METADATA


def create_owner_key(state_dir: Path) -> str:
    """Write a new key to ``state_dir``'s owner-key file (0600) and return it; a
    key of an earlier start stops working."""
    key = secrets.token_urlsafe(32)
    path = state_dir / OWNER_KEY_FILE
    partial = path.with_name(f".{OWNER_KEY_FILE}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, key.encode())
    finally:
        os.close(fd)
    os.replace(partial, path)
    return key


def is_owner(metadata: Iterable[tuple[str, str | bytes]] | None, key: str) -> bool:
    """Whether a call's metadata carries ``key``."""
    for name, value in metadata or ():
        if name == OWNER_KEY_METADATA and isinstance(value, str):
            return hmac.compare_digest(value.encode(), key.encode())
    return False
