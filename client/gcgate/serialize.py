"""The Globus Compute wire format, without the Globus Compute SDK.

Functions, arguments and results travel to and from Globus Compute endpoints as
text: a 3-character strategy header (two characters and a newline, e.g. ``"01\\n"``
for a dill-pickled function) followed by that strategy's encoding, and lists of
such buffers are framed by :func:`pack_buffers`. Every endpoint decodes this format
with ``globus_compute_sdk.serialize``; this module produces and reads exactly the
same text (globus-compute-sdk 4.19), so a payload made here is indistinguishable
from one the SDK makes, in both directions. The test suite checks that against
the real SDK.

It re-implements the format instead of importing the SDK because the thin client
must stay light: it depends on dill and the standard library only. dill itself is
pinned to the version endpoints use, because dill pickles are not portable across
dill versions. Pickles go through :mod:`gcgate.pickling`, which is dill but for
gcgate's stand-ins of SDK classes (``ShellFunction``, ``ShellResult``): they are
written and read under the SDK's names, as endpoints expect them.

Deserializing runs code: dill/pickle payloads can execute anything while loading,
and the source strategies (``03``, ``04``, ``st``, ``sd``) ``exec`` the function's
source text. That is inherent to Globus Compute; only deserialize payloads you would
be willing to run. Nothing is evaluated at import time.
"""

from __future__ import annotations

import base64
import binascii
import enum
import inspect
import json
import pickle
import sys
import textwrap
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

from gcgate import pickling
from gcgate.errors import DeserializationError, SerdeError, SerializationError

__all__ = [
    "DEFAULT_STRATEGY_CODE",
    "DEFAULT_STRATEGY_DATA",
    "IDENTIFIER_LENGTH",
    "SDK_SERIALIZE_MODULE",
    "AllCodeStrategies",
    "AllDataStrategies",
    "AllowlistWildcard",
    "CombinedCode",
    "ComboSerializationStrategy",
    "ComputeSerializer",
    "DillCode",
    "DillCodeSource",
    "DillCodeTextInspect",
    "DillDataBase64",
    "JSONData",
    "PickleCode",
    "PureSourceDill",
    "PureSourceTextInspect",
    "SerializationStrategy",
    "Serializer",
    "Strategylike",
    "pack_buffers",
    "resolve_strategy",
    "strategy_by_identifier",
    "unpack_buffers",
]

#: Length of every strategy header: two identifying characters and a newline.
IDENTIFIER_LENGTH = 3

#: Where the SDK exposes the strategies; endpoints import result serializers by path,
#: so this is the prefix to use when passing a strategy to a real endpoint.
SDK_SERIALIZE_MODULE = "globus_compute_sdk.serialize"


def _dill_source() -> Any:
    """``dill.source``, imported on first use: dill is ~17 ms of ``from gcgate
    import Client``, and plain data never needs it (see :func:`_data_pickle`)."""
    import dill.source

    return dill.source


#: Types of plain data (with the containers below) whose pickle the standard
#: library's C pickler writes byte for byte as dill does (dill's pure-Python
#: pickler costs ~10 us per call, the C one ~0.2 us). Containers of 1,000 items
#: or more, and pickles of a frame's size, come out differently: dill for those.
_PLAIN_SCALARS = frozenset({type(None), bool, int, float, str, bytes})
_PLAIN_ITEMS, _PLAIN_DEPTH, _PLAIN_BYTES = 500, 16, 60_000


def _is_plain(obj: Any, depth: int = 0) -> bool:
    kind = type(obj)
    if kind in _PLAIN_SCALARS:
        return True
    if depth >= _PLAIN_DEPTH:
        return False
    if kind is tuple or kind is list:
        return len(obj) <= _PLAIN_ITEMS and all(_is_plain(x, depth + 1) for x in obj)
    if kind is dict:
        return len(obj) <= _PLAIN_ITEMS and all(
            type(k) is str and _is_plain(v, depth + 1) for k, v in obj.items()
        )
    return False


