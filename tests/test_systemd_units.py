"""The systemd units, the sysusers snippet, the env file and `make install-units`.

``systemd-analyze verify`` exits 0 on many mistakes (an unknown key, a bad
value: "ignoring"), so any line it prints fails the test. ``systemd-analyze
security --offline=yes`` scores the system unit's sandbox; docs/service.md
records the score, and a test keeps the two equal.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from gcgated.config import ENV_VARS
from harness import Daemon, serve

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "systemd"
SYSTEM_UNIT = UNITS / "gcgated.service"
USER_UNIT = UNITS / "gcgated-user.service"
SERVICE_DOC = ROOT / "docs" / "service.md"
GCGATED = Path(sys.executable).with_name("gcgated")
MAX_EXPOSURE = 2.5

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def directives(unit: Path) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit, every value of repeated keys in order."""
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def with_exec_start(unit: Path, directory: Path) -> Path:
    """A copy of ``unit`` (same file name) whose ExecStart= and ExecReload= check
    run this venv's gcgated: verify checks that the binary exists, and the
    installed path may not."""
    text = re.sub(r"(?m)^ExecStart=.*$", f"ExecStart={GCGATED}", unit.read_text())
    text = re.sub(
        r"(?m)^ExecReload=\S*gcgated --check-config$",
        f"ExecReload={GCGATED} --check-config",
        text,
    )
    copy = directory / ("gcgated.service" if unit == USER_UNIT else unit.name)
    copy.write_text(text)
    return copy


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    """``systemd-analyze --user`` needs an XDG_RUNTIME_DIR. A short one of its own
    in /tmp: the system's user units put sockets in it (gpg-agent's), and under
    pytest-xdist tmp_path is too long for a socket address (108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="gcg-xdg-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def analyze(*args: str, runtime_dir: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime_dir), "SYSTEMD_PAGER": "", "LANG": "C"}
    return subprocess.run(
        [ANALYZE, *args], capture_output=True, text=True, timeout=120, env=env, cwd=cwd
    )


def verify(unit: Path, runtime_dir: Path, *, user: bool) -> subprocess.CompletedProcess[str]:
    return analyze(
        *(["--user"] if user else []),
        "verify",
        str(unit),
        runtime_dir=runtime_dir,
        cwd=unit.parent,
    )


# ------------------------------------------------------------------ verify


@needs_analyze
@pytest.mark.parametrize(("unit", "user"), [(SYSTEM_UNIT, False), (USER_UNIT, True)])
def test_unit_verifies_without_a_single_warning(
    unit: Path, user: bool, tmp_path: Path, runtime_dir: Path
) -> None:
    done = verify(with_exec_start(unit, tmp_path), runtime_dir, user=user)
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 0, output
    assert output == "", f"systemd-analyze verify {unit.name} printed:\n{output}"


@needs_analyze
def test_verify_output_catches_what_its_exit_code_lets_through(
    tmp_path: Path, runtime_dir: Path
) -> None:
    """The reason for the check above: an empty SetCredential= value (systemd 252
    rejects it) is "ignored" with exit code 0."""
    unit = with_exec_start(SYSTEM_UNIT, tmp_path)
    unit.write_text(
        unit.read_text().replace("SetCredential=client_id:\\n", "SetCredential=client_id:")
    )
    done = verify(unit, runtime_dir, user=False)
    assert done.returncode == 0
    assert "Invalid syntax, ignoring: client_id:" in done.stdout + done.stderr


@needs_analyze
def test_system_unit_exposure_is_low_and_documented(tmp_path: Path, runtime_dir: Path) -> None:
    unit = with_exec_start(SYSTEM_UNIT, tmp_path)
    done = analyze(
        "security", "--offline=yes", "--no-pager", str(unit), runtime_dir=runtime_dir, cwd=tmp_path
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    match = re.search(r"Overall exposure level for gcgated\.service: (\d+\.\d)", output)
    assert match, output
    score = float(match.group(1))
    assert score <= MAX_EXPOSURE, output
    documented = re.search(r"exposure level[^0-9]*(\d+\.\d)", SERVICE_DOC.read_text())
    assert documented, "docs/service.md does not record the exposure score"
    assert float(documented.group(1)) == score, f"docs/service.md says {documented.group(1)}"


# ------------------------------------------------------- what the units say


def test_system_unit_has_what_the_service_needs() -> None:
    unit = directives(SYSTEM_UNIT)
    expected = {
        "Type": ["notify"],
        "NotifyAccess": ["main"],
        "User": ["gcgate"],
        "Group": ["gcgate"],
        "StateDirectory": ["gcgate"],
        "StateDirectoryMode": ["0700"],
        "RuntimeDirectory": ["gcgate"],
        "RuntimeDirectoryMode": ["0750"],
        "UMask": ["0077"],
        "Restart": ["on-failure"],
        "RestartPreventExitStatus": ["2"],
        "KillMode": ["mixed"],
        "ExecReload": ["/opt/gcgate/bin/gcgated --check-config", "/bin/kill -HUP $MAINPID"],
        "EnvironmentFile": ["-/etc/gcgate/gcgate.env"],
        "LoadCredential": [
            "client_id:/etc/gcgate/credentials/client_id",
            "client_secret:/etc/gcgate/credentials/client_secret",
        ],
        "NoNewPrivileges": ["yes"],
        "CapabilityBoundingSet": [""],
        "ProtectSystem": ["strict"],
        "ProtectHome": ["yes"],
        "PrivateTmp": ["yes"],
        "RestrictAddressFamilies": ["AF_UNIX AF_INET AF_INET6"],
        "LockPersonality": ["yes"],
        "RestrictNamespaces": ["yes"],
        "ProtectKernelTunables": ["yes"],
        "ProtectKernelModules": ["yes"],
        "ProtectKernelLogs": ["yes"],
    }
    for key, values in expected.items():
        assert unit.get(key) == values, key
    assert unit["SystemCallFilter"][0] == "@system-service"
    assert int(unit["WatchdogSec"][0]) > 0
    # The daemon's group is the socket's: members of gcgate may connect.
    assert "GCGATE_GROUP=gcgate" in unit["Environment"][0].split()
    # The shutdown grace (10 s) plus stopping workers fits before SIGKILL.
    assert int(unit["TimeoutStopSec"][0]) > 10
    # No secret in the unit: SetCredential= only holds the empty defaults.
    assert unit["SetCredential"] == ["client_id:\\n", "client_secret:\\n"]


def test_user_unit_uses_the_users_own_places() -> None:
    unit = directives(USER_UNIT)
    assert unit["Type"] == ["notify"]
    assert unit["RuntimeDirectory"] == ["gcgate"]  # $XDG_RUNTIME_DIR/gcgate/gcgate.sock
    assert unit["RuntimeDirectoryMode"] == ["0700"]
    assert "StateDirectory" not in unit  # the same store as a gcgated started by hand
    assert "User" not in unit
    assert unit["KillMode"] == ["mixed"]
    assert int(unit["WatchdogSec"][0]) > 0
    assert unit["ExecReload"] == [
        f"{unit['ExecStart'][0]} --check-config",
        "/bin/kill -HUP $MAINPID",
    ]
    assert unit["RestartPreventExitStatus"] == ["2"]


def test_reload_checks_the_config_beside_the_running_daemon_before_signalling_it(
    tmp_path: Path,
) -> None:
    """The system unit's ExecReload= check, run as systemd runs it (the unit's
    Environment=, STATE_DIRECTORY, RUNTIME_DIRECTORY) while the daemon serves on
    those directories: a good file passes; a broken one fails, naming the problem,
    so systemd fails the reload and never runs the ExecReload= that sends SIGHUP."""
    unit = directives(SYSTEM_UNIT)
    check, signal_it = unit["ExecReload"]
    assert check == f"{unit['ExecStart'][0]} --check-config"
    assert signal_it == "/bin/kill -HUP $MAINPID"
    config = tmp_path / "gcgated.toml"
    config.write_text("[gcgated]\nretention_days = 7\n")
    service_env = dict(item.split("=", 1) for item in unit["Environment"][0].split())
    assert service_env["GCGATE_CONFIG"] == "/etc/gcgate/gcgated.toml"
    daemon = Daemon(tmp_path / "state", workers=1)
    service_env |= {
        "GCGATE_CONFIG": str(config),
        "GCGATE_GROUP": str(os.getgid()),  # the unit's group gcgate stands for ours
        "STATE_DIRECTORY": str(daemon.state_dir),
        "RUNTIME_DIRECTORY": str(daemon.socket_dir),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("GCGATE_")} | service_env
    command = [str(GCGATED), *shlex.split(check)[1:]]

    def run_check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    daemon.daemon_env = service_env
    for running in serve(daemon.start()):
        good = run_check()
        assert good.returncode == 0, good.stderr
        assert f"config file: {config}" in good.stdout
        assert f"socket_path = {running.socket_path} (default)" in good.stdout
        config.write_text("[gcgated]\nretention_days = -1\n")
        broken = run_check()
        assert broken.returncode == 2, broken.stdout + broken.stderr
        assert f"config file {config}: retention_days must be >= 0" in broken.stderr
        assert "Traceback" not in broken.stderr


def test_env_file_names_only_real_settings() -> None:
    names = re.findall(r"(?m)^#?([A-Z][A-Z0-9_]+)=", (UNITS / "gcgate.env").read_text())
    known = {*ENV_VARS.values(), "GLOBUS_COMPUTE_CLIENT_ID"}
    assert names, "gcgate.env documents no setting"
    assert set(names) <= known, set(names) - known
    assert "GLOBUS_COMPUTE_CLIENT_SECRET" not in names


def test_sysusers_snippet_creates_a_system_user(tmp_path: Path) -> None:
    sysusers = shutil.which("systemd-sysusers")
    if sysusers is None:
        pytest.skip("systemd-sysusers is not installed")
    (tmp_path / "etc").mkdir()
    conf = UNITS / "gcgate.sysusers.conf"
    done = subprocess.run(
        [sysusers, f"--root={tmp_path}", str(conf)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "not a valid" not in done.stderr, done.stderr
    passwd = [line.split(":") for line in (tmp_path / "etc/passwd").read_text().splitlines()]
    _, _, uid, gid, _, home, shell = next(entry for entry in passwd if entry[0] == "gcgate")
    assert 0 < int(uid) < 1000  # a system user
    assert home == "/var/lib/gcgate"
    assert shell.endswith("nologin")
    groups = {
        line.split(":")[0]: line for line in (tmp_path / "etc/group").read_text().splitlines()
    }
    assert groups["gcgate"].split(":")[2] == gid


# ------------------------------------------------------------ make install-units


@pytest.fixture
def staged(tmp_path: Path) -> Iterator[Path]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    yield tmp_path / "root"


def install_units(destdir: Path, prefix: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", "install-units", f"DESTDIR={destdir}", f"PREFIX={prefix}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_install_units_lays_out_the_files(staged: Path, runtime_dir: Path) -> None:
    prefix = GCGATED.parent.parent  # this venv stands in for /opt/gcgate
    done = install_units(staged, prefix)
    assert done.returncode == 0, done.stderr

    def mode(path: str) -> int:
        return stat.S_IMODE((staged / path.lstrip("/")).stat().st_mode)

    assert mode("/etc/systemd/system/gcgated.service") == 0o644
    assert mode("/etc/systemd/user/gcgated.service") == 0o644
    assert mode("/etc/sysusers.d/gcgate.conf") == 0o644
    assert mode("/etc/gcgate") == 0o755
    assert mode("/etc/gcgate/credentials") == 0o700
    assert mode("/etc/gcgate/gcgate.env") == 0o644
    for unit in ("system", "user"):
        installed = staged / f"etc/systemd/{unit}/gcgated.service"
        assert directives(installed)["ExecStart"] == [f"{prefix}/bin/gcgated"]
        assert directives(installed)["ExecReload"][0] == f"{prefix}/bin/gcgated --check-config"
        if ANALYZE is not None:
            done = verify(installed, runtime_dir, user=unit == "user")
            assert (done.stdout + done.stderr).strip() == "", done.stdout + done.stderr

    # Installing again (an upgrade) keeps the admin's settings.
    env_file = staged / "etc/gcgate/gcgate.env"
    env_file.write_text("GCGATE_WORKERS=3\n")
    assert install_units(staged, prefix).returncode == 0
    assert env_file.read_text() == "GCGATE_WORKERS=3\n"
