"""Where the daemon's log goes and what each line looks like.

One handler on the root logger writes to stderr, in one of three shapes
(``log_format``):

``text``
    ``2026-01-02 12:03:04,567 INFO gcgated.core: message``, tracebacks on the
    lines that follow: for a terminal or a file.
``json``
    one JSON object per line: ``ts`` (ISO 8601, UTC), ``level``, ``logger``,
    ``message``, then the record's structured fields (``task_id``, ``rpc``,
    ``code``, ... given with ``extra=``) and ``exc_info`` for a traceback.
``journal``
    ``<6>gcgated.core: message``: no timestamp (journald stamps each entry) and
    the sd-daemon priority prefix journald turns into the entry's PRIORITY; a
    traceback stays in the same entry, its newlines written as ``\\n``.

``auto`` (the default) is ``journal`` when stderr is journald's stream (systemd
sets ``JOURNAL_STREAM`` to its ``device:inode``, systemd.exec(5)), else
``text``. ``json`` on journald's stream keeps the priority prefix, so the
journal's MESSAGE is the JSON object and its PRIORITY is right.

gcgated's own loggers follow ``log_level``; every other logger (grpc, asyncio,
aio_pika, urllib3, globus_sdk, ...) stays at ``log_level_libraries`` (WARNING
by default) or above, so ``log_level = "DEBUG"`` shows what gcgated does
without the libraries' chatter.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

from gcgated.config import Config

#: The loggers ``log_level`` governs; everything else is a library.
OWN_LOGGERS = ("gcgated", "gcgate")
#: sd-daemon(3) priorities: <3> err, <4> warning, <6> info, <7> debug.
PRIORITIES = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6}
DEBUG_PRIORITY = 7
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(name)s: %(message)s"
#: Longest quoted text (an error's last line, a refusal's message) in one line.
QUOTE_LIMIT = 200


def priority(levelno: int) -> int:
    """The syslog priority of a logging level (anything below INFO is debug)."""
    for level, value in PRIORITIES.items():
        if levelno >= level:
            return value
    return DEBUG_PRIORITY


def on_journal(stream: TextIO, environ: dict[str, str] | None = None) -> bool:
    """Whether ``stream`` is journald's: ``JOURNAL_STREAM`` names its device and
    inode. A stderr redirected elsewhere by a child keeps the variable but not the
    inode, hence the comparison rather than the variable alone."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    try:
        info = os.fstat(stream.fileno())
        return (info.st_dev, info.st_ino) == (int(device), int(inode))
    except (ValueError, OSError):  # unset, garbage, or a stream without an fd
        return False


def one_line(text: str, limit: int = QUOTE_LIMIT) -> str:
    """``text`` on one line (newlines as ``\\n``), cut to ``limit`` characters, so
    a client's or a task's words cannot stretch or split a log line."""
    flat = text.strip().replace("\r", "\\r").replace("\n", "\\n")
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def last_line(text: str | None) -> str:
    """The last non-blank line of ``text`` (a traceback's ``Error: why``), cut short."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return one_line(lines[-1]) if lines else ""


class JournalFormatter(logging.Formatter):
    """``<priority>`` then the line; one journal entry per record (see module doc)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self._inner = inner

    def format(self, record: logging.LogRecord) -> str:
        text = self._inner.format(record).replace("\n", "\\n")
        return f"<{priority(record.levelno)}>{text}"


class _JsonFormatter(JsonFormatter):
    """python-json-logger's, with ``ts`` first (it appends its timestamp last),
    so a person tailing the JSON log reads the time where a text line has it."""

    def add_fields(
        self, log_record: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_record["ts"] = datetime.fromtimestamp(record.created, timezone.utc).isoformat()
        super().add_fields(log_record, record, message_dict)


def json_formatter() -> logging.Formatter:
    """One object per line: ``ts``, ``level``, ``logger``, ``message``, then the extras."""
    return _JsonFormatter(
        ["levelname", "name", "message"],
        rename_fields={"levelname": "level", "name": "logger"},
        json_ensure_ascii=False,
    )


def formatter(log_format: str, stream: TextIO) -> tuple[str, logging.Formatter]:
    """The format ``log_format`` means on ``stream`` (``auto`` resolved), and its formatter."""
    journal = on_journal(stream)
    if log_format == "json":
        if journal:
            return "json with journald priorities", JournalFormatter(json_formatter())
        return "json", json_formatter()
    if log_format == "journal" or (log_format == "auto" and journal):
        return "journal", JournalFormatter(logging.Formatter(JOURNAL_FORMAT))
    return "text", logging.Formatter(TEXT_FORMAT)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The daemon's stderr handler, recognisable when settings are applied again."""


def configure(config: Config) -> None:
    """Apply ``log_format``, ``log_level`` and ``log_level_libraries``: at start,
    and again on SIGHUP (the handler is replaced, not added to)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    handler = _Handler(sys.stderr)
    shape, chosen = formatter(config.log_format, handler.stream)
    handler.setFormatter(chosen)
    root.addHandler(handler)
    own = logging.getLevelName(config.log_level)
    libraries = logging.getLevelName(config.log_level_libraries)
    root.setLevel(max(own, libraries))
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(own)
    logging.getLogger(__name__).debug(
        "logging %s to stderr: gcgated at %s, libraries at %s",
        shape,
        config.log_level,
        logging.getLevelName(root.level),
    )


def log_settings(log: logging.Logger, config: Config, searched: Path) -> None:
    """The startup line: which config file (or the one looked for), and every
    effective setting with where it came from; secrets show as their mask."""
    settings = config.effective_settings()
    shown = ", ".join(f"{name}={value} ({source})" for name, (value, source) in settings.items())
    where = (
        f"config file {config.config_file}"
        if config.config_file
        else f"no config file (looked for {searched})"
    )
    extra: dict[str, Any] = {
        "config_file": str(config.config_file or ""),
        "settings": {name: value for name, (value, _) in settings.items()},
    }
    log.info("%s; settings: %s", where, shown, extra=extra)


def log_refusal(log: logging.Logger, rpc: str, code: str, message: str, caller: str) -> None:
    """One INFO line for a request refused with ``code``: what the client was told,
    cut to one short line (a flood of refusals stays a flood of short lines).
    ``caller``: the client token's fingerprint, "" for the daemon's login."""
    extra: dict[str, Any] = {"rpc": rpc, "code": code, "reason": one_line(message)}
    if caller:
        extra["caller"] = caller
    log.info(
        "refused %s (%s): %s%s",
        rpc,
        code,
        extra["reason"],
        f" [{caller}]" if caller else "",
        extra=extra,
    )


def log_task_failure(log: logging.Logger, record: dict[str, Any], backend: str) -> None:
    """One INFO line for a task that failed: its ids and its error's last line,
    never its arguments or the rest of its traceback (they may quote user data)."""
    extra = {
        "task_id": record["task_id"],
        "function_id": record.get("function_id", ""),
        "endpoint_id": record.get("endpoint_id", ""),
        "backend": backend,
        "error": last_line(record.get("exception")),
    }
    log.info(
        "task %s failed (function %s, endpoint %s, backend %s): %s",
        *extra.values(),
        extra=extra,
    )
