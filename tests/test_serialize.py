"""Wire compatibility of gcgate.serialize with the real Globus Compute SDK.

globus-compute-sdk is installed for the tests only, as the oracle: every payload
gcgate makes must be readable by the SDK (that is what endpoints run), every
payload the SDK makes must be readable by gcgate, and where the encoding is
deterministic the two must agree byte for byte.

The functions serialized here live at module level because the source strategies
need ``inspect.getsource``.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import math
import pickle
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import dill
import gcgate.serialize as gs
import globus_compute_sdk.errors as sdk_errors
import globus_compute_sdk.serialize as sdk
import pytest
from gcgate import errors
from gcgate._sdk_twins import twin_class
from gcgate.errors import DeserializationError, SerdeError, SerializationError
from gcgate.serialize import Serializer, pack_buffers, unpack_buffers
from globus_compute_sdk.sdk.batch import Batch
from globus_compute_sdk.sdk.client import FunctionRegistrationData
from globus_compute_sdk.serialize.utils import pack_buffers as sdk_pack_buffers
from globus_compute_sdk.serialize.utils import unpack_buffers as sdk_unpack_buffers
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.fast

# ------------------------------------------------------------------ module-level fixtures


def add(a, b=10):
    """Plain function; every code strategy handles it."""
    return a + b


def uses_import(values):
    import statistics

    return statistics.fmean(values)


def describe(x, *, label: str = "value") -> str:
    # A colon-rich body, to exercise the "name:source" split of the source strategies.
    return f"{label}: {x!r}"


def make_scaler(factor):
    def scale(x):
        return x * factor

    return scale


#: A closure: dill must pickle it by value (it cannot be found by import path).
scale_by_3 = make_scaler(3)

CODE_STRATEGIES = [
    "DillCode",
    "DillCodeTextInspect",
    "DillCodeSource",
    "PureSourceTextInspect",
    "PureSourceDill",
    "CombinedCode",
    "AllCodeStrategies",
]
DATA_STRATEGIES = ["DillDataBase64", "JSONData", "AllDataStrategies"]

# (function, args, kwargs) with a result every strategy must reproduce.
CALLS = [
    (add, (1,), {}),
    (add, (1,), {"b": 2}),
    (uses_import, ([1, 2, 3, 4],), {}),
    (describe, (3.5,), {"label": "x"}),
]

# JSON-able values, so every data strategy (including JSONData) round-trips them.
DATA_VALUES = [
    None,
    0,
    -(2**70),
    1.5,
    "héllo\nwörld ✓",
    [1, "two", [3.0, None], {"k": True}],
    {"a": 1, "nested": {"list": [1, 2, 3]}, "": ""},
]

# Deterministic settings: no deadline flakiness on a loaded CI machine.
quick = settings(deadline=None, max_examples=100)


def ours(name: str) -> gs.SerializationStrategy:
    return getattr(gs, name)()


def theirs(name: str) -> Any:
    return getattr(sdk, name)()


SDK_SERDE = sdk.ComputeSerializer()
OUR_SERDE = Serializer()


# --------------------------------------------------------------------------------- dill


def test_dill_version_is_pinned():
    assert dill.__version__ == "0.3.9", (
        "dill must be 0.3.9: globus-compute-sdk 4.19 and current Globus Compute endpoints"
        " use it, and dill pickles are not portable across dill versions, so payloads made"
        " with another dill may not load on an endpoint"
    )


def test_thin_modules_import_without_sdk_or_grpc():
    # The thin client must not pull in the SDK (or grpc, for errors) just to serialize.
    client_dir = Path(__file__).resolve().parent.parent / "client"
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import gcgate.errors, gcgate.serialize;"
        "bad = sorted(m for m in sys.modules if m.startswith(('globus_compute', 'grpc')));"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code, str(client_dir)], check=True, timeout=60)


# --------------------------------------------------------------------- strategy registry


def test_identifiers_match_sdk():
    for name in [*CODE_STRATEGIES, *DATA_STRATEGIES, "PickleCode"]:
        sdk_cls = getattr(sdk, name, None) or getattr(sdk.concretes, name)
        assert getattr(gs, name).identifier == sdk_cls.identifier, name
        assert getattr(gs, name).for_code == sdk_cls.for_code, name
        assert gs.strategy_by_identifier(sdk_cls.identifier).name == name
        assert gs.strategy_by_identifier(sdk_cls.identifier.strip()).name == name
    # Every identifier the SDK knows, we know, under the same class name.
    for ident, instance in sdk.SerializationStrategy._CACHE.items():
        assert gs.strategy_by_identifier(ident).name == type(instance).__name__


def test_strategy_by_identifier_unknown():
    with pytest.raises(DeserializationError, match="'zz\\\\n'"):
        gs.strategy_by_identifier("zz\n")


def test_sdk_import_path_is_importable_by_sdk():
    from globus_compute_sdk.serialize.facade import validate_strategylike

    for name in [*CODE_STRATEGIES, *DATA_STRATEGIES]:
        path = ours(name).sdk_import_path
        assert validate_strategylike(path).type_.__name__ == name


# ------------------------------------------------------------------------ code strategies


@pytest.mark.parametrize("name", CODE_STRATEGIES)
@pytest.mark.parametrize(("fn", "args", "kwargs"), CALLS, ids=lambda v: getattr(v, "__name__", ""))
def test_code_strategy_both_directions(name, fn, args, kwargs):
    expected = fn(*args, **kwargs)
    mine = ours(name).serialize(fn)
    sdks = theirs(name).serialize(fn)

    # Deterministic for module-level functions: byte-identical.
    assert mine == sdks
    assert mine.startswith(ours(name).identifier)
    # Ours -> SDK (what an endpoint does) and SDK -> ours.
    assert SDK_SERDE.deserialize(mine)(*args, **kwargs) == expected
    assert OUR_SERDE.deserialize(sdks)(*args, **kwargs) == expected
    # Selected through the serializers, by instance, class and import path.
    for spec in (getattr(gs, name), ours(name), f"globus_compute_sdk.serialize.{name}"):
        assert Serializer(strategy_code=spec).serialize(fn) == sdks
    assert Serializer(strategy_code=theirs(name)).serialize(fn) == sdk.ComputeSerializer(
        strategy_code=theirs(name)
    ).serialize(fn)


def test_closure_by_value():
    # Closures are pickled by value, which is the path real user code takes.
    mine = gs.DillCode().serialize(scale_by_3)
    assert mine == sdk.DillCode().serialize(scale_by_3)
    assert SDK_SERDE.deserialize(mine)(5) == 15
    assert OUR_SERDE.deserialize(sdk.DillCode().serialize(scale_by_3))(5) == 15
    # The combo's first member is source text, which loses the closure; both sides agree.
    combo = gs.AllCodeStrategies().serialize(scale_by_3)
    assert combo == sdk.AllCodeStrategies().serialize(scale_by_3)
    for serde in (SDK_SERDE, OUR_SERDE):
        with pytest.raises(NameError):
            serde.deserialize(combo)(5)


def _outcome(fn, *args, **kwargs) -> tuple[str, Any]:
    """("ok", value) or ("error", None): lets a test compare behaviour with the SDK's."""
    try:
        return "ok", fn(*args, **kwargs)
    except Exception:
        return "error", None


