"""Daemon settings: defaults, then a TOML file, then environment, then flags.

Later sources win, so an admin's config file sets site policy, systemd's
environment adapts it per unit, and a flag is the final word for one run.
"""

from __future__ import annotations

import grp
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import platformdirs
from gcgate.constants import MAX_SUBMISSION_BYTES
from gcgate.paths import daemon_socket_path

from gcgated.backends.local.limits import DEFAULT_LIMIT_MB, MAX_LIMIT_MB
from gcgated.errors import StartupError
from gcgated.metrics_listener import parse_listen
from gcgated.secret import Secret

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

#: Environment variables the daemon reads, by setting name.
ENV_VARS = {
    "socket_path": "GCGATE_SOCKET",
    "state_dir": "GCGATE_STATE_DIR",
    "workers": "GCGATE_WORKERS",
    "log_level": "GCGATE_LOG_LEVEL",
    "log_level_libraries": "GCGATE_LOG_LEVEL_LIBRARIES",
    "log_format": "GCGATE_LOG_FORMAT",
    "retention_days": "GCGATE_RETENTION_DAYS",
    "unread_retention_days": "GCGATE_UNREAD_RETENTION_DAYS",
    "store_size_limit_mb": "GCGATE_STORE_SIZE_LIMIT_MB",
    "compute_url": "GCGATE_COMPUTE_URL",
    "group": "GCGATE_GROUP",
    "local_max_payload_mb": "GCGATE_LOCAL_MAX_PAYLOAD_MB",
    "local_max_result_mb": "GCGATE_LOCAL_MAX_RESULT_MB",
    "metrics_listen": "GCGATE_METRICS_LISTEN",
}

#: Settings only a config file may give (never argv, where `ps` shows them).
FILE_ONLY = ("client_id", "client_secret")

#: Accepted log levels (any case), as ``--log-level`` offers them.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: Accepted log formats (gcgated.logs describes each).
LOG_FORMATS = ("auto", "text", "json", "journal")
#: Where a setting came from, as the startup line and ``--check-config`` say.
SOURCE_NAMES = {"environment": "env", "command line": "flag"}


def default_state_dir() -> Path:
    """``$STATE_DIRECTORY`` under systemd, else the platform's user data dir."""
    if state := os.environ.get("STATE_DIRECTORY"):
        return Path(state.split(":")[0])
    return Path(platformdirs.user_data_dir("gcgate", appauthor=False))


def default_config_file() -> Path:
    return Path(platformdirs.user_config_dir("gcgate", appauthor=False)) / "gcgated.toml"


