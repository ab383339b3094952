"""The result-reuse index: which stored task holds the result of an identical task.

A submission with ``reuse_results`` asks whether a task that is identical in
everything that decides what runs (:func:`reuse_key`) succeeded before; if so it
is answered from the store instead of running again. The index maps each such
key to the id of a task whose record holds that result; it is a table of the
store's one database (``reuse``), written in the transactions of the task
records it points at, so it never names a task that was not committed.

It is only a hint. A task record can go while its index entry stays (its
retention ran out after it was read, or it was forgotten or purged through the
store), so a lookup reads the record itself and uses it only if it is there
and successful; an entry whose record is gone is dropped then (lazily: nothing
that deletes task records needs to know about this table).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gcgate.constants import TaskStatus

from .table import Table

#: The store's table of ``reuse key -> task id``.
REUSE_TABLE = "reuse"
#: Changes when what a key covers changes, so old entries simply stop matching.
KEY_VERSION = 1


def reuse_keys(
    payloads: Sequence[str],
    *,
    endpoint_id: str,
    function_id: str,
    result_serializers: Sequence[str],
    resource_specification: Mapping[str, Any] | None,
    user_endpoint_config: Mapping[str, Any] | None,
    caller_key: str,
) -> list[str]:
    """The reuse key of each of ``payloads``: a SHA-256 of everything that decides
    what runs and what comes back.

    The payload is taken byte for byte as sent (the daemon never decodes it), the
    function id is the content address of the function's code and metadata, and
    the options that change how it runs or how its result is serialized count as
    JSON values (key order does not matter). ``caller_key`` keeps a client that
    passes its own Globus token from reusing results of other identities (the
    daemon's own login is ""). The task group and the submitter's runtime
    description do not count: they do not change what the task computes.
    """
    document = {
        "v": KEY_VERSION,
        "endpoint_id": endpoint_id,
        "function_id": function_id,
        "result_serializers": list(result_serializers),
        "resource_specification": resource_specification or None,
        "user_endpoint_config": user_endpoint_config or None,
        "caller": caller_key,
    }
    # What the tasks share is hashed once; then each payload after a newline,
    # which the JSON text never holds, so no two inputs hash the same text.
    shared = hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode())
    shared.update(b"\n")
    keys = []
    for payload in payloads:
        digest = shared.copy()
        digest.update(payload.encode())
        keys.append(digest.hexdigest())
    return keys


class ReuseIndex:
    """``reuse key -> task id`` over the store's ``reuse`` table (see the module doc)."""

    def __init__(
        self, index: Table, kept: Callable[[list[str]], dict[str, dict[str, Any]]]
    ) -> None:
        """``kept``: the task records of those ids the store still keeps (a result
        retrieved longer ago than the retention now allows is not), read without
        starting a retention clock."""
        self._index = index
        self._kept = kept

    def lookup(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored successful task record for each of ``keys`` that has one.

        Entries whose task record is gone or not a success are deleted now (one
        transaction, only when there are any). Reading a record here does not
        start its retention clock: that is for a client reading its result.
        """
        pointers: dict[str, str] = self._index.get_many(list(dict.fromkeys(keys)))
        if not pointers:
            return {}
        records = self._kept(list(set(pointers.values())))
        found: dict[str, dict[str, Any]] = {}
        stale: list[str] = []
        for key, task_id in pointers.items():
            record = records.get(task_id)
            if (
                record is not None
                and record.get("status") == TaskStatus.SUCCESS
                and isinstance(record.get("result"), str)
            ):
                found[key] = record
            else:
                stale.append(key)
        if stale:
            self._index.delete_many(stale)
        return found

    def point(self, entries: Sequence[tuple[str, str]]) -> None:
        """Point each ``(key, task id)`` at that task (part of the caller's transaction)."""
        self._index.set_many(entries)

    def __len__(self) -> int:
        return len(self._index)
