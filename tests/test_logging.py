"""What an operator reads: the daemon's log lines, its startup line, reload
failures in Status, and ``gcgated --check-config``.

Real daemons on real sockets with real workers; the log is the daemon's stderr
(the harness's log file). Each daemon is started once per test that needs its
own format or environment.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from gcgate import Client
from gcgate.errors import TaskExecutionFailed
from gcgate.v1 import gateway_pb2 as pb
from gcgate.v1 import gateway_pb2_grpc as pb_grpc
from gcgated.logs import JournalFormatter, json_formatter, on_journal
from harness import ConfiguredDaemon, Daemon, script_function, serve, wait_until, write_private

CLIENT_ID = "1b0c4a5e-0000-4f1e-9c2a-6d3f0e8b7a21"
SECRET = "s3cr3t-" + uuid.uuid4().hex
GCGATED = Path(sys.executable).with_name("gcgated")
GCGATE = Path(sys.executable).with_name("gcgate")
WAIT = 30.0
#: A text line's leading timestamp, as the text format writes it.
TIMESTAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


def fails_quietly(marker: str) -> None:
    raise RuntimeError("it failed, as it was asked to")


def records(daemon: Daemon) -> list[dict[str, Any]]:
    """The daemon's log lines, each parsed as JSON (failing on one that is not)."""
    return [json.loads(line) for line in daemon.log().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def json_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConfiguredDaemon]:
    """log_format json, at DEBUG, with a service-account secret in its config file."""
    state = tmp_path_factory.mktemp("json") / "state"
    settings = {"client_id": CLIENT_ID, "client_secret": SECRET, "log_format": "json"}
    yield from serve(ConfiguredDaemon(state, settings, log_level="DEBUG").start())


def stub_call(daemon: Daemon, method: str, request: Any, token: str = "") -> grpc.RpcError:
    """Call ``method``, which must be refused; return the refusal."""
    metadata = [("authorization", f"Bearer {token}")] if token else None
    with grpc.insecure_channel(f"unix:{daemon.socket_path}") as channel:
        call = getattr(pb_grpc.GatewayStub(channel), method)
        with pytest.raises(grpc.RpcError) as refused:
            call(request, timeout=WAIT, metadata=metadata)
    return refused.value


# ---------------------------------------------------------------- JSON lines


def test_every_line_is_a_json_object_with_the_common_fields(json_daemon: Daemon) -> None:
    lines = records(json_daemon)
    assert lines
    for record in lines:
        assert {"ts", "level", "logger", "message"} <= record.keys(), record
        assert record["ts"].endswith("+00:00"), record  # ISO 8601, UTC


def test_startup_line_names_the_config_file_and_hides_the_secret(json_daemon: Daemon) -> None:
    [startup] = [r for r in records(json_daemon) if "settings" in r]
    config_file = json_daemon.extra_args[-1]
    assert startup["level"] == "INFO"
    assert startup["config_file"] == config_file
    assert startup["message"].startswith(f"config file {config_file}; settings: ")
    assert "log_format=json (file)" in startup["message"]
    assert "log_level=DEBUG (flag)" in startup["message"]
    assert "retention_days=30.0 (default)" in startup["message"]
    assert startup["settings"]["client_id"] == CLIENT_ID
    assert startup["settings"]["client_secret"] == "********"
    assert SECRET not in json_daemon.log()


def test_a_failed_task_gives_one_info_line_without_its_arguments(json_daemon: Daemon) -> None:
    marker = f"payload-marker-{uuid.uuid4().hex}"
    with Client(socket_path=json_daemon.socket_path) as client:
        function_id = client.register_function(script_function(fails_quietly))
        task_id = client.run(marker, endpoint_id="local", function_id=function_id)
        with pytest.raises(TaskExecutionFailed, match="it failed, as it was asked to"):
            client.get_result(task_id, wait=WAIT)

    def failure_lines() -> list[dict[str, Any]]:
        return [r for r in records(json_daemon) if r.get("task_id") == task_id]

    wait_until("the task's failure line", lambda: bool(failure_lines()))
    [line] = failure_lines()
    assert line["level"] == "INFO"
    assert line["logger"] == "gcgated.core"
    assert line["function_id"] == function_id
    assert line["endpoint_id"] == client_local_endpoint(json_daemon)
    assert line["backend"] == "local"
    assert line["error"] == "RuntimeError: it failed, as it was asked to"
    assert line["message"] == (
        f"task {task_id} failed (function {function_id}, endpoint {line['endpoint_id']},"
        f" backend local): RuntimeError: it failed, as it was asked to"
    )
    assert marker not in json_daemon.log()


