"""Checks on client input, so bad requests fail with a clear message and are never stored.

All checks are on text: framing and strategy headers are read, nothing is
deserialized (the daemon never unpickles user data).
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from collections.abc import Sequence
from typing import Any

from gcgate.constants import MAX_SUBMISSION_BYTES
from gcgate.errors import DeserializationError, SerdeError
from gcgate.serialize import (
    STRATEGY_NAMES,
    JSONData,
    pack_buffers,
    resolve_strategy,
    unpack_buffers,
)
from gcgate.source import SourceError, check_source

from gcgated.errors import InvalidArgument

#: Strategy headers of data buffers (args, kwargs) that endpoints can read.
DATA_HEADERS = frozenset({"00\n", "11\n", "13\n"})
#: Strategy headers of code buffers that endpoints can read.
CODE_HEADERS = frozenset({"01\n", "02\n", "03\n", "04\n", "10\n", "12\n", "st\n", "sd\n"})
#: Deepest nesting of arrays and objects accepted in a JSON field. Python's JSON
#: code recurses per level; without a fixed bound a deep document fails with a
#: RecursionError at a depth that depends on the stack, here or on the endpoint.
MAX_JSON_DEPTH = 200
#: The result_serializers of a submission whose tasks all came with JSON arguments and
#: that named none: a client that cannot send pickle cannot read it either, so it gets
#: JSON back. The SDK's import path, as real endpoints resolve it.
JSON_RESULT_SERIALIZERS = (JSONData().sdk_import_path,)
#: Roles GET /v2/endpoints takes (the SDK's get_endpoints(role=...)).
ENDPOINT_ROLES = ("owner", "any")
#: A UUID already in canonical form (as clients send ids back): no parsing needed.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def shown(value: str, limit: int = 80) -> str:
    """A client's value quoted in an error message: its repr (control characters
    escaped), cut at ``limit`` characters. Error details travel in a gRPC trailer,
    which the client drops whole (as RESOURCE_EXHAUSTED) beyond 8 KiB."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value):,} characters)"


def parse_uuid(value: str, what: str, hint: str = "") -> str:
    """The canonical form of a UUID, or INVALID_ARGUMENT naming the field ``what``
    (``task_ids[3]`` for a list's item) and the value, then ``hint`` if any."""
    if not value:
        raise InvalidArgument(f"{what} is required{hint}")
    if type(value) is str and _CANONICAL_UUID.fullmatch(value):
        return value
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise InvalidArgument(f"{what}: {shown(value)} is not a UUID{hint}") from None


def check_endpoint_role(role: str) -> str:
    """A ListEndpoints role the service knows ("" for its default), checked here so a
    bad one is INVALID_ARGUMENT and never a request Globus answers with an HTML page."""
    if role and role not in ENDPOINT_ROLES:
        raise InvalidArgument(
            f"role {shown(role)} is not one of {', '.join(ENDPOINT_ROLES)}"
            " (or empty for the service's default, owner)"
        )
    return role


def unpack_frames(packed: str, what: str) -> list[str]:
    """Split pack_buffers framing with the SDK's rules; INVALID_ARGUMENT when malformed."""
    try:
        return unpack_buffers(packed)
    except DeserializationError as exc:
        # The reason quotes the client's length prefix, which may be any text.
        reason = exc.reason if len(exc.reason) <= 200 else shown(exc.reason, 200)
        raise InvalidArgument(f"{what} is not valid pack_buffers framing: {reason}") from None


def check_task_payload(payload: str, what: str) -> None:
    """A task payload is two data buffers: serialized args and kwargs; ``what``
    names it in errors (``tasks[1].payloads[3]`` in a batch)."""
    if not payload:
        raise InvalidArgument(
            "the task's arguments are missing: set json_arguments (JSON, e.g."
            ' {"args_json": "[1, 2]"}; {} calls the function without arguments) or payload'
            " (pack_buffers of the Compute-serialized args and kwargs, for Python clients)"
        )
    frames = unpack_frames(payload, what)
    if len(frames) != 2:
        raise InvalidArgument(f"{what} must hold 2 buffers (args, kwargs), found {len(frames)}")
    for name, frame in zip(("args", "kwargs"), frames, strict=True):
        if frame[:3] not in DATA_HEADERS:
            raise InvalidArgument(
                f"{what}: its {name} buffer has an unknown data strategy header"
                f" {frame[:3]!r}; expected one of {sorted(DATA_HEADERS)}"
            )


