"""The daemon's strict-JSON check against what endpoints really write.

Results are made by globus-compute-sdk's own JSONData (as a real endpoint's are),
so the check is tested on the exact text that arrives from Globus.
"""

from __future__ import annotations

import math

import pytest
from gcgated.strict_json import non_json_result
from globus_compute_sdk.serialize import ComputeSerializer, JSONData

pytestmark = pytest.mark.fast


def endpoint_result(value: object) -> str:
    return JSONData().serialize(value)


@pytest.mark.parametrize(
    ("value", "word"),
    [
        (math.nan, "NaN"),
        ([1, {"x": math.inf}], "Infinity"),
        ({"deep": [[[-math.inf]]]}, "-Infinity"),
    ],
)
def test_non_finite_floats_are_named(value: object, word: str) -> None:
    problem = non_json_result(endpoint_result(value))
    assert f"the float {word}, which JSON cannot represent" in problem
    assert "Return None or a string" in problem


@pytest.mark.parametrize(
    "value",
    [
        {"NaN": "Infinity", "s": "-Infinity NaN"},
        2**64 + 1,
        [1.5, None, True, "x"],
        "",
    ],
)
def test_strict_json_passes(value: object) -> None:
    assert non_json_result(endpoint_result(value)) == ""


def test_results_of_other_strategies_are_not_json_results() -> None:
    """A dill result is left alone, even when its base64 happens to spell NaN."""
    dill = ComputeSerializer().serialize(math.nan)
    assert dill.startswith("00\n")
    assert non_json_result(dill) == ""
    assert non_json_result("00\nNaNInfinity") == ""
