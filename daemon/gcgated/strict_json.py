"""JSON results are strict JSON (RFC 8259), so every language's parser reads them.

The Compute format's JSONData strategy is Python's ``json.dumps``, on the local
endpoint and on every Globus endpoint alike, and it writes the floats NaN,
Infinity and -Infinity as bare words that JavaScript's ``JSON.parse``, Go's
``encoding/json`` and most other parsers refuse. The daemon cannot change how an
endpoint serializes, so it checks each JSONData result as it arrives (reading JSON
text, never unpickling) and fails a task whose result holds one, saying what to do.
"""

from __future__ import annotations

import json

from gcgate.serialize import JSONData

#: Python's words for non-finite floats; a result without them is checked no further.
_NON_FINITE = ("NaN", "Infinity")


class _NonFinite(ValueError):
    """Raised by the parser on a bare NaN, Infinity or -Infinity."""


def _refuse(word: str) -> None:
    raise _NonFinite(word)


def json_text(result: str) -> str:
    """A JSONData result's JSON text (its "11\\n" header stripped), so clients in
    other languages need not know the Compute framing; "" for any other result."""
    header = JSONData.identifier
    return result[len(header) :] if result.startswith(header) else ""


def non_json_result(result: str) -> str:
    """Why a JSONData result is not strict JSON, for the task's exception; "" when it
    is, and for results of any other strategy."""
    text = json_text(result)
    if not any(w in text for w in _NON_FINITE):
        return ""
    try:
        json.loads(text, parse_constant=_refuse)
    except _NonFinite as word:
        return (
            f"The task's result holds the float {word}, which JSON cannot represent"
            " (Python writes it as a bare word that JSON parsers in other languages,"
            " such as JavaScript's JSON.parse, refuse). Return None or a string in its"
            " place, or name DillDataBase64 in result_serializers for a Python client."
        )
    except (ValueError, RecursionError):
        return ""  # not this module's concern: the result is passed on as it came
    return ""