def _data_pickle(data: Any) -> bytes:
    """``dill.dumps(data)``, through the C pickler when that gives the same bytes."""
    if _is_plain(data):
        dill = sys.modules.get("dill")  # honour a protocol the user set in dill
        protocol = dill.settings["protocol"] if dill else pickle.DEFAULT_PROTOCOL
        raw = pickle.dumps(data, protocol)
        if len(raw) < _PLAIN_BYTES:
            return raw
    return pickling.dumps(data)


def _b64(raw: bytes) -> str:
    # MIME base64 (not base64.b64encode): a newline every 76 characters and at the
    # end, as the SDK's codecs.encode(..., "base64") writes its payloads; that codec
    # is base64.encodebytes, called here directly, without the codec lookup (whose
    # first use imports a module: about 0.5 ms of a fresh process's first call).
    return base64.encodebytes(raw).decode()


def _unb64(text: str) -> bytes:
    # base64.decodebytes, which the SDK's codecs.decode(..., "base64") is.
    return binascii.a2b_base64(text)


# ----------------------------------------------------------------------- buffer framing


def pack_buffers(buffers: Sequence[str]) -> str:
    """Frame serialized buffers into one string: ``"{len}\\n{buf}"`` for each buffer.

    ``len`` counts ``str`` characters (not bytes), as the SDK does; that is what
    endpoints expect when they split the concatenated function and argument buffers.
    """
    for i, buf in enumerate(buffers):
        if not isinstance(buf, str):
            raise SerializationError(
                f"pack_buffers needs str buffers; buffer {i} is {type(buf).__name__}"
            )
    return "".join(f"{len(b)}\n{b}" for b in buffers)


def unpack_buffers(packed: str) -> list[str]:
    """Split a string made by :func:`pack_buffers` back into its buffers.

    Accepts exactly what the SDK's ``unpack_buffers`` accepts (the length is parsed
    with ``int()``, as there) and rejects the same inputs with the same explanations,
    but as :class:`~gcgate.errors.DeserializationError` instead of ``ValueError``, so
    one ``except`` covers every malformed-payload case.
    """
    if not isinstance(packed, str):
        raise DeserializationError(f"Packed buffers must be str, not {type(packed).__name__}")
    unpacked: list[str] = []
    pos = 0
    end = len(packed)
    # Walk with an index instead of re-slicing the remainder: large payloads with
    # many buffers would otherwise be copied once per buffer.
    while pos < end:
        newline = packed.find("\n", pos)
        if newline < 0:
            raise DeserializationError("Missing newline delimiter")
        delimiter = packed[pos:newline]
        try:
            buf_len = int(delimiter)
        except ValueError as e:
            raise DeserializationError(f"Invalid length delimiter: {delimiter}") from e
        if buf_len < 0:
            raise DeserializationError(f"Length delimiter must be non-negative: {buf_len}")
        start = newline + 1
        remaining = end - start
        if remaining < buf_len:
            raise DeserializationError(
                f"Truncated buffer: expected {buf_len} characters, but only"
                f" {remaining} characters remain"
            )
        unpacked.append(packed[start : start + buf_len])
        pos = start + buf_len
    return unpacked


# --------------------------------------------------------------------------- strategies


