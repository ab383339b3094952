"""``gcgate``: the user's command line for a running gcgate daemon.

Commands: ``status`` (is the daemon up, and how is it doing), ``metrics`` (its
Prometheus metrics, see :mod:`gcgate.cli.metrics`), ``result`` (one
task's result or failure), ``wait`` (a progress bar until tasks finish),
``tasks`` (recent tasks, status in colour, by function, endpoint and time),
``cancel`` (stop unfinished tasks), ``cache`` (result store usage), ``forget``
and ``purge`` (remove results from the store), ``register-source``, ``run`` and
``batch`` (run a function from the shell, JSON in and out; :mod:`.submit`,
:mod:`.run`), ``endpoints`` and ``functions`` (what the daemon offers;
:mod:`.catalog`), ``login``/``logout``/``whoami`` (:mod:`.login`) and
``completion`` (a shell completion script). Every command talks to the
daemon only through the thin client :class:`gcgate.Client`, exactly like user
code does, so what the CLI shows is what a program would see. ``--json``
switches any command to machine-readable output on stdout; messages about
errors always go to stderr as plain text. Colours and the progress bar appear
only on a terminal (see :mod:`gcgate.cli.output`).

Exit codes, so scripts can branch without parsing text:

  0  success (``wait``/``batch``: every task succeeded)
  1  a task failed (its remote traceback, or for ``wait``/``batch`` its error
     line, is on stderr; a failure outranks tasks still pending), its result
     cannot be deserialized here, or another error
  2  usage error (bad command line, no task ids)
  3  the daemon is not reachable (the message names the socket and how to start it);
     a daemon that cannot reach Globus is exit 1
  4  a task is still pending (``result --wait``, ``wait``/``batch --timeout``)
  5  not found (unknown task or function id, no metric matching ``--match``) or
     invalid input (a malformed id, a bad ``batch`` input line, source that does
     not define the function)
  130  interrupted (Ctrl-C; tasks keep running in the daemon)
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import shtab

from gcgate import Client, __version__
from gcgate.cli.argtypes import duration, input_file, seconds, since, task_limit
from gcgate.cli.catalog import LOGGED_IN, add_catalog_commands, function_ids
from gcgate.cli.login import add_login_commands
from gcgate.cli.metrics import add_metrics_command
from gcgate.cli.output import (
    CliError,
    Exit,
    Output,
    emit,
    endpoint_label,
    format_time,
    json_value,
    status_style,
    table,
)
from gcgate.cli.run import add_run_command
from gcgate.cli.submit import add_submit_options, cmd_batch, cmd_register_source
from gcgate.cli.waiting import cmd_wait
from gcgate.constants import (
    LOCAL_ENDPOINT_ALIAS,
    LOCAL_ENDPOINT_ID,
    PENDING_FILTER,
    SOCKET_ENV,
    TaskStatus,
)
from gcgate.errors import (
    DaemonUnavailable,
    DeserializationError,
    GcgateError,
    InvalidArgument,
    NotFound,
    TaskCancelled,
    TaskExecutionFailed,
)
from gcgate.paths import client_socket_path

#: The Globus backend's name in Status, and its details that show it in use (see
#: :func:`globus_in_use`).
GLOBUS = "globus"
GLOBUS_ACTIVITY = (
    "in_flight",
    "tasks_submitted",
    "functions_at_globus",
    "waiting_for_client_token",
    "client_token_connections",
    "last_error",
    "login_error",
)
#: Statuses ``tasks --status`` accepts; "pending" matches every unfinished one.
TASK_STATUSES = (PENDING_FILTER, *(status.value for status in TaskStatus))
#: Retry delays while ``status --wait`` waits for a daemon to come up: short at
#: first (a freshly started daemon is usually ready within a second), then capped
#: so a slow start is not kept waiting long after it is ready.
FIRST_RETRY_DELAY_S, MAX_RETRY_DELAY_S = 0.05, 0.5

EPILOG = f"""\
The daemon's socket is --socket, else ${SOCKET_ENV}, else your own daemon's
default socket, else the system service's. Start a daemon with `gcgated`.
The local endpoint {LOCAL_ENDPOINT_ID} is shown as "{LOCAL_ENDPOINT_ALIAS}".

