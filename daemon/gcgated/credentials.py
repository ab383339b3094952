"""Service-account credentials: a Globus client id and its secret.

Sources, first match wins for each of the two values:

1. ``$CREDENTIALS_DIRECTORY/client_id`` and ``.../client_secret``: systemd's
   ``LoadCredential=`` (the secret never passes through the environment or argv);
   an empty file counts as absent, so a unit can default to empty credentials;
2. ``GLOBUS_COMPUTE_CLIENT_ID`` / ``GLOBUS_COMPUTE_CLIENT_SECRET`` in the
   environment (the Globus Compute SDK's names);
3. ``client_id`` / ``client_secret`` in the daemon's TOML config file.

A file that holds the secret (the credential file, or the config file when it
has ``client_secret``) must not be readable by group or others; the daemon
refuses to start otherwise and says which file and how to fix it.

Once loaded, ``GLOBUS_COMPUTE_CLIENT_SECRET`` and ``CREDENTIALS_DIRECTORY`` are
removed from the daemon's environment, so the local endpoint's worker
processes (started later, with a copy of that environment) never see them.
The secret itself lives in a :class:`Secret`, whose ``repr``/``str`` is masked,
so logging a config or an exception never prints it.
"""

from __future__ import annotations

import os
import stat
import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gcgated.config import Config
from gcgated.errors import StartupError
from gcgated.secret import Secret

ID_ENV = "GLOBUS_COMPUTE_CLIENT_ID"
SECRET_ENV = "GLOBUS_COMPUTE_CLIENT_SECRET"
#: systemd credential names (``LoadCredential=client_id:...``).
ID_CREDENTIAL, SECRET_CREDENTIAL = "client_id", "client_secret"
#: The environment variables credentials are read from.
CREDENTIAL_ENV = (ID_ENV, SECRET_ENV, "CREDENTIALS_DIRECTORY")
#: Removed from the daemon's environment once credentials are loaded.
SCRUBBED_ENV = (SECRET_ENV, "CREDENTIALS_DIRECTORY")


@dataclass(frozen=True)
class ClientCredentials:
    """A Globus confidential client (service account): its id and secret."""

    client_id: str
    client_secret: Secret
    #: Where each value came from, for the log (never the value itself).
    source: str = ""


def check_private_file(path: Path, what: str) -> None:
    """Refuse a file holding a secret that anyone but its owner and us may read."""
    try:
        info = path.stat()
    except OSError as exc:
        raise StartupError(f"cannot read {what} {path}: {exc.strerror}") from None
    readers = other_readers(path, info)
    if readers:
        acl = " and `setfacl -b " + str(path) + "`" if _acl_entries(path) else ""
        raise StartupError(
            f"{what} {path} is readable by {' and '.join(readers)}"
            f" (mode {stat.filemode(info.st_mode)}); fix it with `chmod 600 {path}`{acl}"
        )


# POSIX ACL xattr layout (linux/posix_acl_xattr.h): a 4-byte version, then
# 8-byte entries (tag u16, perm u16, id u32), little-endian.
_ACL_USER, _ACL_GROUP_OBJ, _ACL_GROUP, _ACL_MASK, _ACL_OTHER = 0x02, 0x04, 0x08, 0x10, 0x20
_READ = 0x4


def _acl_entries(path: Path) -> list[tuple[int, int, int]]:
    try:
        raw = os.getxattr(path, "system.posix_acl_access")
    except OSError:  # no ACL, or a file system without them
        return []
    return [struct.unpack_from("<HHI", raw, offset) for offset in range(4, len(raw) - 7, 8)]


def other_readers(path: Path, info: os.stat_result) -> list[str]:
    """Who, besides the file's owner and this process's user, may read ``path``.

    With an access ACL the group bits of the mode are the ACL's mask, not the
    group's rights: systemd gives a service its credential files through a
    named-user ACL entry (``user:<service uid>:r``, shown as mode 0440), which
    is private to the service and accepted here.
    """
    entries = _acl_entries(path)
    if not entries:
        readers = []
        if info.st_mode & stat.S_IRGRP:
            readers.append("its group")
        if info.st_mode & stat.S_IROTH:
            readers.append("others")
        return readers
    mask = next((perm for tag, perm, _ in entries if tag == _ACL_MASK), 0x7)
    readers = []
    for tag, perm, ident in entries:
        if tag == _ACL_USER and perm & mask & _READ and ident not in (os.getuid(), info.st_uid):
            readers.append(f"user {ident}")
        elif tag == _ACL_GROUP_OBJ and perm & mask & _READ:
            readers.append("its group")
        elif tag == _ACL_GROUP and perm & mask & _READ:
            readers.append(f"group {ident}")
        elif tag == _ACL_OTHER and perm & _READ:
            readers.append("others")
    return readers


