"""A secret value that never shows itself.

Its own module, below both ``config`` (which reads ``client_secret`` from the
TOML file) and ``credentials`` (which loads and checks the service account), so
neither has to import the other to share it.
"""

from __future__ import annotations

import hmac

MASK = "********"


class Secret:
    """A string that does not show itself: ``repr``, ``str`` and f-strings print a mask."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        """The secret itself, for the one place that must send it (the Globus Auth call)."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(
            other._value.encode(), self._value.encode()
        )

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret is not pickled")