exit codes:
  0  success (wait, batch: every task succeeded)
  1  a task failed (its error on stderr), or another error
  2  usage error
  3  the daemon is not reachable
  4  a task is still pending (result --wait, wait/batch --timeout)
  5  not found (unknown task or function id) or invalid input (malformed id,
     bad batch input line)
  130  interrupted (the tasks keep running)
"""


# ------------------------------------------------------------------- formatting


def format_duration(seconds: float) -> str:
    """``3d 4h``, ``2h 05m``, ``5m 12s``, ``12s``: the two largest units are plenty."""
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def format_bytes(size: float) -> str:
    """Binary units (``112.0 KiB``), as ``du -h`` users expect."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def usage_percent(store: dict[str, Any]) -> float | None:
    """How full the store is, in percent; None when it has no limit."""
    limit = store["size_limit_bytes"]
    return round(100.0 * store["size_bytes"] / limit, 1) if limit > 0 else None


def key_value_block(rows: Sequence[tuple[str, str]]) -> str:
    """``key  value`` lines with the values aligned; multi-line values stay aligned."""
    width = max(len(key) for key, _ in rows)
    lines = []
    for key, value in rows:
        first, *rest = value.splitlines() or [""]
        lines.append(f"  {key:<{width}}  {first}".rstrip())
        lines.extend(f"  {'':<{width}}  {line}" for line in rest)
    return "\n".join(lines)


# --------------------------------------------------------------------- commands


def describe_backend(backend: dict[str, Any]) -> str:
    """``local: ready, workers=2 running=0 queued=0 (endpoint ...)``.

    Details are shown generically as key=value, since each backend reports its own
    (the local one: workers and queue; a remote one: whatever it knows). Only
    plain values that say something: nested documents (login, rate budget) and
    empty ones are left to ``--json`` (the login has its own line).
    """
    details = backend.get("details") or {}
    extras = " ".join(
        f"{k}={v}"
        for k, v in details.items()
        if k not in ("state", "endpoint_id") and isinstance(v, (str, int, float)) and v != ""
    )
    text = f"{backend['name']}: {backend['state']}" + (f", {extras}" if extras else "")
    if backend.get("endpoint_id"):
        text += f" (endpoint {endpoint_label(backend['endpoint_id'])})"
    return text


def describe_push(backend: dict[str, Any]) -> str:
    """How a backend's results arrive, if it says: ``pushed (connected), 1 group;
    polled: <group> (why)``; "" for a backend without a push path."""
    push = (backend.get("details") or {}).get("result_push")
    if not isinstance(push, dict) or push.get("state") in (None, "", "idle"):
        return ""
    if push["state"] == "off":
        return f"{backend['name']}: polled only (result_push = false)"
    text = f"{backend['name']}: pushed ({push['state']})"
    if push.get("groups_pushed"):
        text += f", {push['groups_pushed']} task group(s)"
    if push.get("last_error"):
        text += f"; last error: {push['last_error']}"
    for group, why in (push.get("groups_polled") or {}).items():
        text += f"\npolled instead: task group {group}: {why}"
    return text


def describe_login(login: dict[str, Any]) -> str:
    """``not configured``, ``logged out``, or ``user alice@example.org``."""
    text = login["state"].replace("_", " ")
    return f"{text} {login['identity']}" if login.get("identity") else text


def describe_counts(counts: dict[str, Any]) -> str:
    """``3 pending, 10 succeeded (4 reused), 1 failed, 0 cancelled``; reuse only when
    there was any."""
    reused = f" ({counts['reused']} reused)" if counts.get("reused") else ""
    return (
        f"{counts['pending']} pending, {counts['success']} succeeded{reused},"
        f" {counts['failed']} failed, {counts['cancelled']} cancelled"
    )


def describe_store_usage(store: dict[str, Any]) -> str:
    """``112.0 KiB of 4.0 GiB (0.0%)``: shared by ``status`` and ``cache``."""
    used, percent = format_bytes(store["size_bytes"]), usage_percent(store)
    if percent is None:
        return f"{used} (no limit)"
    return f"{used} of {format_bytes(store['size_limit_bytes'])} ({percent}%)"


