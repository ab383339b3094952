"""Why a daemon socket cannot be used, told apart by looking at it directly.

gRPC reports a path that is not a socket the same way as a socket nobody
listens on, and a daemon that is stopped (SIGSTOP, Ctrl-Z, a debugger) or
wedged the same way as one that is slow: as a connection failure or a
deadline. The advice differs (fix the path; start the daemon; resume or
restart it), so this module looks: at the path's file type, and with a raw
connection, which the kernel accepts and answers with the listener's pid
(``SO_PEERCRED``) even while the daemon process itself is stopped.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
from pathlib import Path

from gcgate.constants import SOCKET_ENV

#: Seconds a raw connection to the socket may take (the kernel answers at once).
PROBE_TIMEOUT_S = 1.0
#: ``struct ucred`` (pid, uid, gid), as SO_PEERCRED returns it.
_UCRED = struct.Struct("3i")
#: /proc states of a process that cannot run until resumed.
_STOPPED_STATES = {"T": "stopped", "t": "stopped by a debugger"}


def not_a_socket(socket_path: Path) -> str | None:
    """Why ``socket_path`` cannot be a daemon's socket (it exists and is another
    kind of file), with what to do; None when it is a socket or does not exist."""
    try:
        mode = os.stat(socket_path).st_mode
    except OSError:
        return None
    if stat.S_ISSOCK(mode):
        return None
    kind = "a directory" if stat.S_ISDIR(mode) else "a regular file" if stat.S_ISREG(mode) else ""
    what = f"{socket_path} is not a socket" + (f" (it is {kind})" if kind else "")
    if os.environ.get(SOCKET_ENV) == str(socket_path):
        return (
            f"{what}, and {SOCKET_ENV} names it; set {SOCKET_ENV} to the daemon's socket"
            " (`gcgated` logs it when it starts), or unset it to use the default"
        )
    return f"{what}; give the path of the daemon's socket (`gcgated` logs it when it starts)"


def listener_pid(socket_path: Path) -> int | None:
    """The pid of the process listening on ``socket_path``; None when nobody
    listens (or the connection fails for another reason)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(PROBE_TIMEOUT_S)
        try:
            probe.connect(str(socket_path))
            creds = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        except OSError:
            return None
    pid = _UCRED.unpack(creds)[0]
    return pid or None


def stopped_state(pid: int) -> str:
    """ "stopped" (or "stopped by a debugger") when process ``pid`` cannot run
    until resumed; "" when it can, or /proc does not say."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return ""
    return _STOPPED_STATES.get(fields[0], "") if fields else ""


def not_answering(socket_path: Path, waited: float | None) -> str:
    """Why the daemon behind ``socket_path`` accepted a connection and did not
    answer (within ``waited`` seconds, if known), and how to check; its pid when
    the kernel gives it. It runs (or is stopped): starting one is no advice."""
    within = f" within {waited:g} s" if waited else ""
    pid = listener_pid(socket_path)
    if pid is None:
        return (
            f"the gcgate daemon at {socket_path} did not answer{within}, and nobody"
            " listens on the socket now (did it just exit?)"
        )
    who = f"the gcgate daemon at {socket_path} (pid {pid}) is not answering"
    state = stopped_state(pid)
    if state:
        return f"{who}: it is {state} (SIGSTOP or Ctrl-Z); resume it with `kill -CONT {pid}`"
    return (
        f"{who} (no reply{within}): it may be stopped (SIGSTOP) or overloaded;"
        f" check it with `ps -o pid,stat,etime,cmd -p {pid}` (STAT T: stopped, resume it with"
        f" `kill -CONT {pid}`) and look at its log"
    )


def not_grpc(socket_path: Path) -> str | None:
    """Why a socket where an HTTP/1 server answered gRPC is not the daemon's (the
    daemon's metrics_listen socket, or another program's), naming the process that
    listens on it; None when nobody does any more."""
    pid = listener_pid(socket_path)
    if pid is None:
        return None
    return (
        f"{socket_path} is not a gcgate daemon's socket: process {pid} listens on it but"
        " does not answer gRPC (is it the daemon's metrics_listen HTTP socket, or another"
        " program's?); give the path of the daemon's socket (`gcgated` logs it when it starts)"
    )
