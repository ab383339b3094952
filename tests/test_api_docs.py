"""docs/api.md against the contract and the code it quotes.

Every RPC and every message of gateway.proto has its section, every field its
row (name, number, type); the Python examples run against a real daemon and
print what their comments say; the Node excerpt is made of client.js's lines.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from gcgate.v1 import gateway_pb2 as pb
from google.protobuf.descriptor import FieldDescriptor

ROOT = Path(__file__).resolve().parent.parent
API_DOC = (ROOT / "docs" / "api.md").read_text()
CLIENT_JS = (ROOT / "examples" / "node" / "client.js").read_text()

SERVICE = pb.DESCRIPTOR.services_by_name["Gateway"]
MESSAGES = sorted(pb.DESCRIPTOR.message_types_by_name)

SCALARS = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_DOUBLE: "double",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_INT64: "int64",
}


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", API_DOC, re.M | re.S)


def section(heading: str) -> str:
    """The text under a markdown heading, up to the next heading of any level."""
    match = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#)", API_DOC + "\n#", re.M | re.S)
    assert match, f"docs/api.md has no section {heading!r}"
    return match.group(1)


def field_type(field: FieldDescriptor) -> str:
    name = field.message_type.name if field.message_type else SCALARS[field.type]
    return f"repeated {name}" if field.is_repeated else name


@pytest.mark.parametrize("name", list(SERVICE.methods_by_name))
def test_every_rpc_has_a_row_and_a_section(name: str) -> None:
    method = SERVICE.methods_by_name[name]
    shown = f"`{method.output_type.name}`"
    shown = f"stream of {shown}" if method.server_streaming else shown
    assert f"| [`{name}`](#{name.lower()}) | `{method.input_type.name}` | {shown} |" in API_DOC
    stream = "stream " if method.server_streaming else ""
    request, reply = method.input_type.name, method.output_type.name
    signature = f"`rpc {name}({request}) returns ({stream}{reply})`"
    body = section(name)
    assert signature in body
    assert "Errors" in body, f"{name}: say which errors it answers with"


@pytest.mark.parametrize("name", MESSAGES)
def test_every_message_has_every_field_documented(name: str) -> None:
    message = pb.DESCRIPTOR.message_types_by_name[name]
    body = section(name)
    rows = re.findall(r"^\| `(\w+)` \((\d+)\) \| `([\w ]+)` \| (.+) \|$", body, re.M)
    documented = {(field, int(number), typ) for field, number, typ, _ in rows}
    expected = {(f.name, f.number, field_type(f)) for f in message.fields}
    assert documented == expected
    assert all(meaning.strip() for *_, meaning in rows)
    if not message.fields:
        assert "No fields." in body


def test_error_model_lists_the_status_codes_the_daemon_uses() -> None:
    errors = section("Errors")
    for code in ("INVALID_ARGUMENT", "NOT_FOUND", "RESOURCE_EXHAUSTED", "UNAVAILABLE", "INTERNAL"):
        assert f"| `{code}` (" in errors, code
    assert "wire-format.md" in section("Wire format in brief")


def test_node_excerpt_is_made_of_client_js_lines() -> None:
    [excerpt] = code_blocks("js")
    source_lines = {line.strip() for line in CLIENT_JS.splitlines()}
    quoted = [line.strip() for line in excerpt.splitlines() if line.strip()]
    missing = [line for line in quoted if line != "// ..." and line not in source_lines]
    assert not missing, f"lines of the Node excerpt not in client.js: {missing}"
    assert len(quoted) > 40


@pytest.mark.parametrize("index", [0, 1], ids=["gcgate.Client", "raw stub"])
def test_python_example_prints_what_it_says(index: int, daemon) -> None:
    example = code_blocks("python")[index]
    expected = re.findall(r"# prints: (.*)$", example, re.M)
    assert expected
    done = subprocess.run(
        [sys.executable, "-c", example],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == expected
