"""Types of ``gcgate``'s arguments: each turns a command-line word into a value
or an argparse error naming what is wrong (exit 2), before the daemon is asked.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from datetime import datetime
from typing import IO


def seconds(text: str) -> float:
    """argparse type: a finite, non-negative number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"seconds must be a finite number >= 0, not {text}")
    return value


#: Units of a duration (``--older-than``, ``--since``), in seconds.
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration(text: str) -> float:
    """argparse type: ``7d``, ``12h``, ``30m``, ``45s``, ``2w`` or plain seconds."""
    number, unit = (text[:-1], text[-1]) if text[-1:] in DURATION_UNITS else (text, "s")
    try:
        value = float(number) * DURATION_UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (use e.g. 7d, 12h, 30m, 45s or seconds)"
        ) from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"a duration must be finite and >= 0, not {text}")
    return value


def task_limit(text: str) -> int:
    """argparse type: how many tasks to list, within the daemon's bounds."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"must be between 1 and 10000, not {value}")
    return value


def input_file(path: str) -> IO[str]:
    """argparse type: a text file opened for reading, or stdin for ``-``."""
    if path == "-":
        return sys.stdin
    try:
        return open(path, encoding="utf-8")
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {exc.strerror}") from None


def since(text: str) -> float:
    """argparse type: a Unix time from an age (``2h``, ``30m``, ``7d``: that long
    ago) or an ISO 8601 date or date-time (``2026-12-01``, ``2026-12-01T09:30``;
    local time unless it names its zone)."""
    try:
        return time.time() - duration(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an age or a date-time: {text!r} (use e.g. 2h, 30m, 7d, or 2026-12-01T09:30)"
        ) from None
    return max(when.timestamp(), 0.0)


__all__ = ["duration", "input_file", "seconds", "since", "task_limit"]