def _read(path: Path, what: str) -> str | None:
    """The stripped text of ``path``; None if it does not exist."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise StartupError(f"cannot read {what} {path}: {reason}") from None


Found = tuple[tuple[str, str] | None, tuple[Secret, str] | None]


def _from_credentials_directory(environ: Mapping[str, str]) -> Found:
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None, None
    client_id = secret = None
    id_path = Path(directory) / ID_CREDENTIAL
    if value := _read(id_path, "credential file"):
        client_id = (value, f"credential {id_path}")
    secret_path = Path(directory) / SECRET_CREDENTIAL
    if (value := _read(secret_path, "credential file")) is not None:
        check_private_file(secret_path, "credential file")
        if value:
            secret = (Secret(value), f"credential {secret_path}")
    return client_id, secret


def _from_environment(environ: Mapping[str, str]) -> Found:
    client_id = environ.get(ID_ENV, "").strip()
    secret = environ.get(SECRET_ENV, "").strip()
    return (
        (client_id, f"${ID_ENV}") if client_id else None,
        (Secret(secret), f"${SECRET_ENV}") if secret else None,
    )


def _from_config(config: Config) -> Found:
    where = f"config file {config.config_file}"
    client_id = (config.client_id, where) if config.client_id else None
    secret = None
    if config.client_secret:
        if config.config_file is not None:
            check_private_file(config.config_file, "config file (it holds client_secret)")
        secret = (config.client_secret, where)
    return client_id, secret


def credential_environment() -> dict[str, str]:
    """The credential variables of ``os.environ``, to re-read them after scrubbing (reload)."""
    return {name: os.environ[name] for name in CREDENTIAL_ENV if name in os.environ}


def load_client_credentials(
    config: Config, environ: Mapping[str, str] | None = None
) -> ClientCredentials | None:
    """The service account's credentials, or None when none are configured.

    Reads ``environ`` (default ``os.environ``). Raises :class:`StartupError`
    (never showing the secret) for half a pair, a client id that is not a
    UUID, or a secret file readable by others. Removes the secret's
    environment variable and ``CREDENTIALS_DIRECTORY`` from ``os.environ``
    whatever the outcome.
    """
    env = os.environ if environ is None else environ
    try:
        found = [_from_credentials_directory(env), _from_environment(env), _from_config(config)]
    finally:
        for name in SCRUBBED_ENV:
            os.environ.pop(name, None)
    client_id = next((c for c, _ in found if c is not None), None)
    secret = next((s for _, s in found if s is not None), None)
    if client_id is None and secret is None:
        return None
    if secret is None:
        assert client_id is not None
        raise StartupError(
            f"a client id is configured ({client_id[1]}) but no client secret: provide"
            f" {SECRET_CREDENTIAL} (systemd credential), ${SECRET_ENV} or client_secret"
            " in the config file"
        )
    if client_id is None:
        raise StartupError(
            f"a client secret is configured ({secret[1]}) but no client id: provide"
            f" {ID_CREDENTIAL} (systemd credential), ${ID_ENV} or client_id in the config file"
        )
    try:
        uuid.UUID(client_id[0])
    except ValueError:
        # The value is not shown: a secret pasted into the wrong place must not reach a log.
        raise StartupError(
            f"the client id from {client_id[1]} is not a UUID; a Globus client id looks like"
            " 1b0c4a5e-0000-4f1e-9c2a-6d3f0e8b7a21 (app.globus.org/settings/developers)"
        ) from None
    source = client_id[1] if client_id[1] == secret[1] else f"{client_id[1]}, {secret[1]}"
    return ClientCredentials(client_id=client_id[0], client_secret=secret[0], source=source)
