"""SDK scripts ported by changing their import, run as their own programs against a
real daemon: what they relied on the SDK for must still happen.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest
from gcgate import Batch, Client, Executor
from gcgate.constants import MAX_SUBMISSION_BYTES
from gcgate.errors import (
    SERDE_TASK_EXECUTION_FAILED_HELP_MESSAGE,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    TaskExecutionFailed,
)
from gcgated.backends.local.limits import result_too_large
from globus_compute_sdk import Client as SdkClient
from globus_compute_sdk.errors import TaskExecutionFailed as SdkTaskExecutionFailed
from harness import Daemon, script_function

#: The SDK guide's public "Hello, World!" function, registered at Globus Compute
#: (its ``submit_to_registered_function`` example): an id this daemon never made.
SDK_GUIDE_PUBLIC_FUNCTION = "b0a5d1a0-2b22-4381-b899-ba73321e41e0"

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


def test_a_function_id_registered_at_globus_directly_is_refused_saying_what_to_do(
    daemon: Daemon,
) -> None:
    """The SDK guide submits a public function by its id; code ported from it (or
    holding ids its SDK runs registered) gets ids the daemon never made. The
    refusal says why, and how to get an id that works, instead of only "not
    registered with this daemon"."""
    with (
        Client(socket_path=daemon.socket_path) as client,
        Executor(endpoint_id="local", client=client) as gce,
    ):
        future = gce.submit_to_registered_function(SDK_GUIDE_PUBLIC_FUNCTION)
        with pytest.raises(NotFound) as info:
            future.result(timeout=60)
    message = str(info.value)
    assert SDK_GUIDE_PUBLIC_FUNCTION in message
    assert "registered at Globus Compute directly" in message
    assert "Client.register_function" in message


@script_function
def length(blob):
    return len(blob)


class FirstBatchHeld(Client):
    """A client whose first BatchRun waits until ``go`` is set, so the tasks
    submitted meanwhile queue up and go out together, as a burst does on a busy
    machine; records each BatchRun's payload bytes."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.entered, self.go = threading.Event(), threading.Event()
        self.sent: list[list[int]] = []

    def _batch_run(self, endpoint_id: Any, batch: Batch, **kwargs: Any) -> dict[str, Any]:
        self.sent.append([len(p) for payloads in batch.tasks.values() for p in payloads])
        if len(self.sent) == 1:
            self.entered.set()
            self.go.wait(60)
        return super()._batch_run(endpoint_id, batch, **kwargs)


def test_a_burst_is_sent_in_submissions_within_the_limit_and_a_task_too_large_fails_alone(
    daemon: Daemon,
) -> None:
    """Tasks gathered into one BatchRun are one submission, accepted or refused
    together. The Executor gathered up to ``batch_size`` whatever their size: a
    burst of 2 MB tasks went out as one call over gRPC's 64 MiB ("Sent message
    larger than max") or the service's 10 MB, failing tasks each fine alone, and
    one task over the limit failed the tasks gathered with it. Now each call
    carries at most MAX_SUBMISSION_BYTES, and a larger task goes alone."""
    two_mb, too_large = b"a" * 2_000_000, b"b" * 11_000_000
    with (
        FirstBatchHeld(socket_path=daemon.socket_path) as client,
        Executor(endpoint_id="local", client=client) as gce,
    ):
        first = gce.submit(length, b"")
        assert client.entered.wait(60)
        burst = [gce.submit(length, two_mb) for _ in range(3)]
        refused = gce.submit(length, too_large)
        burst += [gce.submit(length, two_mb) for _ in range(3)]
        client.go.set()
        assert first.result(timeout=60) == 0
        assert [f.result(timeout=120) for f in burst] == [len(two_mb)] * 6
        with pytest.raises(InvalidArgument, match="TASK_PAYLOAD_TOO_LARGE"):
            refused.result(timeout=60)
    together = [sizes for sizes in client.sent if len(sizes) > 1]
    assert together, client.sent  # the burst was gathered: the test tests something
    assert all(sum(sizes) <= MAX_SUBMISSION_BYTES for sizes in together), client.sent
    assert all(len(sizes) == 1 for sizes in client.sent if sum(sizes) > MAX_SUBMISSION_BYTES)


def test_a_batch_over_the_message_limit_is_refused_saying_what_to_do(daemon: Daemon) -> None:
    """A ``Batch`` of 30 arguments of 2 MB is over the 64 MiB one call to the
    daemon can carry (the SDK's service would refuse anything over 10 MB). gRPC
    refuses to send it with "CLIENT: Sent message larger than max (... vs. ...)";
    the error now says how large, what the limit is, and what to do."""
    with Client(socket_path=daemon.socket_path) as client:
        function_id = client.register_function(length)
        batch = client.create_batch()
        for _ in range(30):
            batch.add(function_id, (b"c" * 2_000_000,))
        with pytest.raises(ResourceExhausted) as info:
            client.batch_run("local", batch)
    message = str(info.value)
    assert "81.1 MB, over the 64 MiB" in message
    assert "smaller ones" in message and "by reference" in message


def test_an_sdk_client_given_to_a_gcgate_executor_is_a_type_error_naming_the_fix() -> None:
    """A script ported by halves (``Executor`` from gcgate, ``Client`` still from
    globus_compute_sdk) failed with "'Client' object has no attribute
    'reuse_results'"; now a TypeError says which Client is needed."""
    sdk_client = SdkClient.__new__(SdkClient)  # no login, no service: only its type matters
    with pytest.raises(TypeError, match=r"gcgate\.Client, not globus_compute_sdk\.") as info:
        Executor(endpoint_id="local", client=sdk_client)
    assert "from gcgate import Client" in str(info.value)