@dataclass
class Config:
    """Everything the daemon can be told."""

    socket_path: Path = field(default_factory=daemon_socket_path)
    state_dir: Path = field(default_factory=default_state_dir)
    #: Local endpoint worker processes; 0 means one per CPU.
    workers: int = 0
    #: The local endpoint's largest argument payload of one task, and largest
    #: result, in MB of the user's serialized bytes (before the wire's base64;
    #: see gcgated.backends.local.limits). Globus tasks keep the service's 10 MB.
    local_max_payload_mb: float = DEFAULT_LIMIT_MB
    local_max_result_mb: float = DEFAULT_LIMIT_MB
    log_level: str = "INFO"
    #: The level of every other library's loggers (grpc, asyncio, aio_pika, ...),
    #: never below ``log_level``: their DEBUG is noise unless asked for.
    log_level_libraries: str = "WARNING"
    #: auto (journal under systemd's journald, else text), text, json or journal.
    log_format: str = "auto"
    #: Days a final result is kept after a client first retrieved it (0: dropped
    #: once retrieved: the retrieving call gets it, later ones NOT_FOUND).
    retention_days: float = 30.0
    #: Days a final result nobody retrieved is kept after it was stored
    #: (``inf``: until it is read, forgotten or purged).
    unread_retention_days: float = 90.0
    #: The store refuses new submissions beyond this size (MB on disk).
    store_size_limit_mb: int = 4096
    #: Seconds in-flight RPCs get to finish on SIGTERM/SIGINT.
    shutdown_grace_seconds: float = 10.0
    #: Globus Compute base URL; empty: globus-sdk's default (production).
    compute_url: str = ""
    #: Requests to Globus per window for the whole daemon (the service allows 20 / 10 s).
    rate_limit_requests: int = 18
    rate_limit_window_seconds: float = 10.0
    #: Requests that may go back to back before the rate limiter spaces them out.
    rate_limit_burst: int = 3
    #: Milliseconds a submission waits for others to share its submit request.
    submit_window_ms: float = 20.0
    #: Most tasks merged into one submit request (one caller's batch is never split).
    submit_max_tasks: int = 1000
    #: Most payload bytes merged into one submit request (at most the service's 10 MB).
    submit_max_bytes: int = MAX_SUBMISSION_BYTES
    #: Task ids per result poll (POST /v2/batch_status).
    poll_chunk: int = 500
    #: Bounds of the adaptive interval between result polls.
    poll_min_seconds: float = 0.5
    poll_max_seconds: float = 10.0
    #: Take Globus results as the service pushes them (its AMQP result queues, as
    #: the SDK's Executor does); false where AMQP (port 5671) cannot get out:
    #: results are then polled only.
    result_push: bool = True
    #: Seconds a task whose results are pushed may wait with no push before one
    #: status poll checks on it (then twice as long, up to an hour).
    push_overdue_seconds: float = 120.0
    #: Seconds endpoint status and metadata answers are reused.
    endpoint_cache_seconds: float = 5.0
    #: Seconds a submit or lookup keeps retrying throttling, 5xx and network errors.
    retry_seconds: float = 120.0
    #: Seconds one HTTP request to Globus may take.
    http_timeout_seconds: float = 30.0
    #: Group (name or number) whose members may connect: socket 0660 and its
    #: directory 0750, both owned by this group. Empty: the daemon's user only.
    group: str = ""
    #: Where to serve Prometheus metrics over HTTP (GET /metrics) besides the
    #: GetMetrics RPC: a loopback HOST:PORT or unix:/path. Empty: nowhere.
    metrics_listen: str = ""
    #: Service-account credentials (see gcgated.credentials, which also reads
    #: systemd credentials and the environment). The secret is masked in repr.
    client_id: str = ""
    client_secret: Secret = field(default_factory=lambda: Secret(""))
    #: The config file that was read, if any (not a setting).
    config_file: Path | None = field(default=None, metadata={"setting": False})
    #: Where each setting that is not a default came from: file, env or flag.
    sources: dict[str, str] = field(default_factory=dict, metadata={"setting": False})

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1

    @property
    def store_dir(self) -> Path:
        return self.state_dir / "store"

    @property
    def task_dir(self) -> Path:
        """Where the local endpoint's ShellFunction tasks get a directory each."""
        return self.state_dir / "tasks"

    @property
    def group_id(self) -> int | None:
        """The numeric id of ``group``, or None without one."""
        if not self.group:
            return None
        if self.group.isdigit():
            return int(self.group)
        return grp.getgrnam(self.group).gr_gid

    def update(self, values: dict[str, Any], source: str) -> None:
        """Apply ``values`` (from a file, env or flags), coercing to each field's type."""
        known = {f.name: f for f in fields(self)}
        for name, raw in values.items():
            if raw is None:
                continue
            if name not in known or not known[name].metadata.get("setting", True):
                raise StartupError(f"{source}: unknown setting {name!r}")
            from_file = source.startswith("config file")
            if name in FILE_ONLY and not from_file:
                raise StartupError(f"{source}: {name} can only be set in the config file")
            try:
                value = _coerce(getattr(self, name), raw)
            except (TypeError, ValueError) as exc:
                shown = "(hidden)" if name in FILE_ONLY else repr(raw)
                raise StartupError(f"{source}: bad value for {name!r}: {shown} ({exc})") from None
            setattr(self, name, value)
            self.sources[name] = "file" if from_file else SOURCE_NAMES.get(source, source)
        self.validate(source)

    def effective_settings(self) -> dict[str, tuple[str, str]]:
        """Every setting as (shown value, source: default, file, env or flag).
        A Secret shows as its mask, so this is safe to log and print."""
        return {
            f.name: (str(getattr(self, f.name)), self.sources.get(f.name, "default"))
            for f in fields(self)
            if f.metadata.get("setting", True)
        }

    def validate(self, source: str) -> None:
        for name in ("log_level", "log_level_libraries"):
            level = getattr(self, name).upper()
            if level not in LOG_LEVELS:
                raise StartupError(
                    f"{source}: {name} must be one of {', '.join(LOG_LEVELS)},"
                    f" not {getattr(self, name)!r}"
                )
            setattr(self, name, level)
        self.log_format = self.log_format.lower()
        if self.log_format not in LOG_FORMATS:
            raise StartupError(
                f"{source}: log_format must be one of {', '.join(LOG_FORMATS)},"
                f" not {self.log_format!r}"
            )
        if self.workers < 0:
            raise StartupError(f"{source}: workers must be >= 0 (0 means one per CPU)")
        if not self.retention_days >= 0:  # NaN too
            raise StartupError(
                f"{source}: retention_days must be >= 0 (0: a result is dropped once"
                f" retrieved), not {self.retention_days}"
            )
        if not self.unread_retention_days > 0:
            raise StartupError(
                f"{source}: unread_retention_days must be > 0 (inf keeps unread results"
                f" until they are read), not {self.unread_retention_days}"
            )
        if self.store_size_limit_mb <= 0:
            raise StartupError(f"{source}: store_size_limit_mb must be > 0")
        for name in ("local_max_payload_mb", "local_max_result_mb"):
            if not 0 < getattr(self, name) <= MAX_LIMIT_MB:
                raise StartupError(
                    f"{source}: {name} must be > 0 and at most {MAX_LIMIT_MB:g} (a payload"
                    " or result must fit, base64-encoded, in one 64 MiB gRPC message)"
                )
        if len(str(self.socket_path).encode()) > 107:
            raise StartupError(
                f"{source}: socket path {self.socket_path} is longer than the 107 bytes"
                " a Unix socket address allows; choose a shorter --socket"
            )
        if self.metrics_listen:
            try:
                parse_listen(self.metrics_listen)
            except ValueError as exc:
                raise StartupError(f"{source}: metrics_listen: {exc}") from None
        try:
            check_globus_settings(self)
        except ValueError as exc:
            raise StartupError(f"{source}: {exc}") from None
        try:
            self.group_id  # noqa: B018 - resolves the name, or raises
        except KeyError:
            raise StartupError(
                f"{source}: group {self.group!r} does not exist (create it, e.g. with"
                " `groupadd`, or set group to an existing one)"
            ) from None


