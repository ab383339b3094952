"""``gcgate register-source`` and ``gcgate batch``: run functions from the shell.

A function is registered as Python source text and its tasks get their
arguments as JSON, one task per line of JSON-lines input; results come back
serialized as JSON (the JSONData strategy), so nothing is pickled on the way
and every result prints as a line of JSON.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from gcgate import Client
from gcgate.batch import by_size
from gcgate.cli.argtypes import seconds
from gcgate.cli.output import CliError, Exit, Output, Progress, json_value, progress_enabled
from gcgate.cli.waiting import Tally, task_json, wait_for
from gcgate.client import result_serializer_paths
from gcgate.constants import LOCAL_ENDPOINT_ALIAS, MAX_SUBMISSION_BYTES
from gcgate.serialize import JSONData
from gcgate.source import SourceError, check_source
from gcgate.v1 import gateway_pb2 as pb

#: One submission carries at most this much (estimated) payload: below the
#: service's per-submission limit, leaving room for each task's framing.
CHUNK_BYTES = MAX_SUBMISSION_BYTES * 8 // 10
#: Framing the daemon adds to a task's JSON arguments (headers, lengths), generously.
FRAMING_BYTES = 64
#: Results of ``gcgate batch`` tasks are serialized as JSON by the endpoint.
JSON_RESULTS = result_serializer_paths([JSONData])


# ------------------------------------------------------------------- functions


def cmd_register_source(client: Client, args: argparse.Namespace) -> Output:
    """Register a file's Python source as a function; prints the function id."""
    with args.file as file:
        source = file.read()
    try:
        check_source(source, args.name, file.name)
    except SourceError as exc:
        raise CliError(str(exc), Exit.INVALID) from None
    function_id = client.register_source_code(source, args.name, description=args.description)
    return Output(function_id, {"function_id": function_id, "function_name": args.name})


# ----------------------------------------------------------------------- batch


@dataclass
class TaskInput:
    """One task's JSON arguments."""

    args_json: str
    kwargs_json: str

    @property
    def size(self) -> int:
        """Roughly the bytes of this task's payload, for splitting a batch."""
        return len(self.args_json.encode()) + len(self.kwargs_json.encode()) + FRAMING_BYTES

    def message(self) -> pb.JsonArguments:
        return pb.JsonArguments(args_json=self.args_json, kwargs_json=self.kwargs_json)


def parse_arguments(text: str, where: str) -> TaskInput:
    """One task's arguments: a JSON array of positional arguments, or
    ``{"args": [...], "kwargs": {...}}`` (``gcgate batch`` lines, ``gcgate run --args``).

    :raises CliError: (exit 5) naming ``where`` (``file:line``, ``--args``), what
        is wrong, and the task over the submission limit
    """

    def invalid(problem: str) -> CliError:
        return CliError(f"{where}: {problem}", Exit.INVALID)

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise invalid(f"not valid JSON: {exc}") from None
    if isinstance(value, list):
        task = TaskInput(json.dumps(value), "")
    elif not isinstance(value, dict):
        raise invalid('expected a JSON array of arguments or {"args": [...], "kwargs": {...}}')
    elif unknown := value.keys() - {"args", "kwargs"}:
        raise invalid(f"unknown keys {sorted(unknown)} (only args and kwargs)")
    else:
        args, kwargs = value.get("args", []), value.get("kwargs", {})
        if not isinstance(args, list):
            raise invalid('"args" must be a JSON array')
        if not isinstance(kwargs, dict):
            raise invalid('"kwargs" must be a JSON object')
        task = TaskInput(json.dumps(args), json.dumps(kwargs) if kwargs else "")
    if task.size > MAX_SUBMISSION_BYTES:
        raise invalid(
            f"arguments of {task.size:,} bytes are over the {MAX_SUBMISSION_BYTES:,}-byte"
            " submission limit; pass large data by reference"
        )
    return task


