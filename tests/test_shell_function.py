"""``gcgate.ShellFunction``, ``MPIFunction`` and ``ShellResult`` against the SDK's.

What gcgate sends must be what the SDK sends (a real endpoint unpickles it as
the SDK's class), what an endpoint sends back must load without the SDK, and the
objects must behave as the SDK's do. Running them on the daemon's endpoints is
in test_callables.py and test_globus_backend.py.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dill
import gcgate
import globus_compute_sdk as sdk
import pytest
from gcgate import MPIFunction, ShellFunction, ShellResult, pickling
from gcgate.serialize import Serializer
from globus_compute_sdk.sdk.client import FunctionRegistrationData
from globus_compute_sdk.serialize import ComputeSerializer as SDKSerializer

pytestmark = pytest.mark.fast

OURS, THEIRS = Serializer(), SDKSerializer()
CLIENT_DIR = Path(__file__).resolve().parent.parent / "client"

#: Constructor arguments: defaults, and every parameter set.
SHELL_ARGS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    (("echo hello",), {}),
    (("echo {x}",), {"stdout": "out.txt", "stderr": "/tmp/err.txt", "walltime": 2.5}),
    (("make -j{n}",), {"snippet_lines": 5, "name": "build", "return_dict": True}),
]
RESULTS = [
    ShellResult("echo hi", "hi\n", "", 0),
    ShellResult("false", "", "boom\n" * 30, 1, "subprocess.CalledProcessError"),
    ShellResult("sleep 9", "x" * 2000, "", 124, "subprocess.TimeoutExpired"),
]


def sdk_twin(value: Any) -> Any:
    """The SDK's object of the same class name, made from the same attributes."""
    cls = getattr(sdk, type(value).__name__)
    twin = cls.__new__(cls)
    twin.__dict__.update(vars(value))
    return twin