#: Globus backend settings that must be > 0, and those that must be >= 0.
GLOBUS_POSITIVE = (
    "rate_limit_requests",
    "rate_limit_window_seconds",
    "rate_limit_burst",
    "submit_max_tasks",
    "submit_max_bytes",
    "poll_chunk",
    "poll_min_seconds",
    "push_overdue_seconds",
    "http_timeout_seconds",
)
GLOBUS_NON_NEGATIVE = ("submit_window_ms", "endpoint_cache_seconds", "retry_seconds")


def check_globus_settings(settings: Any) -> None:
    """ValueError naming the first Globus backend setting of ``settings`` (a Config
    or the backend's GlobusSettings) that cannot work.

    Checked when the configuration is loaded, like every other setting, so a start
    refuses it as a configuration error (exit 2) before anything runs, and
    ``--check-config`` and a SIGHUP reload find it too; the backend checks again
    for settings built without the loader.
    """
    for name in GLOBUS_POSITIVE:
        if not getattr(settings, name) > 0:  # NaN too
            raise ValueError(f"{name} must be > 0, not {getattr(settings, name)!r}")
    for name in GLOBUS_NON_NEGATIVE:
        if not getattr(settings, name) >= 0:
            raise ValueError(f"{name} must be >= 0, not {getattr(settings, name)!r}")
    if settings.poll_max_seconds < settings.poll_min_seconds:
        raise ValueError("poll_max_seconds must be >= poll_min_seconds")
    if settings.submit_max_bytes > MAX_SUBMISSION_BYTES:
        raise ValueError(
            f"submit_max_bytes must be at most {MAX_SUBMISSION_BYTES:,} (the service's limit)"
        )
    if settings.compute_url and not settings.compute_url.startswith(("https://", "http://")):
        raise ValueError(f"compute_url {settings.compute_url!r} is not an http(s) URL")


