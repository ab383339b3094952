"""A faithful stand-in of the Globus Compute web service and Globus Auth, for tests.

Two real HTTP servers on 127.0.0.1 (ephemeral ports), in background threads of
the test process, serving the paths and JSON documents the real services serve
to globus-sdk 4.10 and globus-compute-sdk 4.19; tasks run as on an endpoint, in
spawned worker processes; with a RabbitMQ broker (``tests/broker.py``), results
are pushed over AMQP too (:mod:`standin.publisher`). See :mod:`standin.compute`,
:mod:`standin.auth`, :mod:`standin.faults` and :mod:`standin.stats` for the
details, and :mod:`standin.sdk` for the real SDKs configured against it.

Quick reference::

    with StandIn() as s:                      # or the ``standin`` fixture
        s.compute_url, s.auth_url             # base URLs
        s.env()                               # GLOBUS_SDK_SERVICE_URL_AUTH, ... for subprocesses
        s.endpoint_id, s.endpoint_ids         # known endpoints; others are 404
        s.service_account.client_id / .secret # client-credentials login
        s.auth.issue_auth_code(...)           # a user's authorization code
        s.auth.authorize(url)                 # "log in" at a printed authorize URL
        s.auth.mint_token()                   # a Compute access token, directly
        s.auth.expire_tokens()                # force renewals
        s.faults.rate_limit(3, retry_after=1) # 429s; also server_error, slow, drop_connection,
                                              # connection_reset (TCP RST)
        s.go_down("compute"), s.come_back()   # connection refused meanwhile
        s.auth.revoke_after = 1.0             # tokens die early: 401s mid-run
        s.compute.copies(task_ids)            # tasks per payload: duplicates show as 2
        s.stats.count(service="compute", path="/v2/batch_status")
        s.stats.max_in_window(10.0)           # most requests in any 10 s
        s.compute.submits, s.compute.tasks    # what was submitted and run

    with StandIn(broker=broker) as s:         # results pushed over AMQP too (tests/broker.py)
        s.compute.published(task_group_id)    # results the broker confirmed for a group
        s.compute.wait_published(task_ids)
        s.compute.publish_results = False     # queues made, nothing published
        s.compute.declare_queues = False      # create_queue submits get no queue
"""

from standin.auth import (
    COMPUTE_RESOURCE_SERVER,
    COMPUTE_SCOPE,
    SDK_NATIVE_CLIENT_ID,
    AuthClient,
    AuthService,
    Identity,
    TokenRecord,
)
from standin.compute import (
    MAX_PAYLOAD_BYTES,
    UNKNOWN_TASK_REASON,
    ComputeService,
    Endpoint,
    FunctionRecord,
    SubmitRecord,
    TaskRecord,
)
from standin.faults import Fault, FaultSet
from standin.service import StandIn
from standin.stats import RATE_LIMIT, RATE_WINDOW, RequestRecord, Stats

__all__ = [
    "COMPUTE_RESOURCE_SERVER",
    "COMPUTE_SCOPE",
    "MAX_PAYLOAD_BYTES",
    "RATE_LIMIT",
    "RATE_WINDOW",
    "SDK_NATIVE_CLIENT_ID",
    "UNKNOWN_TASK_REASON",
    "AuthClient",
    "AuthService",
    "ComputeService",
    "Endpoint",
    "Fault",
    "FaultSet",
    "FunctionRecord",
    "Identity",
    "RequestRecord",
    "StandIn",
    "Stats",
    "SubmitRecord",
    "TaskRecord",
    "TokenRecord",
]
