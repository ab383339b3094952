"""``gcgate login``, ``logout`` and ``whoami``: the daemon's Globus login.

The daemon holds the login; these commands only relay. ``login`` asks the
daemon to start a native-app login (StartLogin), shows the URL, reads the code
Globus Auth shows after logging in and hands it back (CompleteLogin). The
prompts go to stderr, so ``--json`` output on stdout stays machine-readable.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gcgate import Client
from gcgate.cli.output import Exit, Output
from gcgate.client import owner_key_metadata
from gcgate.v1 import gateway_pb2 as pb

#: Seconds to wait for the daemon to exchange the code (it talks to Globus Auth).
EXCHANGE_TIMEOUT_S = 120.0


def who_dict(answer: pb.WhoAmIResponse) -> dict[str, Any]:
    return {
        "state": answer.login.state,
        "identity": answer.login.identity,
        "username": answer.username,
        "name": answer.name,
        "email": answer.email,
    }


def describe_who(who: dict[str, Any]) -> str:
    if who["state"] == "user":
        name = f" ({who['name']})" if who["name"] else ""
        return f"user {who['username'] or who['identity']}{name}, identity {who['identity']}"
    if who["state"] == "client":
        return f"service account (client) {who['identity']}"
    if who["state"] == "logged_out":
        return "not logged in (run `gcgate login`)"
    return "no Globus login configured"


def _call(
    client: Client,
    method: str,
    request: Any,
    timeout: float = 30.0,
    metadata: list[tuple[str, str]] | None = None,
) -> Any:
    conn = client._conn
    return conn.call(getattr(conn.stub, method), request, timeout=timeout, metadata=metadata or ())


def read_code(prompt: str) -> str:
    sys.stderr.write(prompt)
    sys.stderr.flush()
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.strip()


def cmd_login(client: Client, args: argparse.Namespace) -> Output:
    """Log the daemon in to Globus as the person running this command."""
    started = _call(client, "StartLogin", pb.StartLoginRequest(force=args.force))
    banner = "Please authenticate with Globus here:"
    print(
        f"{banner}\n{'-' * len(banner)}\n{started.authorize_url}\n{'-' * len(banner)}\n",
        file=sys.stderr,
    )
    try:
        code = read_code("Enter the resulting Authorization Code here: ")
    except EOFError:
        return Output("", None, Exit.FAILED, "no code entered; not logged in")
    answer = _call(
        client,
        "CompleteLogin",
        pb.CompleteLoginRequest(login_id=started.login_id, auth_code=code),
        timeout=EXCHANGE_TIMEOUT_S,
    )
    who = who_dict(answer)
    return Output(f"gcgated is logged in as {describe_who(who)}", who)


def cmd_logout(client: Client, args: argparse.Namespace) -> Output:
    """Revoke and delete the daemon's user login (only its own user may: the call
    carries the daemon's owner key, see Client.logout)."""
    before = who_dict(_call(client, "WhoAmI", pb.WhoAmIRequest()))
    key = owner_key_metadata(client.status()["state_dir"])
    answer = _call(client, "Logout", pb.LogoutRequest(), EXCHANGE_TIMEOUT_S, key)
    who = who_dict(answer)
    if before["state"] == "user":
        text = f"logged out {before['username'] or before['identity']}; tokens revoked"
    else:
        text = "was not logged in"
    return Output(text, {"was": before, "now": who})


def cmd_whoami(client: Client, args: argparse.Namespace) -> Output:
    """Who the daemon acts as at Globus."""
    who = who_dict(_call(client, "WhoAmI", pb.WhoAmIRequest()))
    return Output(describe_who(who), who)


def add_login_commands(commands: Any, add_command: Any) -> None:
    """Register login, logout and whoami with gcgate's argument parser."""
    login = add_command(
        commands,
        "login",
        cmd_login,
        "log the daemon in to Globus",
        "Prints a Globus Auth URL: open it, log in, and paste the code it shows.\n"
        "The daemon keeps the tokens (refreshed silently) for every client on this\n"
        "machine. Not available when the daemon uses a service account.",
    )
    login.add_argument(
        "--force",
        action="store_true",
        help="log in again even if logged in (possibly as someone else)",
    )
    add_command(
        commands,
        "logout",
        cmd_logout,
        "log the daemon out of Globus",
        "Revokes the user login's tokens at Globus Auth and deletes them. Every client\n"
        "of the daemon uses that login, so only the daemon's own user may end it (the\n"
        "command sends the owner key from the daemon's state directory).",
    )
    add_command(
        commands,
        "whoami",
        cmd_whoami,
        "show who the daemon is logged in to Globus as",
        "A user (username, identity id), a service account (client id), or nobody.",
    )
