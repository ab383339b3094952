"""``gcgate.serialize.ComputeSerializer`` and ``AllowlistWildcard`` against the SDK's.

The SDK is the oracle: the same constructor arguments must give the same
strategies and allowlists (or both refuse them), and a payload a narrowed
serializer refuses must be refused by both, with the same explanation.
"""

from __future__ import annotations

from typing import Any

import globus_compute_sdk.errors as sdk_errors
import globus_compute_sdk.serialize as sdk
import pytest
from gcgate.client import as_serializer
from gcgate.errors import DeserializationError, SerdeError, SerializationError
from gcgate.serialize import AllowlistWildcard, ComputeSerializer, Serializer, pack_buffers

pytestmark = pytest.mark.fast

PATH = "globus_compute_sdk.serialize."


def add(a: int, b: int = 10) -> int:
    return a + b


def allowed_names(serializer: Any) -> set[str]:
    return {cls.__name__ for cls in serializer.allowed_deserializer_types}


def test_the_sdk_names_are_there() -> None:
    assert Serializer is ComputeSerializer
    assert {w.name: w.value for w in AllowlistWildcard} == {
        w.name: w.value for w in sdk.AllowlistWildcard
    }
    assert repr(ComputeSerializer()) == (
        "ComputeSerializer(strategy_code=DillCode(), strategy_data=DillDataBase64())"
    )


@pytest.mark.parametrize(
    "allowlist",
    [
        None,
        [],
        [sdk.AllowlistWildcard.CODE, sdk.AllowlistWildcard.DATA],
        ["globus_compute_sdk.*Code", "globus_compute_sdk.*Data"],
        [PATH + "DillCode", PATH + "JSONData"],
        [sdk.DillCode, sdk.JSONData()],
        [sdk.AllowlistWildcard.CODE, PATH + "JSONData", PATH + "DillDataBase64"],
        [sdk.AllowlistWildcard.CODE],
        [PATH + "DillCode"],
        [sdk.AllowlistWildcard.CODE, PATH + "DillCode", PATH + "JSONData"],
        [PATH + "NoSuchStrategy", PATH + "JSONData"],
    ],
)
def test_allowlists_are_the_sdks(allowlist: Any) -> None:
    try:
        theirs = sdk.ComputeSerializer(allowed_deserializer_types=allowlist)
    except sdk_errors.SerdeError as exc:
        with pytest.raises(SerdeError) as ours:
            ComputeSerializer(allowed_deserializer_types=allowlist)
        if "NoSuchStrategy" not in str(allowlist):  # that message names gcgate's strategies
            assert ours.value.reason == exc.reason
        return
    ours = ComputeSerializer(allowed_deserializer_types=allowlist)
    assert allowed_names(ours) == allowed_names(theirs)
    # Our members work in the SDK's serializer and the other way round.
    assert allowed_names(as_serializer(theirs)) == allowed_names(theirs)


def test_a_strategy_not_allowed_is_refused_as_by_the_sdk() -> None:
    allowlist = [PATH + "DillCode", PATH + "JSONData"]
    payload = sdk.ComputeSerializer().serialize({"x": {1, 2}})  # DillDataBase64
    with pytest.raises(sdk_errors.DeserializationError) as theirs:
        sdk.ComputeSerializer(allowed_deserializer_types=allowlist).deserialize(payload)
    narrowed = ComputeSerializer(allowed_deserializer_types=allowlist)
    with pytest.raises(DeserializationError) as ours:
        narrowed.deserialize(payload)
    assert ours.value.reason == theirs.value.reason
    assert "Allowed serializers: DillCode, JSONData" in ours.value.reason
    assert narrowed.deserialize(sdk.JSONData().serialize([1, 2])) == [1, 2]


def test_check_strategies_and_unpack_and_deserialize_as_the_sdks() -> None:
    fn, args, kwargs = ComputeSerializer().check_strategies(add, 3, b=4)
    assert fn(*args, **kwargs) == 7
    assert (args, kwargs) == ((3,), {"b": 4})

    buffers = [sdk.ComputeSerializer().serialize(x) for x in (add, (1,), {})]
    fn, args, kwargs = ComputeSerializer().unpack_and_deserialize(pack_buffers(buffers))
    assert (fn(*args, **kwargs), args, kwargs) == (11, (1,), {})
    with pytest.raises(DeserializationError, match="3 buffers, got 2"):
        ComputeSerializer().unpack_and_deserialize(pack_buffers(buffers[:2]))

    json_only = [PATH + "DillCode", PATH + "JSONData"]
    with pytest.raises(sdk_errors.DeserializationError) as theirs:
        sdk.ComputeSerializer(allowed_deserializer_types=json_only).check_strategies(add, 1)
    with pytest.raises(DeserializationError) as ours:
        ComputeSerializer(allowed_deserializer_types=json_only).check_strategies(add, 1)
    assert ours.value.reason == theirs.value.reason == "check_strategies failed to deserialize"
    with pytest.raises(SerializationError, match="failed to serialize"):
        ComputeSerializer(strategy_data=PATH + "JSONData").check_strategies(add, {1})
