"""dill pickling in which gcgate's stand-ins for Globus Compute SDK classes carry
the SDK's names.

Some values cross the wire as instances of the SDK's own classes: a
``ShellFunction`` (or ``MPIFunction``) sent as a task's function, and the
``ShellResult`` it returns. A real endpoint has the SDK and unpickles them by
their import path, ``globus_compute_sdk.sdk.shell_function.ShellFunction``; gcgate
cannot import the SDK (the thin client depends on grpcio, protobuf and dill
only). So gcgate defines stand-ins of its own (:mod:`gcgate.shell_function`),
and this module makes them travel under the SDK's names, both ways:

* :func:`dumps` is ``dill.dumps``, except that a stand-in class is written as a
  reference to its SDK name, exactly as dill writes the SDK's class: a
  ``ShellFunction`` pickled here is byte for byte the SDK's pickle of the same
  ``ShellFunction``. (``pickle`` checks that the name leads back to the object,
  which fails for a stand-in whether or not the SDK is installed, and dill then
  pickles the class by value, naming gcgate's modules.)
* :func:`loads` is ``dill.loads``, except that those SDK names resolve to the
  stand-ins, whether or not the SDK is installed: the classes a gcgate program
  imports (``from gcgate import ShellResult``) are the ones its results are
  instances of, and the local endpoint's workers run gcgate's implementation.

Nothing else is renamed: every other object pickles and unpickles as with dill.
"""

from __future__ import annotations

import functools
import importlib
import io
import pickle
import sys
from typing import Any

__all__ = ["STAND_INS", "dumps", "loads"]

#: SDK class (module, qualified name) -> the gcgate module defining a stand-in of
#: that name. A stand-in's ``__module__`` is the SDK's module, so it is also found
#: from the class by (``__module__``, ``__qualname__``).
STAND_INS: dict[tuple[str, str], str] = {
    ("globus_compute_sdk.sdk.shell_function", "ShellFunction"): "gcgate.shell_function",
    ("globus_compute_sdk.sdk.shell_function", "ShellResult"): "gcgate.shell_function",
    ("globus_compute_sdk.sdk.mpi_function", "MPIFunction"): "gcgate.shell_function",
}
_HOMES = frozenset(STAND_INS.values())


def _sdk_name(cls: type) -> tuple[str, str] | None:
    """(SDK module, name) when ``cls`` is one of the stand-ins, else None."""
    key = (cls.__module__, cls.__qualname__)
    home = STAND_INS.get(key)
    if home is None or getattr(sys.modules.get(home), key[1], None) is not cls:
        return None
    return key


def _save_class(pickler: Any, obj: type) -> None:
    """dill's saver of classes, writing a stand-in as ``pickle.save_global`` writes
    the SDK's class (dill pickles an importable class by reference)."""
    ref = _sdk_name(obj)
    if ref is None:
        import dill

        dill.Pickler.dispatch[type](pickler, obj)
        return
    module, name = ref
    if pickler.proto >= 4:
        pickler.save(module)
        pickler.save(name)
        pickler.write(pickle.STACK_GLOBAL)
    else:
        pickler.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
    pickler.memoize(obj)


def dumps(obj: Any) -> bytes:
    """``dill.dumps(obj)``, with the stand-ins written under the SDK's names.

    Until a stand-in's module is imported no stand-in can be in ``obj``, and this
    is ``dill.dumps`` itself. After that, the pickler gets a copy of dill's type
    table (about 1 us) whose entry for classes is :func:`_save_class`: every other
    object is saved by the same functions as with ``dill.dumps``.
    """
    import dill  # here: importing it is ~17 ms of `from gcgate import Client`

    if not any(home in sys.modules for home in _HOMES):
        return dill.dumps(obj)  # type: ignore[no-any-return]
    buffer = io.BytesIO()
    protocol = dill.settings["protocol"]
    pickler = dill.Pickler(buffer, protocol, byref=None, fmode=None, recurse=None)
    table = dill.Pickler.dispatch
    dispatch = type(table)(table)  # dill's own table type: it knows metaclasses
    dispatch[type] = _save_class
    pickler.dispatch = dispatch
    pickler.dump(obj)
    return buffer.getvalue()


def loads(data: bytes) -> Any:
    """``dill.loads(data)``, with the SDK's names of the stand-ins read as the stand-ins."""
    return _unpickler_class()(io.BytesIO(data)).load()


@functools.cache
def _unpickler_class() -> type:
    """dill's Unpickler, resolving the stand-ins' SDK names to them; built on first
    use, so that importing this module does not import dill."""
    import dill

    class Unpickler(dill.Unpickler):  # type: ignore[misc, name-defined]
        def find_class(self, module: str, name: str) -> Any:
            home = STAND_INS.get((module, name))
            if home is not None:
                return getattr(importlib.import_module(home), name)
            return super().find_class(module, name)

    return Unpickler
