"""How the store's values and keys look on disk: JSON text, never pickles.

diskcache's own ``JSONDisk`` zlib-compresses every key and every value, and
``zlib.compress`` costs about 60 us per call however small its input (setting up
the compressor dominates): with a lookup compressing its key and a write its key
and value, that was most of the cost of every store operation, for records of a
few hundred bytes that compression does not shrink. :class:`JSONTextDisk` keeps
keys as SQLite text and values as JSON text, and compresses only large values.

A value that comes back as bytes is zlib-compressed JSON: this class writes
compressed values as bytes, plain ones as text (and ``JSONDisk`` compressed
every value, which is how :mod:`.migrate` reads a store it wrote).
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import diskcache
from diskcache.core import UNKNOWN

#: Values whose JSON text is at least this long are stored zlib-compressed.
#: Results are mostly base64, which compresses by about a quarter; below this the
#: saving is not worth the compressor's fixed cost.
COMPRESS_MIN_CHARS = 16 * 1024


#: One encoder for every value (json.dumps with options builds one per call); the
#: text a plain value is stored as, which the store's SQL may search.
encode = json.JSONEncoder(separators=(",", ":")).encode


class JSONTextDisk(diskcache.Disk):
    """Keys are strings stored as SQLite text; values are JSON (see the module doc)."""

    def __init__(self, directory: str, compress_level: int = 1, **kwargs: Any) -> None:
        super().__init__(directory, **kwargs)
        self.compress_level = compress_level

    def put(self, key: Any) -> tuple[Any, bool]:
        if type(key) is not str:
            raise TypeError(f"store keys are strings, got {type(key).__name__}")
        return key, True

    def store(self, value: Any, read: bool, key: Any = UNKNOWN) -> Any:
        if read:  # a file object (Cache.set(read=True)): the store never does this
            raise TypeError("the store writes JSON values, not files")
        text = encode(value)
        if len(text) >= COMPRESS_MIN_CHARS:
            return super().store(zlib.compress(text.encode(), self.compress_level), False, key)
        return super().store(text, False, key)

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        return decode(super().fetch(mode, filename, value, read))


def decode(data: str | bytes) -> Any:
    """A value as stored: JSON text, or zlib-compressed JSON as bytes."""
    return json.loads(zlib.decompress(data) if isinstance(data, bytes) else data)
