"""``gcgated``: run the gcgate daemon in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from gcgate import __version__
from gcgate.constants import LOCAL_ENDPOINT_ID

from gcgated import logs
from gcgated.config import LOG_FORMATS, LOG_LEVELS, Config, config_file_path, load_config
from gcgated.errors import StartupError

log = logging.getLogger("gcgated")

EPILOG = f"""\
Settings come from defaults, then the TOML config file (--config, $GCGATE_CONFIG,
or the user config dir's gcgate/gcgated.toml), then GCGATE_* environment
variables, then these flags. The embedded local endpoint is {LOCAL_ENDPOINT_ID}
(alias "local"). Stop the daemon with SIGTERM or Ctrl-C; SIGHUP re-reads the
config file and applies the log settings, both retentions, the store size limit
and the shutdown grace (other changes, credentials included, are checked and take
effect at the next start); a failed reload keeps the running configuration and
shows in `gcgate status`.

Logs go to stderr: --log-format text (timestamped lines), json (one object per
line: ts, level, logger, message and fields such as task_id, rpc, code) or
journal (no timestamp, <N> syslog priority prefix); auto, the default, is
journal when stderr is journald's (JOURNAL_STREAM) and text otherwise. Task
failures and refused requests get one INFO line each. --log-level governs
gcgated's own lines; other libraries' stay at --log-level-libraries (WARNING).

--check-config loads and checks the configuration as a start would (settings,
credentials, state and socket directories, group), prints the config file and
effective settings (secrets masked) and exits 0, or prints each problem and
exits 2; it starts and changes nothing (the shipped systemd units run it on
`systemctl reload`, before the SIGHUP).

Service-account credentials (a Globus client id and secret) come from systemd
credentials ($CREDENTIALS_DIRECTORY/client_id, client_secret), else
GLOBUS_COMPUTE_CLIENT_ID/GLOBUS_COMPUTE_CLIENT_SECRET, else client_id/client_secret
in the config file; never from a flag. Under systemd (Type=notify) the daemon
reports READY/STATUS/WATCHDOG/STOPPING on $NOTIFY_SOCKET.
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gcgated",
        description="The gcgate daemon: one shared Globus Compute gateway per host or user.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gcgated {__version__}")
    parser.add_argument("--config", type=Path, help="TOML config file")
    parser.add_argument("--socket", dest="socket_path", help="Unix socket path to serve on")
    parser.add_argument("--state-dir", dest="state_dir", help="directory for the store and locks")
    parser.add_argument("--workers", type=int, help="local endpoint workers (0: one per CPU)")
    parser.add_argument(
        "--retention-days",
        dest="retention_days",
        type=float,
        help="days a result is kept after it was first retrieved (0: until retrieved)",
    )
    parser.add_argument(
        "--unread-retention-days",
        dest="unread_retention_days",
        type=float,
        help="days a result nobody retrieved is kept after it was stored (inf: until read)",
    )
    parser.add_argument(
        "--store-size-limit-mb",
        dest="store_size_limit_mb",
        type=int,
        help="refuse new submissions once the store is this large",
    )
    parser.add_argument(
        "--group",
        help="let this group's members connect: socket 0660 and its directory 0750,"
        " owned by the group (default: only the daemon's user)",
    )
    parser.add_argument(
        "--metrics-listen",
        dest="metrics_listen",
        metavar="ADDRESS",
        help="also serve Prometheus metrics over HTTP at ADDRESS/metrics: a loopback"
        " HOST:PORT (127.0.0.1:9464, [::1]:9464, localhost:9464) or unix:/path"
        " (default: only the GetMetrics RPC, `gcgate metrics`)",
    )
    parser.add_argument(
        "--log-level", dest="log_level", choices=LOG_LEVELS, type=str.upper, help="gcgated's own"
    )
    parser.add_argument(
        "--log-level-libraries",
        dest="log_level_libraries",
        choices=LOG_LEVELS,
        type=str.upper,
        help="grpc, asyncio, aio_pika, globus_sdk, ... (default WARNING)",
    )
    parser.add_argument(
        "--log-format", dest="log_format", choices=LOG_FORMATS, type=str.lower, help="default auto"
    )
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="check the configuration as a start would, print it, and exit (0 ok, 2 problems)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    flags = {k: v for k, v in vars(args).items() if k not in ("config", "check_config")}
    try:
        config = load_config(args.config, flags)
    except StartupError as exc:
        print(f"gcgated: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        return check_config(config, config_file_path(args.config))
    logs.configure(config)
    logs.log_settings(log, config, config_file_path(args.config))
    from gcgated.daemon import serve  # after logging is set up

    try:
        asyncio.run(serve(config, reload=lambda: load_config(args.config, flags)))
    except StartupError as exc:
        log.error("%s", exc)
        return 1
    return 0


def check_config(config: Config, searched: Path) -> int:
    """``--check-config``: the file and settings on stdout, each problem on stderr."""
    from gcgated.preflight import problems

    print(f"config file: {config.config_file or f'none (looked for {searched})'}")
    for name, (value, source) in config.effective_settings().items():
        print(f"{name} = {value} ({source})")
    found = problems(config)
    for problem in found:
        print(f"gcgated: {problem}", file=sys.stderr)
    return 2 if found else 0


if __name__ == "__main__":
    sys.exit(main())
