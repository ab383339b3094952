"""The ``gcgate`` CLI, run as the installed console script against a real daemon.

Tasks are submitted with :class:`gcgate.Client` (as a user's program would) and
the CLI is then asked about them, so these tests cover the path a person takes:
shell -> console script -> thin client -> daemon.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from gcgate import Client, __version__
from gcgate.batch import by_size
from gcgate.cli.commands import build_parser, duration
from gcgate.cli.submit import TaskInput
from gcgate.constants import LOCAL_ENDPOINT_ID
from harness import Daemon, wait_until

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

def gated(path):
    # Finishes once the test creates ``path``: a task that is running for as
    # long as the test needs, without the test sleeping.
    import os, time
    while not os.path.exists(path):
        time.sleep(0.01)
    return path
"""


@dataclass
class Tasks:
    """Ids of the tasks the module's daemon has run, by what they return."""

    pair: str
    failed: str
    as_dict: str
    alien: str


#: Every ``gcgate`` command, from its parser: a new command is in the completion
#: and help tests (and docs/cli.md's, in test_cli_admin) without being listed here.
SUBCOMMANDS = tuple(
    next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
)


def gcgate(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``gcgate`` console script."""
    assert GCGATE, "the gcgate console script is not installed next to this Python"
    return subprocess.run([GCGATE, *args], env=env, capture_output=True, text=True, timeout=timeout)


def run_gcgate(
    *args: str, env: dict[str, str], stdin: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the ``gcgate`` console script with ``stdin`` as its standard input."""
    assert GCGATE, "the gcgate console script is not installed next to this Python"
    return subprocess.run(
        [GCGATE, *args], env=env, input=stdin, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def tasks(daemon: Daemon) -> Tasks:
    with Client(socket_path=daemon.socket_path) as client:
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
    """The daemon's environment, with colour forced neither on nor off."""
    return {k: v for k, v in daemon.env.items() if k not in ("FORCE_COLOR", "NO_COLOR")}


@dataclass
class Gate:
    """A running task that finishes when the test opens its gate."""

    task_id: str
    path: Path

    def open(self) -> None:
        self.path.touch()


@pytest.fixture
def gate(daemon: Daemon, tmp_path: Path) -> Iterator[Gate]:
    """A gated task; opened and finished at the end, so no worker stays busy."""
    with Client(socket_path=daemon.socket_path) as client:
        fid = client.register_source_code(SOURCE, "gated")
        path = tmp_path / "gate"
        g = Gate(client.run(str(path), endpoint_id="local", function_id=fid), path)
        try:
            yield g
        finally:
            g.open()
            assert client.get_result(g.task_id, wait=60) == str(path)


# ------------------------------------------------------------------------ status


def test_status_shows_daemon(env: dict[str, str], daemon: Daemon, tasks: Tasks) -> None:
    proc = gcgate("status", env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"gcgate daemon {__version__}" in proc.stdout
    assert str(daemon.socket_path) in proc.stdout
    assert "local: ready" in proc.stdout
    assert "workers=2" in proc.stdout
    # Globus is not in use here (no login, no Globus task): not a word of it.
    assert "globus" not in proc.stdout.lower()
    assert "1 failed" in proc.stdout


def test_status_verbose_shows_every_backend(env: dict[str, str], tasks: Tasks) -> None:
    proc = gcgate("status", "--verbose", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "local: ready" in proc.stdout
    assert "globus: " in proc.stdout and "requests_sent=0" in proc.stdout
    assert re.search(r"^  globus +\w+, logged out$", proc.stdout, re.M), proc.stdout


def test_status_json(env: dict[str, str], daemon: Daemon, tasks: Tasks) -> None:
    proc = gcgate("status", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert set(status) >= {"version", "pid", "uptime_seconds", "socket_path", "state_dir"}
    assert status["socket_path"] == str(daemon.socket_path)
    assert status["pid"] == daemon.process.pid
    assert status["state_dir"] == str(daemon.state_dir)
    assert [b["name"] for b in status["backends"]] == ["local", "globus"]
    assert status["backends"][0]["details"]["workers"] == 2
    assert status["login"] == {"state": "logged_out", "identity": ""}
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


def test_pending_task_exits_4(daemon: Daemon, env: dict[str, str], tmp_path: Path) -> None:
    release = tmp_path / "release"
    with Client(socket_path=daemon.socket_path) as client:
        fid = client.register_source_code(SOURCE, "gated")
        # Pending until released, however slowly the command starts.
        task_id = client.run(str(release), endpoint_id="local", function_id=fid)
        proc = gcgate("result", task_id, "--timeout", "0.2", env=env)
        release.touch()
        assert proc.returncode == 4, proc.stderr
        assert "pending" in proc.stderr
        assert client.get_result(task_id, wait=30) == str(release)  # none left running


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


def test_tasks_status_running_lists_the_task_a_worker_runs(
    env: dict[str, str], tasks: Tasks, gate: Gate
) -> None:
    proc = gcgate("tasks", "--json", "--status", "running", env=env)
    assert proc.returncode == 0, proc.stderr
    listed = [(t["task_id"], t["status"], t["pending"]) for t in json.loads(proc.stdout)]
    assert listed == [(gate.task_id, "running", True)]


def test_cache(env: dict[str, str], tasks: Tasks) -> None:
    proc = gcgate("cache", env=env)
    assert proc.returncode == 0, proc.stderr
    for label in ("size", "functions", "task records", "retention", "failed"):
        assert label in proc.stdout
    doc = json.loads(gcgate("cache", "--json", env=env).stdout)
    assert doc["task_records"] >= 3
    assert doc["tasks"]["failed"] >= 1
    assert 0 <= doc["percent_used"] <= 100


# -------------------------------------------------------------------------- wait


def test_wait_for_finished_and_running_tasks(env: dict[str, str], tasks: Tasks, gate: Gate) -> None:
    assert GCGATE
    waiting = subprocess.Popen(
        [GCGATE, "wait", tasks.pair, gate.task_id],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        gate.open()
        out, err = waiting.communicate(timeout=60)
    finally:
        waiting.kill()
        waiting.wait()
    assert waiting.returncode == 0, err
    assert out.strip() == "2 tasks: 2 succeeded, 0 failed"
    assert err == ""  # no bar, no escape codes: stderr is not a terminal


def test_wait_json(env: dict[str, str], tasks: Tasks) -> None:
    proc = gcgate("wait", "--json", tasks.as_dict, tasks.failed, env=env)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert list(doc) == [tasks.as_dict, tasks.failed]
    assert doc[tasks.as_dict]["status"] == "success"
    assert doc[tasks.as_dict]["result"] == {"n": 2, "items": [0, 1]}
    assert doc[tasks.failed]["status"] == "failed"
    assert "ValueError: boom from the task" in doc[tasks.failed]["exception"]


def test_wait_with_a_failed_task_exits_1_naming_it(env: dict[str, str], tasks: Tasks) -> None:
    proc = gcgate("wait", tasks.pair, tasks.failed, env=env)
    assert proc.returncode == 1
    assert proc.stdout.strip() == "2 tasks: 1 succeeded, 1 failed"
    assert f"failed: {tasks.failed}: ValueError: boom from the task" in proc.stderr
    assert tasks.pair not in proc.stderr


def test_wait_timeout_with_a_pending_task_exits_4(
    env: dict[str, str], tasks: Tasks, gate: Gate
) -> None:
    proc = gcgate("wait", "--timeout", "1", tasks.pair, gate.task_id, env=env)
    assert proc.returncode == 4, proc.stderr
    assert proc.stdout.strip() == "2 tasks: 1 succeeded, 0 failed, 1 still pending after 1 s"
    assert f"pending: {gate.task_id}" in proc.stderr
    doc = json.loads(gcgate("wait", "--json", "--timeout", "0", gate.task_id, env=env).stdout)
    assert doc == {gate.task_id: {"status": doc[gate.task_id]["status"], "pending": True}}


def test_wait_reads_task_ids_from_stdin(env: dict[str, str], tasks: Tasks) -> None:
    ids = f"{tasks.pair}\n\n{tasks.as_dict}\n{tasks.pair.upper()}\n"
    proc = run_gcgate("wait", "--json", "-", env=env, stdin=ids)
    assert proc.returncode == 0, proc.stderr
    assert list(json.loads(proc.stdout)) == [tasks.pair, tasks.as_dict]


@pytest.mark.parametrize(
    ("args", "stdin", "code", "message"),
    [
        (["-"], "", 2, "no task ids"),
        (["not-a-task-id"], "", 5, "not-a-task-id"),
        ([str(uuid.UUID(int=7))], "", 5, "not known"),
    ],
)
def test_wait_bad_ids(
    env: dict[str, str], args: list[str], stdin: str, code: int, message: str
) -> None:
    proc = run_gcgate("wait", *args, env=env, stdin=stdin)
    assert proc.returncode == code
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_wait_shows_a_progress_bar_on_a_terminal(env: dict[str, str], tasks: Tasks) -> None:
    """With stderr on a terminal the bar is drawn there; stdout keeps the summary."""
    assert GCGATE
    main, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        proc = subprocess.Popen(
            [GCGATE, "wait", tasks.pair, tasks.as_dict],
            env=env,
            stdout=subprocess.PIPE,
            stderr=terminal,
            text=True,
        )
        os.close(terminal)
        drawn = read_terminal(main)
        out, _ = proc.communicate(timeout=60)
    finally:
        os.close(main)
    assert proc.returncode == 0
    assert out.strip() == "2 tasks: 2 succeeded, 0 failed"
    assert "2/2" in drawn


def read_terminal(fd: int) -> str:
    """Everything written to a pseudo-terminal until its last writer closes it."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other side is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


# ---------------------------------------------------- register-source and batch

BATCH_SOURCE = """
def stats(items, scale=1):
    return {"total": sum(items) * scale, "largest": max(items), "count": len(items)}
"""

BATCH_INPUT = [
    ([[3, 1, 2]], {}),
    ([[10]], {"scale": 3}),
    ([[-1, -5]], {"scale": -2}),
    ([list(range(100))], {}),
]


def expected_stats(items: list[int], scale: int = 1) -> dict[str, int]:
    """What ``stats`` returns, computed here independently."""
    return {"total": sum(items) * scale, "largest": max(items), "count": len(items)}


@pytest.fixture(scope="module")
def stats_function(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    source = tmp_path_factory.mktemp("source") / "stats.py"
    source.write_text(BATCH_SOURCE)
    proc = gcgate("register-source", str(source), "--name", "stats", env=env)
    assert proc.returncode == 0, proc.stderr
    function_id = proc.stdout.strip()
    assert str(uuid.UUID(function_id)) == function_id
    return function_id


def batch_lines() -> str:
    """The input as JSON lines, in both accepted forms and with a blank line."""
    lines = []
    for number, (args, kwargs) in enumerate(BATCH_INPUT):
        if kwargs or number % 2:
            lines.append(json.dumps({"args": args, "kwargs": kwargs}))
        else:
            lines.append(json.dumps(args))
    return "\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]) + "\n"


def test_batch_prints_each_result(env: dict[str, str], stats_function: str) -> None:
    proc = run_gcgate(
        "batch", "--function-id", stats_function, "--args-json", "-", env=env, stdin=batch_lines()
    )
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert results == [expected_stats(*args, **kwargs) for args, kwargs in BATCH_INPUT]
    assert f"{len(BATCH_INPUT)} tasks: {len(BATCH_INPUT)} succeeded" in proc.stderr


def test_batch_json_from_a_file(env: dict[str, str], stats_function: str, tmp_path: Path) -> None:
    lines = tmp_path / "args.jsonl"
    lines.write_text(batch_lines())
    proc = gcgate(
        "batch", "--json", "--function-id", stats_function, "--args-json", str(lines), env=env
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert uuid.UUID(doc["task_group_id"])
    assert [t["status"] for t in doc["tasks"]] == ["success"] * len(BATCH_INPUT)
    assert [t["result"] for t in doc["tasks"]] == [
        expected_stats(*args, **kwargs) for args, kwargs in BATCH_INPUT
    ]


def test_batch_no_wait_then_wait(env: dict[str, str], stats_function: str) -> None:
    proc = run_gcgate(
        "batch",
        "--no-wait",
        "--function-id",
        stats_function,
        "--args-json",
        "-",
        env=env,
        stdin=batch_lines(),
    )
    assert proc.returncode == 0, proc.stderr
    ids = proc.stdout.split()
    assert len(ids) == len(BATCH_INPUT) == len(set(ids))
    waited = run_gcgate("wait", "--json", "-", env=env, stdin=proc.stdout)
    assert waited.returncode == 0, waited.stderr
    doc = json.loads(waited.stdout)
    assert [doc[tid]["result"] for tid in ids] == [
        expected_stats(*args, **kwargs) for args, kwargs in BATCH_INPUT
    ]


def test_batch_reports_failed_tasks(env: dict[str, str], stats_function: str) -> None:
    """max() of an empty list fails in the task: its line is null, stderr names it."""
    proc = run_gcgate(
        "batch",
        "--function-id",
        stats_function,
        "--args-json",
        "-",
        env=env,
        stdin="[[1, 2]]\n[[]]\n",
    )
    assert proc.returncode == 1
    assert [json.loads(line) for line in proc.stdout.splitlines()] == [expected_stats([1, 2]), None]
    assert "2 tasks: 1 succeeded, 1 failed" in proc.stderr
    assert "ValueError" in proc.stderr and "max()" in proc.stderr


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        ("[1]\n[1,\n", "<stdin>:2: not valid JSON"),
        ("[1]\n\n7\n", "<stdin>:3: expected a JSON array"),
        ('{"args": [], "kw": {}}\n', "unknown keys ['kw']"),
        ('{"args": {}}\n', '"args" must be a JSON array'),
        ("\n\n", "no tasks"),
    ],
)
def test_batch_bad_input_exits_5(
    env: dict[str, str], stats_function: str, stdin: str, message: str
) -> None:
    proc = run_gcgate(
        "batch", "--function-id", stats_function, "--args-json", "-", env=env, stdin=stdin
    )
    assert proc.returncode == 5
    assert message in proc.stderr
    assert proc.stdout == ""


def test_batch_unknown_function_exits_5(env: dict[str, str]) -> None:
    unknown = str(uuid.UUID(int=9))
    proc = run_gcgate("batch", "--function-id", unknown, "--args-json", "-", env=env, stdin="[]")
    assert proc.returncode == 5
    assert unknown in proc.stderr


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def other():\n    pass\n", "does not define 'stats'"),
        ("def stats(:\n", ":1: "),
    ],
)
def test_register_source_checks_the_source(
    env: dict[str, str], tmp_path: Path, source: str, message: str
) -> None:
    path = tmp_path / "f.py"
    path.write_text(source)
    proc = gcgate("register-source", str(path), "--name", "stats", env=env)
    assert proc.returncode == 5
    assert message in proc.stderr


def test_register_source_json_from_stdin(env: dict[str, str], stats_function: str) -> None:
    proc = run_gcgate(
        "register-source", "-", "--name", "stats", "--json", env=env, stdin=BATCH_SOURCE
    )
    assert proc.returncode == 0, proc.stderr
    # The same source and name give the same id (registration is content-addressed).
    assert json.loads(proc.stdout) == {"function_id": stats_function, "function_name": "stats"}


def test_batch_splits_large_input_into_submissions() -> None:
    tasks = [TaskInput(json.dumps([n]), "") for n in range(10)]
    sizes = [t.size for t in tasks]
    limit = sum(sizes[:3])
    split = list(by_size(tasks, limit))
    assert [len(c) for c in split] == [3, 3, 3, 1]
    assert [t for c in split for t in c] == tasks
    assert [len(c) for c in by_size(tasks, 1)] == [1] * 10


# ------------------------------------------------------------------------ colour


def test_tasks_colours_only_on_a_terminal(env: dict[str, str], tasks: Tasks) -> None:
    plain = gcgate("tasks", env=env)
    assert plain.returncode == 0, plain.stderr
    assert "\x1b[" not in plain.stdout
    forced = gcgate("tasks", env={**env, "FORCE_COLOR": "1"})
    assert forced.returncode == 0, forced.stderr
    assert "\x1b[32msuccess\x1b[0m" in forced.stdout
    assert "\x1b[31mfailed\x1b[0m" in forced.stdout
    # The columns line up the same with colours as without.
    assert strip_ansi(forced.stdout).splitlines()[0] == plain.stdout.splitlines()[0]
    assert gcgate("tasks", "--json", env={**env, "FORCE_COLOR": "1"}).stdout.count("\x1b") == 0


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


# ------------------------------------------------------------ forget and purge


@dataclass
class Group:
    """Tasks of a task group of their own (purges name it: the module's other tasks
    stay), two succeeded (the first retrieved) and one failed."""

    task_group_id: str
    pair_function: str
    boom_function: str
    succeeded: list[str]
    failed: str


@pytest.fixture
def group(daemon: Daemon) -> Group:
    with Client(socket_path=daemon.socket_path) as client:
        pair_fn = client.register_source_code(SOURCE, "pair")
        boom_fn = client.register_source_code(SOURCE, "boom")
        task_group_id = str(uuid.uuid4())
        batch = client.create_batch(task_group_id=task_group_id)
        batch.add(pair_fn, args=(1,))
        batch.add(pair_fn, args=(2,))
        batch.add(boom_fn)
        ids = client.batch_run("local", batch)["tasks"]
        # Waited for without reading them (a read is a retrieval, which --retrieved sees).
        wait_until("the group final", lambda: not client.list_tasks(status="pending"), 30)
        assert client.get_result(ids[pair_fn][0]) == (1, 2)  # retrieved once
    return Group(task_group_id, pair_fn, boom_fn, ids[pair_fn], ids[boom_fn][0])


def test_forget_then_result_says_forgotten(env: dict[str, str], group: Group) -> None:
    unknown = str(uuid.uuid4())
    proc = gcgate("forget", group.succeeded[0], unknown, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("forgot 1 task(s), freed ")
    assert f"not in the store: {unknown}" in proc.stdout

    proc = gcgate("result", group.succeeded[0], env=env)
    assert proc.returncode == 5
    assert "was forgotten" in proc.stderr

    doc = json.loads(gcgate("forget", "--json", group.succeeded[1], env=env).stdout)
    assert (doc["forgotten"], doc["in_flight"], doc["unknown_task_ids"]) == (1, 0, [])
    assert doc["size_bytes"] > 0


def test_forget_a_task_in_flight_needs_the_flag(
    env: dict[str, str], daemon: Daemon, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    with Client(socket_path=daemon.socket_path) as client:
        fid = client.register_source_code(SOURCE, "gated")
        task_id = client.run(str(release), endpoint_id="local", function_id=fid)
    try:
        proc = gcgate("forget", task_id, env=env)
        assert proc.returncode == 1
        assert "in flight" in proc.stderr and "--in-flight" in proc.stderr
        assert "Traceback" not in proc.stderr

        proc = gcgate("forget", "--in-flight", "--json", task_id, env=env)
        assert proc.returncode == 0, proc.stderr
        assert (json.loads(proc.stdout)["forgotten"], json.loads(proc.stdout)["in_flight"]) == (
            1,
            1,
        )
    finally:
        release.touch()
    proc = gcgate("result", task_id, env=env)
    assert proc.returncode == 5
    assert "was forgotten" in proc.stderr


def test_forget_bad_ids_exit_5(env: dict[str, str]) -> None:
    proc = gcgate("forget", "not-a-task-id", env=env)
    assert proc.returncode == 5
    assert "not-a-task-id" in proc.stderr
    assert "Traceback" not in proc.stderr


def purge_json(env: dict[str, str], *args: str) -> dict[str, object]:
    proc = gcgate("purge", *args, "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_purge_dry_run_lists_and_deletes_nothing(env: dict[str, str], group: Group) -> None:
    proc = gcgate("purge", "--task-group", group.task_group_id, "--dry-run", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("would purge 3 result(s) (2 succeeded, 1 failed),")
    assert "nothing was deleted" in proc.stdout
    for task_id in (*group.succeeded, group.failed):
        assert task_id in proc.stdout

    doc = purge_json(env, "--task-group", group.task_group_id, "--dry-run")
    assert (doc["tasks"], doc["succeeded"], doc["failed"], doc["dry_run"]) == (3, 2, 1, True)
    assert doc["bytes_freed"] == 0
    assert doc["record_bytes"] > 0  # small records are in the database, still counted
    assert purge_json(env, "--task-group", group.task_group_id, "--dry-run")["tasks"] == 3


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--status", "failed"], 1),
        (["--status", "success"], 2),
        (["--retrieved"], 1),
        (["--endpoint", LOCAL_ENDPOINT_ID], 3),
        (["--endpoint", "local"], 3),
        (["--older-than", "0"], 3),
        (["--older-than", "7d"], 0),
        (["--older-than", "1.5h", "--status", "success"], 0),
    ],
)
def test_purge_filters_parse(
    env: dict[str, str], group: Group, flags: list[str], expected: int
) -> None:
    doc = purge_json(env, "--task-group", group.task_group_id, *flags, "--dry-run")
    assert doc["tasks"] == expected


def test_purge_by_function_then_by_group(env: dict[str, str], group: Group) -> None:
    by_function = ["--task-group", group.task_group_id, "--function"]
    assert purge_json(env, *by_function, group.boom_function, "--dry-run")["tasks"] == 1

    proc = gcgate("purge", *by_function, group.boom_function, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("purged 1 result(s) (0 succeeded, 1 failed), freed ")
    assert "store now" in proc.stdout
    proc = gcgate("result", group.failed, env=env)
    assert proc.returncode == 5
    assert "was purged" in proc.stderr

    doc = purge_json(env, "--task-group", group.task_group_id)
    assert (doc["tasks"], doc["succeeded"], doc["dry_run"]) == (2, 2, False)
    assert purge_json(env, "--task-group", group.task_group_id, "--dry-run")["tasks"] == 0


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--older-than", "banana"], "not a duration: 'banana'"),
        (["--older-than=-1"], "finite and >= 0"),
        (["--status", "pending"], "invalid choice: 'pending'"),
        (["--dry-run"], "name at least one filter"),
    ],
)
def test_purge_usage_errors_exit_2(env: dict[str, str], args: list[str], says: str) -> None:
    proc = gcgate("purge", *args, env=env)
    assert proc.returncode == 2
    assert says in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0),
        ("45", 45),
        ("45s", 45),
        ("30m", 1800),
        ("1.5h", 5400),
        ("7d", 604800),
        ("2w", 1209600),
    ],
)
def test_purge_durations(text: str, seconds: float) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("banana", "not a duration"),
        ("7y", "not a duration"),
        ("", "not a duration"),
        ("d", "not a duration"),
        ("-1", "finite and >= 0"),
        ("inf", "finite and >= 0"),
        ("nan", "finite and >= 0"),
    ],
)
def test_purge_bad_durations(text: str, says: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=says):
        duration(text)


@pytest.mark.parametrize(
    ("flag", "says"),
    [
        ("--function", "function_id"),
        ("--task-group", "task_group_id"),
        ("--endpoint", "banana"),
    ],
)
def test_purge_malformed_ids_exit_5(env: dict[str, str], flag: str, says: str) -> None:
    proc = gcgate("purge", flag, "banana", "--dry-run", env=env)
    assert proc.returncode == 5
    assert says in proc.stderr
    assert "Traceback" not in proc.stderr


# -------------------------------------------------------------------- completion


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_script_is_valid(shell: str) -> None:
    proc = gcgate("completion", shell, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    for command in SUBCOMMANDS:
        assert command in proc.stdout
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed: the script was generated but not parsed")
    check = subprocess.run(
        [shell, "-n"], input=proc.stdout, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr


def test_bash_completion_completes_commands() -> None:
    """Load the script into bash and ask it to complete ``gcgate ba``."""
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    script = gcgate("completion", "bash", env=os.environ.copy()).stdout
    probe = (
        script
        + "\nCOMP_WORDS=(gcgate ba); COMP_CWORD=1; COMP_LINE='gcgate ba'; COMP_POINT=9"
        + '\n_shtab_gcgate gcgate ba gcgate; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    proc = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["batch"]


# ------------------------------------------------------------------------- usage


@pytest.mark.parametrize(
    "command",
    [[], *([name] for name in SUBCOMMANDS)],
)
def test_help(command: list[str]) -> None:
    proc = gcgate(*command, "--help", env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    assert "usage: gcgate" in proc.stdout
    assert "exit codes" in proc.stdout


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["frobnicate"],
        ["tasks", "--limit", "0"],
        ["result", "x", "--timeout", "-1"],
        ["result", "--wait"],
        ["result", "x", "--wait", "5"],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    proc = gcgate(*args, env=os.environ.copy())
    assert proc.returncode == 2
    assert "usage: gcgate" in proc.stderr


def test_closed_stdout_is_not_an_error(env: dict[str, str], tasks: Tasks) -> None:
    """``gcgate tasks | head -1`` style: the reader leaves before gcgate writes."""
    assert GCGATE
    proc = subprocess.Popen(
        [GCGATE, "wait", tasks.pair], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert err == ""


def test_runs_as_module(env: dict[str, str], daemon: Daemon) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gcgate.cli", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["pid"] == daemon.process.pid