def read_tasks(lines: Iterable[str], source: str) -> list[TaskInput]:
    """One task per non-blank line.

    :raises CliError: a bad line, a task over the submission limit, or no tasks
    """
    tasks = [
        parse_arguments(text, f"{source}:{number}")
        for number, text in enumerate(lines, start=1)
        if text.strip()
    ]
    if not tasks:
        raise CliError(f"{source}: no tasks (expected one JSON line per task)", Exit.INVALID)
    return tasks


def submit(
    client: Client,
    endpoint: str,
    function_id: str,
    tasks: Sequence[TaskInput],
    *,
    reuse_results: bool = False,
) -> tuple[str, list[str]]:
    """Submit the tasks with JSON arguments and JSON results; ``(task group, ids)``.

    A large input is sent as several submissions in one task group. Ids are in
    input order. ``reuse_results``: tasks identical to ones that succeeded before
    with it are answered from the daemon's store (docs/api.md, Result reuse).
    """
    group = ""
    ids: list[str] = []
    for chunk in by_size(tasks, CHUNK_BYTES):
        request = pb.BatchRunRequest(
            endpoint_id=endpoint,
            tasks=[
                pb.BatchTasks(function_id=function_id, json_arguments=[t.message() for t in chunk])
            ],
            options=pb.SubmitOptions(
                task_group_id=group, result_serializers=JSON_RESULTS, reuse_results=reuse_results
            ),
        )
        # The Client has no public call for JSON arguments yet: the raw RPC, with
        # the client's error translation.
        response = client._call("BatchRun", request)
        group = response.task_group_id
        ids.extend(response.tasks[0].task_ids)
    return group, ids


def add_submit_options(parser: argparse.ArgumentParser, *, many: bool) -> None:
    """``--endpoint``, ``--no-wait``, ``--timeout`` and ``--reuse``, which ``batch``
    (``many``) and ``run`` share."""
    ids, are = ("the task ids", "tasks are") if many else ("the task id", "the task is")
    parser.add_argument(
        "--endpoint",
        default=LOCAL_ENDPOINT_ALIAS,
        metavar="ENDPOINT_ID",
        help=f"where to run (default: {LOCAL_ENDPOINT_ALIAS}, the daemon's own endpoint)",
    )
    parser.add_argument("--no-wait", action="store_true", help=f"print {ids} and do not wait")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="answer a task identical to one that succeeded before with --reuse from the"
        " daemon's store instead of running it (its JSON names the task that ran: reused_from)",
    )
    parser.add_argument(
        "--timeout",
        type=seconds,
        metavar="SECONDS",
        help=f"stop waiting after SECONDS and exit 4 if {are} still pending",
    )


def cmd_batch(client: Client, args: argparse.Namespace) -> Output:
    """Submit one task per input line; wait and print each result as a JSON line."""
    with args.args_json as file:
        tasks = read_tasks(file, "<stdin>" if file.name == "<stdin>" else file.name)
    group, ids = submit(client, args.endpoint, args.function_id, tasks, reuse_results=args.reuse)
    if args.no_wait:
        return Output("\n".join(ids), {"task_group_id": group, "task_ids": ids})
    progress = Progress(len(ids), enabled=progress_enabled(args.json))
    tally = Tally(wait_for(client, ids, args.timeout, progress))
    lines = [result_line(tally.tasks[tid]) for tid in ids]
    data = {
        "task_group_id": group,
        "tasks": [{"task_id": tid, **task_json(tally.tasks[tid])} for tid in ids],
    }
    message = "\n".join(filter(None, [tally.summary(args.timeout).plain, tally.problems()]))
    return Output("\n".join(lines), data, tally.code, message)


def result_line(task: dict[str, Any]) -> str:
    """A task's result as one line of JSON; ``null`` for a failed or pending task
    (which the summary on stderr names)."""
    if task["pending"] or "exception" in task:
        return "null"
    return json.dumps(json_value(task["result"]))


__all__ = [
    "add_submit_options",
    "cmd_batch",
    "cmd_register_source",
    "parse_arguments",
    "read_tasks",
    "result_line",
    "submit",
]