class SerializationStrategy(ABC):
    """One way of turning Python objects into text and back, named by its header.

    Subclasses implement :meth:`_serialize` and :meth:`_deserialize` with exactly the
    SDK strategy's behaviour; the public :meth:`serialize` and :meth:`deserialize`
    wrap whatever they raise into :class:`SerializationError` and
    :class:`DeserializationError`, so callers need not know which library failed.
    """

    #: The header: two unique characters and ``"\\n"``, identical to the SDK's.
    identifier: ClassVar[str]
    #: True for strategies that handle callables, False for everything else (data).
    for_code: ClassVar[bool]
    #: Whether it can be chosen for serializing; False for formats that are only
    #: read any more (the SDK's deprecated PickleCode).
    selectable: ClassVar[bool] = True

    @property
    def name(self) -> str:
        """The class name, which is also the SDK's class name."""
        return type(self).__name__

    @property
    def sdk_import_path(self) -> str:
        """The import path of the SDK's equivalent, as endpoints expect it in
        ``result_serializers``."""
        return f"{SDK_SERIALIZE_MODULE}.{self.name}"

    def serialize(self, data: Any) -> str:
        """Encode ``data`` as header + text; raises :class:`SerializationError`."""
        try:
            return self._serialize(data)
        except SerdeError:
            raise
        except Exception as e:
            raise SerializationError(
                f"{self.name} could not serialize {type(data).__name__} object:"
                f" {type(e).__name__}: {e}"
            ) from e

    def deserialize(self, payload: str) -> Any:
        """Decode a payload made by this strategy; raises :class:`DeserializationError`."""
        try:
            return self._deserialize(payload)
        except SerdeError:
            raise
        except Exception as e:
            raise DeserializationError(
                f"{self.name} could not deserialize payload: {type(e).__name__}: {e}"
            ) from e

    @abstractmethod
    def _serialize(self, data: Any) -> str:
        """The SDK strategy's ``serialize``, byte for byte; may raise anything."""

    @abstractmethod
    def _deserialize(self, payload: str) -> Any:
        """The SDK strategy's ``deserialize``; may raise anything."""

    def chomp(self, payload: str) -> str:
        """Strip this strategy's header, refusing payloads that carry another one."""
        if not isinstance(payload, str):
            raise DeserializationError(f"Payload must be str, not {type(payload).__name__}")
        if not payload.startswith(self.identifier):
            raise DeserializationError(
                f"Buffer does not start with identifier {self.identifier!r}"
                f" (got {payload[:IDENTIFIER_LENGTH]!r})"
            )
        return payload[IDENTIFIER_LENGTH:]

    def __repr__(self) -> str:
        return f"{self.name}()"


class DillDataBase64(SerializationStrategy):
    """``00``: any data via ``dill.dumps``, base64-encoded. The default for data."""

    identifier = "00\n"
    for_code = False

    def _serialize(self, data: Any) -> str:
        return self.identifier + _b64(_data_pickle(data))

    def _deserialize(self, payload: str) -> Any:
        return pickling.loads(_unb64(self.chomp(payload)))


class JSONData(SerializationStrategy):
    """``11``: data via ``json.dumps``; readable by any language, lossy for tuples etc."""

    identifier = "11\n"
    for_code = False

    def _serialize(self, data: Any) -> str:
        return self.identifier + json.dumps(data)

    def _deserialize(self, payload: str) -> Any:
        return json.loads(self.chomp(payload))


class DillCode(SerializationStrategy):
    """``01``: the callable via ``dill.dumps``, base64-encoded. The default for code.

    Works for decorated functions and notebook code, but needs the same Python
    (minor) version on both ends.
    """

    identifier = "01\n"
    for_code = True

    def _serialize(self, data: Any) -> str:
        return self.identifier + _b64(pickling.dumps(data))

    def _deserialize(self, payload: str) -> Any:
        return pickling.loads(_unb64(self.chomp(payload)))


class PickleCode(SerializationStrategy):
    """``02``: the legacy pickle format; read only, as in the SDK (very old functions)."""

    identifier = "02\n"
    for_code = True
    selectable = False

    def _serialize(self, data: Any) -> str:
        raise NotImplementedError("Pickle serialization is no longer supported")

    def _deserialize(self, payload: str) -> Any:
        return pickle.loads(_unb64(self.chomp(payload)))


class _NamedSourceDill(SerializationStrategy, ABC):
    """Source text and function name, pickled as a tuple and base64-encoded."""

    @abstractmethod
    def _source(self, fn: Callable[..., Any]) -> str: ...

    def _serialize(self, data: Any) -> str:
        name = data.__name__
        body = self._source(data)
        return self.identifier + _b64(pickling.dumps((name, body)))

    def _deserialize(self, payload: str) -> Any:
        name, body = pickling.loads(_unb64(self.chomp(payload)))
        return _exec_source(name, body)


class DillCodeTextInspect(_NamedSourceDill):
    """``03``: source from ``inspect.getsource``, dill-pickled (SDK-deprecated)."""

    identifier = "03\n"
    for_code = True

    def _source(self, fn: Callable[..., Any]) -> str:
        return inspect.getsource(fn)


class DillCodeSource(_NamedSourceDill):
    """``04``: source from ``dill.source.getsource``, dill-pickled (SDK-deprecated)."""

    identifier = "04\n"
    for_code = True

    def _source(self, fn: Callable[..., Any]) -> str:
        return _dill_source().getsource(fn, lstrip=True)