@pytest.mark.parametrize("variation", [0, 1, 2, 3, 4, 5, 6])
def test_combined_code_variations_match_sdk(variation):
    # The SDK splits CombinedCode payloads on every ":", so the chunks after the first
    # plain-source chunk misalign; we must decode (or refuse) exactly the same chunks.
    payload = sdk.CombinedCode().serialize(describe)
    mine = _outcome(lambda: gs.CombinedCode().deserialize(payload, variation=variation)(1))
    theirs_ = _outcome(lambda: sdk.CombinedCode().deserialize(payload, variation=variation)(1))
    assert mine == theirs_
    if variation <= 2:
        assert mine == ("ok", "value: 1")


def test_pickle_code_read_only():
    legacy = "02\n" + codecs.encode(pickle.dumps(add), "base64").decode()
    assert OUR_SERDE.deserialize(legacy)(2) == 12
    assert SDK_SERDE.deserialize(legacy)(2) == 12
    with pytest.raises(SerializationError, match="no longer supported"):
        gs.PickleCode().serialize(add)
    with pytest.raises(SerdeError, match="not a known serialization strategy"):
        Serializer(strategy_code="globus_compute_sdk.serialize.concretes.PickleCode")


def test_source_strategy_failure_is_serialization_error():
    # Builtins have no Python source: the SDK raises TypeError, we SerializationError.
    with pytest.raises(TypeError):
        sdk.PureSourceTextInspect().serialize(len)
    with pytest.raises(SerializationError, match="PureSourceTextInspect"):
        Serializer(strategy_code=gs.PureSourceTextInspect).serialize(len)
    # The combo keeps the strategies that work (DillCode), as in the SDK.
    assert gs.AllCodeStrategies().serialize(len) == sdk.AllCodeStrategies().serialize(len)
    assert OUR_SERDE.deserialize(gs.AllCodeStrategies().serialize(len)) is len


