"""Home task groups: the service task group a caller's submissions join.

Globus Compute pushes the results of a task group, submitted with
``"create_queue": true``, to one AMQP queue (``queue_prefix + task_group_id``),
so the fewer groups the daemon's tasks are spread over, the fewer queues it
consumes. A submit without a task group makes the service create one; the
first group a caller gets that way becomes its *home* group, which its later
submits without a task group of the client's name again:

- the daemon's login: one per Globus identity, kept in the :mod:`.ledger`
  (``h:<identity>``), so it outlives restarts;
- a client's own token: one per token, in memory only, like the token.

A task group the client named passes through untouched and never becomes a
home group. When the service no longer knows a home group it refuses the
whole submit (``TASK_GROUP_NOT_FOUND``: nothing ran); the pipeline then
forgets it (:meth:`HomeGroups.forget`) and submits once more without one.
"""

from __future__ import annotations

from collections.abc import Callable

from gcgated.caller import Caller

from .ledger import Ledger


class HomeGroups:
    """Each caller's home task group (see the module doc)."""

    def __init__(self, ledger: Ledger, identity: Callable[[Caller], str]) -> None:
        self._ledger = ledger
        #: Whom the daemon's login acts as (its home group is per identity).
        self._identity = identity
        #: Client tokens' home groups, by token fingerprint.
        self._tokens: dict[str, str] = {}

    def get(self, caller: Caller) -> str:
        """``caller``'s home group, "" while it has none."""
        if caller.token is None:
            return self._ledger.home_group(self._identity(caller))
        return self._tokens.get(caller.key, "")

    def keep(self, caller: Caller, group: str) -> None:
        """A group the service made for ``caller``: its home, unless it has one
        (two first submits in flight at once each get a group; the first stays)."""
        if self.get(caller):
            return
        if caller.token is None:
            self._ledger.set_home_group(self._identity(caller), group)
        else:
            self._tokens[caller.key] = group

    def forget(self, caller: Caller, group: str) -> None:
        """The service no longer knows ``group``: ``caller`` needs a new home
        (unless another submit already found it one)."""
        if self.get(caller) != group:
            return
        if caller.token is None:
            self._ledger.forget_home_group(self._identity(caller))
        else:
            del self._tokens[caller.key]
