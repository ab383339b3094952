"""The ``gcgate`` commands an admin reaches for, run as the installed console script
against a real daemon: ``endpoints``, ``functions``, ``run``, ``tasks`` with names
and filters, ``result --wait TASK_ID``, ``status`` with and without Globus, and
docs/cli.md against the parser.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import globus_sdk
import pytest
from gcgate import Client, InvalidArgument
from gcgate.cli.commands import build_parser
from gcgate.constants import LOCAL_ENDPOINT_ID
from harness import Daemon, GlobusDaemon, LoginlessDaemon, wait_until
from standin import StandIn
from test_cli import GCGATE, gcgate, run_gcgate

CLI_DOC = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()

#: Functions registered as source text (the daemon's workers cannot import this module).
SOURCE = """
def add(a, b=0):
    return a + b

def boom():
    raise ValueError("boom from run")

def gated(path):
    # Finishes once the test creates ``path``: running for as long as the test needs.
    import os, time
    while not os.path.exists(path):
        time.sleep(0.01)
    return path
"""
#: Two registrations under one name (each edit of a function's code is a new function).
TWICE_V1 = "def twice(x):\n    return 2 * x\n"
TWICE_V2 = "def twice(x):\n    return [x, x]\n"


@dataclass
class Functions:
    add: str
    boom: str
    gated: str
    twice_v1: str
    twice_v2: str


@pytest.fixture(scope="module")
def env(daemon: Daemon, functions: Functions) -> dict[str, str]:
    """The CLI's environment, once the module's functions are registered (the
    ``run`` tests call them by name, whichever test runs first)."""
    return {k: v for k, v in daemon.env.items() if k not in ("FORCE_COLOR", "NO_COLOR")}


@pytest.fixture(scope="module")
def functions(daemon: Daemon) -> Functions:
    with Client(socket_path=daemon.socket_path) as client:
        ids = {name: client.register_source_code(SOURCE, name) for name in ("add", "boom", "gated")}
        v1 = client.register_source_code(TWICE_V1, "twice")
        v2 = client.register_source_code(TWICE_V2, "twice", description="a pair now")
    return Functions(twice_v1=v1, twice_v2=v2, **ids)


def ok(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``gcgate ARGS`` that must succeed."""
    proc = gcgate(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc


def run_json(*args: str, env: dict[str, str]) -> dict:
    return json.loads(ok("run", "--json", *args, env=env).stdout)


# -------------------------------------------------------------------- endpoints


def test_endpoints_lists_the_local_endpoint_and_how_to_see_globus_ones(
    env: dict[str, str],
) -> None:
    proc = ok("endpoints", env=env)
    header, *rows = proc.stdout.splitlines()
    assert header.split() == ["ENDPOINT", "ID", "NAME", "STATUS", "TYPE", "OWNER"]
    assert len(rows) == 1 and rows[0].startswith(LOCAL_ENDPOINT_ID)
    assert "local (" in rows[0] and "online" in rows[0]
    assert "no Globus login" in proc.stderr and "gcgate login" in proc.stderr
    documents = json.loads(ok("endpoints", "--json", "--role", "any", env=env).stdout)
    assert [d["uuid"] for d in documents] == [LOCAL_ENDPOINT_ID]
    assert documents[0]["status"] == "online"


def test_endpoints_role_is_owner_or_any(env: dict[str, str]) -> None:
    proc = gcgate("endpoints", "--role", "mine", env=env)
    assert proc.returncode == 2 and "invalid choice: 'mine'" in proc.stderr


@pytest.fixture(scope="module")
def globus_env(remote: GlobusDaemon) -> dict[str, str]:
    return {k: v for k, v in remote.env.items() if k not in ("FORCE_COLOR", "NO_COLOR")}


def test_endpoints_lists_the_globus_endpoints_of_the_daemons_login(
    globus_env: dict[str, str], standin: StandIn
) -> None:
    documents = json.loads(ok("endpoints", "--json", env=globus_env).stdout)
    assert [d["uuid"] for d in documents] == [LOCAL_ENDPOINT_ID, *standin.endpoint_ids]
    proc = ok("endpoints", "--role", "any", env=globus_env)
    assert proc.stderr == ""  # logged in: no hint
    listed = [row.split()[0] for row in proc.stdout.splitlines()[1:]]
    assert listed == [LOCAL_ENDPOINT_ID, *standin.endpoint_ids]


def test_status_shows_globus_in_a_line_where_it_is_logged_in(globus_env: dict[str, str]) -> None:
    status = json.loads(ok("status", "--json", env=globus_env).stdout)
    login = status["login"]
    assert login["state"] == "client"
    text = ok("status", env=globus_env).stdout
    line = re.search(r"^  globus +(.*)$", text, re.M)
    assert line and line.group(1).endswith(f"client {login['identity']}"), text
    assert "requests_sent=" not in text  # the counters are for --verbose
    assert "requests_sent=" in ok("status", "--verbose", env=globus_env).stdout


def test_status_shows_globus_once_the_store_holds_globus_work_without_a_login(
    loginless_daemon: LoginlessDaemon, standin: StandIn
) -> None:
    """No login, but a client ran a Globus task with its own token: after a restart
    (this run's counters at 0) the store's registrations still show Globus in use."""
    status_env = {**loginless_daemon.env, "NO_COLOR": "1"}
    assert not re.search(r"^  globus ", ok("status", env=status_env).stdout, re.M)
    token = standin.auth.mint_token(standin.auth.add_user("carol@example.org"))
    authorizer = globus_sdk.AccessTokenAuthorizer(token)
    with Client(socket_path=loginless_daemon.socket_path, authorizer=authorizer) as client:
        fid = client.register_source_code(SOURCE, "add")
        task_id = client.run(1, 2, endpoint_id=standin.endpoint_id, function_id=fid)
        assert client.get_result(task_id, wait=60) == 3
    loginless_daemon.restart()
    text = ok("status", env=status_env).stdout
    assert re.search(r"^  globus +\w+, logged out$", text, re.M), text


# -------------------------------------------------------------------- functions


def test_functions_table_json_by_name_and_deleted(
    env: dict[str, str], daemon: Daemon, functions: Functions
) -> None:
    with Client(socket_path=daemon.socket_path) as client:
        retired = client.register_source_code("def retired():\n    return 0\n", "retired")
        client.delete_function(retired)
    header, *rows = ok("functions", env=env).stdout.splitlines()
    assert header.split() == ["FUNCTION", "ID", "NAME", "REGISTERED", "CODE", "DESCRIPTION"]
    names = {row.split()[0]: row.split()[1] for row in rows}
    assert names[functions.add] == "add" and names[functions.twice_v2] == "twice"
    assert retired not in names
    every = ok("functions", "--all", env=env).stdout
    assert re.search(rf"^{retired}  retired \(deleted\) ", every, re.M), every
    twice = json.loads(ok("functions", "--json", "--name", "twice", env=env).stdout)
    assert [f["function_id"] for f in twice] == [functions.twice_v2, functions.twice_v1]
    assert twice[0]["description"] == "a pair now" and twice[0]["serialized"] is False
    assert twice[0]["registered_at"] >= twice[1]["registered_at"] > 0
    one = json.loads(ok("functions", "--json", "--limit", "1", env=env).stdout)
    assert len(one) == 1
    none = ok("functions", "--name", "nothing-by-this-name", env=env)
    assert (
        none.stdout.strip()
        == "no functions named 'nothing-by-this-name' registered with this daemon"
    )


# -------------------------------------------------------------------------- run


def test_run_prints_the_result_as_json(env: dict[str, str], functions: Functions) -> None:
    assert ok("run", "--function", "add", "--args", "[2, 3]", env=env).stdout == "5\n"
    kwargs = '{"args": [2], "kwargs": {"b": 40}}'
    proc = ok("run", "--function-id", functions.add, "--args", kwargs, env=env)
    assert proc.stdout == "42\n"
    assert ok("run", "--function", "twice", "--args", '["ab"]', env=env).stdout == '["ab", "ab"]\n'


def test_run_by_name_runs_the_newest_registration(
    env: dict[str, str], functions: Functions
) -> None:
    answer = run_json("--function", "twice", "--args", "[4]", env=env)
    assert answer["result"] == [4, 4] and answer["status"] == "success"
    with Client(socket_path=env["GCGATE_SOCKET"]) as client:
        assert client.get_tasks([answer["task_id"]])  # it is a task like any other
        listed = client.list_tasks(1, function_id=functions.twice_v2)
    assert listed[0]["task_id"] == answer["task_id"]


def test_run_arguments_from_a_file_and_stdin(env: dict[str, str], tmp_path: Path) -> None:
    args = tmp_path / "args.json"
    args.write_text('{\n  "args": [1],\n  "kwargs": {"b": 2}\n}\n')
    assert ok("run", "--function", "add", "--args-json", str(args), env=env).stdout == "3\n"
    proc = run_gcgate("run", "--function", "add", "--args-json", "-", env=env, stdin="[7, 8]")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "15\n"


def test_run_json_and_no_wait_then_result_wait(env: dict[str, str]) -> None:
    answer = run_json("--function", "add", "--args", "[1, 1]", env=env)
    assert answer["result"] == 2 and answer["pending"] is False
    assert uuid.UUID(answer["task_id"]) and uuid.UUID(answer["task_group_id"])
    task_id = ok("run", "--function", "add", "--args", "[20, 22]", "--no-wait", env=env).stdout
    task_id = task_id.strip()
    assert str(uuid.UUID(task_id)) == task_id
    assert ok("result", "--wait", task_id, env=env).stdout == "42\n"
    no_wait = json.loads(ok("run", "--json", "--no-wait", "--function", "add", env=env).stdout)
    assert set(no_wait) == {"task_id", "task_group_id"}


def test_run_failed_task_prints_its_traceback_and_exits_1(env: dict[str, str]) -> None:
    proc = gcgate("run", "--function", "boom", env=env)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "failed:\nTraceback" in proc.stderr
    assert proc.stderr.rstrip().endswith("ValueError: boom from run")
    answer = json.loads(gcgate("run", "--json", "--function", "boom", env=env).stdout)
    assert answer["status"] == "failed" and "boom from run" in answer["exception"]


def test_run_still_pending_at_the_timeout_exits_4(env: dict[str, str], tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    proc = gcgate(
        "run", "--json", "--function", "gated", "--args", json.dumps([str(gate)]),
        "--timeout", "0.3", env=env,
    )  # fmt: skip
    assert proc.returncode == 4, proc.stderr
    task_id = json.loads(proc.stdout)["task_id"]
    assert f"gcgate result --wait {task_id}" in proc.stderr
    gate.touch()
    with Client(socket_path=env["GCGATE_SOCKET"]) as client:
        assert client.get_result(task_id, wait=60) == str(gate)


def test_run_reuse_answers_from_the_store(env: dict[str, str]) -> None:
    first = run_json("--reuse", "--function", "add", "--args", "[100, 1]", env=env)
    again = run_json("--reuse", "--function", "add", "--args", "[100, 1]", env=env)
    assert again["result"] == first["result"] == 101
    assert again["reused_from"] == first["task_id"] != again["task_id"]


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--function", "add", "--args", "[1"], 5, "--args: not valid JSON"),
        (["--function", "add", "--args", '{"x": 1}'], 5, "unknown keys ['x']"),
        (["--function", "nope"], 5, "no function named 'nope'"),
        (["--function-id", str(uuid.uuid4())], 5, "is not registered"),
        (["--function-id", "add"], 5, "function_id"),
        (["--function", "add", "--endpoint", "somewhere"], 5, "endpoint_id"),
        (["--args", "[]"], 2, "one of the arguments --function-id --function is required"),
        (["--function", "add", "--args", "[]", "--args-json", "-"], 2, "not allowed with"),
    ],
)
def test_run_bad_input(env: dict[str, str], args: list[str], code: int, says: str) -> None:
    proc = gcgate("run", *args, env=env)
    assert proc.returncode == code, proc.stderr
    assert says in proc.stderr
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------------ tasks


def test_tasks_shows_function_names(env: dict[str, str], functions: Functions) -> None:
    task_id = run_json("--function", "add", "--args", "[5]", env=env)["task_id"]
    rows = ok("tasks", "--limit", "5", env=env).stdout.splitlines()[1:]
    row = next(r.split() for r in rows if r.startswith(task_id))
    assert row[1:4] == ["success", "add", "local"]
    listed = json.loads(ok("tasks", "--json", "--limit", "5", env=env).stdout)
    mine = next(t for t in listed if t["task_id"] == task_id)
    assert (mine["function_name"], mine["function_id"]) == ("add", functions.add)


def tasks_json(env: dict[str, str], *args: str) -> list[dict]:
    return json.loads(ok("tasks", "--json", "--limit", "10000", *args, env=env).stdout)


def test_tasks_by_function_name_spans_its_registrations(
    env: dict[str, str], functions: Functions
) -> None:
    old = run_json("--function-id", functions.twice_v1, "--args", "[1]", env=env)["task_id"]
    new = run_json("--function", "twice", "--args", "[1]", env=env)["task_id"]
    failed = gcgate("run", "--json", "--function", "boom", env=env)
    by_name = tasks_json(env, "--function", "twice")
    ids = [t["task_id"] for t in by_name]
    assert {old, new} <= set(ids) and ids.index(new) < ids.index(old)  # newest first
    assert {t["function_id"] for t in by_name} == {functions.twice_v1, functions.twice_v2}
    by_id = tasks_json(env, "--function", functions.twice_v1)
    assert old in {t["task_id"] for t in by_id} and new not in {t["task_id"] for t in by_id}
    limited = tasks_json(env, "--function", "twice", "--limit", "1")
    assert [t["task_id"] for t in limited] == [new]
    boom = tasks_json(env, "--function", "boom", "--status", "failed")
    assert json.loads(failed.stdout)["task_id"] in {t["task_id"] for t in boom}
    assert tasks_json(env, "--function", "boom", "--status", "success") == []


def test_tasks_since_an_age_or_a_date_time(env: dict[str, str]) -> None:
    first = run_json("--function", "add", "--args", "[1]", env=env)["task_id"]
    second = run_json("--function", "add", "--args", "[2]", env=env)["task_id"]
    with Client(socket_path=env["GCGATE_SOCKET"]) as client:
        created = {t["task_id"]: t["created_at"] for t in client.list_tasks(10)}
    cut = (created[first] + created[second]) / 2
    since = datetime.fromtimestamp(cut).isoformat(timespec="microseconds")
    later = {t["task_id"] for t in tasks_json(env, "--since", since)}
    assert second in later and first not in later
    recent = {t["task_id"] for t in tasks_json(env, "--since", "1h")}
    assert {first, second} <= recent
    assert tasks_json(env, "--since", "2999-01-01") == []
    proc = gcgate("tasks", "--since", "last tuesday", env=env)
    assert proc.returncode == 2 and "not an age or a date-time" in proc.stderr


def test_tasks_by_endpoint(env: dict[str, str]) -> None:
    task_id = run_json("--function", "add", "--args", "[3]", env=env)["task_id"]
    assert task_id in {t["task_id"] for t in tasks_json(env, "--endpoint", "local")}
    assert task_id in {t["task_id"] for t in tasks_json(env, "--endpoint", LOCAL_ENDPOINT_ID)}
    elsewhere = str(uuid.uuid4())
    proc = ok("tasks", "--endpoint", elsewhere, "--status", "failed", env=env)
    assert proc.stdout.strip() == f"no tasks with status failed, on endpoint {elsewhere}"
    proc = gcgate("tasks", "--endpoint", "bogus", env=env)
    assert proc.returncode == 5 and "endpoint_id: 'bogus' is not a UUID" in proc.stderr


def test_tasks_unknown_function_name_exits_5(env: dict[str, str]) -> None:
    proc = gcgate("tasks", "--function", "never-registered", env=env)
    assert proc.returncode == 5
    assert "no function named 'never-registered'" in proc.stderr


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"status": "done"}, "status"),
        ({"function_id": "add"}, "function_id"),
        ({"endpoint_id": "far away"}, "endpoint_id"),
        ({"since": -1.0}, "since"),
        ({"since": float("inf")}, "since"),
    ],
)
def test_list_tasks_refuses_a_malformed_filter_naming_it(
    daemon: Daemon, filters: dict, field: str
) -> None:
    with Client(socket_path=daemon.socket_path) as client, pytest.raises(InvalidArgument) as exc:
        client.list_tasks(**filters)
    assert exc.value.message.startswith(field), exc.value.message


