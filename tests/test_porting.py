"""SDK scripts ported by changing their import, run as their own programs against a
real daemon: what they relied on the SDK for must still happen.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from gcgate.errors import SERDE_TASK_EXECUTION_FAILED_HELP_MESSAGE, TaskExecutionFailed
from gcgated.backends.local.limits import result_too_large
from globus_compute_sdk.errors import TaskExecutionFailed as SdkTaskExecutionFailed
from harness import Daemon

#: A script that submits, asks for a callback per result, and simply ends: no
#: ``with`` block, no ``shutdown()`` (or one given by the parametrization).
EXIT_SCRIPT = """
from gcgate import Executor

def square(x):
    return x * x

gce = Executor(endpoint_id="local")
futures = [gce.submit(square, i) for i in range(20)]
for future in futures:
    future.add_done_callback(lambda f: print("result", f.result(), flush=True))
{ending}
print("main done", flush=True)
"""


def run_script(daemon: Daemon, source: str) -> subprocess.CompletedProcess[str]:
    """Run ``source`` as a user's script (its own ``__main__``) against ``daemon``."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("ending", ["", "gce.shutdown(wait=False)"], ids=["no-shutdown", "nowait"])
def test_program_exit_sends_queued_tasks_and_waits_for_their_futures(
    daemon: Daemon, ending: str
) -> None:
    """The SDK shuts every executor down at exit and waits for its futures (as
    ``concurrent.futures`` does): tasks queued by ``submit()`` are sent and every
    done-callback runs before the program ends. gcgate's threads are daemon
    threads, which used to die at exit with the tasks still queued: nothing was
    sent, nothing printed."""
    proc = run_script(daemon, EXIT_SCRIPT.format(ending=ending))
    assert proc.returncode == 0, proc.stderr
    results = sorted(int(line.split()[1]) for line in proc.stdout.splitlines() if "result" in line)
    assert results == sorted(i * i for i in range(20)), proc.stdout + proc.stderr


def test_a_result_over_the_size_limit_gets_no_serialization_advice() -> None:
    """``str(TaskExecutionFailed)`` appends the SDK's "use a different serialization
    strategy" help to any failure text that mentions serializing; an endpoint's
    MaxResultSizeExceeded text does not, and the local endpoint's must not either
    (it said "31.5 MB serialized": the advice was wrong for a size limit)."""
    text = result_too_large(31_457_289, 10_000_000)
    for cls in (TaskExecutionFailed, SdkTaskExecutionFailed):
        assert SERDE_TASK_EXECUTION_FAILED_HELP_MESSAGE not in str(cls(text)), cls
    assert "31.5 MB" in text and "local_max_result_mb" in text
