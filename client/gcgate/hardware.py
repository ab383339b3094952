"""The worker hardware report of ``get_worker_hardware_details``.

The SDK registers its ``run_hardware_report`` (``globus_compute_sdk.sdk.
hardware_report``), which dill sends by reference: the endpoint imports it from
its own globus-compute-sdk (every Globus Compute endpoint has one). gcgate
must not import the SDK, so it registers, as source text, a function that makes
that same import where the task runs and calls it: the report is the SDK's,
byte for byte. For the local endpoint that is the daemon's environment, where
globus-compute-sdk may be missing; the task then fails saying what to install.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gcgate.client import Client

#: Name of the entry point in :data:`SOURCE`.
FUNCTION_NAME = "run_hardware_report"

SOURCE = '''\
def run_hardware_report(env=None):
    """The Globus Compute SDK's worker hardware report, run on this endpoint."""
    try:
        from globus_compute_sdk.sdk.hardware_report import run_hardware_report as report
    except ImportError as exc:
        raise ImportError(
            "the worker hardware report is globus-compute-sdk's, which the Python"
            " running this task lacks: install globus-compute-sdk there (for gcgate's"
            " local endpoint: in the environment gcgated runs in)"
        ) from exc
    return report(env)
'''

#: The heading the SDK's ``Executor.get_worker_hardware_details`` gives each part.
EXECUTOR_ENV = "Compute Endpoint worker"


def register(client: Client) -> str:
    """The report's function id (the daemon's ids are content addresses, so
    registering it again costs one cheap call and returns the same id)."""
    return client.register_source_code(
        SOURCE, FUNCTION_NAME, description="globus-compute-sdk's worker hardware report"
    )
