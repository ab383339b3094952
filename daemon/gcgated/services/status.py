"""What the daemon is doing: task counts, backends, the store."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gcgated.caller import Caller
from gcgated.core import TaskLifecycle
from gcgated.routing import Router
from gcgated.store import Store


@dataclass(frozen=True)
class StoreInfo:
    """The result store as an operator sees it."""

    directory: Path
    size_bytes: int
    size_limit_bytes: int
    retention_seconds: float
    unread_retention_seconds: float
    functions: int
    task_records: int
    #: Where damaged databases were moved at start ("" when none were).
    damaged_moved_to: str


@dataclass(frozen=True)
class ReloadRecord:
    """The last SIGHUP reload, so a failed one shows in Status, not only in the log."""

    #: Unix time it finished; 0 before the first reload.
    at: float = 0.0
    #: Why it failed ("" when it applied, or none happened): the daemon runs on
    #: with the configuration it had.
    error: str = ""


@dataclass(frozen=True)
class DaemonStatus:
    """One snapshot for the Status RPC."""

    uptime_seconds: float
    pending: int
    success: int
    failed: int
    cancelled: int
    #: Of ``success``, the tasks that reused a stored result instead of running.
    reused: int
    #: (backend name, its ``describe()`` document), local first.
    backends: list[tuple[str, dict[str, Any]]]
    #: The Globus login a backend reports (``describe()["login"]``), if any.
    login: dict[str, Any] | None
    store: StoreInfo
    #: The config file the daemon loaded at start ("" when none was found).
    config_file: str
    reload: ReloadRecord


class StatusService:
    """Snapshots of the daemon's state; the counts are cheap (kept by the store)."""

    def __init__(self, core: TaskLifecycle, router: Router, store: Store) -> None:
        self._core = core
        self._router = router
        self._store = store
        #: Set by the daemon at start; a reload re-reads this same file.
        self.config_file: Path | None = None
        self.last_reload = ReloadRecord()

    def reloaded(self, error: str = "") -> None:
        """Record a SIGHUP reload that applied (``error`` "") or failed."""
        self.last_reload = ReloadRecord(time.time(), error)

    @property
    def store_directory(self) -> Path:
        """Named in errors about the store (a full disk), so the user knows where."""
        return self._store.directory

    async def service_version(self, caller: Caller) -> dict[str, Any]:
        """The Globus Compute service's version document, asked as ``caller``."""
        return await self._router.remote.service_version(caller)

    def counts(self) -> dict[str, int]:
        """Tasks pending, succeeded, failed and cancelled; functions and task records."""
        return self._store.counts()

    def snapshot(self) -> DaemonStatus:
        counts = self._store.counts()
        backends = [(b.name, b.describe()) for b in self._router.backends]
        login = next(
            (info["login"] for _, info in backends if isinstance(info.get("login"), dict)), None
        )
        store = self._store
        return DaemonStatus(
            uptime_seconds=time.time() - self._core.started_at,
            pending=counts["pending"],
            success=counts["success"],
            failed=counts["failed"],
            cancelled=counts["cancelled"],
            reused=counts["reused"],
            backends=backends,
            login=login,
            store=StoreInfo(
                directory=store.directory,
                size_bytes=store.size_bytes(),
                size_limit_bytes=store.size_limit_bytes,
                retention_seconds=store.retention_seconds,
                unread_retention_seconds=store.unread_retention_seconds,
                functions=counts["functions"],
                task_records=counts["task_records"],
                damaged_moved_to=store.damaged_moved_to,
            ),
            config_file=str(self.config_file or ""),
            reload=self.last_reload,
        )