# ------------------------------------------------------------------------ data strategies


@pytest.mark.parametrize("name", DATA_STRATEGIES)
@pytest.mark.parametrize("value", DATA_VALUES, ids=repr)
def test_data_strategy_both_directions(name, value):
    mine = ours(name).serialize(value)
    sdks = theirs(name).serialize(value)
    assert mine == sdks
    assert SDK_SERDE.deserialize(mine) == value
    assert OUR_SERDE.deserialize(sdks) == value
    assert Serializer(strategy_data=name).serialize(value) == sdk.ComputeSerializer(
        strategy_data=theirs(name)
    ).serialize(value)


def test_default_serializer_matches_compute_serializer():
    assert OUR_SERDE.serialize(add) == SDK_SERDE.serialize(add)
    assert OUR_SERDE.serialize(add).startswith("01\n")
    value = {"x": (1, 2), "s": {3}}
    assert OUR_SERDE.serialize(value) == SDK_SERDE.serialize(value)
    assert OUR_SERDE.serialize(value).startswith("00\n")
    # codecs' base64 wraps at 76 characters, and the SDK relies on that exact text.
    long_payload = OUR_SERDE.serialize("x" * 500)
    assert all(len(line) <= 76 for line in long_payload.split("\n"))


def test_all_data_strategies_falls_back_to_dill():
    value = {1, 2, 3}  # not JSON-able
    mine = gs.AllDataStrategies().serialize(value)
    assert mine == sdk.AllDataStrategies().serialize(value)
    assert SDK_SERDE.deserialize(mine) == value
    assert OUR_SERDE.deserialize(mine) == value


def test_strategy_kind_mismatch():
    with pytest.raises(SerdeError, match="is a data serialization strategy"):
        Serializer(strategy_code="globus_compute_sdk.serialize.JSONData")
    with pytest.raises(SerdeError, match="is a code serialization strategy"):
        Serializer(strategy_data=gs.DillCode)
    with pytest.raises(SerdeError, match="not a known serialization strategy"):
        Serializer(strategy_data="globus_compute_sdk.serialize.Nope")


# ------------------------------------------------------------------ malformed payloads


def test_unknown_header():
    with pytest.raises(DeserializationError, match="'zz\\\\n'"):
        OUR_SERDE.deserialize("zz\nabc")


@pytest.mark.parametrize(
    "payload",
    ["00\n!!!not base64", "01\n", "11\n{not json", "st\nno separator", "12\n5\nab", "10\n04\n"],
)
def test_garbage_payloads_raise_deserialization_error(payload):
    with pytest.raises(DeserializationError):
        OUR_SERDE.deserialize(payload)


def test_non_str_payload():
    with pytest.raises(DeserializationError):
        OUR_SERDE.deserialize(b"00\nabc")  # type: ignore[arg-type]


# -------------------------------------------------------------------------- buffers


@pytest.mark.parametrize(
    ("packed", "message"),
    [
        ("5", "Missing newline delimiter"),
        ("abc\nxyz", "Invalid length delimiter: abc"),
        ("-1\nx", "Length delimiter must be non-negative: -1"),
        ("10\nabc", "Truncated buffer: expected 10 characters, but only 3 characters remain"),
    ],
)
def test_unpack_buffers_errors_match_sdk(packed, message):
    with pytest.raises(ValueError) as sdk_err:
        sdk_unpack_buffers(packed)
    with pytest.raises(DeserializationError) as our_err:
        unpack_buffers(packed)
    assert our_err.value.reason == message == str(sdk_err.value)


def test_pack_buffers_rejects_non_str():
    with pytest.raises(SerializationError):
        pack_buffers(["ok", b"bytes"])  # type: ignore[list-item]


@quick
@given(st.lists(st.text()))
def test_pack_unpack_round_trip(buffers):
    packed = pack_buffers(buffers)
    assert packed == sdk_pack_buffers(buffers)
    assert packed == Serializer.pack_buffers(buffers)
    assert unpack_buffers(packed) == buffers
    assert sdk_unpack_buffers(packed) == buffers


