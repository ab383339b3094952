"""Values shared by the thin client and the daemon; part of the public contract."""

from __future__ import annotations

import enum

#: The embedded local endpoint's fixed UUID (uuid5 of a gcgate URL, so it can never
#: collide with a Globus-issued endpoint id). Tasks sent here run in the daemon's
#: own worker processes; every other endpoint UUID goes to Globus Compute.
LOCAL_ENDPOINT_ID = "9c278244-27d0-5cb4-bbcf-085144a7a70e"

#: Alias accepted wherever an endpoint id is, for the local endpoint.
LOCAL_ENDPOINT_ALIAS = "local"
#: Appended to a refused endpoint id, client side and in the daemon's INVALID_ARGUMENT.
ENDPOINT_ID_HINT = (
    f"; give a Globus Compute endpoint's UUID, or {LOCAL_ENDPOINT_ALIAS!r} for the"
    " daemon's own local endpoint"
)

#: The Globus Compute service's per-submission payload limit (one task or one
#: batch). The daemon refuses larger submissions before storing anything, so a
#: submission it accepts is one the real service accepts too.
MAX_SUBMISSION_BYTES = 10 * 1000 * 1000

#: gRPC message size limit on both ends: a full 10 MB submission (or a result of
#: that size) plus protobuf framing, with room for batched replies. gRPC's own
#: default of 4 MiB would reject legitimate submissions.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

#: Environment variable that names the daemon's socket for clients and daemon.
SOCKET_ENV = "GCGATE_SOCKET"

#: The file in the daemon's state directory (0600, written anew at each start)
#: whose contents prove a client runs as the daemon's own user, and the call
#: metadata that carries them: RPCs that change what every client of a shared
#: daemon relies on (Logout) require it.
OWNER_KEY_FILE = "owner.key"
OWNER_KEY_METADATA = "gcgate-owner-key"

#: Trailing metadata on an UNAVAILABLE the daemon answers because Globus (the
#: service behind it) cannot be reached or keeps refusing: the daemon itself is up.
#: Without it, UNAVAILABLE means the daemon could not be reached or is stopping.
UPSTREAM_UNAVAILABLE_METADATA = "gcgate-upstream-unavailable"


class TaskStatus(str, enum.Enum):
    """A task's status, as ``TaskRecord.status`` carries it and the daemon stores it.

    A ``str`` subclass, so a member equals (and hashes as) its wire text: records
    decoded from JSON compare with it directly. The names are the Compute service's
    task statuses, which the SDK reports the same way.
    """

    #: Accepted by the Compute service, not yet handed to an endpoint.
    RECEIVED = "received"
    #: Recorded, waiting for its endpoint to take it.
    WAITING_FOR_EP = "waiting-for-ep"
    #: Running on its endpoint.
    RUNNING = "running"
    #: Finished; ``result`` holds the serialized result.
    SUCCESS = "success"
    #: Finished; ``exception`` holds the remote traceback or the reason.
    FAILED = "failed"
    #: Ended by a client's cancel (``CancelTasks``) before it finished; ``exception``
    #: says what was stopped. A gcgate status: the Compute service has no cancel.
    CANCELLED = "cancelled"

    __str__ = str.__str__
    __format__ = str.__format__

    @property
    def final(self) -> bool:
        """Whether the task has ended (its record will not change again)."""
        return self in FINAL_STATUSES


#: The statuses a task ends in.
FINAL_STATUSES = frozenset({TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.CANCELLED})

#: The ``ListTasks`` status filter that matches every task not final yet.
PENDING_FILTER = "pending"