def check_function_code(code: str, serialized: bool, name: str) -> None:
    """Serialized code is one code buffer; source text must parse and define the
    function at top level (parsed with ``ast``, never run).

    The name of serialized code is only a label (the SDK sends the callable's
    ``__name__``, ``"<lambda>"`` for a lambda, and the endpoint calls whatever the
    buffer decodes to), so only source text, which the endpoint runs and then looks
    the name up in, needs an identifier.
    """
    if not serialized:
        if not name.isidentifier():
            raise InvalidArgument(f"function_name {shown(name)} is not a Python identifier")
        try:
            check_source(code, name, "function_code", shown)
        except SourceError as exc:
            raise InvalidArgument(f"{exc} (the source is parsed, not run)") from None
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


def load_json(text: str, what: str) -> Any:
    """Parse a JSON field, with INVALID_ARGUMENT naming the field for any document
    the daemon will not take: malformed, nested deeper than MAX_JSON_DEPTH, or
    holding an integer too long for Python to convert."""
    too_deep = InvalidArgument(
        f"{what} nests arrays or objects more than {MAX_JSON_DEPTH} levels deep"
    )
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise too_deep from None
    except ValueError:  # int() refuses over sys.get_int_max_str_digits() digits
        raise InvalidArgument(
            f"{what} holds an integer longer than {sys.get_int_max_str_digits():,} digits;"
            " pass such numbers as strings"
        ) from None
    # Fewer brackets than the limit cannot nest deeper: skip the walk.
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _too_deep(value):
        raise too_deep
    return value


def _too_deep(value: Any) -> bool:
    """Whether parsed JSON nests deeper than MAX_JSON_DEPTH, level by level
    (no recursion, and only containers are visited)."""
    level = [value] if isinstance(value, (dict, list)) else []
    for _ in range(MAX_JSON_DEPTH):
        if not level:
            return False
        children: list[Any] = []
        for item in level:
            children.extend(
                c
                for c in (item.values() if isinstance(item, dict) else item)
                if isinstance(c, (dict, list))
            )
        level = children
    return bool(level)


def parse_json_object(text: str, what: str) -> dict[str, Any] | None:
    """An optional JSON object field ("" means absent)."""
    if not text:
        return None
    value = load_json(text, what)
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} must be a JSON object")
    return value


def json_payload(args_json: str, kwargs_json: str, what: str = "json_arguments") -> str:
    """A task payload framed from JSON arguments with the JSONData strategy;
    ``what`` names them in errors (``tasks[0].json_arguments[2]`` in a batch).

    This is how clients in other languages pass arguments: the daemon parses
    JSON (never pickle) and frames it exactly as the SDK's JSONData would.
    """
    size = len(args_json) + len(kwargs_json)
    if size > MAX_SUBMISSION_BYTES:  # refused before the (event-loop) parse, not after
        raise InvalidArgument(
            f"TASK_PAYLOAD_TOO_LARGE: {what} hold {size:,} characters; Globus"
            f" Compute accepts at most {MAX_SUBMISSION_BYTES:,} bytes per submission"
        )
    args = load_json(args_json, f"{what}.args_json") if args_json else []
    kwargs = load_json(kwargs_json, f"{what}.kwargs_json") if kwargs_json else {}
    if not isinstance(args, list):
        raise InvalidArgument(f"{what}.args_json must be a JSON array")
    if not isinstance(kwargs, dict):
        raise InvalidArgument(f"{what}.kwargs_json must be a JSON object")
    strategy = JSONData()
    return pack_buffers([strategy.serialize(args), strategy.serialize(kwargs)])


def result_serializers(names: Sequence[str], *, json_only: bool) -> tuple[str, ...]:
    """A submission's result_serializers: JSONData when every task came with JSON
    arguments and none were named (JSON in, JSON out); else each one checked now
    (an unknown one would fail every task later, at the endpoint) and written as
    the SDK's import path, the form real endpoints resolve ("JSONData" is not)."""
    if not names and json_only:
        return JSON_RESULT_SERIALIZERS
    return tuple(
        _result_serializer(name, f"options.result_serializers[{index}]")
        for index, name in enumerate(names)
    )


def _result_serializer(name: str, what: str) -> str:
    try:
        return resolve_strategy(name).sdk_import_path
    except SerdeError:
        raise InvalidArgument(
            f"{what}: {shown(name)} is not a serialization strategy; give one of"
            f" {', '.join(STRATEGY_NAMES)}, by name or as an import path such as"
            f" {JSON_RESULT_SERIALIZERS[0]!r}"
        ) from None