def cmd_status(client: Client, args: argparse.Namespace) -> Output:
    """The daemon's health at a glance; ``--json`` gives the client's status() dict.

    Globus gets its lines only where it is in use (logged in, or tasks and
    registrations of its own): a local-only user is not shown a remote service's
    counters. ``--verbose`` shows every backend's details.
    """
    status = client.status()
    header = (
        f"gcgate daemon {status['version']} (pid {status['pid']}), "
        f"up {format_duration(status['uptime_seconds'])}"
    )
    globus = next((b for b in status["backends"] if b["name"] == GLOBUS), None)
    shown = (
        status["backends"] if args.verbose else [b for b in status["backends"] if b is not globus]
    )
    rows = [
        ("socket", status["socket_path"]),
        ("state dir", status["state_dir"]),
        ("backends", "\n".join(map(describe_backend, shown)) or "none"),
    ]
    if globus is not None and (args.verbose or globus_in_use(globus)):
        rows += globus_rows(globus, status["login"])
    rows += [
        ("tasks", describe_counts(status["tasks"])),
        ("store", describe_store_usage(status["store"])),
        *[("reload", line) for line in [describe_reload(status.get("reload") or {})] if line],
    ]
    return Output(f"{header}\n{key_value_block(rows)}", status)


def globus_in_use(backend: dict[str, Any]) -> bool:
    """Whether the Globus backend is in use: a login (user or service account), a
    function registered with Globus from this store, tasks or client tokens in
    this run, or an error to report."""
    details = backend.get("details") or {}
    login = details.get("login") or {}
    return login.get("state") in LOGGED_IN or any(details.get(key) for key in GLOBUS_ACTIVITY)


def globus_rows(backend: dict[str, Any], login: dict[str, Any]) -> list[tuple[str, str]]:
    """Globus in a line or two: state, identity, tasks in flight; how results
    arrive; the last error, if any."""
    details = backend.get("details") or {}
    text = f"{backend['state']}, {describe_login(login)}"
    if details.get("in_flight"):
        text += f", {details['in_flight']} task(s) in flight"
    rows = [("globus", text)]
    push = describe_push(backend)
    if push:
        rows.append(("results", push))
    error = details.get("last_error") or details.get("login_error")
    if error:
        rows.append(("last error", str(error)))
    return rows


def describe_reload(reload: dict[str, Any]) -> str:
    """A failed SIGHUP reload, which the daemon otherwise only logs; "" when none failed."""
    if reload.get("ok", True) or not reload.get("last_reload_at"):
        return ""
    when = format_time(reload["last_reload_at"])
    return (
        f"last reload failed at {when}: {reload['error']}; running with the previous configuration"
    )


def cmd_cache(client: Client, args: argparse.Namespace) -> Output:
    """How much of the result store is used, and by what."""
    status = client.status()
    store, counts = status["store"], status["tasks"]
    data = {**store, "percent_used": usage_percent(store), "tasks": counts}
    rows = [
        ("size", describe_store_usage(store)),
        ("functions", str(store["functions"])),
        ("task records", str(store["task_records"])),
        ("retention", describe_retention(store)),
        ("tasks", describe_counts(counts)),
    ]
    return Output(f"gcgate result store ({status['state_dir']})\n{key_value_block(rows)}", data)


def describe_retention(store: dict[str, Any]) -> str:
    """How long retrieved and unread results are kept, as two lines."""
    days = store["retention_days"]
    retrieved = (
        "retrieved results: dropped once retrieved"
        if days == 0
        else f"retrieved results: {days:g} days after the first retrieval"
    )
    unread_days = store.get("unread_retention_days", math.inf)
    unread = (
        "unread results: until retrieved"
        if math.isinf(unread_days)
        else f"unread results: {unread_days:g} days after they were stored"
    )
    return f"{retrieved}\n{unread}"