class _PureSource(SerializationStrategy, ABC):
    """``{name}:{source}`` as plain text: portable across Python versions."""

    _separator: ClassVar[str] = ":"

    @abstractmethod
    def _source(self, fn: Callable[..., Any]) -> str: ...

    def _serialize(self, data: Any) -> str:
        name: str = data.__name__
        return self.identifier + name + self._separator + self._source(data)

    def _deserialize(self, payload: str) -> Any:
        name, body = self.chomp(payload).split(self._separator, 1)
        return _exec_source(name, body)


class PureSourceTextInspect(_PureSource):
    """``st``: source text from ``inspect.getsource`` (works for notebook code)."""

    identifier = "st\n"
    for_code = True

    def _source(self, fn: Callable[..., Any]) -> str:
        return inspect.getsource(fn)


class PureSourceDill(_PureSource):
    """``sd``: source text from ``dill.source.getsource`` (works in the interpreter)."""

    identifier = "sd\n"
    for_code = True

    def _source(self, fn: Callable[..., Any]) -> str:
        return _dill_source().getsource(fn, lstrip=True)


def _exec_source(name: str, body: str) -> Any:
    """Run a function's source in a fresh namespace and return the function.

    This is what the SDK's source strategies do on deserialize; it executes
    arbitrary code by design, and only ever on an explicit deserialize call.
    """
    namespace: dict[str, Any] = {}
    exec(body, namespace)
    return namespace[name]


class CombinedCode(SerializationStrategy):
    """``10``: every source/dill code strategy at once, ``":"``-joined (SDK-deprecated).

    Kept bug-compatible with the SDK: the payload is split on every ``":"``, so a
    plain-source chunk (which may contain colons) misaligns the chunks after it;
    the dill-based chunks come first, so in practice one of them decodes.
    """

    identifier = "10\n"
    for_code = True

    _separator: ClassVar[str] = ":"

    @staticmethod
    def _chunk_strategies() -> dict[str, SerializationStrategy]:
        return {
            s.identifier: s
            for s in (
                DillCodeSource(),
                DillCode(),
                DillCodeTextInspect(),
                PureSourceDill(),
                PureSourceTextInspect(),
            )
        }

    def get_multiple_payloads(self, payload: str) -> tuple[tuple[str, str], ...]:
        """The ``(identifier, encoded)`` pairs, paired exactly as the SDK pairs them."""
        parts = iter(self.chomp(payload).split(self._separator))
        # strict=False: an odd trailing part is dropped, as in the SDK.
        return tuple(zip(parts, parts, strict=False))

    def _serialize(self, data: Any) -> str:
        chunks: list[str] = []
        for ident, strategy in self._chunk_strategies().items():
            try:
                serialized = strategy._serialize(data)
            except Exception:
                continue  # as the SDK: keep whichever sub-strategies work
            chunks.append(serialized[: len(ident)])
            chunks.append(serialized[len(ident) :])
        if not chunks:
            raise SerializationError("No serialization methods were successful")
        return self.identifier + self._separator.join(chunks)

    def _deserialize(self, payload: str, variation: int = 0) -> Any:
        strategies = self._chunk_strategies()
        count = 0
        for serial_id, encoded in self.get_multiple_payloads(payload):
            count += 1
            if variation and count != variation:
                continue
            strategy = strategies.get(serial_id)
            if strategy is None:
                raise DeserializationError(f"Invalid serialization id {serial_id!r}")
            try:
                return strategy._deserialize(serial_id + encoded)
            except Exception as e:
                if variation:
                    raise DeserializationError(
                        f"Failed to deserialize using variation #{count}"
                    ) from e
        raise DeserializationError(f"Deserialization failed after {count} tries")

    def deserialize(self, payload: str, variation: int = 0) -> Any:
        """Decode the first chunk that works, or only chunk number ``variation`` (1-based)."""
        try:
            return self._deserialize(payload, variation)
        except SerdeError:
            raise
        except Exception as e:
            raise DeserializationError(
                f"{self.name} could not deserialize payload: {type(e).__name__}: {e}"
            ) from e