# ----------------------------------------------------------------------- result


@pytest.fixture
def gated_task(daemon: Daemon, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A task that runs until its gate file exists; finished at the end."""
    with Client(socket_path=daemon.socket_path) as client:
        fid = client.register_source_code(SOURCE, "gated")
        gate = tmp_path / "gate"
        task_id = client.run(str(gate), endpoint_id="local", function_id=fid)
        try:
            yield task_id, gate
        finally:
            gate.touch()
            assert client.get_result(task_id, wait=60) == str(gate)


def test_result_wait_before_the_task_id_waits_until_it_is_final(
    env: dict[str, str], daemon: Daemon, gated_task: tuple[str, Path]
) -> None:
    task_id, gate = gated_task
    with Client(socket_path=daemon.socket_path) as client:
        wait_until(
            "the gated task runs",
            lambda: task_id in {t["task_id"] for t in client.list_tasks(status="running")},
        )
    assert GCGATE
    with subprocess.Popen(
        [GCGATE, "result", "--wait", task_id], env=env, stdout=subprocess.PIPE, text=True
    ) as waiting:
        with pytest.raises(subprocess.TimeoutExpired):
            waiting.wait(0.5)  # the task cannot finish before its gate opens
        gate.touch()
        out, _ = waiting.communicate(timeout=60)
    assert waiting.returncode == 0
    assert out == repr(str(gate)) + "\n"


def test_result_timeout_implies_wait_and_exits_4(
    env: dict[str, str], gated_task: tuple[str, Path]
) -> None:
    task_id, _ = gated_task
    proc = gcgate("result", task_id, "--timeout", "0.2", env=env)
    assert proc.returncode == 4
    assert "still pending" in proc.stderr and "after waiting 0.2 s" in proc.stderr


# ------------------------------------------------------------------------- docs


def commands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize(("name", "parser"), list(commands().items()))
def test_cli_md_documents_every_command_and_option(
    name: str, parser: argparse.ArgumentParser
) -> None:
    """docs/cli.md's table has a row per command naming each of its options."""
    row = next(
        (line for line in CLI_DOC.splitlines() if line.startswith(f"| `gcgate {name}")), None
    )
    assert row is not None, f"docs/cli.md has no row for gcgate {name}"
    shared = {"--help", "--socket", "--json"}
    options = {max(a.option_strings, key=len) for a in parser._actions if a.option_strings} - shared
    missing = sorted(o for o in options if o not in row)
    assert not missing, f"docs/cli.md's row for gcgate {name} does not name {missing}"
