"""``gcgate endpoints`` and ``gcgate functions``: where tasks can run, and what.

Both are listings a person reads before ``gcgate run``: the endpoints the daemon
can reach (its local one, then Globus's for its login) and the functions
registered with it. Function names are resolved here too, for the commands that
take ``--function NAME`` (``run``, ``tasks``).
"""

from __future__ import annotations

import argparse
import uuid
from typing import Any

from gcgate import Client
from gcgate.cli.argtypes import task_limit
from gcgate.cli.output import CliError, Exit, Output, format_time, table
from gcgate.constants import LOCAL_ENDPOINT_ID

#: Login states in which the daemon lists Globus endpoints (see LoginState).
LOGGED_IN = ("user", "client")
#: How many registrations one name may resolve to for ``tasks --function NAME``
#: (each is one ListTasks call): far more versions than anyone edits a function through.
MAX_NAME_MATCHES = 100


def cell(value: Any) -> str:
    """A table cell: ``-`` for a missing or empty value."""
    return "-" if value in (None, "") else str(value)


# ------------------------------------------------------------------- endpoints


def endpoint_row(doc: dict[str, Any]) -> tuple[str, ...]:
    """ID, name, status, type, owner of an endpoint document (the local endpoint's
    metadata, or an entry of Globus's listing, which has fewer fields)."""
    name = doc.get("display_name") or doc.get("name")
    if doc.get("uuid") == LOCAL_ENDPOINT_ID:
        name = f"local ({name})"
    owner = doc.get("owner") or doc.get("local_user")
    kind = doc.get("endpoint_type") or ("multi-user" if doc.get("multi_user") else None)
    return tuple(map(cell, (doc.get("uuid"), name, doc.get("status"), kind, owner)))


def cmd_endpoints(client: Client, args: argparse.Namespace) -> Output:
    """The daemon's endpoints as a table (or the documents as JSON); without a
    Globus login only the local one, with a hint on stderr how to see the rest."""
    documents = client.get_endpoints(role=args.role)
    rows = [endpoint_row(doc) for doc in documents]
    text = table(("ENDPOINT ID", "NAME", "STATUS", "TYPE", "OWNER"), rows)
    hint = ""
    if client.status()["login"]["state"] not in LOGGED_IN:
        hint = (
            "only the local endpoint: the daemon has no Globus login; `gcgate login` (or a"
            " service account, docs/service.md) lists your Globus Compute endpoints too"
        )
    return Output(text, documents, Exit.OK, hint)


# ------------------------------------------------------------------- functions


def cmd_functions(client: Client, args: argparse.Namespace) -> Output:
    """Registered functions, newest first, as a table or a JSON list."""
    functions = client.list_functions(args.limit, args.name or "", include_deleted=args.all)
    if not functions:
        which = f" named {args.name!r}" if args.name else ""
        return Output(f"no functions{which} registered with this daemon", functions)
    rows = [
        (
            f["function_id"],
            f["function_name"] + (" (deleted)" if f["deleted_at"] else ""),
            format_time(f["registered_at"]),
            "serialized" if f["serialized"] else "source",
            cell(f["description"]),
        )
        for f in functions
    ]
    headers = ("FUNCTION ID", "NAME", "REGISTERED", "CODE", "DESCRIPTION")
    return Output(table(headers, rows), functions)


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def function_ids(client: Client, name_or_id: str, *, runnable: bool) -> list[str]:
    """A function id as given, or the ids registered under a name, newest first
    (``runnable``: not deleted; else deleted ones too, whose tasks stay listed).

    :raises CliError: (exit 5) no function has that name
    """
    if is_uuid(name_or_id):
        return [name_or_id]
    found = client.list_functions(MAX_NAME_MATCHES, name_or_id, include_deleted=not runnable)
    if not found:
        raise CliError(
            f"no function named {name_or_id!r} is registered with this daemon"
            " (`gcgate functions` lists them)",
            Exit.NOT_FOUND,
        )
    return [f["function_id"] for f in found]


def add_catalog_commands(commands: Any, add_command: Any) -> None:
    """Register ``endpoints`` and ``functions`` with gcgate's argument parser."""
    endpoints = add_command(
        commands,
        "endpoints",
        cmd_endpoints,
        "list the endpoints tasks can run on",
        "The daemon's local endpoint (its worker processes), then the Globus Compute\n"
        "endpoints its Globus login sees. --json prints each endpoint's document.\n\n"
        "  gcgate endpoints --role any",
    )
    endpoints.add_argument(
        "--role",
        choices=("owner", "any"),
        help="Globus endpoints you own (the service's default) or any you may use",
    )
    functions = add_command(
        commands,
        "functions",
        cmd_functions,
        "list the functions registered with the daemon",
        "Newest registration first: function id, name, when registered, whether the\n"
        "code is Python source or serialized, description. Registering changed code\n"
        "under the same name adds a function (ids are content addresses).\n\n"
        "  gcgate functions --name stats",
    )
    functions.add_argument("--name", metavar="NAME", help="only functions named NAME")
    functions.add_argument(
        "--limit", type=task_limit, default=100, metavar="N", help="at most N (default 100)"
    )
    functions.add_argument(
        "--all", action="store_true", help="also deleted functions (marked deleted)"
    )


__all__ = ["add_catalog_commands", "cmd_endpoints", "cmd_functions", "function_ids"]
