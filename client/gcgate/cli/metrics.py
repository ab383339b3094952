"""``gcgate metrics``: the daemon's Prometheus metrics over its socket.

The daemon renders the text (GetMetrics); this prints it, filtered by metric
name with ``--match``. ``--json`` reads the text format just far enough to
give families, samples, labels and values: the client distribution does not
depend on prometheus-client, and the format's sample lines are simple.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Iterator
from typing import Any

from gcgate import Client
from gcgate.cli.output import CliError, Exit, Output

#: ``name{labels} value [timestamp]``; labels are parsed by LABEL.
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def families(text: str) -> Iterator[tuple[str, list[str]]]:
    """``(family name, its lines)`` in order: a family starts at its ``# HELP``
    or ``# TYPE`` line, and its samples follow."""
    name, lines = "", []
    for line in text.splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            this = line.split(" ", 3)[2]
            if this != name:
                if lines:
                    yield name, lines
                name, lines = this, []
        if line:
            lines.append(line)
    if lines:
        yield name, lines


def family_json(name: str, lines: list[str]) -> dict[str, Any]:
    family: dict[str, Any] = {"name": name, "type": "untyped", "help": "", "samples": []}
    for line in lines:
        if line.startswith("# HELP "):
            family["help"] = _unescape(line.split(" ", 3)[3] if line.count(" ") >= 3 else "")
        elif line.startswith("# TYPE "):
            family["type"] = line.split(" ", 3)[3]
        elif not line.startswith("#") and (match := SAMPLE.match(line)):
            sample, labels, value = match.groups()
            family["samples"].append(
                {
                    "name": sample,
                    "labels": {k: _unescape(v) for k, v in LABEL.findall(labels or "")},
                    "value": _number(value),
                }
            )
    return family


def _unescape(text: str) -> str:
    return re.sub(r"\\[\\\"n]", lambda m: ESCAPES[m.group(0)], text)


def _number(text: str) -> float | str:
    """A finite value as a number; ``+Inf``, ``-Inf`` and ``NaN`` as text (JSON has none)."""
    value = float(text)
    return value if math.isfinite(value) else text


def cmd_metrics(client: Client, args: argparse.Namespace) -> Output:
    """Print the daemon's metrics, the families whose name matches ``--match``."""
    try:
        pattern = re.compile(args.match or "")
    except re.error as exc:
        raise CliError(
            f"--match {args.match!r} is not a regular expression: {exc}", Exit.INVALID
        ) from None
    chosen = [(n, lines) for n, lines in families(client.get_metrics()) if pattern.search(n)]
    if not chosen:
        raise CliError(f"no metric name matches {args.match!r}", Exit.NOT_FOUND)
    text = "\n".join(line for _, lines in chosen for line in lines)
    return Output(text, {"families": [family_json(n, lines) for n, lines in chosen]})


def add_metrics_command(commands: Any, add_command: Callable[..., argparse.ArgumentParser]) -> None:
    metrics = add_command(
        commands,
        "metrics",
        cmd_metrics,
        "print the daemon's Prometheus metrics",
        "Tasks by state, completions, Globus requests (by path and status code, 429s\n"
        "included), the rate budget, store size and RPC latency, in the Prometheus\n"
        "text format, fetched over the daemon's socket (no port needed; docs/service.md\n"
        "names every metric). --json prints {families: [{name, type, help, samples:\n"
        "[{name, labels, value}]}]}.\n\n"
        "  gcgate metrics --match '^gcgate_globus_http'",
    )
    metrics.add_argument(
        "--match",
        metavar="REGEX",
        help="only the metric families whose name matches REGEX (searched anywhere in it);"
        " exit 5 if none does",
    )
