"""The version checks of ``Client.version_check``.

Two questions, each raising :class:`~gcgate.errors.VersionMismatch`:

- does this client work with its daemon? The contract is ``gcgate.v1``, which
  only grows (new fields and RPCs), so a daemon serves every client of its own
  version or older; a client newer than its daemon may call what the daemon
  lacks (:func:`check_daemon`);
- is an endpoint new enough for the Compute service? What the SDK asks, against
  the service's ``min_ep_version`` (:func:`check_minimum`, the SDK's
  ``compare_versions``).

Versions are PEP 440 strings, compared here without the ``packaging`` library
(the client depends on grpcio, protobuf and dill only): by release number, a
pre-release (``a``, ``b``, ``rc``) before its release, a post-release after it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gcgate.errors import VersionMismatch

_PEP440 = re.compile(
    r"v?(?P<release>\d+(?:\.\d+)*)"
    r"(?:[-_.]?(?P<pre>a|b|rc|alpha|beta|c|pre|preview)[-_.]?(?P<pre_n>\d*))?"
    r"(?:[-_.]?(?:post|rev|r)[-_.]?(?P<post>\d*))?"
    r"(?:[-_.]?(?P<dev>dev)[-_.]?\d*)?"
    r"(?:\+[a-z0-9.]*)?",
    re.IGNORECASE,
)
#: Pre-release spellings by their rank (PEP 440 normalises the long forms).
_PRE_RANK = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "rc": 2, "c": 2, "pre": 2, "preview": 2}


@dataclass(frozen=True)
class Version:
    """A parsed version: ``key`` orders versions, ``release`` is the numbers."""

    text: str
    release: tuple[int, ...]
    key: tuple[tuple[int, ...], int, int, int]
    dev: bool

    @classmethod
    def parse(cls, text: str) -> Version:
        """Raises VersionMismatch for a string that is not a version."""
        found = _PEP440.fullmatch(text.strip())
        if found is None:
            raise VersionMismatch(f"{text!r} is not a version gcgate can compare")
        release = tuple(int(n) for n in found["release"].split("."))
        while len(release) > 1 and release[-1] == 0:
            release = release[:-1]
        pre = found["pre"]
        pre_key = (_PRE_RANK[pre.lower()], int(found["pre_n"] or 0)) if pre else (3, 0)
        post = -1 if found["post"] is None else int(found["post"] or 0)
        return cls(text, release, (release, *pre_key, post), found["dev"] is not None)


def check_minimum(current: str, minimum: str, *, package_name: str) -> None:
    """The SDK's ``compare_versions``: ``current`` must not be older than
    ``minimum``; development releases are not checked (as the SDK)."""
    have, need = Version.parse(current), Version.parse(minimum)
    if have.dev or (need.dev and have.release == need.release):
        return
    if have.key < need.key:
        raise VersionMismatch(
            f"Your version={current} is lower than the minimum version for"
            f" {package_name}: {minimum}.  Please update. pip install {package_name}>={minimum}"
        )


def check_daemon(client_version: str, daemon_version: str, socket_path: object) -> None:
    """This client (``client_version``) must not be newer than its daemon: the
    daemon may lack the RPCs and fields the client uses."""
    client, daemon = Version.parse(client_version), Version.parse(daemon_version)
    if client.release > daemon.release:
        raise VersionMismatch(
            f"this gcgate client is version {client_version}, newer than the gcgate daemon"
            f" at {socket_path} ({daemon_version}), which may lack calls it makes: upgrade"
            f" gcgated to {client_version} or later, or use gcgate {daemon_version}"
        )