class ComboSerializationStrategy(SerializationStrategy, ABC):
    """Several strategies' outputs in one payload: header + :func:`pack_buffers` of them.

    Serializing keeps every sub-strategy that succeeds; deserializing returns the
    first buffer that decodes, so the receiver uses whichever format it can read.
    """

    #: Sub-strategies in the order the SDK tries them.
    strategies: ClassVar[tuple[type[SerializationStrategy], ...]]

    def _serialize(self, data: Any) -> str:
        buffers: list[str] = []
        errors: list[str] = []
        for cls in self.strategies:
            try:
                buffers.append(cls()._serialize(data))
            except Exception as e:
                errors.append(f"{cls.__name__}: {e}")
        if not buffers:
            errors_str = "\n* ".join(errors) if errors else "unknown"
            raise SerializationError(f"\n\nSerialization errors:\n* {errors_str}")
        return self.identifier + pack_buffers(buffers)

    def _deserialize(self, payload: str) -> Any:
        errors: list[str] = []
        for buff in unpack_buffers(self.chomp(payload)):
            if "\n" not in buff:
                suffix = "..." if len(buff) > 50 else ""
                errors.append(f"Malformed data (no newline separator): {buff[:50]}{suffix}")
                continue
            s_id = buff.split("\n", 1)[0] + "\n"
            strategy = _BY_IDENTIFIER.get(s_id)
            if strategy is None:
                errors.append(f"Invalid strategy identifier: {s_id[:-1]}")
                continue
            try:
                return strategy._deserialize(buff)
            except Exception as e:
                errors.append(f"{strategy.name}: {e}")
        errors_str = "\n* ".join(errors) if errors else "unknown"
        raise DeserializationError(f"\n\nDeserialization errors:\n* {errors_str}")


class AllCodeStrategies(ComboSerializationStrategy):
    """``12``: PureSourceTextInspect, PureSourceDill and DillCode in one payload."""

    identifier = "12\n"
    for_code = True
    strategies = (PureSourceTextInspect, PureSourceDill, DillCode)


class AllDataStrategies(ComboSerializationStrategy):
    """``13``: JSONData and DillDataBase64 in one payload."""

    identifier = "13\n"
    for_code = False
    strategies = (JSONData, DillDataBase64)


_ALL_STRATEGIES: tuple[SerializationStrategy, ...] = (
    DillDataBase64(),
    DillCode(),
    PickleCode(),
    DillCodeTextInspect(),
    DillCodeSource(),
    CombinedCode(),
    JSONData(),
    AllCodeStrategies(),
    AllDataStrategies(),
    PureSourceTextInspect(),
    PureSourceDill(),
)

_BY_IDENTIFIER: dict[str, SerializationStrategy] = {s.identifier: s for s in _ALL_STRATEGIES}
_BY_NAME: dict[str, SerializationStrategy] = {s.name: s for s in _ALL_STRATEGIES}
assert len(_BY_IDENTIFIER) == len(_ALL_STRATEGIES), "duplicate strategy identifier"
assert all(
    len(s.identifier) == IDENTIFIER_LENGTH and s.identifier.endswith("\n") for s in _ALL_STRATEGIES
)

#: Names of the strategies that can be chosen (result_serializers takes them as
#: short names or import paths), sorted.
STRATEGY_NAMES: tuple[str, ...] = tuple(sorted(s.name for s in _ALL_STRATEGIES if s.selectable))

#: The code strategy used when none is given (as in the SDK).
DEFAULT_STRATEGY_CODE: SerializationStrategy = _BY_NAME["DillCode"]
#: The data strategy used when none is given (as in the SDK).
DEFAULT_STRATEGY_DATA: SerializationStrategy = _BY_NAME["DillDataBase64"]

#: A strategy given as an instance, a class, or an import path string. Matched by class
#: name, so the SDK's own classes, instances and paths
#: ("globus_compute_sdk.serialize.JSONData") also select the equivalent strategy here.
Strategylike = SerializationStrategy | type | str