@pytest.mark.parametrize("cls", [ShellFunction, MPIFunction])
@pytest.mark.parametrize(("args", "kwargs"), SHELL_ARGS)
def test_a_shell_function_is_registered_as_the_sdk_registers_it(
    cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    ours, theirs = cls(*args, **kwargs), getattr(sdk, cls.__name__)(*args, **kwargs)
    registration = FunctionRegistrationData(function=theirs)
    assert OURS.function_code(ours) == registration.function_code
    assert ours.__name__ == registration.function_name
    # Also inside the all-strategies payload (whose source strategies fail here).
    code = "globus_compute_sdk.serialize.AllCodeStrategies"
    assert Serializer(code).serialize(ours) == SDKSerializer(code).serialize(theirs)
    # Read back by the SDK as its own class, and by gcgate as gcgate's.
    assert type(THEIRS.deserialize(OURS.serialize(ours))) is type(theirs)
    back = OURS.deserialize(THEIRS.serialize(theirs))
    assert type(back) is cls and vars(back) == vars(theirs)


def test_a_shell_result_travels_as_the_sdks() -> None:
    for result in RESULTS:
        assert OURS.serialize(result) == THEIRS.serialize(sdk_twin(result))
        back = OURS.deserialize(THEIRS.serialize(sdk_twin(result)))
        assert type(back) is ShellResult and vars(back) == vars(result)
    # Several in one payload share the class reference, as in the SDK's pickle.
    assert OURS.serialize(RESULTS) == THEIRS.serialize([sdk_twin(r) for r in RESULTS])


def test_everything_else_pickles_as_with_dill() -> None:
    """With the stand-ins loaded, gcgate's pickler differs from dill's only for them:
    script functions and classes (one with a metaclass), data, SDK classes."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(
        "import abc\n"
        "class Shape(abc.ABC):\n    sides = 3\n"
        "class Plain:\n    def area(self):\n        return 1\n"
        "scale = lambda x, k=2: x * k\n",
        namespace,
    )
    values = [
        namespace["Shape"],
        namespace["Plain"](),
        namespace["scale"],
        {"nested": [1.5, (None, b"x")], "set": {1, 2}},
        sdk.ShellFunction("echo sdk"),
        sdk.ShellResult("c", "o", "e", 0),
    ]
    assert "gcgate.shell_function" in sys.modules
    for value in values:
        assert pickling.dumps(value) == dill.dumps(value)


def test_str_and_repr_are_the_sdks() -> None:
    for result in RESULTS:
        assert (str(result), repr(result)) == (str(sdk_twin(result)), repr(sdk_twin(result)))
    long_script = "\n".join(f"echo {i}" for i in range(20))
    for cls in (ShellFunction, MPIFunction):
        for args, kwargs in [*SHELL_ARGS, ((long_script,), {"walltime": 1})]:
            ours, theirs = cls(*args, **kwargs), getattr(sdk, cls.__name__)(*args, **kwargs)
            assert (str(ours), repr(ours)) == (str(theirs), repr(theirs))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"name": "not valid"}, ValueError), ({"name": "class"}, ValueError)],
)
def test_bad_arguments_are_refused_as_by_the_sdk(kwargs: dict[str, Any], error: type) -> None:
    with pytest.raises(error) as theirs:
        sdk.ShellFunction("true", **kwargs)
    with pytest.raises(error) as ours:
        ShellFunction("true", **kwargs)
    assert str(ours.value) == str(theirs.value)
    with pytest.raises(AssertionError, match="Negative walltime"):
        ShellFunction("true", walltime=-1)


def test_a_subclass_in_a_script_pickles_without_gcgate(tmp_path: Path) -> None:
    """A user's subclass is pickled by value (dill), on top of the SDK's name."""
    namespace: dict[str, Any] = {"__name__": "__main__", "ShellFunction": ShellFunction}
    exec("class Loud(ShellFunction):\n    pass\n", namespace)
    payload = OURS.serialize(namespace["Loud"]("echo hi"))
    raw = base64.b64decode(payload[3:])
    assert b"gcgate" not in raw and b"globus_compute_sdk.sdk.shell_function" in raw
    loaded = THEIRS.deserialize(payload)  # the SDK's class as its base
    assert isinstance(loaded, sdk.ShellFunction) and loaded.cmd == "echo hi"


def test_running_it_gives_the_sdks_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As an endpoint runs it: in $GC_TASK_SANDBOX_DIR, files named after $GC_TASK_UUID."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GC_TASK_UUID", "task-1")
    cases = [
        (("echo {greeting}; echo oops >&2",), {}, {"greeting": "hello"}),
        (("exit 3",), {"return_dict": True}, {}),
        (("sleep 5",), {"walltime": 0.2}, {}),
        (("echo mpi",), {}, {}),
    ]
    for i, (args, kwargs, call) in enumerate(cases):
        outcomes = []
        for impl in (sdk, gcgate):
            sandbox = tmp_path / f"{impl.__name__}-{i}"
            monkeypatch.setenv("GC_TASK_SANDBOX_DIR", str(sandbox))
            cls = impl.MPIFunction if args == ("echo mpi",) else impl.ShellFunction
            result = cls(*args, **kwargs)(**call)
            outcomes.append(result if isinstance(result, dict) else vars(result))
            files = [p.name for p in sandbox.iterdir()]
            assert sorted((f[:7], f.rsplit(".", 1)[1]) for f in files) == [
                ("task-1.", "stderr"),
                ("task-1.", "stdout"),
            ]
        assert outcomes[0] == outcomes[1]
    assert outcomes[1]["cmd"] == "$PARSL_MPI_PREFIX echo mpi"


#: Run with the SDK importable: prints what a gcgate client without the SDK is to
#: read (an endpoint's ShellResult) and to write (a ShellFunction).
MAKE_PAYLOADS = """
import json
from globus_compute_sdk import ShellFunction, ShellResult
from globus_compute_sdk.serialize import ComputeSerializer

serde = ComputeSerializer()
result = ShellResult("echo hi", "hi\\n", "", 0)
print(json.dumps([serde.serialize(result), serde.serialize(ShellFunction("echo {x}"))]))
"""


def test_a_client_without_the_sdk_reads_and_writes_them() -> None:
    """Importing gcgate never imports the SDK, and with the SDK unimportable a
    ShellResult pickled as the SDK's loads as gcgate's, and a ShellFunction
    pickles as the SDK's does."""
    made = subprocess.run(
        [sys.executable, "-c", MAKE_PAYLOADS],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    code = (
        "import json, sys\n"
        "sys.modules['globus_compute_sdk'] = None  # not importable\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from gcgate import ShellFunction, ShellResult\n"
        "from gcgate.serialize import Serializer\n"
        "result_payload, function_payload = json.loads(sys.stdin.read())\n"
        "result = Serializer().deserialize(result_payload)\n"
        "assert type(result) is ShellResult, type(result)\n"
        "assert (result.stdout, result.returncode) == ('hi\\n', 0), vars(result)\n"
        "assert Serializer().serialize(ShellFunction('echo {x}')) == function_payload\n"
        "assert not [m for m, v in sys.modules.items() if v and m.startswith('globus_compute')]\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run(
        [sys.executable, "-c", code, str(CLIENT_DIR)],
        input=made.stdout,
        text=True,
        check=True,
        timeout=60,
        env=env,
    )