def client_local_endpoint(daemon: Daemon) -> str:
    with Client(socket_path=daemon.socket_path) as client:
        [local] = [b for b in client.status()["backends"] if b["name"] == "local"]
    return str(local["endpoint_id"])


@pytest.mark.parametrize(
    ("task_id", "code"),
    [("not-a-task-id", "INVALID_ARGUMENT"), (str(uuid.uuid4()), "NOT_FOUND")],
    ids=["malformed", "unknown"],
)
def test_a_refused_request_gives_one_info_line(
    json_daemon: Daemon, task_id: str, code: str
) -> None:
    token = f"token-{uuid.uuid4().hex}"
    refused = stub_call(json_daemon, "GetResult", pb.GetResultRequest(task_id=task_id), token)
    assert refused.code().name == code

    def refusal_lines() -> list[dict[str, Any]]:
        return [r for r in records(json_daemon) if r.get("reason") == refused.details()]

    wait_until("the refusal line", lambda: bool(refusal_lines()))
    [line] = refusal_lines()
    assert line["level"] == "INFO"
    assert (line["rpc"], line["code"]) == ("GetResult", code)
    assert line["caller"].startswith("token:")  # the token's fingerprint, not the token
    assert token not in json_daemon.log()


def test_a_long_multiline_refusal_stays_one_short_line(json_daemon: Daemon) -> None:
    flood = f"flood-{uuid.uuid4().hex}\n" + "x" * 5000 + "\nsecond line"
    refused = stub_call(json_daemon, "GetResult", pb.GetResultRequest(task_id=flood))
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    prefix = flood.split("\n")[0]

    def refusal_lines() -> list[str]:
        return [line for line in json_daemon.log().splitlines() if prefix in line]

    wait_until("the refusal line", lambda: bool(refusal_lines()))
    [line] = refusal_lines()
    record = json.loads(line)
    assert len(record["reason"]) <= 200
    assert "\n" not in record["reason"] and "\n" not in record["message"]
    assert len(line) < 1000


def test_debug_shows_gcgated_and_not_the_libraries(json_daemon: Daemon) -> None:
    with Client(socket_path=json_daemon.socket_path) as client:
        task_id = client.run(endpoint_id="local", function_id=client.register_function(os.getpid))
        client.get_result(task_id, wait=WAIT)
    debug = [r for r in records(json_daemon) if r["level"] == "DEBUG"]
    messages = " | ".join(r["message"] for r in debug)
    for what in ("accepted 1 task(s) for endpoint", "dispatching 1 task(s) to the local backend"):
        assert what in messages
    assert "stored 1 outcome(s)" in messages
    assert {r["logger"].split(".")[0] for r in debug} == {"gcgated"}


# ---------------------------------------------------------------- journald


@pytest.fixture
def journal_daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A daemon whose stderr is "journald's stream": JOURNAL_STREAM names the
    device and inode of its log file; asyncio's DEBUG asked for by the environment."""
    config = write_private(tmp_path / "gcgated.toml", "retention_days = 7\n")
    daemon = Daemon(tmp_path / "state", workers=1, extra_args=("--config", str(config)))
    daemon.log_path.touch()
    info = daemon.log_path.stat()
    daemon.daemon_env = {
        "JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}",
        "GCGATE_LOG_LEVEL_LIBRARIES": "DEBUG",
    }
    yield from serve(daemon.start())


def test_on_journald_lines_carry_a_priority_and_no_timestamp(journal_daemon: Daemon) -> None:
    lines = journal_daemon.log().splitlines()
    assert lines
    for line in lines:
        assert line[:3] in ("<3>", "<4>", "<6>", "<7>"), line
        assert not re.match(rf"<\d>{TIMESTAMP}", line), line
    serving = f"<6>gcgated.daemon: gcgated serving on {journal_daemon.socket_path} "
    assert [line for line in lines if line.startswith(serving)]
    assert [line for line in lines if line.startswith("<7>asyncio: ")]  # libraries: DEBUG