def strategy_by_identifier(ident: str) -> SerializationStrategy:
    """The strategy whose header is ``ident`` ("01\\n"; the newline may be omitted).

    Raises :class:`DeserializationError`, since an unknown header means a payload
    this module cannot read.
    """
    key = ident if ident.endswith("\n") else ident + "\n"
    try:
        return _BY_IDENTIFIER[key]
    except KeyError:
        raise DeserializationError(f"Unknown strategy identifier: {ident!r}") from None


def resolve_strategy(value: Strategylike, *, for_code: bool | None = None) -> SerializationStrategy:
    """Turn a strategy-like value into the strategy here with the same class name.

    Accepts what the SDK's ``validate_strategylike`` accepts (an instance, a class,
    an import path) without importing anything: only the class name counts, so
    ``"globus_compute_sdk.serialize.concretes.JSONData"``, ``JSONData``,
    ``JSONData()`` and the SDK's ``JSONData()`` all mean :class:`JSONData`. As in the
    SDK, a read-only strategy (PickleCode) or one of the wrong kind (a data strategy
    where ``for_code=True``) is refused. Raises :class:`SerdeError`.
    """
    if isinstance(value, str):
        name = value.strip().rpartition(".")[2]
    elif inspect.isclass(value):
        name = value.__name__
    else:
        name = type(value).__name__
    strategy = _BY_NAME.get(name)
    if strategy is None or not strategy.selectable:
        raise SerdeError(
            f"{value!r} is not a known serialization strategy (known: {', '.join(STRATEGY_NAMES)};"
            f" give a class, an instance, or an import path such as"
            f" '{SDK_SERIALIZE_MODULE}.JSONData')"
        )
    if for_code is not None and strategy.for_code != for_code:
        expected, got = ("code", "data") if for_code else ("data", "code")
        raise SerdeError(
            f"{strategy.name} is a {got} serialization strategy, expected a {expected} strategy."
        )
    return strategy


# --------------------------------------------------------------------------- serializer


class AllowlistWildcard(str, enum.Enum):
    """Entries of ``allowed_deserializer_types`` that allow every code strategy, or
    every data strategy (the SDK's values, so the SDK's members work too)."""

    #: Every selectable code strategy.
    CODE = "globus_compute_sdk.*Code"
    #: Every selectable data strategy.
    DATA = "globus_compute_sdk.*Data"


#: What ``allowed_deserializer_types`` takes: strategy-likes and wildcards.
DeserializerAllowlist = Iterable[Strategylike | AllowlistWildcard]


def parse_allowlist(values: DeserializerAllowlist | None) -> set[type[SerializationStrategy]]:
    """The strategy classes an allowlist names, checked as the SDK checks it.

    Empty (or None) allows everything. Otherwise it must allow at least one code
    and one data strategy, and a wildcard cannot be mixed with strategies of its
    own kind. Raises :class:`SerdeError`.
    """
    if not values:
        return set()
    values = list(values)
    allowed: set[type[SerializationStrategy]] = set()
    wildcards: set[AllowlistWildcard] = set()
    for value in values:
        try:
            wildcards.add(AllowlistWildcard(value))
        except ValueError:
            allowed.add(type(resolve_strategy(value)))
    for wildcard in wildcards:
        for_code = wildcard == AllowlistWildcard.CODE
        if any(cls.for_code == for_code for cls in allowed):
            raise SerdeError(f"Cannot mix '{wildcard}' with specific deserializers (got {values})")
        allowed.update(type(s) for s in _ALL_STRATEGIES if s.selectable and s.for_code == for_code)
    if len({cls.for_code for cls in allowed}) != 2:
        raise SerdeError(
            "Deserialization allowlists must contain at least one code and one data"
            f" deserializer/wildcard (got: {values})"
        )
    return allowed


