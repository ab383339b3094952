"""Checks on client input, so bad requests fail with a clear message and are never stored.

All checks are on text: framing and strategy headers are read, nothing is
deserialized (the daemon never unpickles user data).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from gcgate.constants import MAX_SUBMISSION_BYTES
from gcgate.errors import DeserializationError
from gcgate.serialize import JSONData, pack_buffers, unpack_buffers

from gcgated.errors import InvalidArgument

#: Strategy headers of data buffers (args, kwargs) that endpoints can read.
DATA_HEADERS = frozenset({"00\n", "11\n", "13\n"})
#: Strategy headers of code buffers that endpoints can read.
CODE_HEADERS = frozenset({"01\n", "02\n", "03\n", "04\n", "10\n", "12\n", "st\n", "sd\n"})


def parse_uuid(value: str, what: str) -> str:
    """The canonical form of a UUID, or INVALID_ARGUMENT naming the field."""
    if not value:
        raise InvalidArgument(f"{what} is required")
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise InvalidArgument(f"{what} {value[:80]!r} is not a UUID") from None


def unpack_frames(packed: str, what: str) -> list[str]:
    """Split pack_buffers framing with the SDK's rules; INVALID_ARGUMENT when malformed."""
    try:
        return unpack_buffers(packed)
    except DeserializationError as exc:
        raise InvalidArgument(f"{what} is not valid pack_buffers framing: {exc.reason}") from None


def check_task_payload(payload: str) -> None:
    """A task payload is two data buffers: serialized args and kwargs."""
    frames = unpack_frames(payload, "task payload")
    if len(frames) != 2:
        raise InvalidArgument(
            f"task payload must hold 2 buffers (args, kwargs), found {len(frames)}"
        )
    for name, frame in zip(("args", "kwargs"), frames, strict=True):
        if frame[:3] not in DATA_HEADERS:
            raise InvalidArgument(
                f"task payload {name} buffer has an unknown data strategy header"
                f" {frame[:3]!r}; expected one of {sorted(DATA_HEADERS)}"
            )


def check_function_code(code: str, serialized: bool, name: str) -> None:
    """Serialized code is one code buffer; source text must at least name the function."""
    if not name.isidentifier():
        raise InvalidArgument(f"function_name {name[:80]!r} is not a Python identifier")
    if not serialized:
        if f"def {name}" not in code and f"{name} =" not in code:
            raise InvalidArgument(f"function source does not define {name!r}")
        return
    frames = unpack_frames(code, "function_code")
    if len(frames) != 1 or frames[0][:3] not in CODE_HEADERS:
        raise InvalidArgument(
            "function_code must be pack_buffers([serialize(function)]) with a code"
            f" strategy header (one of {sorted(CODE_HEADERS)})"
        )


def check_submission_size(payloads: list[str]) -> None:
    """The Compute service's per-submission limit, checked before anything is stored."""
    size = sum(len(p.encode()) for p in payloads)
    if size > MAX_SUBMISSION_BYTES:
        raise InvalidArgument(
            f"TASK_PAYLOAD_TOO_LARGE: this submission's payloads total {size:,} bytes;"
            f" Globus Compute accepts at most {MAX_SUBMISSION_BYTES:,} bytes per"
            " submission. Split it into smaller batches or pass large data by reference."
        )


def parse_json_object(text: str, what: str) -> dict[str, Any] | None:
    """An optional JSON object field ("" means absent)."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} must be a JSON object")
    return value


def json_payload(args_json: str, kwargs_json: str) -> str:
    """A task payload framed from JSON arguments with the JSONData strategy.

    This is how clients in other languages pass arguments: the daemon parses
    JSON (never pickle) and frames it exactly as the SDK's JSONData would.
    """
    try:
        args = json.loads(args_json) if args_json else []
        kwargs = json.loads(kwargs_json) if kwargs_json else {}
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"json_arguments is not valid JSON: {exc}") from None
    if not isinstance(args, list):
        raise InvalidArgument("json_arguments.args_json must be a JSON array")
    if not isinstance(kwargs, dict):
        raise InvalidArgument("json_arguments.kwargs_json must be a JSON object")
    strategy = JSONData()
    return pack_buffers([strategy.serialize(args), strategy.serialize(kwargs)])