@quick
@given(st.lists(st.text(alphabet="0123456789\n-+ _:é\u0663")))
def test_pack_unpack_round_trip_framing_characters(buffers):
    # Buffers made of digits and newlines look like length prefixes themselves.
    packed = pack_buffers(buffers)
    assert packed == sdk_pack_buffers(buffers)
    assert unpack_buffers(packed) == buffers


def _sdk_outcome(packed: str) -> list[str] | None:
    try:
        return sdk_unpack_buffers(packed)
    except ValueError:
        return None


@quick
@given(st.text(alphabet="0123456789\n-+ _x\u0663") | st.text())
def test_unpack_garbage_agrees_with_sdk(packed):
    expected = _sdk_outcome(packed)
    if expected is None:
        with pytest.raises(DeserializationError):
            unpack_buffers(packed)
    else:
        assert unpack_buffers(packed) == expected


@quick
@given(st.lists(st.text(), min_size=1), st.data())
def test_truncated_buffers(buffers, data):
    packed = pack_buffers(buffers)
    cut = data.draw(st.integers(min_value=0, max_value=len(packed) - 1))
    truncated = packed[:cut]
    prefixes = {pack_buffers(buffers[:k]): buffers[:k] for k in range(len(buffers))}
    if truncated in prefixes:  # cut exactly at a buffer boundary: a valid, shorter list
        assert unpack_buffers(truncated) == prefixes[truncated]
    else:
        with pytest.raises(DeserializationError):
            unpack_buffers(truncated)
    assert _sdk_outcome(truncated) == prefixes.get(truncated)


@quick
@given(st.text())
def test_deserialize_garbage_only_raises_serde_errors(payload):
    # Any text: a value or a DeserializationError, never another exception type.
    # Only data headers, so random text is never exec'd as source code.
    for header in ("00\n", "11\n"):
        with contextlib.suppress(DeserializationError):
            OUR_SERDE.deserialize(header + payload)


# ---------------------------------------------------------------------- data properties

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)

hashables = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
    | st.complex_numbers(allow_nan=False)
    | st.fractions()
    | st.datetimes()
)

picklables = st.recursive(
    hashables,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.tuples(inner, inner)
        | st.dictionaries(hashables, inner, max_size=5)
        | st.frozensets(hashables, max_size=5)
        | st.sets(hashables, max_size=5)
    ),
    max_leaves=20,
)


@quick
@given(json_values)
def test_json_data_round_trip(value):
    mine = gs.JSONData().serialize(value)
    assert mine == sdk.JSONData().serialize(value) == "11\n" + json.dumps(value)
    assert SDK_SERDE.deserialize(mine) == value
    assert OUR_SERDE.deserialize(mine) == value


@quick
@given(picklables)
def test_dill_data_round_trip(value):
    mine = gs.DillDataBase64().serialize(value)
    sdks = sdk.DillDataBase64().serialize(value)
    assert mine == sdks
    assert SDK_SERDE.deserialize(mine) == value
    assert OUR_SERDE.deserialize(sdks) == value


# ------------------------------------------------------------- registration and tasks


@pytest.mark.parametrize("name", [None, *CODE_STRATEGIES])
def test_function_code_matches_registration_data(name):
    if name is None:
        mine, sdk_serde = Serializer(), None
    else:
        mine, sdk_serde = Serializer(strategy_code=name), sdk.ComputeSerializer(theirs(name))
    expected = FunctionRegistrationData(function=add, serializer=sdk_serde).function_code
    assert mine.function_code(add) == expected


def test_function_code_needs_callable():
    with pytest.raises(SerializationError):
        OUR_SERDE.function_code(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((1, 2), {"b": 3}), ([1, 2], {}), ((), {}), (None, None), (({"x": [1]},), {"k": None})],
)
@pytest.mark.parametrize("data_strategy", [None, *DATA_STRATEGIES])
def test_task_payload_matches_batch_add(args, kwargs, data_strategy):
    fn_id = uuid.uuid4()
    if data_strategy is None:
        mine, sdk_serde = Serializer(), None
    else:
        mine = Serializer(strategy_data=data_strategy)
        sdk_serde = sdk.ComputeSerializer(strategy_data=theirs(data_strategy))
    batch = Batch(task_group_id=None, serializer=sdk_serde)
    batch.add(fn_id, args, kwargs)
    assert mine.task_payload(args, kwargs) == batch.tasks[fn_id][0]


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ("abc", {}, "args: expected `tuple`, got: str"),
        ((), [], "kwargs: expected dict, got: list"),
        ((), {1: 2}, "kwargs: expected kwargs with `str` keys, got: int"),
    ],
)
def test_task_payload_argument_checks(args, kwargs, message):
    batch = Batch(task_group_id=None)
    with pytest.raises(TypeError, match=message):
        batch.add(uuid.uuid4(), args, kwargs)
    with pytest.raises(TypeError, match=message):
        OUR_SERDE.task_payload(args, kwargs)


