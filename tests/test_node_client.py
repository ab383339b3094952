"""The Node.js example (examples/node/client.js) against a real daemon.

It uses only the .proto contract: Python source registered as text, JSON
arguments, JSON results, completions on the WatchTasks stream. Its results are
checked against values computed here, and against the daemon's own records.
Skipped only where node or npm are not installed (CI installs them).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
import subprocess
from pathlib import Path

import gcgate
import pytest
from gcgate.v1 import gateway_pb2 as pb

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "node"
CHECKS = Path(__file__).resolve().parent / "node" / "checks.js"
STAMP = EXAMPLE / "node_modules" / ".gcgate-npm-ci.sha256"
TASK = r"\[task (?P<task>[-0-9a-f]{36})\]"
RESULT = re.compile(rf"^result: square\((?P<args>.*)\) = (?P<value>.*) {TASK}$")
FAILED = re.compile(rf"^failed: square\((?P<args>.*)\) {TASK}: (?P<why>.*)$")

NODE, NPM = shutil.which("node"), shutil.which("npm")
pytestmark = pytest.mark.skipif(
    NODE is None or NPM is None, reason="node and npm are not installed (CI installs them)"
)


def install_fingerprint() -> str:
    """What node_modules was installed from: the manifest, the lockfile, node's version."""
    node_version = subprocess.run(
        [NODE, "--version"], capture_output=True, text=True, check=True
    ).stdout
    digest = hashlib.sha256(node_version.encode())
    for name in ("package.json", "package-lock.json"):
        digest.update((EXAMPLE / name).read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def node_example() -> Path:
    """examples/node with its locked dependencies installed (`npm ci`, skipped if current)."""
    fingerprint = install_fingerprint()
    if not (STAMP.exists() and STAMP.read_text() == fingerprint):
        done = subprocess.run(
            [NPM, "ci", "--no-audit", "--no-fund"],
            cwd=EXAMPLE,
            capture_output=True,
            text=True,
            timeout=170,
        )
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
        STAMP.write_text(fingerprint)
    return EXAMPLE / "client.js"


def run_node(client_js: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [NODE, str(client_js), *args], capture_output=True, text=True, env=env, timeout=120
    )


def lines(output: str, pattern: re.Pattern[str]) -> list[re.Match[str]]:
    return [m for line in output.splitlines() if (m := pattern.match(line))]


def test_squares_are_printed_and_match_the_daemons_records(node_example, daemon, stub) -> None:
    inputs = [2, 3, 7, 12, -4, 1.5]
    # "--" ends the options, so "-4" is a value.
    done = run_node(node_example, "--", *map(json.dumps, inputs), env=daemon.env)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    out = done.stdout

    assert f"daemon: gcgated {gcgate.__version__} at {daemon.socket_path}" in out
    function_id = re.search(r"^function: square (\S+)$", out, re.M).group(1)
    info = stub.GetFunction(pb.GetFunctionRequest(function_id=function_id))
    assert (info.function_name, info.serialized) == ("square", False)
    assert "def square(x, offset=0):" in info.function_code

    batch_ids = re.search(r"^batch: 6 tasks ((?:\S+ ){6})\(task group", out, re.M).group(1).split()
    run_id = re.search(r"^run: task (\S+)$", out, re.M).group(1)

    results = {m["task"]: (m["args"], json.loads(m["value"])) for m in lines(out, RESULT)}
    assert len(results) == 7, out
    # The batch: one printed square per input, each from the task submitted for it.
    for task_id, x in zip(batch_ids, inputs, strict=True):
        assert results[task_id] == (json.dumps(x), x * x)
    assert results[run_id] == ("10, offset=1", 101)
    assert "done: 7 tasks, 7 succeeded" in out

    # What it printed is what the daemon stored: JSON results ("11\n"), not dill.
    records = stub.GetBatchResult(pb.GetBatchResultRequest(task_ids=[*batch_ids, run_id])).tasks
    for record in records:
        assert record.status == "success"
        assert record.result.startswith("11\n")
        assert json.loads(record.result[3:]) == results[record.task_id][1]


@pytest.fixture(scope="module")
def node_checks(node_example, daemon) -> dict[str, dict]:
    """What tests/node/checks.js saw, by step (it uses examples/node's packages)."""
    env = {**daemon.env, "NODE_PATH": str(EXAMPLE / "node_modules")}
    done = run_node(CHECKS, env=env)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    return {step["check"]: step for step in map(json.loads, done.stdout.splitlines())}


def test_node_gets_json_back_from_json_arguments_alone(node_checks) -> None:
    step = node_checks["object"]
    assert step["status"] == "success", step["exception"]
    assert step["parsed"] == {"a": [1, 2.5, None], "s": "NaN"}


def test_node_sees_integers_beyond_2_to_the_53_as_documented(node_checks) -> None:
    """The JSON text keeps every digit; JSON.parse rounds it, as api.md warns."""
    big = 2**64 + 1
    step = node_checks["big_integer"]
    assert step["result_json"] == str(big)
    assert step["parsed"] != big and float(step["parsed"]) == float(big)


@pytest.mark.parametrize(("step", "word"), [("nan", "NaN"), ("infinity", "Infinity")])
def test_node_gets_a_clear_failure_for_a_result_json_cannot_hold(node_checks, step, word) -> None:
    seen = node_checks[step]
    assert (seen["status"], seen["result_json"], seen["parsed"]) == ("failed", "", None)
    assert f"float {word}, which JSON cannot represent" in seen["exception"]


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("source_without_function", "function_code does not define 'q' at top level"),
        ("source_commented_out", "function_code does not define 'q' at top level"),
        ("source_syntax_error", "function_code:1: "),
        ("run_without_arguments", "set json_arguments"),
        ("unknown_result_serializer", "'json' is not a serialization strategy; give one of"),
        ("capitalised_local", "endpoint is 'local', in lower case"),
    ],
)
def test_node_is_refused_at_the_door_with_a_message(node_checks, step, message) -> None:
    seen = node_checks[step]
    assert seen["code"] == "INVALID_ARGUMENT"
    assert message in seen["details"]