def describe_freed(answer: dict[str, Any]) -> str:
    """``freed 1.2 MiB; store now 3.4 MiB`` for a forget or purge answer."""
    freed, size = format_bytes(answer["bytes_freed"]), format_bytes(answer["size_bytes"])
    return f"freed {freed}; store now {size}"


def cmd_forget(client: Client, args: argparse.Namespace) -> Output:
    """Forget tasks by id: records and results deleted now."""
    answer = client.forget_tasks(args.task_ids, in_flight=args.in_flight)
    text = f"forgot {answer['forgotten']} task(s)"
    if answer["in_flight"]:
        text += f" ({answer['in_flight']} in flight: their work was stopped, as a cancel does)"
    text += f", {describe_freed(answer)}"
    if answer["unknown_task_ids"]:
        text += "\nnot in the store: " + " ".join(answer["unknown_task_ids"])
    return Output(text, answer)


def cmd_purge(client: Client, args: argparse.Namespace) -> Output:
    """Delete (or with --dry-run list) the final results matching every filter."""
    filters = (args.older_than, args.status, args.endpoint, args.function, args.task_group)
    if all(f is None for f in filters) and not args.retrieved:
        raise CliError(
            "name at least one filter: --older-than, --status, --endpoint, --function,"
            " --task-group or --retrieved (--older-than 0 matches every final result)",
            Exit.USAGE,
        )
    answer = client.purge_tasks(
        older_than=args.older_than,
        status=args.status or "",
        endpoint_id=args.endpoint,
        function_id=args.function,
        task_group_id=args.task_group,
        retrieved=args.retrieved,
        dry_run=args.dry_run,
    )
    by_status = f"{answer['succeeded']} succeeded, {answer['failed']} failed"
    if args.dry_run:
        text = (
            f"would purge {answer['tasks']} result(s) ({by_status}),"
            f" {format_bytes(answer['record_bytes'])} of records; nothing was deleted"
        )
        if answer["sample_task_ids"]:
            shown = len(answer["sample_task_ids"])
            text += f"\nfirst {shown}:\n  " + "\n  ".join(answer["sample_task_ids"])
    else:
        text = f"purged {answer['tasks']} result(s) ({by_status}), {describe_freed(answer)}"
    return Output(text, answer)


def result_wait(args: argparse.Namespace) -> float:
    """Seconds ``result`` waits: none, ``--timeout``, or with ``--wait`` alone until
    the task is final (the client asks again each time the daemon's per-call cap ends)."""
    if args.timeout is not None:
        return float(args.timeout)
    return math.inf if args.wait else 0.0


def cmd_result(client: Client, args: argparse.Namespace) -> Output:
    """One task's result (exit 0), failure (exit 1) or pending state (exit 4)."""
    data: dict[str, Any] = {"task_id": args.task_id}
    try:
        task = client.get_task(args.task_id, wait=result_wait(args))
    except TaskExecutionFailed as exc:
        data.update(
            status=TaskStatus.FAILED, pending=False, result=None, completion_t=exc.completion_t
        )
        data["exception"] = exc.remote_data
        return Output("", data, Exit.FAILED, f"task {args.task_id} failed:{str(exc).rstrip()}")
    except TaskCancelled as exc:
        data.update(
            status=TaskStatus.CANCELLED, pending=False, result=None, completion_t=exc.completion_t
        )
        data["exception"] = exc.reason
        return Output("", data, Exit.FAILED, str(exc))
    except DeserializationError as exc:
        # Typically a result type whose module is not installed where gcgate runs.
        data.update(status=TaskStatus.SUCCESS, pending=False, result=None, completion_t=None)
        data["exception"] = str(exc)
        message = f"task {args.task_id} succeeded, but its result cannot be read here: {exc.reason}"
        return Output("", data, Exit.FAILED, message)
    data.update(status=task["status"], pending=task["pending"], result=None)
    data["completion_t"] = task.get("completion_t")
    if task.get("reused_from"):
        data["reused_from"] = task["reused_from"]
    if task["pending"]:
        waited = f" after waiting {args.timeout:g} s" if args.timeout else ""
        message = f"task {args.task_id} is still pending ({task['status']}){waited}"
        return Output("", data, Exit.PENDING, message)
    data["result"] = json_value(task["result"])
    return Output(repr(task["result"]), data)