@pytest.mark.parametrize(("fn", "args", "kwargs"), CALLS, ids=lambda v: getattr(v, "__name__", ""))
def test_unpack_task_with_sdk_inputs(fn, args, kwargs):
    fn_id = uuid.uuid4()
    function_code = FunctionRegistrationData(function=fn).function_code
    batch = Batch(task_group_id=None)
    batch.add(fn_id, list(args), kwargs)
    f, a, k = OUR_SERDE.unpack_task(function_code, batch.tasks[fn_id][0])
    assert isinstance(a, tuple)
    assert f(*a, **k) == fn(*args, **kwargs)


@pytest.mark.parametrize(("fn", "args", "kwargs"), CALLS, ids=lambda v: getattr(v, "__name__", ""))
def test_endpoint_unpacks_our_task(fn, args, kwargs):
    # The endpoint concatenates function_code and payload and unpacks three buffers.
    task_buffer = OUR_SERDE.function_code(fn) + OUR_SERDE.task_payload(args, kwargs)
    f, a, k = SDK_SERDE.unpack_and_deserialize(task_buffer)
    assert f(*a, **k) == fn(*args, **kwargs)


def test_unpack_task_bad_inputs():
    code = OUR_SERDE.function_code(add)
    payload = OUR_SERDE.task_payload((1,), {})
    with pytest.raises(DeserializationError, match="3 buffers"):
        OUR_SERDE.unpack_task(code, "")
    with pytest.raises(DeserializationError, match="3 buffers"):
        OUR_SERDE.unpack_task(code + code, payload)
    with pytest.raises(DeserializationError, match="not a callable"):
        OUR_SERDE.unpack_task(pack_buffers([OUR_SERDE.serialize(5)]), payload)
    with pytest.raises(DeserializationError, match="not a dict"):
        OUR_SERDE.unpack_task(code, pack_buffers([OUR_SERDE.serialize(()), OUR_SERDE.serialize(1)]))
    with pytest.raises(DeserializationError, match="Truncated"):
        OUR_SERDE.unpack_task(code, payload[:-5])


# ------------------------------------------------------------------------ task results


def test_serialize_from_list_json():
    out = OUR_SERDE.serialize_from_list({"a": [1, 2]}, ["globus_compute_sdk.serialize.JSONData"])
    assert out.startswith("11\n")
    assert out == sdk.ComputeSerializer.serialize_from_list(
        {"a": [1, 2]}, ["globus_compute_sdk.serialize.JSONData"]
    )
    assert SDK_SERDE.deserialize(out) == {"a": [1, 2]}


def test_serialize_from_list_json_only_fails_for_non_json():
    with pytest.raises(SerializationError, match="JSONData") as exc:
        OUR_SERDE.serialize_from_list({1, 2}, ["globus_compute_sdk.serialize.JSONData"])
    assert "not JSON serializable" in str(exc.value)
    with pytest.raises(sdk_errors.SerializationError):
        sdk.ComputeSerializer.serialize_from_list({1, 2}, ["globus_compute_sdk.serialize.JSONData"])


def test_serialize_from_list_falls_back():
    strategies = [
        "globus_compute_sdk.serialize.JSONData",
        "globus_compute_sdk.serialize.concretes.DillDataBase64",
    ]
    out = OUR_SERDE.serialize_from_list({1, 2}, strategies)
    assert out.startswith("00\n")
    assert out == sdk.ComputeSerializer.serialize_from_list({1, 2}, strategies)
    assert SDK_SERDE.deserialize(out) == {1, 2}
    # Instances and classes (ours or the SDK's) select the same strategies.
    assert OUR_SERDE.serialize_from_list({1, 2}, [gs.JSONData, sdk.DillDataBase64()]) == out