def test_a_failing_task_is_reported_and_sets_exit_code_1(node_example, daemon) -> None:
    done = run_node(node_example, "5", '"five"', env=daemon.env)
    assert done.returncode == 1, f"{done.stdout}\n{done.stderr}"
    assert [(m["args"], m["value"]) for m in lines(done.stdout, RESULT)] == [
        ("5", "25"),
        ("10, offset=1", "101"),
    ]
    [failed] = lines(done.stdout, FAILED)
    assert failed["args"] == '"five"'
    assert "TypeError" in failed["why"] and "str" in failed["why"]
    assert "done: 3 tasks, 2 succeeded" in done.stdout


def test_no_daemon_names_the_socket_and_exits_3(node_example, tmp_path) -> None:
    missing = tmp_path / "nobody.sock"
    done = run_node(node_example, "--socket", str(missing), env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 3, f"{done.stdout}\n{done.stderr}"
    assert f"cannot reach the gcgate daemon at {missing}: no such socket" in done.stderr
    assert "gcgated" in done.stderr  # how to start it
    assert done.stdout == ""


def test_stale_socket_says_nobody_is_listening(node_example, daemon) -> None:
    stale = daemon.socket_path.parent / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(stale))  # bound, never listening: what a crashed daemon leaves
        done = run_node(node_example, env={**daemon.env, "GCGATE_SOCKET": str(stale)})
    stale.unlink()
    assert done.returncode == 3, f"{done.stdout}\n{done.stderr}"
    assert f"cannot reach the gcgate daemon at {stale}: nobody is listening" in done.stderr


def test_daemon_refusal_prints_status_code_and_exits_4(node_example, daemon) -> None:
    done = run_node(node_example, "--endpoint", "not-an-endpoint", "1", env=daemon.env)
    assert done.returncode == 4, f"{done.stdout}\n{done.stderr}"
    assert (
        "BatchRun refused: INVALID_ARGUMENT: endpoint_id: 'not-an-endpoint' is not a UUID"
        in done.stderr
    )


def test_bad_command_line_exits_2(node_example, daemon) -> None:
    done = run_node(node_example, "{not json", env=daemon.env)
    assert done.returncode == 2
    assert "each VALUE must be JSON" in done.stderr