def test_a_failed_reload_shows_in_status_until_a_good_one(
    journal_daemon: Daemon, tmp_path: Path
) -> None:
    d = journal_daemon
    assert d.process is not None
    config = tmp_path / "gcgated.toml"
    before = status(d)
    assert (before.reload.ok, before.reload.last_reload_at, before.reload.error) == (True, 0, "")
    assert before.config_file == str(config)

    config.write_text("log_format = 'yaml'\n")
    d.process.send_signal(signal.SIGHUP)
    wait_until("the failed reload in Status", lambda: not status(d).reload.ok)
    failed = status(d).reload
    assert "log_format must be one of auto, text, json, journal, not 'yaml'" in failed.error
    assert failed.last_reload_at > 0
    shown = gcgate(d, "status")
    assert "last reload failed at " in shown
    assert f"{failed.error}; running with the previous configuration" in " ".join(shown.split())
    reload_json = json.loads(gcgate(d, "--json", "status"))["reload"]
    assert reload_json == {
        "last_reload_at": failed.last_reload_at,
        "ok": False,
        "error": failed.error,
    }
    assert [line for line in d.log().splitlines() if line.startswith("<3>gcgated.daemon: reload")]

    config.write_text("retention_days = 7\npoll_chunk = 100\n")
    d.process.send_signal(signal.SIGHUP)
    wait_until("the good reload in Status", lambda: status(d).reload.ok)
    fixed = status(d).reload
    assert fixed.error == "" and fixed.last_reload_at >= failed.last_reload_at
    assert "last reload failed" not in gcgate(d, "status")
    warning = "<4>gcgated.daemon: reload: poll_chunk changed (500 -> 100); it takes effect when"
    assert warning in d.log()


def status(daemon: Daemon) -> pb.StatusResponse:
    with grpc.insecure_channel(f"unix:{daemon.socket_path}") as channel:
        return pb_grpc.GatewayStub(channel).Status(pb.StatusRequest(), timeout=WAIT)


def gcgate(daemon: Daemon, *args: str) -> str:
    done = subprocess.run(
        [str(GCGATE), "--socket", str(daemon.socket_path), *args],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# ---------------------------------------------------------------- --check-config


def check_config(tmp_path: Path, config: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = write_private(tmp_path / "gcgated.toml", config)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GCGATE_", "GLOBUS_"))}
    return subprocess.run(
        [str(GCGATED), "--check-config", "--config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env={**env, "XDG_RUNTIME_DIR": str(tmp_path / "run")},
    )


def test_check_config_prints_the_settings_and_creates_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    done = check_config(
        tmp_path,
        f"client_id = '{CLIENT_ID}'\nclient_secret = '{SECRET}'\nretention_days = 3\n",
        "--state-dir",
        str(state),
        "--log-format",
        "json",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"config file: {tmp_path / 'gcgated.toml'}\n")
    for line in (
        "retention_days = 3.0 (file)",
        "log_format = json (flag)",
        f"state_dir = {state} (flag)",
        "client_secret = ******** (file)",
        "workers = 0 (default)",
    ):
        assert line in done.stdout.splitlines()
    assert SECRET not in done.stdout + done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gcgated.toml"]  # no state, no socket


@pytest.mark.parametrize(
    ("config", "mode", "problem"),
    [
        ("log_format = 'yaml'\n", 0o600, "log_format must be one of auto, text, json, journal"),
        ("log_level_libraries = 'LOUD'\n", 0o600, "log_level_libraries must be one of DEBUG"),
        ("group = 'no-such-group-here'\n", 0o600, "group 'no-such-group-here' does not exist"),
        (f"client_secret = '{SECRET}'\n", 0o600, "a client secret is configured"),
        (
            f"client_id = '{CLIENT_ID}'\nclient_secret = '{SECRET}'\n",
            0o644,
            "is readable by its group and others",
        ),
        # The Globus backend's tunables are settings like any other.
        ("[gcgated]\npoll_chunk = 0\n", 0o600, "poll_chunk must be > 0, not 0"),
        ("compute_url = 'ftp://compute'\n", 0o600, "'ftp://compute' is not an http(s) URL"),
    ],
    ids=[
        "format",
        "library-level",
        "group",
        "half-a-pair",
        "readable-secret",
        "globus-tunable",
        "compute-url",
    ],
)
def test_check_config_names_each_problem(
    tmp_path: Path, config: str, mode: int, problem: str
) -> None:
    path = write_private(tmp_path / "gcgated.toml", config, mode)
    done = subprocess.run(
        [str(GCGATED), "--check-config", "--config", str(path), "--state-dir", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env={k: v for k, v in os.environ.items() if not k.startswith(("GCGATE_", "GLOBUS_"))},
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert problem in done.stderr
    assert SECRET not in done.stdout + done.stderr
    assert not (tmp_path / "s").exists()


def test_check_config_finds_what_a_start_refuses_about_a_metrics_socket(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "metrics.sock"
    done = check_config(tmp_path, f"metrics_listen = 'unix:{missing}'\n")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"metrics_listen: the directory of {missing} does not exist" in done.stderr
    squatter = tmp_path / "metrics.sock"
    squatter.write_text("not a socket\n")
    done = check_config(tmp_path, f"metrics_listen = 'unix:{squatter}'\n")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"metrics_listen: {squatter} exists and is not a socket" in done.stderr
    assert squatter.read_text() == "not a socket\n"


def test_an_empty_gcgate_config_variable_is_unset(tmp_path: Path) -> None:
    """As every GCGATE_* variable: the default file is looked for, not "." read."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GCGATE_", "GLOBUS_"))}
    done = subprocess.run(
        [str(GCGATED), "--check-config", "--state-dir", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env=env
        | {
            "GCGATE_CONFIG": "",
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        },
    )
    assert done.returncode == 0, done.stderr
    looked_for = tmp_path / "config" / "gcgate" / "gcgated.toml"
    assert done.stdout.startswith(f"config file: none (looked for {looked_for})\n")


def test_check_config_finds_an_unusable_state_directory(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    done = check_config(tmp_path, "retention_days = 3\n", "--state-dir", str(shared))
    assert done.returncode == 2
    assert f"state directory: {shared} is writable by other users" in done.stderr
    assert "retention_days = 3.0 (file)" in done.stdout  # the settings are still shown


# ---------------------------------------------------------------- formatters


def record_with_traceback() -> logging.LogRecord:
    try:
        raise ValueError("inner problem")
    except ValueError:
        return logging.LogRecord(
            "gcgated.core", logging.ERROR, __file__, 1, "it broke", None, sys.exc_info()
        )


@pytest.mark.fast
def test_journal_keeps_a_traceback_in_one_entry() -> None:
    text = JournalFormatter(logging.Formatter("%(name)s: %(message)s")).format(
        record_with_traceback()
    )
    assert "\n" not in text
    assert text.startswith("<3>gcgated.core: it broke\\nTraceback (most recent call last):")
    assert text.endswith("ValueError: inner problem")


@pytest.mark.fast
@pytest.mark.parametrize(
    ("level", "prefix"),
    [
        (logging.DEBUG, "<7>"),
        (logging.INFO, "<6>"),
        (logging.WARNING, "<4>"),
        (logging.ERROR, "<3>"),
    ],
)
def test_journal_priorities(level: int, prefix: str) -> None:
    record = logging.LogRecord("gcgated", level, __file__, 1, "m", None, None)
    assert JournalFormatter(json_formatter()).format(record).startswith(prefix + "{")


@pytest.mark.fast
def test_journal_stream_must_be_the_stream_itself(tmp_path: Path) -> None:
    with (tmp_path / "a").open("w") as a, (tmp_path / "b").open("w") as b:
        info = os.fstat(a.fileno())
        environ = {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        assert on_journal(a, environ)
        assert not on_journal(b, environ)  # inherited variable, stderr elsewhere
        assert not on_journal(a, {"JOURNAL_STREAM": "garbage"})
        assert not on_journal(a, {})
