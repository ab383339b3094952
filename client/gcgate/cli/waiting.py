"""``gcgate wait``: follow tasks until they finish, as the daemon reports them.

Completions come from the daemon's WatchTasks stream (:meth:`gcgate.Client.watch`),
so the progress bar moves the moment a task finishes and nothing polls. ``gcgate
batch`` waits for its tasks the same way.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text

from gcgate import Client
from gcgate.cli.output import CliError, Exit, Output, Progress, json_value, progress_enabled
from gcgate.constants import PENDING_FILTER, TaskStatus
from gcgate.errors import DeadlineExceeded, TaskExecutionFailed


def task_ids_from(values: Sequence[str], stdin: Iterable[str] | None = None) -> list[str]:
    """The task ids given, with ``-`` replaced by those read from stdin.

    Stdin holds ids separated by whitespace (one per line, as ``gcgate batch
    --no-wait`` prints them). Ids are given in the daemon's canonical form
    (lower case), duplicates are dropped, the order is kept.

    :raises CliError: (exit 5) for a value that is not a UUID
    """
    ids: list[str] = []
    for value in values:
        if value == "-":
            for line in sys.stdin if stdin is None else stdin:
                ids.extend(line.split())
        else:
            ids.append(value)
    return list(dict.fromkeys(map(canonical_task_id, ids)))


def canonical_task_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise CliError(f"not a task id (a UUID): {value!r}", Exit.INVALID) from None


def wait_for(
    client: Client, task_ids: Sequence[str], timeout: float | None, progress: Progress
) -> dict[str, dict[str, Any]]:
    """Each task's dict (see :meth:`Client.get_tasks`) once final, or at the timeout.

    Tasks still unfinished when ``timeout`` seconds have passed are asked for
    once more, so one finishing at that very moment is not reported as pending.

    :raises NotFound: a task id is unknown to the daemon
    :raises InvalidArgument: a task id is not a UUID
    """
    final: dict[str, dict[str, Any]] = {}
    with progress.shown():
        try:
            for task in client.watch(task_ids, timeout=timeout):
                final[task["task_id"]] = task
                progress.finished(task["status"])
        except DeadlineExceeded:
            pass
    rest = [tid for tid in task_ids if tid not in final]
    if rest:
        final.update(client.get_tasks(rest))
    return {tid: final[tid] for tid in task_ids}


def task_json(task: dict[str, Any]) -> dict[str, Any]:
    """A task's JSON form: status, pending, completion time (and ``reused_from`` for a
    task that reused a stored result), result or exception.

    A result JSON cannot represent exactly is given as its ``repr()`` (see
    :func:`json_value`); an exception as its text (the remote traceback).
    """
    data: dict[str, Any] = {"status": task["status"], "pending": task["pending"]}
    if task["pending"]:
        return data
    data["completion_t"] = task.get("completion_t")
    if task.get("reused_from"):
        data["reused_from"] = task["reused_from"]
    exception = task.get("exception")
    if exception is not None:
        data["result"] = None
        data["exception"] = (
            exception.remote_data if isinstance(exception, TaskExecutionFailed) else str(exception)
        )
    else:
        data["result"] = json_value(task.get("result"))
    return data


def error_line(task: dict[str, Any]) -> str:
    """The last line of a failed task's traceback: ``ValueError: boom``."""
    exception = task.get("exception")
    text = exception.remote_data if isinstance(exception, TaskExecutionFailed) else str(exception)
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "failed"


@dataclass
class Tally:
    """Which of a set of final-or-pending tasks succeeded, failed or are pending."""

    tasks: dict[str, dict[str, Any]]

    def ids(self, *statuses: str) -> list[str]:
        return [tid for tid, task in self.tasks.items() if status_of(task) in statuses]

    @property
    def code(self) -> Exit:
        """1 if any failed or was cancelled, else 4 if any is still pending, else 0."""
        if self.ids(TaskStatus.FAILED, TaskStatus.CANCELLED):
            return Exit.FAILED
        return Exit.PENDING if self.ids(PENDING_FILTER) else Exit.OK

    def summary(self, timeout: float | None) -> Text:
        """``3 tasks: 2 succeeded, 1 failed`` (pending ones named with the timeout)."""
        counts = [
            (len(self.ids(TaskStatus.SUCCESS)), "succeeded", "green"),
            (len(self.ids(TaskStatus.FAILED)), "failed", "red"),
        ]
        cancelled = len(self.ids(TaskStatus.CANCELLED))
        if cancelled:
            counts.append((cancelled, "cancelled", "magenta"))
        pending = len(self.ids(PENDING_FILTER))
        if pending:
            waited = f" after {timeout:g} s" if timeout is not None else ""
            counts.append((pending, f"still pending{waited}", "yellow"))
        noun = "task" if len(self.tasks) == 1 else "tasks"
        text = Text(f"{len(self.tasks)} {noun}: ")
        for number, (count, label, style) in enumerate(counts):
            if number:
                text.append(", ")
            text.append(f"{count} {label}", style=style if count else "")
        return text

    def problems(self) -> str:
        """One line per failed task (with its error) and per pending task, for stderr."""
        lines = [
            f"failed: {tid}: {error_line(self.tasks[tid])}" for tid in self.ids(TaskStatus.FAILED)
        ]
        lines += [f"cancelled: {tid}" for tid in self.ids(TaskStatus.CANCELLED)]
        lines += [
            f"pending: {tid} ({self.tasks[tid]['status']})" for tid in self.ids(PENDING_FILTER)
        ]
        return "\n".join(lines)


def status_of(task: dict[str, Any]) -> str:
    """``success``, ``failed`` or ``pending`` (any unfinished status)."""
    return PENDING_FILTER if task["pending"] else task["status"]


def cmd_wait(client: Client, args: argparse.Namespace) -> Output:
    """Wait for tasks to finish: 0 all succeeded, 1 some failed or were cancelled,
    4 timed out."""
    task_ids = task_ids_from(args.task_ids)
    if not task_ids:
        raise CliError("no task ids given (stdin had none)", Exit.USAGE)
    progress = Progress(len(task_ids), enabled=progress_enabled(args.json))
    tally = Tally(wait_for(client, task_ids, args.timeout, progress))
    data = {tid: task_json(task) for tid, task in tally.tasks.items()}
    return Output(tally.summary(args.timeout), data, tally.code, tally.problems())


__all__ = ["Tally", "cmd_wait", "task_ids_from", "task_json", "wait_for"]
