"""What ``gcgate`` commands produce, and how it reaches the terminal.

A command returns an :class:`Output` (text for people, data for ``--json``, an
exit code); :func:`emit` prints it. Colours and the progress bar come from
``rich``, which decides whether the stream is a terminal and honours the usual
switches (``NO_COLOR``, ``FORCE_COLOR``, ``TERM=dumb``): piped output stays plain
text, exactly what a script or a test sees.
"""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.text import Text

from gcgate.constants import LOCAL_ENDPOINT_ALIAS, LOCAL_ENDPOINT_ID, TaskStatus


class Exit(enum.IntEnum):
    """Exit codes of ``gcgate`` (see the ``gcgate.cli.commands`` docstring)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    UNREACHABLE = 3
    PENDING = 4
    NOT_FOUND = 5
    #: The same code as NOT_FOUND: what was given is not usable (a malformed id,
    #: a bad input line).
    INVALID = 5
    INTERRUPTED = 130


@dataclass
class Output:
    """What a command produced: text for people, data for ``--json``, an exit code.

    Commands return this instead of printing, so the choice between text and JSON
    is made in one place and every command supports both.
    """

    #: For people, on stdout; a :class:`rich.text.Text` carries colours, which
    #: are dropped when stdout is not a terminal.
    text: str | Text
    data: Any
    code: Exit = Exit.OK
    #: Extra explanation for stderr (a remote traceback, "still pending"), shown
    #: in both modes since JSON consumers read stdout only.
    message: str = ""


class CliError(Exception):
    """An expected problem with what the user gave (bad input, no ids): a message and
    an exit code, reported as one line on stderr."""

    def __init__(self, message: str, code: Exit) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


#: Colour of each task status; every other (unfinished) status is yellow.
STATUS_STYLES = {
    TaskStatus.SUCCESS: "green",
    TaskStatus.FAILED: "red",
    TaskStatus.CANCELLED: "magenta",
}
PENDING_STYLE = "yellow"


def status_style(status: str) -> str:
    return STATUS_STYLES.get(status, PENDING_STYLE)


def console(*, stderr: bool = False) -> Console:
    """A console that prints text as given: no wrapping, no guessed highlighting."""
    return Console(stderr=stderr, soft_wrap=True, highlight=False, markup=False, emoji=False)


def render(text: Text) -> str:
    """``text`` as printed to stdout: with colour codes only where stdout takes them.

    Rendered to a string and printed by the caller, rather than printed by rich,
    so a closed stdout raises BrokenPipeError as for any other output.
    """
    out = console()
    with out.capture() as captured:
        out.print(text)
    return captured.get()


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    styles: Sequence[Sequence[str | None]] | None = None,
) -> Text:
    """A table with left-aligned columns; ``styles[row][column]`` colours a cell.

    Padding is computed on the plain text, so the columns line up with colours
    on, and the plain form (``.plain``) is the same table without them.
    """
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    no_styles: list[None] = [None] * len(headers)
    lines = [(headers, no_styles), *zip(rows, styles or [no_styles] * len(rows), strict=True)]
    text = Text()
    for number, (cells, cell_styles) in enumerate(lines):
        if number:
            text.append("\n")
        line = Text()
        for column, (cell, width, style) in enumerate(zip(cells, widths, cell_styles, strict=True)):
            if column:
                line.append("  ")
            line.append(cell, style=style or "")
            line.append(" " * (width - len(cell)))
        line.rstrip()
        text.append_text(line)
    return text


def format_time(unix_time: float | str | None) -> str:
    """Local ISO 8601 time (seconds precision), or ``-`` for none.

    Accepts the SDK's string completion times too; an unparsable value is shown
    as is rather than hidden.
    """
    if unix_time in (None, "", 0):
        return "-"
    try:
        return datetime.fromtimestamp(float(unix_time)).isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError, OSError):
        return str(unix_time)


def endpoint_label(endpoint_id: str) -> str:
    """The local endpoint's alias instead of its UUID, which nobody recognises."""
    return LOCAL_ENDPOINT_ALIAS if endpoint_id == LOCAL_ENDPOINT_ID else endpoint_id


def json_value(value: Any) -> Any:
    """``value`` itself when JSON represents it exactly, else its ``repr()``.

    Exactly means it survives a round trip unchanged: a tuple (which would come
    back as a list), a dict with int keys or a NaN is given as its repr instead,
    so a JSON consumer never sees a silently altered value.
    """
    try:
        if json.loads(json.dumps(value, allow_nan=False)) == value:
            return value
    except (TypeError, ValueError, RecursionError):
        pass
    return repr(value)


def emit(output: Output, as_json: bool) -> None:
    if as_json:
        print(json.dumps(output.data, indent=2))
    elif isinstance(output.text, Text):
        if output.text.plain:
            print(render(output.text), end="")
    elif output.text:
        print(output.text)
    if output.message:
        sys.stdout.flush()
        print(output.message, file=sys.stderr)


# --------------------------------------------------------------------- progress


class Progress:
    """A progress bar on stderr while tasks finish, or nothing at all.

    Shown only when stderr is a terminal (and not for ``--json``): in a pipe, a
    log or a test there is no bar, and the command prints its summary instead.
    """

    def __init__(self, total: int, *, enabled: bool, description: str = "tasks") -> None:
        self.total = total
        self.enabled = enabled
        self.description = description
        self.failed = 0
        self._bar: Any = None
        self._task: Any = None

    def finished(self, status: str) -> None:
        """One more task is final (``status`` is ``success`` or ``failed``)."""
        if status == TaskStatus.FAILED:
            self.failed += 1
        if self._bar is not None:
            failed = f"{self.failed} failed" if self.failed else ""
            self._bar.update(self._task, advance=1, failed=failed)

    @contextmanager
    def shown(self) -> Iterator[Progress]:
        """Show the bar for the duration of the block (it is removed afterwards)."""
        if not self.enabled:
            yield self
            return
        from rich import progress as rp

        bar = rp.Progress(
            rp.SpinnerColumn(),
            rp.TextColumn("{task.description}"),
            rp.BarColumn(),
            rp.MofNCompleteColumn(),
            rp.TextColumn("[red]{task.fields[failed]}"),
            rp.TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        with bar:
            self._bar = bar
            self._task = bar.add_task(self.description, total=self.total, failed="")
            try:
                yield self
            finally:
                self._bar = None


def progress_enabled(as_json: bool) -> bool:
    """The bar is for a person watching a terminal: not for JSON, pipes or logs."""
    return not as_json and sys.stderr.isatty()
