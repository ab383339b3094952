"""Who may connect: the socket's file permissions are the whole access check.

gRPC Python cannot see a caller's uid, so the daemon relies on the file system:
without ``--group`` the socket is 0600 in a 0700 directory (only the daemon's
user), with ``--group NAME`` it is 0660 in a 0750 directory, both owned by the
group. The tests run real clients as other users with ``setpriv`` (the suite
runs as root in CI) and need ``groupadd``/``useradd`` for a throwaway member.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from gcgate import Client
from harness import Daemon

GCGATE = Path(sys.executable).with_name("gcgate")
NOBODY = 65534
WAIT = 30.0

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="running clients as other users needs root"),
    pytest.mark.skipif(not shutil.which("setpriv"), reason="needs setpriv (util-linux)"),
]


@dataclass
class Account:
    group: str
    gid: int
    user: str
    uid: int
    user_gid: int


@pytest.fixture(scope="module")
def account() -> Iterator[Account]:
    """A throwaway group, and a user whose only supplementary group it is."""
    if not (shutil.which("groupadd") and shutil.which("useradd")):
        pytest.skip("needs groupadd and useradd to make a throwaway user")
    suffix = uuid.uuid4().hex[:8]
    group, user = f"gcgt-{suffix}", f"gcgu-{suffix}"
    subprocess.run(["groupadd", "--system", group], check=True, capture_output=True)
    try:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
            check=True,
            capture_output=True,
        )
        try:
            info = pwd.getpwnam(user)
            yield Account(group, grp.getgrnam(group).gr_gid, user, info.pw_uid, info.pw_gid)
        finally:
            subprocess.run(["userdel", user], capture_output=True)
    finally:
        subprocess.run(["groupdel", group], capture_output=True)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def gcgate_as(socket_path: Path, *identity: str) -> subprocess.CompletedProcess[str]:
    """``gcgate status --json`` run as another user (``setpriv`` arguments)."""
    return subprocess.run(
        ["setpriv", *identity, str(GCGATE), "--socket", str(socket_path), "status", "--json"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/"},
    )


def as_nobody() -> tuple[str, ...]:
    return (f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")


def as_member(account: Account) -> tuple[str, ...]:
    return (f"--reuid={account.uid}", f"--regid={account.user_gid}", f"--groups={account.gid}")


def assert_refused(done: subprocess.CompletedProcess[str], socket_path: Path) -> None:
    assert done.returncode == 3, done.stdout + done.stderr  # exit 3: daemon not reachable
    assert f"permission denied connecting to the gcgate daemon socket {socket_path}" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr


@pytest.fixture
def group_daemon(tmp_path: Path, account: Account) -> Iterator[Daemon]:
    d = Daemon(tmp_path / "state", workers=1, extra_args=("--group", account.group))
    try:
        yield d.start()
    finally:
        d.close()


def test_group_members_are_served_and_others_refused(
    group_daemon: Daemon, account: Account
) -> None:
    d = group_daemon
    socket_dir = d.socket_path.parent
    assert mode(d.socket_path) == 0o660
    assert d.socket_path.stat().st_gid == account.gid
    assert mode(socket_dir) == 0o750  # mkdtemp made it 0700; the daemon opened it
    assert socket_dir.stat().st_gid == account.gid
    assert mode(d.state_dir) == 0o700  # the store stays the daemon's alone
    assert f"group {account.group} may connect" in d.log()

    served = gcgate_as(d.socket_path, *as_member(account))
    assert served.returncode == 0, served.stderr
    assert d.process is not None
    assert json.loads(served.stdout)["pid"] == d.process.pid

    assert_refused(gcgate_as(d.socket_path, *as_nobody()), d.socket_path)
    # The member's own uid and primary group are not enough without the group.
    assert_refused(
        gcgate_as(
            d.socket_path, f"--reuid={account.uid}", f"--regid={account.user_gid}", "--clear-groups"
        ),
        d.socket_path,
    )


def test_only_the_daemon_user_may_end_its_login(group_daemon: Daemon, account: Account) -> None:
    """A group member may use the daemon but not log it out for everyone: it
    cannot read the owner key (docs/api.md#logout); the daemon's user can."""
    d = group_daemon
    done = subprocess.run(
        ["setpriv", *as_member(account), str(GCGATE), "--socket", str(d.socket_path), "logout"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/"},
    )
    assert done.returncode != 0, done.stdout
    assert "only the daemon's own user may do it" in done.stderr
    assert str(d.state_dir / "owner.key") in done.stderr and "Traceback" not in done.stderr
    with Client(socket_path=d.socket_path) as client:
        assert client.logout() is None
        assert client.status()["login"]["state"] == "logged_out"


def test_without_group_only_the_daemon_user_is_served(tmp_path: Path, account: Account) -> None:
    d = Daemon(tmp_path / "state", workers=1)
    try:
        os.chown(d.socket_dir, -1, account.gid)  # even a directory of their group
        d.start()
        assert mode(d.socket_path) == 0o600
        assert mode(d.socket_dir) == 0o700
        assert_refused(gcgate_as(d.socket_path, *as_member(account)), d.socket_path)
        assert_refused(gcgate_as(d.socket_path, *as_nobody()), d.socket_path)
        assert d.stop() == 0
    finally:
        d.close()


def refused_start(d: Daemon) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        d.command(), env={**d.env, **d.daemon_env}, capture_output=True, text=True, timeout=WAIT
    )
    assert done.returncode != 0, done.stderr
    assert "Traceback" not in done.stderr
    assert not d.socket_path.exists()
    return done


def test_a_group_writable_socket_directory_is_refused(tmp_path: Path, account: Account) -> None:
    d = Daemon(tmp_path / "state", workers=1, extra_args=("--group", account.group))
    try:
        os.chown(d.socket_dir, -1, account.gid)
        os.chmod(d.socket_dir, 0o770)
        done = refused_start(d)
        assert done.returncode == 1
        assert f"{d.socket_dir} is writable by other users (mode drwxrwx---)" in done.stderr
        assert f"chmod 750 {d.socket_dir}" in done.stderr
        assert mode(d.socket_dir) == 0o770  # left for the admin to fix
    finally:
        d.close()


def test_an_unknown_group_is_a_configuration_error(tmp_path: Path) -> None:
    d = Daemon(tmp_path / "state", workers=1, extra_args=("--group", "no-such-group-gcgate"))
    try:
        done = refused_start(d)
        assert done.returncode == 2
        assert "command line: group 'no-such-group-gcgate' does not exist" in done.stderr
    finally:
        d.close()


def test_a_daemon_user_outside_the_group_cannot_hand_it_the_socket(account: Account) -> None:
    """A non-root daemon may only chgrp to its own groups; it says so and stops."""
    base = Path(f"/tmp/gcg-{uuid.uuid4().hex[:8]}")  # pytest's tmp_path is root's alone
    base.mkdir(mode=0o755)
    socket_dir, state_dir = base / "run", base / "state"
    for path in (socket_dir, state_dir):
        path.mkdir(mode=0o700)
        os.chown(path, NOBODY, NOBODY)
    try:
        done = subprocess.run(
            [
                "setpriv",
                *as_nobody(),
                sys.executable,
                "-m",
                "gcgated.cli.daemon",
                "--socket",
                str(socket_dir / "gcgate.sock"),
                "--state-dir",
                str(state_dir),
                "--workers",
                "1",
                "--group",
                account.group,
            ],
            capture_output=True,
            text=True,
            timeout=WAIT,
            env={k: v for k, v in os.environ.items() if not k.startswith("GCGATE_")}
            | {"HOME": "/", "XDG_CONFIG_HOME": str(base / "config")},
        )
        assert done.returncode == 1, done.stderr
        assert f"cannot give {socket_dir} to group {account.group}" in done.stderr
        assert "must be a member of that group" in done.stderr
        assert not (socket_dir / "gcgate.sock").exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_config_file_this_user_may_not_reach_is_reported(tmp_path: Path) -> None:
    """Not a traceback: e.g. a service user whose default config dir is root's."""
    hidden = tmp_path / "root-only"  # under pytest's 0700 directory
    done = subprocess.run(
        ["setpriv", *as_nobody(), sys.executable, "-m", "gcgated.cli.daemon", "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env={k: v for k, v in os.environ.items() if not k.startswith("GCGATE_")}
        | {"HOME": "/", "XDG_CONFIG_HOME": str(hidden)},
    )
    assert done.returncode == 2, done.stderr
    assert f"cannot read config file {hidden}/gcgate/gcgated.toml: Permission denied" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr
