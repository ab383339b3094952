"""``gcgate run``: one task from the shell, its result printed as JSON.

The single-task form of ``gcgate batch``: the same JSON arguments, submission
and waiting (:mod:`gcgate.cli.submit`, :mod:`gcgate.cli.waiting`), with the
result alone on stdout and a failure's whole remote traceback on stderr, as
``gcgate result`` shows it.
"""

from __future__ import annotations

import argparse
from typing import Any

import shtab

from gcgate import Client
from gcgate.cli.argtypes import input_file
from gcgate.cli.catalog import function_ids
from gcgate.cli.output import Exit, Output, Progress, progress_enabled
from gcgate.cli.submit import add_submit_options, parse_arguments, result_line, submit
from gcgate.cli.waiting import Tally, task_json, wait_for


def arguments_text(args: argparse.Namespace) -> tuple[str, str]:
    """The task's arguments as JSON text, and where they came from (for messages):
    ``--args``, the ``--args-json`` file, or none (``[]``)."""
    if args.args_json is not None:
        with args.args_json as file:
            return file.read(), file.name
    return ("[]" if args.args is None else args.args), "--args"


def cmd_run(client: Client, args: argparse.Namespace) -> Output:
    """Submit one task and print its result as JSON (exit 0), its traceback (exit 1),
    or with --no-wait its id; a task still running at --timeout exits 4."""
    text, where = arguments_text(args)
    task = parse_arguments(text, where)
    function_id = args.function_id or function_ids(client, args.function, runnable=True)[0]
    group, (task_id,) = submit(client, args.endpoint, function_id, [task], reuse_results=args.reuse)
    data: dict[str, Any] = {"task_id": task_id, "task_group_id": group}
    if args.no_wait:
        return Output(task_id, data)
    progress = Progress(1, enabled=progress_enabled(args.json), description="task")
    tally = Tally(wait_for(client, [task_id], args.timeout, progress))
    data.update(task_json(tally.tasks[task_id]))
    if tally.code == Exit.PENDING:
        message = (
            f"task {task_id} is still pending ({data['status']}) after {args.timeout:g} s;"
            f" later: gcgate result --wait {task_id}"
        )
    elif "exception" in data:
        message = f"task {task_id} {data['status']}:\n{str(data['exception']).rstrip()}"
    else:
        message = ""
    text = "" if message else result_line(tally.tasks[task_id])
    return Output(text, data, tally.code, message)


def add_run_command(commands: Any, add_command: Any) -> None:
    """Register ``run`` with gcgate's argument parser."""
    run = add_command(
        commands,
        "run",
        cmd_run,
        "run a function once and print its result",
        "The task's arguments are JSON: an array of positional arguments, or\n"
        '{"args": [...], "kwargs": {...}} (none: no arguments). Its result comes back as\n'
        "JSON and is printed as one line of JSON; a failed task prints its remote\n"
        "traceback to stderr and exits 1. --no-wait prints the task id instead (for\n"
        "`gcgate result --wait` or `gcgate wait`). --json prints {task_id,\n"
        "task_group_id, status, pending, result, ...}.\n\n"
        "  gcgate run --function stats --args '[[1, 2, 3]]'\n"
        '  gcgate run --function-id FID --args \'{"args": [2], "kwargs": {"scale": 10}}\'',
    )
    which = run.add_mutually_exclusive_group(required=True)
    which.add_argument("--function-id", metavar="FUNCTION_ID", help="a registered function")
    which.add_argument(
        "--function",
        metavar="NAME",
        help="the function registered under NAME (the newest registration, if several)",
    )
    given = run.add_mutually_exclusive_group()
    given.add_argument("--args", metavar="JSON", help="the task's arguments as JSON text")
    given.add_argument(
        "--args-json",
        type=input_file,
        metavar="FILE",
        help="a file holding the task's arguments as JSON; - reads stdin",
    ).complete = shtab.FILE  # type: ignore[attr-defined]
    add_submit_options(run, many=False)


__all__ = ["add_run_command", "cmd_run"]