def cmd_cancel(client: Client, args: argparse.Namespace) -> Output:
    """Cancel tasks; per task whether this cancelled it or it was final already
    (exit 0 either way: the tasks are final now). Unknown ids exit 5, cancelling none."""
    answers = client.cancel_tasks(args.task_ids)
    rows = [
        (task_id, "cancelled" if a["cancelled"] else f"already {a['status']}", a["message"])
        for task_id, a in answers.items()
    ]
    styles = [
        [None, status_style(TaskStatus.CANCELLED if a["cancelled"] else a["status"]), None]
        for a in answers.values()
    ]
    return Output(table(("TASK ID", "RESULT", "WHAT HAPPENED"), rows, styles), answers)


def task_summary(task: dict[str, Any]) -> dict[str, Any]:
    """A listed task's JSON-safe fields (``details`` and exceptions are left out,
    but for a Globus task's id at the service, to find it in the Globus web app),
    and ``reused_from`` for a task that reused a stored result."""
    keys = ("task_id", "status", "pending", "function_id", "function_name", "endpoint_id")
    keys += ("task_group_id",)
    summary = {key: task[key] for key in keys}
    summary.update(created_at=task["created_at"], completion_t=task.get("completion_t"))
    globus_task_id = (task.get("details") or {}).get("globus_task_id")
    if globus_task_id:
        summary["globus_task_id"] = globus_task_id
    if task.get("reused_from"):
        summary["reused_from"] = task["reused_from"]
    if task.get("pending_reason"):
        summary["pending_reason"] = task["pending_reason"]
    return summary


def pending_notes(tasks: list[dict[str, Any]]) -> str:
    """Lines after the table saying why each unfinished task waits ("" for none)."""
    notes = [f"  {t['task_id']}: {t['pending_reason']}" for t in tasks if t.get("pending_reason")]
    return "\nwhy pending:\n" + "\n".join(notes) if notes else ""


def cmd_tasks(client: Client, args: argparse.Namespace) -> Output:
    """Recent tasks, newest first, as a table (status in colour on a terminal),
    or a JSON list; every filter given must match."""
    tasks = listed_tasks(client, args)
    data = [task_summary(t) for t in tasks]
    if not tasks:
        return Output("no tasks" + describe_task_filters(args), data)
    rows = [
        (
            t["task_id"],
            f"{t['status']} (reused)" if t.get("reused_from") else t["status"],
            t["function_name"] or t["function_id"],
            endpoint_label(t["endpoint_id"]),
            format_time(t["created_at"]),
            format_time(t.get("completion_t")),
        )
        for t in tasks
    ]
    headers = ("TASK ID", "STATUS", "FUNCTION", "ENDPOINT", "CREATED", "COMPLETED")
    styles = [[None, status_style(t["status"]), None, None, None, None] for t in tasks]
    return Output(table(headers, rows, styles) + pending_notes(tasks), data)


