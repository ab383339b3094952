"""The daemon's request types, shared by the servicer, the services, the core and
the backends.

They sit below every layer (they import nothing of the daemon's), so a layer
hands the next one typed values instead of protobuf messages or dicts: the
servicer decodes a request once, JSON options included, into these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gcgated.caller import Caller


@dataclass(frozen=True)
class SubmitOptions:
    """What every task of one submission shares (the SDK's ``create_batch()``),
    JSON fields already decoded."""

    task_group_id: str
    resource_specification: dict[str, Any] | None = None
    user_endpoint_config: dict[str, Any] | None = None
    user_runtime: dict[str, Any] | None = None
    result_serializers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Submission:
    """One Run or BatchRun call, already decoded from protobuf."""

    endpoint_id: str
    #: (function_id, payloads) in request order.
    groups: Sequence[tuple[str, Sequence[str]]]
    options: SubmitOptions
    #: Who submits: the daemon's login, or a client passing its own token.
    caller: Caller


@dataclass
class Receipt:
    """What a submission answers: the SDK's batch_run response shape."""

    request_id: str
    task_group_id: str
    endpoint_id: str
    tasks: list[tuple[str, list[str]]] = field(default_factory=list)