#: What TOML calls the values no setting takes, for messages.
TOML_KINDS = {bool: "boolean", list: "array", dict: "table"}


def _coerce(current: Any, raw: Any) -> Any:
    """``raw`` as a value of ``current``'s type; TypeError or ValueError saying what
    was expected.

    Text (the environment, flags, a quoted TOML value) is converted. A TOML value of
    another kind is refused rather than converted: ``workers = 2.7`` or
    ``retention_days = true`` is a mistake, and running with 2 workers or 1 day
    would hide it.
    """
    if isinstance(current, Path):
        if isinstance(raw, str) and not raw.strip():
            # Path("") is ".": the daemon would make the working directory its own.
            raise ValueError("an empty path; give one, or leave the setting out")
        return Path(raw).expanduser()
    if isinstance(current, Secret):
        if not isinstance(raw, str):
            raise TypeError("expected a string")
        return Secret(raw.strip())
    if isinstance(current, bool):
        return _boolean(raw)
    if isinstance(raw, (bool, list, dict)):
        kind = "a string" if isinstance(current, str) else "a number"
        raise TypeError(f"expected {kind}, not a TOML {TOML_KINDS[type(raw)]}")
    if isinstance(current, str):
        return str(raw)  # a TOML integer too: group = 1000
    if isinstance(current, int) and isinstance(raw, float) and not raw.is_integer():
        raise ValueError("expected a whole number")
    try:
        return type(current)(raw)
    except ValueError:  # int("2.5"), float("7d"): Python's wording is no help
        kind = "a whole number" if isinstance(current, int) else "a number"
        raise ValueError(f"expected {kind}") from None


def _boolean(raw: Any) -> bool:
    """A TOML boolean, or true/false, yes/no, on/off, 1/0 as text (the environment,
    a flag); a TOML number is refused, as for any other setting of another kind."""
    if isinstance(raw, bool):
        return raw
    if not isinstance(raw, str):
        raise TypeError("expected true or false")
    text = raw.strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ValueError("expected true or false")


def _settings_table(data: dict[str, Any], source: str) -> dict[str, Any]:
    """A config file's settings: its ``[gcgated]`` table, or its top level if it has
    none. Beside the table nothing is read, so anything there is refused rather
    than silently ignored (``workers = 4`` above ``[gcgated]`` would not apply)."""
    if "gcgated" not in data:
        return data
    table = data["gcgated"]
    if not isinstance(table, dict):
        raise StartupError(f"{source}: gcgated must be the [gcgated] table, not {table!r}")
    outside = [name for name in data if name != "gcgated"]
    if outside:
        raise StartupError(
            f"{source}: {', '.join(map(repr, outside))} outside the [gcgated] table would"
            " be ignored; move it into [gcgated] (or drop the [gcgated] line and keep"
            " every setting at the top level)"
        )
    return table


def config_file_path(config_file: Path | None) -> Path:
    """The config file a start reads: ``--config``, ``$GCGATE_CONFIG``, or the default."""
    # An empty variable counts as unset, as for every GCGATE_* variable.
    return config_file or Path(os.environ.get("GCGATE_CONFIG") or default_config_file())


def load_config(config_file: Path | None, flags: dict[str, Any]) -> Config:
    """Build the effective configuration from all sources."""
    config = Config()
    path = config_file_path(config_file)
    try:
        found = path.exists()
    except OSError as exc:  # e.g. a directory on the way this user may not enter
        raise StartupError(f"cannot read config file {path}: {exc.strerror}") from None
    if found:
        try:
            data = tomllib.loads(path.read_bytes().decode())  # TOML is UTF-8, whatever the locale
        except UnicodeDecodeError as exc:
            raise StartupError(
                f"cannot read config file {path}: it is not UTF-8 text, as TOML must be"
                f" (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
            ) from None
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise StartupError(f"cannot read config file {path}: {exc}") from exc
        config.config_file = path
        source = f"config file {path}"
        config.update(_settings_table(data, source), source)
    elif config_file is not None:
        raise StartupError(f"config file {config_file} does not exist")
    # An empty variable counts as unset (as GCGATE_SOCKET does for clients).
    config.update(
        {name: os.environ.get(var) or None for name, var in ENV_VARS.items()}, "environment"
    )
    config.update(flags, "command line")
    return config
