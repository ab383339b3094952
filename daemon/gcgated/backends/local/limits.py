"""The local endpoint's size limits, measured on the user's serialized bytes.

Globus Compute limits a submission to 10 MB of request body, and its endpoints a
result to 10 MB of serialized text. Both are measured after the wire format's
base64 step (``DillDataBase64`` writes MIME base64: 4 characters per 3 bytes and
a newline every 76), so a 9 MB argument counts as about 12.2 MB there. On the
local endpoint nothing travels through that service: the limits are the
operator's (settings ``local_max_payload_mb`` and ``local_max_result_mb``) and
count the bytes the user's objects serialized to, before base64, so "10 MB"
means what a user would guess. Nothing is decoded to measure: the size follows
from the text's length.

Cheap to import (the worker process imports it): the standard library only.
"""

from __future__ import annotations

from collections.abc import Sequence

#: A megabyte, as the settings count them (decimal, as the service's 10 MB).
MB = 1_000_000
#: The default of both settings: the Compute service's own limits.
DEFAULT_LIMIT_MB = 10.0
#: The most either setting may be: a payload or result of this many bytes, in
#: base64, still fits a gRPC message (64 MiB) with room for its framing.
MAX_LIMIT_MB = 45.0
#: Strategy headers whose data is base64 (DillDataBase64, and the code
#: strategies, which are not measured here but are base64 alike).
_BASE64_HEADERS = frozenset({"00\n"})
HEADER_LENGTH = 3


def buffer_bytes(buffer: str) -> int:
    """Bytes of one serialized buffer's data before the wire encoding: for
    base64 data its decoded length, for other strategies (JSON) the text's
    UTF-8 length. The 3-character strategy header is not counted."""
    header, body = buffer[:HEADER_LENGTH], buffer[HEADER_LENGTH:]
    if header not in _BASE64_HEADERS:
        return len(body.encode("utf-8", "surrogatepass"))
    characters = len(body) - body.count("\n") - body.count("\r")
    padding = len(body.rstrip("\r\n")) - len(body.rstrip("\r\n").rstrip("="))
    return max(characters // 4 * 3 - padding, 0)


def payload_bytes(buffers: Sequence[str]) -> int:
    """The user's bytes of a task payload's buffers (serialized args and kwargs)."""
    return sum(buffer_bytes(buffer) for buffer in buffers)


def shown_mb(size: int) -> str:
    """``12.0 MB``: sizes in error messages, as the settings count them."""
    return f"{size / MB:.1f} MB"


def payload_too_large(size: int, limit: int, position: str = "") -> str:
    """INVALID_ARGUMENT text of a task payload over ``local_max_payload_mb``."""
    return (
        f"TASK_PAYLOAD_TOO_LARGE: the argument payload{position} is {shown_mb(size)}"
        f" ({size:,} bytes serialized), over the local endpoint's limit of"
        f" {limit / MB:g} MB (setting local_max_payload_mb, environment"
        " GCGATE_LOCAL_MAX_PAYLOAD_MB; at most"
        f" {MAX_LIMIT_MB:g}). Raise the setting, or pass large data by reference"
        " (e.g. a file path the task reads)."
    )


def result_too_large(size: int, limit: int) -> str:
    """The failure text of a task whose result is over ``local_max_result_mb``;
    it starts with the SDK's MaxResultSizeExceeded words, which endpoints use.

    It must not match the SDK's ``TaskExecutionFailed.SERDE_REGEX`` (``dill``,
    ``pickle``, ``serializ``) as the endpoints' text does not: ``str()`` of the
    error would then append the SDK's advice to change serialization strategy,
    which cannot help a result that is too large."""
    return (
        f"MaxResultSizeExceeded: Task result of {size}B exceeded current limit of"
        f" {limit}B: the result is {shown_mb(size)} as sent back, over the local"
        f" endpoint's limit of {limit / MB:g} MB (setting local_max_result_mb,"
        f" environment GCGATE_LOCAL_MAX_RESULT_MB; at most {MAX_LIMIT_MB:g}). Raise"
        " the setting, or return large data by reference (e.g. write a file and"
        " return its path)."
    )
