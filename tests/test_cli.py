"""The ``gcgate`` CLI, run as the installed console script against a real daemon.

Tasks are submitted with :class:`gcgate.Client` (as a user's program would) and
the CLI is then asked about them, so these tests cover the path a person takes:
shell -> console script -> thin client -> daemon.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from gcgate import Client, __version__
from gcgate.constants import LOCAL_ENDPOINT_ID
from harness import Daemon

#: The installed console script (not ``python -m``): what users actually run.
GCGATE = shutil.which("gcgate", path=os.path.dirname(sys.executable))

#: Functions registered as source text: the daemon's workers cannot import this
#: test module, so serialized-by-reference test functions would not load there.
SOURCE = """
def pair(x):
    return (x, x * 2)

def boom():
    raise ValueError("boom from the task")

def as_dict(n):
    return {"n": n, "items": list(range(n))}

def alien():
    # An instance of a class from a module that exists only in the worker.
    import sys, types
    module = types.ModuleType("gcgate_test_alien")
    exec("class Alien: pass", module.__dict__)
    sys.modules[module.__name__] = module
    return module.Alien()
"""


@dataclass
class Tasks:
    """Ids of the tasks the module's daemon has run, by what they return."""

    pair: str
    failed: str
    as_dict: str
    alien: str


def gcgate(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``gcgate`` console script."""
    assert GCGATE, "the gcgate console script is not installed next to this Python"
    return subprocess.run([GCGATE, *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tasks(daemon: Daemon) -> Tasks:
    with Client(daemon.socket_path) as client:
        ids = {
            name: client.register_source_code(SOURCE, name)
            for name in ("pair", "boom", "as_dict", "alien")
        }
        submitted = Tasks(
            pair=client.run(3, endpoint_id="local", function_id=ids["pair"]),
            failed=client.run(endpoint_id="local", function_id=ids["boom"]),
            as_dict=client.run(2, endpoint_id="local", function_id=ids["as_dict"]),
            alien=client.run(endpoint_id="local", function_id=ids["alien"]),
        )
        done = client.get_batch_result(vars(submitted).values(), wait=30)
        assert not any(task["pending"] for task in done.values()), done
    return submitted


@pytest.fixture(scope="module")
def env(daemon: Daemon) -> dict[str, str]:
    return daemon.env


# ------------------------------------------------------------------------ status


def test_status_shows_daemon(env: dict[str, str], daemon: Daemon, tasks: Tasks) -> None:
    proc = gcgate("status", env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"gcgate daemon {__version__}" in proc.stdout
    assert str(daemon.socket_path) in proc.stdout
    assert "local: ready" in proc.stdout
    assert "workers=2" in proc.stdout
    assert "not configured" in proc.stdout
    assert "1 failed" in proc.stdout


def test_status_json(env: dict[str, str], daemon: Daemon, tasks: Tasks) -> None:
    proc = gcgate("status", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert set(status) >= {"version", "pid", "uptime_seconds", "socket_path", "state_dir"}
    assert status["socket_path"] == str(daemon.socket_path)
    assert status["pid"] == daemon.process.pid
    assert status["state_dir"] == str(daemon.state_dir)
    assert [b["name"] for b in status["backends"]] == ["local"]
    assert status["backends"][0]["details"]["workers"] == 2
    assert status["tasks"]["failed"] >= 1
    assert status["store"]["task_records"] >= 3


def test_global_options_also_go_before_the_command(env: dict[str, str], daemon: Daemon) -> None:
    proc = gcgate("--json", "--socket", str(daemon.socket_path), "status", env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["pid"] == daemon.process.pid


def test_unreachable_daemon_exits_3_naming_the_socket(tmp_path: Path) -> None:
    missing = tmp_path / "no-daemon.sock"
    proc = gcgate("status", env={**os.environ, "GCGATE_SOCKET": str(missing)})
    assert proc.returncode == 3
    assert str(missing) in proc.stderr
    assert "gcgated" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_status_wait_gives_up_with_exit_3(tmp_path: Path) -> None:
    missing = tmp_path / "no-daemon.sock"
    proc = gcgate("status", "--wait", "0.5", "--socket", str(missing), env=os.environ.copy())
    assert proc.returncode == 3
    assert str(missing) in proc.stderr


def test_status_wait_for_a_starting_daemon(tmp_path: Path) -> None:
    """The CLI is started first, so it must keep retrying until the daemon is up."""
    assert GCGATE
    starting = Daemon(tmp_path / "state", workers=1)
    starting.wait_ready = lambda: None  # type: ignore[method-assign] - start, don't wait
    waiting = subprocess.Popen(
        [GCGATE, "status", "--wait", "30"],
        env=starting.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        starting.start()
        out, err = waiting.communicate(timeout=60)
        assert waiting.returncode == 0, err + starting.log()
        assert str(starting.socket_path) in out
    finally:
        waiting.kill()
        waiting.wait()
        starting.close()


# ------------------------------------------------------------------------ result


def test_result_prints_repr(env: dict[str, str], tasks: Tasks) -> None:
    proc = gcgate("result", tasks.pair, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(3, 6)"


def test_result_json(env: dict[str, str], tasks: Tasks) -> None:
    proc = gcgate("result", "--json", tasks.as_dict, env=env)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["task_id"] == tasks.as_dict
    assert doc["status"] == "success"
    assert doc["pending"] is False
    assert doc["result"] == {"n": 2, "items": [0, 1]}
    assert float(doc["completion_t"]) > 0


def test_result_json_gives_repr_when_json_would_alter_the_value(
    env: dict[str, str], tasks: Tasks
) -> None:
    proc = gcgate("result", tasks.pair, "--json", "--wait", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["result"] == "(3, 6)"


def test_failed_task_exits_1_with_traceback(env: dict[str, str], tasks: Tasks) -> None:
    proc = gcgate("result", tasks.failed, env=env)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "Traceback" in proc.stderr
    assert "ValueError: boom from the task" in proc.stderr


def test_failed_task_json(env: dict[str, str], tasks: Tasks) -> None:
    proc = gcgate("result", tasks.failed, "--json", env=env)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["status"] == "failed"
    assert "ValueError: boom from the task" in doc["exception"]


def test_undeserializable_result_exits_1(env: dict[str, str], tasks: Tasks) -> None:
    proc = gcgate("result", tasks.alien, env=env)
    assert proc.returncode == 1
    assert "succeeded" in proc.stderr
    assert "gcgate_test_alien" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_task_exits_5(env: dict[str, str], tasks: Tasks) -> None:
    unknown = str(uuid.uuid4())
    proc = gcgate("result", unknown, env=env)
    assert proc.returncode == 5
    assert unknown in proc.stderr
    assert "not known" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_malformed_task_id_exits_5(env: dict[str, str]) -> None:
    proc = gcgate("result", "not-a-task-id", env=env)
    assert proc.returncode == 5
    assert "not-a-task-id" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_pending_task_exits_4(daemon: Daemon, env: dict[str, str]) -> None:
    with Client(daemon.socket_path) as client:
        nap = client.register_source_code(
            "def nap(s):\n    import time\n    time.sleep(s)\n", "nap"
        )
        task_id = client.run(2, endpoint_id="local", function_id=nap)
        proc = gcgate("result", task_id, "--wait", "0.2", env=env)
        assert proc.returncode == 4, proc.stderr
        assert "pending" in proc.stderr
        assert client.get_result(task_id, wait=30) is None  # leave no task running


# ------------------------------------------------------------------ tasks, cache


def test_tasks_table(env: dict[str, str], tasks: Tasks) -> None:
    proc = gcgate("tasks", env=env)
    assert proc.returncode == 0, proc.stderr
    header, *rows = proc.stdout.splitlines()
    assert header.split()[:3] == ["TASK", "ID", "STATUS"]
    listed = {row.split()[0]: row.split() for row in rows}
    assert set(vars(tasks).values()) <= listed.keys()
    assert listed[tasks.failed][1] == "failed"
    assert listed[tasks.pair][3] == "local"
    assert LOCAL_ENDPOINT_ID not in proc.stdout


def test_tasks_json_limit(env: dict[str, str], tasks: Tasks) -> None:
    proc = gcgate("tasks", "--json", "--limit", "2", env=env)
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    assert len(listed) == 2
    assert listed[0]["created_at"] >= listed[1]["created_at"]  # newest first
    assert {t["endpoint_id"] for t in listed} == {LOCAL_ENDPOINT_ID}


def test_tasks_status_filter(env: dict[str, str], tasks: Tasks) -> None:
    proc = gcgate("tasks", "--json", "--status", "failed", env=env)
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    assert tasks.failed in {t["task_id"] for t in listed}
    assert {t["status"] for t in listed} == {"failed"}


def test_cache(env: dict[str, str], tasks: Tasks) -> None:
    proc = gcgate("cache", env=env)
    assert proc.returncode == 0, proc.stderr
    for label in ("size", "functions", "task records", "retention", "failed"):
        assert label in proc.stdout
    doc = json.loads(gcgate("cache", "--json", env=env).stdout)
    assert doc["task_records"] >= 3
    assert doc["tasks"]["failed"] >= 1
    assert 0 <= doc["percent_used"] <= 100


# ------------------------------------------------------------------------- usage


@pytest.mark.parametrize("command", [[], ["status"], ["result"], ["tasks"], ["cache"]])
def test_help(command: list[str]) -> None:
    proc = gcgate(*command, "--help", env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    assert "usage: gcgate" in proc.stdout
    assert "exit codes" in proc.stdout


@pytest.mark.parametrize(
    "args", [[], ["frobnicate"], ["tasks", "--limit", "0"], ["result", "x", "--wait", "-1"]]
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    proc = gcgate(*args, env=os.environ.copy())
    assert proc.returncode == 2
    assert "usage: gcgate" in proc.stderr


def test_runs_as_module(env: dict[str, str], daemon: Daemon) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gcgated.cli.gcgate", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["pid"] == daemon.process.pid