def listed_tasks(client: Client, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The tasks ``gcgate tasks`` shows: newest first, at most ``--limit``. A
    function name may name several registrations (each edit of its code is a new
    function): one listing each, merged."""
    ids = function_ids(client, args.function, runnable=False) if args.function else [None]
    filters = {"status": args.status or "", "endpoint_id": args.endpoint, "since": args.since}
    found = [t for fid in ids for t in client.list_tasks(args.limit, function_id=fid, **filters)]
    if len(ids) > 1:
        found.sort(key=lambda t: t["created_at"], reverse=True)
    return found[: args.limit]


def describe_task_filters(args: argparse.Namespace) -> str:
    """`` with status failed, of function f, on endpoint local, since ...`` for "no tasks"."""
    parts = [
        f" with status {args.status}" if args.status else "",
        f" of function {args.function}" if args.function else "",
        f" on endpoint {args.endpoint}" if args.endpoint else "",
        f" since {format_time(args.since)}" if args.since else "",
    ]
    return ",".join(filter(None, parts))


# ------------------------------------------------------------------ connecting


def connect(socket_path: str | None, wait: float = 0.0) -> Client:
    """A client for the daemon, retrying for up to ``wait`` seconds.

    Retrying the client's own construction (which asks the daemon for its Status)
    means "ready" is exactly "a client can talk to it", whatever stage of start-up
    the daemon is in: no socket yet, socket bound but not serving, or serving.

    :raises DaemonUnavailable: still unreachable when ``wait`` runs out
    """
    deadline = time.monotonic() + wait
    delay = FIRST_RETRY_DELAY_S
    while True:
        try:
            return Client(socket_path=socket_path)
        except DaemonUnavailable:
            if deadline - time.monotonic() <= 0:
                raise
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, MAX_RETRY_DELAY_S)


# ------------------------------------------------------------------ arguments


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """A completion script for ``shell``, generated from the parser by shtab."""
    return shtab.complete(parser, shell=shell)


def add_global_options(parser: argparse.ArgumentParser, *, in_subcommand: bool) -> None:
    """``--socket`` and ``--json``, accepted before and after the command name.

    On subcommands their default is SUPPRESS, so an option given before the
    command is not reset by the subcommand's parser.
    """
    default: dict[str, Any] = {"default": argparse.SUPPRESS} if in_subcommand else {}
    parser.add_argument(
        "--socket",
        metavar="PATH",
        help=f"the daemon's Unix socket (default: ${SOCKET_ENV} or the default socket;"
        f" currently {client_socket_path()})",
        **default,
    ).complete = shtab.FILE  # type: ignore[attr-defined]
    parser.add_argument(
        "--json", action="store_true", help="machine-readable JSON on stdout", **default
    )


Command = Callable[[Client, argparse.Namespace], Output]


def add_command(
    commands: Any, name: str, func: Command | None, summary: str, description: str
) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        name,
        help=summary,
        description=f"{summary}\n\n{description}",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_global_options(parser, in_subcommand=True)
    parser.set_defaults(func=func)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gcgate",
        description="Use a running gcgate daemon from the shell: its status, tasks and\n"
        "results, running functions and waiting for them, and its result store.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gcgate {__version__}")
    add_global_options(parser, in_subcommand=False)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    status = add_command(
        commands,
        "status",
        cmd_status,
        "show the daemon's status",
        "Version, pid, uptime, socket, state dir, the local endpoint's workers, task\n"
        "counts and store usage; and where Globus is in use (a login, or Globus tasks)\n"
        "its state, login, how results arrive and the last error. --verbose shows every\n"
        "backend's counters; --json has everything.",
    )
    status.add_argument(
        "-v", "--verbose", action="store_true", help="every backend's details and counters"
    )
    status.add_argument(
        "--wait",
        dest="connect_wait",
        type=seconds,
        default=0.0,
        metavar="SECONDS",
        help="keep trying to reach the daemon for up to SECONDS (for scripts that "
        "have just started gcgated); exit 3 if it never answers",
    )

    add_metrics_command(commands, add_command)

    result = add_command(
        commands,
        "result",
        cmd_result,
        "print a task's result",
        "Prints the result's repr(); a failed task prints its remote traceback to\n"
        "stderr and exits 1, a task still running exits 4.\n\n"
        "  gcgate result --wait TASK_ID\n"
        "  gcgate result TASK_ID --timeout 60",
    )
    result.add_argument("task_id", metavar="TASK_ID", help="the task's UUID")
    result.add_argument(
        "--wait",
        action="store_true",
        help="wait until the task is final (Ctrl-C stops waiting; the task keeps running)",
    )
    result.add_argument(
        "--timeout",
        type=seconds,
        metavar="SECONDS",
        help="wait at most SECONDS (implies --wait), then exit 4 if the task is still pending",
    )

    wait = add_command(
        commands,
        "wait",
        cmd_wait,
        "wait for tasks to finish",
        "Shows a progress bar on stderr (on a terminal) as the daemon reports each\n"
        "task finished, then a summary; failed tasks are named on stderr with their\n"
        "error. --json prints {task_id: {status, pending, result, exception, ...}}.\n"
        "Exit 0 if all succeeded, 1 if any failed, 4 if the timeout came first.\n\n"
        "  gcgate batch --no-wait ... | gcgate wait -",
    )
    wait.add_argument(
        "task_ids",
        nargs="+",
        metavar="TASK_ID",
        help="task UUIDs; - reads more from stdin (whitespace-separated, one per line)",
    )
    wait.add_argument(
        "--timeout",
        type=seconds,
        metavar="SECONDS",
        help="give up after SECONDS and exit 4 if tasks are still pending (default: no limit)",
    )

    tasks = add_command(
        commands,
        "tasks",
        cmd_tasks,
        "list recent tasks",
        "Newest first: task id, status, function name, endpoint, created and completed\n"
        "times (local time); --json adds ids, task group and more. Filters combine.\n\n"
        "  gcgate tasks --function stats --status failed --since 2h",
    )
    tasks.add_argument(
        "--limit", type=task_limit, default=50, metavar="N", help="at most N tasks (default 50)"
    )
    tasks.add_argument(
        "--status",
        choices=TASK_STATUSES,
        help="only tasks with this status (pending: every unfinished one)",
    )
    tasks.add_argument(
        "--function",
        metavar="NAME_OR_ID",
        help="only tasks of this function: its id, or its name (every registration under it)",
    )
    tasks.add_argument(
        "--endpoint", metavar="ENDPOINT_ID", help="only tasks of this endpoint (a UUID or local)"
    )
    tasks.add_argument(
        "--since",
        type=since,
        metavar="WHEN",
        help="only tasks accepted since WHEN: an age (2h, 30m, 7d) or an ISO date-time"
        " (2026-12-01, 2026-12-01T09:30; local time)",
    )

    cancel = add_command(
        commands,
        "cancel",
        cmd_cancel,
        "cancel tasks that are not finished",
        "On the local endpoint a waiting task is dropped and a running one is stopped\n"
        "(its worker process is killed and replaced). Globus Compute cannot cancel a\n"
        "task: gcgate stops waiting for it and ignores its result (it may still run on\n"
        "its endpoint). Cancelled tasks end with status cancelled and are not run again\n"
        "after a daemon restart. A task already finished is reported, not an error.\n"
        "--json prints {task_id: {cancelled, status, message}}. Exit 0 once every task\n"
        "is final, 5 if an id is unknown (then nothing is cancelled).",
    )
    cancel.add_argument("task_ids", nargs="+", metavar="TASK_ID", help="task UUIDs")

    add_command(
        commands,
        "cache",
        cmd_cache,
        "show result store usage",
        "Size against the limit, registered functions, task records, how long\n"
        "results are kept, and task counts by state.",
    )

    forget = add_command(
        commands,
        "forget",
        cmd_forget,
        "forget tasks: delete their records and results now",
        "Each task's record and result leave the daemon's store at once; asking for\n"
        "one afterwards says it was forgotten. A task still in flight refuses the\n"
        "whole command (exit 1) unless --in-flight is given.\n\n"
        "  gcgate forget 6c0f...e1 0b9d...42",
    )
    forget.add_argument("task_ids", nargs="+", metavar="TASK_ID", help="task UUIDs")
    forget.add_argument(
        "--in-flight",
        action="store_true",
        help="also forget tasks not yet final: each one's result is discarded when it"
        " arrives, and it is not run again",
    )

    purge = add_command(
        commands,
        "purge",
        cmd_purge,
        "delete the final results matching every filter given",
        "Frees the store's space now. Tasks in flight are never touched. Only the\n"
        "daemon's own user may purge (it affects every client). --dry-run shows what\n"
        "would go.\n\n"
        "  gcgate purge --older-than 7d --dry-run\n"
        "  gcgate purge --status failed --endpoint local",
    )
    purge.add_argument(
        "--older-than",
        type=duration,
        metavar="AGE",
        help="results stored at least AGE ago: 7d, 12h, 30m, 45s (0: every final result)",
    )
    purge.add_argument(
        "--status", choices=("success", "failed", "cancelled"), help="only this final status"
    )
    purge.add_argument("--endpoint", metavar="ENDPOINT_ID", help="only this endpoint's tasks")
    purge.add_argument("--function", metavar="FUNCTION_ID", help="only this function's tasks")
    purge.add_argument("--task-group", metavar="TASK_GROUP_ID", help="only this task group")
    purge.add_argument(
        "--retrieved", action="store_true", help="only results already retrieved at least once"
    )
    purge.add_argument("--dry-run", action="store_true", help="show what would go; delete nothing")

    register = add_command(
        commands,
        "register-source",
        cmd_register_source,
        "register a Python function from its source file",
        "Registers the file's source text (run as is by the endpoint, so any Python\n"
        "version works) as function NAME; prints the function id. The file must\n"
        "parse and define NAME at top level, else exit 5.",
    )
    register.add_argument(
        "file", type=input_file, metavar="FILE", help="Python source file; - reads stdin"
    ).complete = shtab.FILE  # type: ignore[attr-defined]
    register.add_argument(
        "--name", required=True, metavar="NAME", help="the function to call (defined in FILE)"
    )
    register.add_argument("--description", default=None, help="a description to store with it")

    batch = add_command(
        commands,
        "batch",
        cmd_batch,
        "run a function once per line of JSON input",
        "Each non-blank input line is one task's arguments: a JSON array of positional\n"
        'arguments, or {"args": [...], "kwargs": {...}}. Results come back as JSON; each\n'
        "is printed as one line of JSON in input order (null for a failed task, which\n"
        "is named on stderr with its error, after a summary). A progress bar shows on\n"
        "a terminal. --no-wait prints the task ids instead, one per line, for\n"
        "`gcgate wait -`. --json prints {task_group_id, tasks: [{task_id, status,\n"
        "result, ...}]} (with --no-wait: {task_group_id, task_ids}).\n\n"
        "  printf '[1, 2]\\n[3, 4]\\n' | gcgate batch --function-id FID --args-json -",
    )
    batch.add_argument(
        "--function-id", required=True, metavar="FUNCTION_ID", help="a registered function"
    )
    batch.add_argument(
        "--args-json",
        type=input_file,
        required=True,
        metavar="FILE",
        help="JSON-lines file of task arguments; - reads stdin",
    ).complete = shtab.FILE  # type: ignore[attr-defined]
    add_submit_options(batch, many=True)

    add_run_command(commands, add_command)

    completion = add_command(
        commands,
        "completion",
        None,
        "print a shell completion script",
        "Generated from this command line by shtab. For bash, add to ~/.bashrc:\n"
        '  eval "$(gcgate completion bash)"\n'
        "for zsh, save it as _gcgate in a directory of your $fpath:\n"
        "  gcgate completion zsh > ~/.zfunc/_gcgate",
    )
    completion.add_argument("shell", choices=shtab.SUPPORTED_SHELLS, help="the shell")
    add_catalog_commands(commands, add_command)
    add_login_commands(commands, add_command)
    return parser


# ------------------------------------------------------------------------ main


def fail(message: str, code: Exit) -> int:
    """Report an expected error as one message on stderr (never a traceback)."""
    print(f"gcgate: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``gcgate`` command; returns its exit code (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.func is None:  # needs no daemon
        print(completion_script(parser, args.shell), end="")
        return Exit.OK
    try:
        with connect(args.socket, getattr(args, "connect_wait", 0.0)) as client:
            output = args.func(client, args)
    except CliError as exc:
        return fail(exc.message, exc.code)
    except DaemonUnavailable as exc:
        return fail(str(exc), Exit.UNREACHABLE)
    except (NotFound, InvalidArgument) as exc:
        return fail(exc.message, Exit.NOT_FOUND)
    except GcgateError as exc:
        return fail(str(exc), Exit.FAILED)
    except KeyboardInterrupt:
        return fail("interrupted (tasks already submitted keep running)", Exit.INTERRUPTED)
    try:
        emit(output, args.json)
    except BrokenPipeError:
        # The reader went away (`gcgate batch ... | head -1`): nothing to report.
        # Point stdout at /dev/null so Python's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return output.code
