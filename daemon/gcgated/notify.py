"""The systemd notification protocol (``sd_notify``), without libsystemd.

A service of ``Type=notify`` tells the service manager how it is doing by
sending newline-separated ``KEY=VALUE`` lines as one datagram to the AF_UNIX
socket named in ``$NOTIFY_SOCKET`` (a path, or ``@name`` for an abstract
socket). gcgated sends ``READY=1`` once it serves, ``STATUS=...`` for
``systemctl status``, ``WATCHDOG=1`` at half of ``$WATCHDOG_USEC`` while its
event loop turns, ``RELOADING=1`` around a SIGHUP reload and ``STOPPING=1``
on shutdown. See sd_notify(3) and sd_watchdog_enabled(3).

Outside systemd (no ``$NOTIFY_SOCKET``) every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)

#: The variables systemd sets for the notification protocol. They are removed
#: from the daemon's environment once read, so worker processes do not inherit
#: them (as ``sd_notify(unset_environment=1, ...)`` does).
NOTIFY_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def _address(value: str) -> str | bytes:
    """``@name`` is an abstract socket (leading NUL byte); anything else a path."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


class Notifier:
    """Sends sd_notify messages; a no-op when the daemon was not started by systemd."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address
        #: Microseconds within which systemd expects ``WATCHDOG=1``; None: no watchdog.
        self.watchdog_usec = watchdog_usec
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> Notifier:
        """Read (and, for ``os.environ``, remove) ``NOTIFY_SOCKET`` and the watchdog variables."""
        env = os.environ if environ is None else environ
        values = {name: env.get(name, "") for name in NOTIFY_ENV}
        if environ is None:
            for name in NOTIFY_ENV:
                os.environ.pop(name, None)
        address = values["NOTIFY_SOCKET"] or None
        if address is not None and not address.startswith(("/", "@")):
            log.warning(
                "NOTIFY_SOCKET=%s is not an AF_UNIX path or @abstract name; not notifying",
                address,
            )
            address = None
        return cls(address, _watchdog_usec(values["WATCHDOG_USEC"], values["WATCHDOG_PID"]))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings (half the timeout), or None."""
        if self.address is None or not self.watchdog_usec:
            return None
        return self.watchdog_usec / 2 / 1_000_000

    def send(self, *lines: str) -> bool:
        """Send one datagram of ``KEY=VALUE`` lines; False if it could not be sent.

        The socket is non-blocking: a manager that does not read must not stall
        the event loop, so a full queue drops the message (logged once).
        """
        if self.address is None:
            return False
        message = "\n".join(line.replace("\n", " ") for line in lines).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(message, _address(self.address))
        except OSError as exc:
            if not self._warned:
                log.warning("cannot notify the service manager at %s: %s", self.address, exc)
                self._warned = True
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) match the
        # reload to the request; older managers ignore it.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading")

    def stopping(self, status: str = "stopping") -> bool:
        return self.send("STOPPING=1", f"STATUS={status}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _watchdog_usec(usec: str, pid: str) -> int | None:
    """The watchdog timeout if it is meant for this process (sd_watchdog_enabled)."""
    if not usec:
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not an integer", usec)
        return None
    if value <= 0:
        return None
    if pid:
        try:
            if int(pid) != os.getpid():
                return None  # set for another process (e.g. a wrapper that exec'd us)
        except ValueError:
            log.warning("ignoring the watchdog: WATCHDOG_PID=%r is not a pid", pid)
            return None
    return value
