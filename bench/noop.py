"""The task of every figure: it does nothing, so only the machinery around it is timed.

gcgate runs it as a user's script function (pickled by value, see
``harness.script_function``); the process pools of the baselines import it
from here. Either way the same code runs in the worker.
"""

from __future__ import annotations


def noop(*args):
    return None
