"""The contract in proto/ and the stubs committed from it stay in step.

The stubs are generated code, committed so that clients need no protoc; these
tests fail when someone edits gateway.proto without running ``make proto``, and
when a field or rpc of the contract goes undocumented.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import grpc_tools
import pytest
from gcgate.v1 import gateway_pb2 as pb
from google.protobuf.descriptor import Descriptor

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto" / "gcgate" / "v1" / "gateway.proto"
COMMITTED = ROOT / "client" / "gcgate" / "v1"
STUBS = ("gateway_pb2.py", "gateway_pb2.pyi", "gateway_pb2_grpc.py")


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    # Exactly the Makefile's `proto` target, into a temporary directory.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-Iproto",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            "proto/gcgate/v1/gateway.proto",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    generated = tmp_path / "gcgate" / "v1"
    assert sorted(p.name for p in generated.iterdir()) == sorted(STUBS)
    stale = [
        name for name in STUBS if (generated / name).read_bytes() != (COMMITTED / name).read_bytes()
    ]
    version = getattr(grpc_tools, "__version__", None) or _tools_version()
    assert not stale, (
        f"stubs are stale: run `make proto` ({', '.join(stale)} in {COMMITTED}"
        f" differ from what grpcio-tools {version} generates from {PROTO.relative_to(ROOT)})"
    )


def _tools_version() -> str:
    from importlib.metadata import version

    return version("grpcio-tools")


# ------------------------------------------------------------------ documentation

RPC = re.compile(r"^rpc\s+(\w+)\s*\(")
FIELD = re.compile(r"^(?:(?:repeated|optional)\s+)?[\w.]+\s+(\w+)\s*=\s*\d+\s*(?:\[.*\])?\s*;")
ENUM_VALUE = re.compile(r"^(\w+)\s*=\s*-?\d+\s*(?:\[.*\])?\s*;")
BLOCK = re.compile(r"^(message|enum|service|oneof)\s+(\w+)\s*\{")


def _elements(lines: list[str]) -> list[tuple[str, str, int]]:
    """(kind, qualified name, line index) of every rpc, field and enum value."""
    found: list[tuple[str, str, int]] = []
    stack: list[tuple[str, str]] = []  # (kind, name) of open blocks
    for index, raw in enumerate(lines):
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        scope = ".".join(name for kind, name in stack if kind != "oneof")
        if block := BLOCK.match(line):
            kind, name = block.groups()
            if not line.endswith("}"):  # `message Empty {}` opens and closes at once
                stack.append((kind, name))
            continue
        if line == "}":
            stack.pop()
            continue
        inside = stack[-1][0] if stack else None
        if inside == "service" and (rpc := RPC.match(line)):
            found.append(("rpc", f"{scope}.{rpc.group(1)}", index))
        elif inside in ("message", "oneof") and (field := FIELD.match(line)):
            found.append(("field", f"{scope}.{field.group(1)}", index))
        elif inside == "enum" and (value := ENUM_VALUE.match(line)):
            found.append(("enum value", f"{scope}.{value.group(1)}", index))
    assert not stack, f"unbalanced braces in {PROTO}: {stack}"
    return found


def _undocumented(lines: list[str]) -> list[tuple[str, str, int]]:
    """The elements whose previous line is not a (non-empty) ``//`` comment."""
    return [
        (kind, name, index)
        for kind, name, index in _elements(lines)
        if not (index > 0 and re.match(r"^//\s*\S", lines[index - 1].strip()))
    ]


def _descriptor_fields(message: Descriptor, prefix: str = "") -> set[str]:
    name = f"{prefix}{message.name}"
    names = {f"{name}.{field.name}" for field in message.fields}
    for nested in message.nested_types:
        names |= _descriptor_fields(nested, f"{name}.")
    for enum in message.enum_types:
        names |= {f"{name}.{enum.name}.{v.name}" for v in enum.values}
    return names


def test_every_rpc_and_field_is_documented() -> None:
    lines = PROTO.read_text().splitlines()
    elements = _elements(lines)

    # The parser saw the whole contract: every rpc and field the compiled
    # descriptor knows, and nothing else.
    rpcs = {name for kind, name, _ in elements if kind == "rpc"}
    fields = {name for kind, name, _ in elements if kind != "rpc"}
    service = pb.DESCRIPTOR.services_by_name["Gateway"]
    assert rpcs == {f"Gateway.{m.name}" for m in service.methods}
    expected: set[str] = set()
    for message in pb.DESCRIPTOR.message_types_by_name.values():
        expected |= _descriptor_fields(message)
    for enum in pb.DESCRIPTOR.enum_types_by_name.values():
        expected |= {f"{enum.name}.{v.name}" for v in enum.values}
    assert fields == expected

    undocumented = [
        f"{PROTO.name}:{index + 1}: {kind} {name}" for kind, name, index in _undocumented(lines)
    ]
    assert not undocumented, (
        "every rpc and field of the contract needs a `//` comment on the line"
        " above it:\n" + "\n".join(undocumented)
    )


@pytest.mark.parametrize(
    ("text", "undocumented"),
    [
        ("message M {\n  // Documented.\n  string a = 1;\n  int32 b = 2;\n}\n", ["M.b"]),
        ("message M {\n  // A.\n  repeated string a = 1;\n\n  string b = 2;\n}\n", ["M.b"]),
        ("service S {\n  rpc A(M) returns (M);\n  // B.\n  rpc B(M) returns (M);\n}\n", ["S.A"]),
        ("message M {}\nmessage N {\n  //\n  M m = 1;\n}\n", ["N.m"]),
    ],
)
def test_the_documentation_check_catches_gaps(text: str, undocumented: list[str]) -> None:
    assert [name for _, name, _ in _undocumented(text.splitlines())] == undocumented