@pytest.mark.parametrize("result", [42, {"x": (1, 2)}, None, add, scale_by_3])
def test_serialize_from_list_default_matches_endpoint(result):
    # Endpoints call serialize_from_list(result, result_serializers or ()).
    out = OUR_SERDE.serialize_from_list(result, ())
    assert out == sdk.ComputeSerializer.serialize_from_list(result, ())
    assert out.startswith("01\n" if callable(result) else "00\n")


def test_serialize_from_list_unknown_or_wrong_kind():
    with pytest.raises(SerializationError, match="not a known serialization strategy") as exc:
        OUR_SERDE.serialize_from_list(1, ["globus_compute_sdk.serialize.Bogus"])
    assert "globus_compute_sdk.serialize.Bogus" in str(exc.value)
    # An unknown entry is skipped when a later one works, as on an endpoint.
    assert OUR_SERDE.serialize_from_list(1, ["Bogus", "JSONData"]) == "11\n1"
    # A code strategy cannot serialize a data result, and vice versa.
    with pytest.raises(SerializationError, match="expected a data strategy"):
        OUR_SERDE.serialize_from_list(1, ["globus_compute_sdk.serialize.DillCode"])
    with pytest.raises(SerializationError, match="expected a code strategy"):
        OUR_SERDE.serialize_from_list(add, ["globus_compute_sdk.serialize.JSONData"])


# ----------------------------------------------------------------------------- errors


def test_serde_error_text_matches_sdk():
    assert str(SerializationError("x")) == str(sdk_errors.SerializationError("x"))
    assert str(DeserializationError("x")) == str(sdk_errors.DeserializationError("x"))
    assert str(SerdeError("x")) == str(sdk_errors.SerdeError("x"))
    assert isinstance(DeserializationError("x"), errors.GcgateError)


def test_task_pending_text_matches_sdk():
    assert str(errors.TaskPending("waiting-for-ep")) == str(
        sdk_errors.TaskPending("waiting-for-ep")
    )
    assert errors.TaskPending("x").reason == "x"


@pytest.mark.parametrize(
    "remote",
    [
        "Traceback (most recent call last):\n  ZeroDivisionError: division by zero",
        "Traceback:\n  dill._dill.UnpicklingError: bad",
        "Traceback:\n   parsl.executors.high_throughput.errors.WorkerLost: Task failure",
        "",
    ],
)
def test_task_execution_failed_matches_sdk(remote):
    mine = errors.TaskExecutionFailed(remote, "123.0", {"k": "v"})
    theirs_ = sdk_errors.TaskExecutionFailed(remote, "123.0", {"k": "v"})
    assert str(mine) == str(theirs_)
    assert (mine.remote_data, mine.completion_t, mine.task_details) == (remote, "123.0", {"k": "v"})
    assert float(errors.TaskExecutionFailed(remote).completion_t) > 0


def test_gateway_errors():
    # twin_class: this process imported the SDKs, so errors are built as their twins.
    e = errors.error_for("NOT_FOUND", "no task abc")
    assert type(e) is twin_class(errors.NotFound)
    assert (e.code, e.message) == ("NOT_FOUND", "no task abc")
    assert str(e) == "NOT_FOUND: no task abc"
    for name, cls in [
        ("StatusCode.INVALID_ARGUMENT", errors.InvalidArgument),
        ("resource_exhausted", errors.ResourceExhausted),
        ("UNAUTHENTICATED", errors.Unauthenticated),
        ("PERMISSION_DENIED", errors.PermissionDenied),
    ]:
        assert type(errors.error_for(name, "m")) is twin_class(cls)
    unavailable = errors.error_for("UNAVAILABLE", "shutting down")
    assert isinstance(unavailable, errors.DaemonUnavailable)
    assert isinstance(unavailable, errors.GatewayError)
    other = errors.error_for("SOMETHING_NEW", "m")
    assert type(other) is errors.GatewayError
    assert other.code == "SOMETHING_NEW"
    # Errors cross process boundaries (worker pools), so they must pickle.
    for err in (e, unavailable, other, errors.TaskExecutionFailed("r", "1.0"), SerdeError("x")):
        copy = pickle.loads(pickle.dumps(err))
        assert type(copy) is type(err)
        assert str(copy) == str(err)


def test_float_edge_cases_json():
    # json writes Infinity, which both sides read back; NaN never compares equal.
    out = gs.JSONData().serialize([math.inf, -math.inf])
    assert out == sdk.JSONData().serialize([math.inf, -math.inf])
    assert OUR_SERDE.deserialize(out) == [math.inf, -math.inf]
