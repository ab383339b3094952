"""Plain data is pickled by the standard library's C pickler, not dill's pure-Python
one (gcgate.serialize._data_pickle): the payloads must stay the SDK's byte for byte.

The oracle is the real SDK's DillDataBase64 (dill.dumps), as in test_serialize.py;
the sizes around the limits of the fast path (items per container, pickle size)
are tried on both sides of each limit.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import globus_compute_sdk.serialize as sdk
import pytest
from gcgate.serialize import Serializer
from hypothesis import given, settings
from hypothesis import strategies as st

SDK_DATA = sdk.DillDataBase64()

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=True)
    | st.text()
    | st.binary()
)
plain = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=12)
        | st.lists(inner, max_size=12).map(tuple)
        | st.dictionaries(st.text(max_size=8), inner, max_size=12)
    ),
    max_leaves=60,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(plain, max_size=4).map(tuple), st.dictionaries(st.text(), plain, max_size=4))
def test_plain_arguments_serialize_as_the_sdk_does(args: tuple[Any, ...], kwargs: dict) -> None:
    serializer = Serializer()
    assert serializer.serialize(args) == SDK_DATA.serialize(args)
    assert serializer.serialize(kwargs) == SDK_DATA.serialize(kwargs)


def _nested(depth: int) -> list[Any]:
    value: list[Any] = [1]
    for _ in range(depth):
        value = [value]
    return value


def _shared() -> tuple[Any, ...]:
    text, items = "shared" * 10, [1, 2]
    return (text, text, items, items)


@pytest.mark.parametrize(
    "value",
    [
        *(list(range(n)) for n in (499, 500, 501, 999, 1000, 1001, 5000)),
        *({str(i): i for i in range(n)} for n in (499, 500, 501, 1000, 1001)),
        *("x" * n for n in (59_900, 60_100, 70_000)),
        *([b"y" * 1000] * n for n in (55, 65, 200)),
        _shared(),
        {1, 2, 3},  # not plain: dill
        frozenset({"a"}),
        _nested(20),  # deeper than the fast path goes
        (1.5, {"k": (None, True, b"\x00")}, [2**70, -(2**70)]),
    ],
    ids=repr,
)
def test_data_at_the_limits_serializes_as_the_sdk_does(value: Any) -> None:
    assert Serializer().serialize(value) == SDK_DATA.serialize(value)


def test_importing_the_client_does_not_import_dill() -> None:
    code = "import sys; from gcgate import Client; print('dill' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"