class ComputeSerializer:
    """The SDK's ``ComputeSerializer``, plus the few compositions gcgate needs.

    Callables are serialized with the code strategy (default :class:`DillCode`),
    everything else with the data strategy (default :class:`DillDataBase64`);
    deserializing dispatches on the payload's header, so it reads every strategy
    regardless of the ones chosen here, unless ``allowed_deserializer_types``
    narrows that down.
    """

    def __init__(
        self,
        strategy_code: Strategylike | None = None,
        strategy_data: Strategylike | None = None,
        *,
        allowed_deserializer_types: DeserializerAllowlist | None = None,
    ) -> None:
        """
        :param strategy_code: the strategy for callables (default :class:`DillCode`)
        :param strategy_data: the strategy for everything else (default
            :class:`DillDataBase64`)
        :param allowed_deserializer_types: the only strategies :meth:`deserialize`
            reads (strategy-likes and :class:`AllowlistWildcard` members, at least
            one code and one data); empty or None: all
        :raises SerdeError: an unknown strategy, or a malformed allowlist
        """
        self.code_serializer: SerializationStrategy = (
            DEFAULT_STRATEGY_CODE
            if strategy_code is None
            else resolve_strategy(strategy_code, for_code=True)
        )
        self.data_serializer: SerializationStrategy = (
            DEFAULT_STRATEGY_DATA
            if strategy_data is None
            else resolve_strategy(strategy_data, for_code=False)
        )
        self.allowed_deserializer_types = parse_allowlist(allowed_deserializer_types)

    def __repr__(self) -> str:
        allowed = ""
        if self.allowed_deserializer_types:
            names = ", ".join(sorted(cls.__name__ for cls in self.allowed_deserializer_types))
            allowed = f", allowed_deserializer_types=[{names}]"
        return (
            f"{type(self).__name__}(strategy_code={self.code_serializer!r},"
            f" strategy_data={self.data_serializer!r}{allowed})"
        )

    def serialize(self, data: Any) -> str:
        """Encode ``data`` with the code or data strategy, as ``ComputeSerializer`` does."""
        if callable(data):
            kind, strategy = "Code", self.code_serializer
        else:
            kind, strategy = "Data", self.data_serializer
        try:
            return strategy.serialize(data)
        except SerdeError as e:
            raise SerializationError(
                f"{kind} serialization strategy {strategy.name} failed: {e.reason}"
            ) from e

    def deserialize(self, payload: str) -> Any:
        """Decode any payload, choosing the strategy by its header."""
        if not isinstance(payload, str):
            raise DeserializationError(f"Payload must be str, not {type(payload).__name__}")
        header = payload[:IDENTIFIER_LENGTH]
        strategy = _BY_IDENTIFIER.get(header)
        if strategy is None:
            raise DeserializationError(f"Invalid header: {header!r} in data payload")
        self.assert_deserializer_allowed(strategy)
        return strategy.deserialize(payload)

    def assert_deserializer_allowed(self, strategy: SerializationStrategy) -> None:
        """Raise :class:`DeserializationError` unless the allowlist (if any) has
        ``strategy``; the SDK's message."""
        allowed = self.allowed_deserializer_types
        if not allowed or type(strategy) in allowed:
            return
        kind = "Code" if strategy.for_code else "Data"
        payload_type = "function" if strategy.for_code else "arguments"
        names = ", ".join(sorted(cls.__name__ for cls in allowed))
        message = (
            f"\n{kind} serializer {strategy.name} disabled by current configuration."
            f"\nThe current configuration requires the *{payload_type}* to be"
            f" serialized with one of the allowed {kind} classes:\n\n"
            f"    Allowed serializers: {names}"
        )
        raise DeserializationError(textwrap.indent(message, " "))

    @staticmethod
    def pack_buffers(buffers: Sequence[str]) -> str:
        """See :func:`pack_buffers`."""
        return pack_buffers(buffers)

    @staticmethod
    def unpack_buffers(packed_buffer: str) -> list[str]:
        """See :func:`unpack_buffers`."""
        return unpack_buffers(packed_buffer)

    def function_code(self, fn: Callable[..., Any]) -> str:
        """The ``function_code`` to register ``fn`` with.

        Same as the SDK's ``FunctionRegistrationData(function=fn).function_code``:
        one packed buffer holding the serialized function.
        """
        if not callable(fn):
            raise SerializationError(f"function_code needs a callable, not {type(fn).__name__}")
        return pack_buffers([self.serialize(fn)])

    def task_payload(
        self,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> str:
        """The payload of one task: ``pack_buffers([serialize(args), serialize(kwargs)])``.

        Same as the SDK's ``Batch.add``, including its argument checks (TypeError for
        args that are not a tuple or list, or kwargs that are not a str-keyed dict),
        and ``args`` is serialized as given, so a list stays a list.
        """
        if args is None:
            args = ()
        if not isinstance(args, (list, tuple)):
            raise TypeError(f"args: expected `tuple`, got: {type(args).__name__}")
        if kwargs is None:
            kwargs = {}
        if not isinstance(kwargs, dict):
            raise TypeError(f"kwargs: expected dict, got: {type(kwargs).__name__}")
        for key in kwargs:
            if not isinstance(key, str):
                raise TypeError(
                    f"kwargs: expected kwargs with `str` keys, got: {type(key).__name__}"
                )
        return pack_buffers([self.serialize(args), self.serialize(kwargs)])

    def unpack_and_deserialize(self, packed_buffer: str) -> list[Any]:
        """The SDK's: unpack three buffers (function, args, kwargs) and deserialize
        each; :class:`DeserializationError` for any other number of buffers."""
        buffers = unpack_buffers(packed_buffer)
        if len(buffers) != 3:
            raise DeserializationError(f"Unpack expects 3 buffers, got {len(buffers)}")
        return [self.deserialize(b) for b in buffers]

    def check_strategies(
        self, function: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> list[Any]:
        """The SDK's: send ``function(*args, **kwargs)`` through this serializer's
        strategies and back, to find out before submitting whether they can.

        :returns: ``[function, args, kwargs]`` as an endpoint would get them
        :raises SerializationError: a strategy cannot serialize them
        :raises DeserializationError: they do not come back (e.g. not allowed)
        """
        try:
            packed = pack_buffers([self.serialize(x) for x in (function, args, kwargs)])
        except Exception as e:
            raise SerializationError("check_strategies failed to serialize") from e
        try:
            return self.unpack_and_deserialize(packed)
        except Exception as e:
            raise DeserializationError("check_strategies failed to deserialize") from e

    def unpack_task(
        self, function_code: str, payload: str
    ) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
        """What an endpoint does with a task: split ``function_code + payload`` into
        three buffers and deserialize the function, its args and its kwargs.

        Raises :class:`DeserializationError` if there are not exactly three buffers,
        or if they do not decode to a callable, a tuple/list and a dict.
        """
        fn, args, kwargs = self.unpack_and_deserialize(function_code + payload)
        if not callable(fn):
            raise DeserializationError(
                f"function_code decodes to a {type(fn).__name__}, not a callable"
            )
        if not isinstance(args, (tuple, list)):
            raise DeserializationError(f"Task args decode to a {type(args).__name__}, not a tuple")
        if not isinstance(kwargs, dict):
            raise DeserializationError(
                f"Task kwargs decode to a {type(kwargs).__name__}, not a dict"
            )
        return fn, tuple(args), kwargs

    @staticmethod
    def serialize_from_list(data: Any, strategies: Iterable[Strategylike]) -> str:
        """Serialize a task's result the way an endpoint does (the SDK's method).

        Each of ``strategies`` (the task's ``result_serializers``: import paths such
        as ``"globus_compute_sdk.serialize.JSONData"``, classes or instances,
        matched by class name) is tried in order and the first that works wins; a
        strategy of the wrong kind for ``data`` (a code strategy for data, or vice
        versa) counts as a failure. With no strategies, the defaults are tried:
        DillDataBase64, then DillCode, so plain data becomes ``"00\\n..."`` and a
        callable result ``"01\\n..."``. Raises :class:`SerializationError` listing
        every failure (the SDK's says "All strategies failed.").
        """
        strategies = list(strategies) or [DEFAULT_STRATEGY_DATA, DEFAULT_STRATEGY_CODE]
        for_code = callable(data)
        failures: list[str] = []
        for spec in strategies:
            try:
                return resolve_strategy(spec, for_code=for_code).serialize(data)
            except SerdeError as e:
                label = spec if isinstance(spec, str) else getattr(spec, "__name__", repr(spec))
                failures.append(f"{label}: {e}")
        raise SerializationError(
            f"All strategies failed for {type(data).__name__} result:\n* " + "\n* ".join(failures)
        )


#: gcgate's name for :class:`ComputeSerializer`, which its Client and workers use.
Serializer = ComputeSerializer
