"""Any callable the SDK registers runs on the local endpoint, as the SDK sends it.

The SDK's ``FunctionRegistrationData`` is the oracle: for every kind of callable
it accepts, gcgate registers the same name and the same code (so the Globus path
hands the service exactly the SDK's registration), and the task runs through
``Client`` and ``Executor``; what it refuses, gcgate refuses with the same error.
ShellFunction and MPIFunction run here too, returning gcgate's ShellResult.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gcgate import Client, Executor, MPIFunction, ShellFunction, ShellResult
from globus_compute_sdk.sdk.client import FunctionRegistrationData, FunctionRegistrationMetadata
from harness import Daemon

WAIT = 60.0

#: Callables of every kind, defined as in a user's script: dill pickles them by
#: value (the daemon's workers cannot import this test module).
SCRIPT = """
increment = lambda x: x + 1

def make_adder(k):
    def add(x):
        return x + k
    return add

class Counter:
    def __init__(self, start):
        self.start = start

    def plus(self, x):
        return self.start + x

    @staticmethod
    def twice(x):
        return 2 * x

    @classmethod
    def named(cls, x):
        return f"{cls.__name__}:{x}"

    def __call__(self, x):
        return self.start * x

times_five = Counter(5)
times_five.__name__ = "times_five"
"""


def script() -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(SCRIPT, "<script: callables>", "exec"), namespace)
    return namespace


NS = script()
#: kind -> (callable, its result for the argument 4).
KINDS: dict[str, tuple[Callable[..., Any], Any]] = {
    "lambda": (NS["increment"], 5),
    "closure": (NS["make_adder"](3), 7),
    "bound method": (NS["Counter"](10).plus, 14),
    "staticmethod": (NS["Counter"].twice, 8),
    "classmethod": (NS["Counter"].named, "Counter:4"),
    "builtin": (hex, "0x4"),
    "callable object with a __name__": (NS["times_five"], 20),
    "class": (NS["Counter"], "a Counter"),
}


def comparable(value: Any) -> Any:
    """Results as compared: an instance of the script's class by its type's name."""
    return f"a {type(value).__name__}" if hasattr(value, "start") else value


@pytest.fixture(scope="module")
def gcc(daemon: Daemon) -> Iterator[Client]:
    with Client(socket_path=daemon.socket_path) as client:
        yield client


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_of_callable_runs_as_the_sdk_registers_it(gcc: Client, kind: str) -> None:
    fn, expected = KINDS[kind]
    # The first pickle of the script differs from later ones, whoever makes it:
    # pickling an instance caches __slotnames__ on its class (copyreg), and dill
    # pickles the class, with it, as part of the script's globals.
    FunctionRegistrationData(function=fn)
    sdk = FunctionRegistrationData(function=fn)

    fid = gcc.register_function(fn)

    registered = gcc.get_function(fid)
    assert registered["function_name"] == sdk.function_name == fn.__name__
    assert registered["function_code"] == sdk.function_code
    assert (registered["description"] or None) == sdk.description
    task_id = gcc.run(4, endpoint_id="local", function_id=fid)
    assert comparable(gcc.get_result(task_id, wait=WAIT)) == expected
    with Executor(endpoint_id="local", client=gcc) as ex:
        assert comparable(ex.submit(fn, 4).result(timeout=WAIT)) == expected


@pytest.mark.parametrize(
    "fn",
    [functools.partial(pow, 2), NS["Counter"](2), None],
    ids=["partial", "callable object without a __name__", "None"],
)
def test_what_the_sdk_refuses_is_refused_alike(gcc: Client, fn: Any) -> None:
    with pytest.raises(Exception) as sdk:
        FunctionRegistrationData(function=fn) if fn is not None else FunctionRegistrationData()
    with pytest.raises(type(sdk.value)) as ours:
        gcc.register_function(fn)
    assert str(ours.value) == str(sdk.value)
    if fn is not None:
        with Executor(endpoint_id="local", client=gcc) as ex, pytest.raises(type(sdk.value)):
            ex.submit(fn, 4)


def test_metadata_with_a_function_is_refused_as_by_the_sdk(gcc: Client) -> None:
    fn = KINDS["lambda"][0]
    meta = {"python_version": "3.11.7", "sdk_version": "4.19.0"}
    with pytest.raises(ValueError) as sdk:
        FunctionRegistrationData(function=fn, metadata=FunctionRegistrationMetadata(**meta))
    with pytest.raises(ValueError) as ours:
        gcc.register_function(fn, metadata=meta)
    assert str(ours.value) == str(sdk.value)
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        gcc.register_function(fn, metadata={"bogus": 1})
    # Source registration takes metadata, as in the SDK.
    fid = gcc.register_source_code("def f():\n    return 1\n", "f", metadata=meta)
    assert gcc.get_function(fid)["metadata"] == meta


def test_shell_functions_run_in_a_directory_of_their_own(gcc: Client, daemon: Daemon) -> None:
    """As on an endpoint that runs tasks in sandboxes: $GC_TASK_SANDBOX_DIR is
    the task's own directory under the daemon's state, $GC_TASK_UUID its id; the
    worker is back where it was for the next task."""
    where = gcc.register_function(os.getcwd)
    before = gcc.get_result(gcc.run(endpoint_id="local", function_id=where), wait=WAIT)
    shell = ShellFunction('pwd; echo "$GC_TASK_UUID {greeting}"')

    fid = gcc.register_function(shell)
    task_id = gcc.run(endpoint_id="local", function_id=fid, greeting="hello")

    result = gcc.get_result(task_id, wait=WAIT)
    assert type(result) is ShellResult
    sandbox = daemon.state_dir / "tasks" / task_id
    assert result.stdout == f"{sandbox}\n{task_id} hello\n"
    assert (result.returncode, result.stderr, result.exception_name) == (0, "", None)
    assert sorted(p.suffix for p in Path(sandbox).iterdir()) == [".stderr", ".stdout"]
    after = gcc.get_result(gcc.run(endpoint_id="local", function_id=where), wait=WAIT)
    assert after == before != str(sandbox)


def test_shell_and_mpi_functions_through_the_executor(gcc: Client) -> None:
    with Executor(endpoint_id="local", client=gcc) as ex:
        failed = ex.submit(ShellFunction("echo out; echo err >&2; exit 3"))
        as_dict = ex.submit(ShellFunction("echo {n}", return_dict=True), n=7)
        timed_out = ex.submit(ShellFunction("sleep 30", walltime=0.1))
        mpi = ex.submit(MPIFunction("echo {word}", snippet_lines=1), word="ranks")
        failed_result = failed.result(timeout=WAIT)
        assert (failed_result.returncode, failed_result.stdout, failed_result.stderr) == (
            3,
            "out\n",
            "err\n",
        )
        assert failed_result.exception_name == "subprocess.CalledProcessError"
        assert as_dict.result(timeout=WAIT) == {
            "cmd": "echo 7",
            "stdout": "7\n",
            "stderr": "",
            "returncode": 0,
            "exception_name": None,
        }
        assert timed_out.result(timeout=WAIT).returncode == 124
        mpi_result = mpi.result(timeout=WAIT)
        # $PARSL_MPI_PREFIX is the endpoint's MPI launcher; the local one has none.
        assert (mpi_result.cmd, mpi_result.stdout) == ("$PARSL_MPI_PREFIX echo ranks", "ranks\n")
