"""Service-account credentials: where they come from, and that the secret never leaks.

The secret is a recognisable string; the tests look for it everywhere a person
or another user could see it: the daemon's log, ``gcgate status --json``, RPC
errors, ``/proc/<pid>/cmdline`` of the daemon and its workers, and the
workers' environment (``/proc/<pid>/environ`` and what a function sees).
"""

from __future__ import annotations

import json
import os
import pickle
import stat
import struct
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from gcgate import Client
from gcgate.errors import GcgateError
from gcgate.v1 import gateway_pb2 as pb
from gcgate.v1 import gateway_pb2_grpc as pb_grpc
from gcgated.config import Config, load_config
from gcgated.credentials import (
    ID_ENV,
    SECRET_ENV,
    ClientCredentials,
    load_client_credentials,
)
from gcgated.errors import StartupError
from gcgated.secret import Secret
from harness import Daemon, script_function, write_private
from procfs import children, proc_text
from standin import StandIn

CLIENT_ID = "1b0c4a5e-0000-4f1e-9c2a-6d3f0e8b7a21"
SECRET = "gcgate-test-secret-" + uuid.uuid4().hex
GCGATE = Path(sys.executable).with_name("gcgate")
WAIT = 30.0


@pytest.fixture
def credentials_dir(tmp_path: Path) -> Path:
    """What systemd's LoadCredential= makes: a private directory of 0400 files."""
    directory = tmp_path / "credentials"
    directory.mkdir(mode=0o700)
    write_private(directory / "client_id", CLIENT_ID + "\n", 0o400)
    write_private(directory / "client_secret", SECRET + "\n", 0o400)
    return directory


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (ID_ENV, SECRET_ENV, "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# ------------------------------------------------------------------- Secret


def test_a_secret_does_not_show_itself() -> None:
    secret = Secret(SECRET)
    shown = [repr(secret), str(secret), f"{secret}", "%s" % secret, f"{secret}"]  # noqa: UP031
    shown.append(repr(ClientCredentials(CLIENT_ID, secret)))
    config = Config()
    config.client_secret = secret
    shown.append(repr(config))
    assert all(SECRET not in text for text in shown), shown
    assert "********" in shown[0]
    assert secret.get_secret_value() == SECRET
    assert secret == Secret(SECRET)
    assert secret != Secret("other")
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(secret)


def test_the_secret_is_never_taken_from_flags_or_gcgate_env() -> None:
    config = Config()
    with pytest.raises(StartupError, match="client_secret can only be set in the config file"):
        config.update({"client_secret": SECRET}, "command line")
    with pytest.raises(StartupError, match="unknown setting 'config_file'"):
        config.update({"config_file": "/etc/passwd"}, "config file x.toml")
    with pytest.raises(StartupError) as bad:
        config.update({"client_secret": 12345}, "config file x.toml")
    assert "12345" not in str(bad.value)  # a mistyped secret is not echoed


# ------------------------------------------------------------------ sources


def test_credentials_directory_wins_and_the_environment_is_scrubbed(
    credentials_dir: Path, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("CREDENTIALS_DIRECTORY", str(credentials_dir))
    clean_env.setenv(ID_ENV, str(uuid.uuid4()))
    clean_env.setenv(SECRET_ENV, "from-the-environment")
    found = load_client_credentials(Config())
    assert found is not None
    assert found.client_id == CLIENT_ID
    assert found.client_secret.get_secret_value() == SECRET
    assert found.source == f"credential {credentials_dir / 'client_id'}, credential " + str(
        credentials_dir / "client_secret"
    )
    assert SECRET_ENV not in os.environ
    assert "CREDENTIALS_DIRECTORY" not in os.environ
    assert ID_ENV in os.environ  # not secret: kept


def test_environment_then_config_file(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    config_file = write_private(
        tmp_path / "gcgated.toml", f"client_id = '{CLIENT_ID}'\nclient_secret = 'from-file'\n"
    )
    config = load_config(config_file, {})
    found = load_client_credentials(config)
    assert found is not None
    assert (found.client_id, found.client_secret.get_secret_value()) == (CLIENT_ID, "from-file")
    assert found.source == f"config file {config_file}"

    clean_env.setenv(SECRET_ENV, SECRET)
    found = load_client_credentials(config)
    assert found is not None
    assert found.client_secret.get_secret_value() == SECRET  # the environment wins
    assert found.source == f"config file {config_file}, ${SECRET_ENV}"


def test_no_credentials_and_empty_systemd_defaults(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    assert load_client_credentials(Config()) is None
    # The unit's SetCredential= defaults: files holding only a newline.
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o700)
    write_private(empty / "client_id", "\n", 0o400)
    write_private(empty / "client_secret", "\n", 0o400)
    clean_env.setenv("CREDENTIALS_DIRECTORY", str(empty))
    assert load_client_credentials(Config()) is None


def acl(*entries: tuple[int, int, int]) -> bytes:
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


NO_ID = 0xFFFFFFFF


def named_user_acl(user: int | str) -> list[tuple[int, int, int | str]]:
    """owner r, named user r, group none, mask r, other none (mode shows 0440)."""
    return [(1, 4, NO_ID), (2, 4, user), (4, 0, NO_ID), (0x10, 4, NO_ID), (0x20, 0, NO_ID)]


@pytest.mark.parametrize(
    ("mode", "acl_entries", "refused_for"),
    [
        (0o640, None, "its group"),
        (0o604, None, "others"),
        (0o644, None, "its group and others"),
        # systemd's own shape: owner read, plus a named entry for the service's
        # user (this process), shown as mode 0440. Private: accepted.
        (0o400, named_user_acl("me"), None),
        (0o400, named_user_acl(65534), "user 65534"),
    ],
    ids=["group", "others", "both", "systemd-acl", "acl-for-another-user"],
)
def test_a_secret_file_others_may_read_is_refused(
    mode: int,
    acl_entries: list[tuple[int, int, int | str]] | None,
    refused_for: str | None,
    credentials_dir: Path,
    clean_env: pytest.MonkeyPatch,
) -> None:
    secret_file = credentials_dir / "client_secret"
    os.chmod(secret_file, mode)
    if acl_entries is not None:
        entries = [(t, p, os.getuid() if i == "me" else int(i)) for t, p, i in acl_entries]
        try:
            os.setxattr(secret_file, "system.posix_acl_access", acl(*entries))
        except OSError as exc:
            pytest.skip(f"no POSIX ACLs on {secret_file.parent}: {exc}")
        # The group bits now show the ACL's mask: a plain mode check would refuse.
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o440
    clean_env.setenv("CREDENTIALS_DIRECTORY", str(credentials_dir))
    if refused_for is None:
        found = load_client_credentials(Config())
        assert found is not None
        assert found.client_secret.get_secret_value() == SECRET
        return
    with pytest.raises(StartupError) as refused:
        load_client_credentials(Config())
    message = str(refused.value)
    assert f"credential file {secret_file} is readable by {refused_for}" in message
    assert f"chmod 600 {secret_file}" in message
    assert SECRET not in message
    assert "CREDENTIALS_DIRECTORY" not in os.environ  # scrubbed even when refusing


def test_a_config_file_holding_the_secret_must_be_private(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    config_file = write_private(
        tmp_path / "gcgated.toml", f"client_id = '{CLIENT_ID}'\nclient_secret = '{SECRET}'\n", 0o644
    )
    with pytest.raises(StartupError) as refused:
        load_client_credentials(load_config(config_file, {}))
    assert f"{config_file} is readable by its group and others" in str(refused.value)
    assert f"chmod 600 {config_file}" in str(refused.value)
    assert SECRET not in str(refused.value)
    # Without a secret in it, the config file may be world-readable.
    write_private(config_file, "workers = 1\n", 0o644)
    assert load_client_credentials(load_config(config_file, {})) is None


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"client_id": CLIENT_ID}, "a client id is configured (credential"),
        ({"client_secret": SECRET}, "a client secret is configured (credential"),
        ({"client_id": SECRET, "client_secret": SECRET}, "is not a UUID"),
        ({"client_id": CLIENT_ID, "client_secret": b"\xff\xfe"}, "cannot read credential file"),
    ],
    ids=["no-secret", "no-id", "secret-as-id", "not-text"],
)
def test_incomplete_or_wrong_credentials_are_refused(
    files: dict[str, str | bytes], message: str, tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "creds"
    directory.mkdir(mode=0o700)
    for name, value in files.items():
        path = directory / name
        path.write_bytes(value if isinstance(value, bytes) else value.encode())
        os.chmod(path, 0o400)
    clean_env.setenv("CREDENTIALS_DIRECTORY", str(directory))
    with pytest.raises(StartupError) as refused:
        load_client_credentials(Config())
    assert message in str(refused.value)
    assert SECRET not in str(refused.value)


# --------------------------------------------------------- the real daemon


@script_function
def inspect_worker():
    import os

    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    return {"pid": os.getpid(), "environ": dict(os.environ), "credentials_directory": directory}


def gcgate_status_json(socket_path: Path) -> tuple[str, dict]:
    done = subprocess.run(
        [str(GCGATE), "--socket", str(socket_path), "status", "--json"],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr, json.loads(done.stdout)


@pytest.fixture(params=["credentials-directory", "environment", "config-file"])
def secret_daemon(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Daemon]:
    env: dict[str, str] = {}
    args: tuple[str, ...] = ()
    if request.param == "credentials-directory":
        directory = tmp_path / "credentials"
        directory.mkdir(mode=0o700)
        write_private(directory / "client_id", CLIENT_ID, 0o400)
        write_private(directory / "client_secret", SECRET, 0o400)
        env["CREDENTIALS_DIRECTORY"] = str(directory)
    elif request.param == "environment":
        env = {ID_ENV: CLIENT_ID, SECRET_ENV: SECRET}
    else:
        config = write_private(
            tmp_path / "gcgated.toml", f"client_id = '{CLIENT_ID}'\nclient_secret = '{SECRET}'\n"
        )
        args = ("--config", str(config))
    d = Daemon(tmp_path / "state", workers=2, extra_args=args, daemon_env=env)
    d.source = request.param  # type: ignore[attr-defined]
    try:
        yield d.start()
    finally:
        d.close()


def test_the_secret_is_nowhere_to_be_seen(secret_daemon: Daemon) -> None:
    d = secret_daemon
    assert d.process is not None
    pid = d.process.pid
    assert f"service-account credentials loaded for client {CLIENT_ID}" in d.log()

    output, answer = gcgate_status_json(d.socket_path)
    assert answer["login"] == {"state": "client", "identity": CLIENT_ID}
    assert SECRET not in output

    # Errors, through the raw API and the CLI.
    with grpc.insecure_channel(f"unix:{d.socket_path}") as ch:
        stub = pb_grpc.GatewayStub(ch)
        for call, request in [
            (stub.GetResult, pb.GetResultRequest(task_id=str(uuid.uuid4()))),
            (stub.GetResult, pb.GetResultRequest(task_id="not-a-task-id")),
            (stub.Run, pb.RunRequest(endpoint_id="nowhere", function_id="x", payload="?")),
        ]:
            with pytest.raises(grpc.RpcError) as failed:
                call(request, timeout=WAIT)
            assert failed.value.details(), failed.value
            assert SECRET not in failed.value.details()
    cli = subprocess.run(
        [str(GCGATE), "--socket", str(d.socket_path), "result", "not-a-task-id"],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert cli.returncode == 5, cli.stderr
    assert SECRET not in cli.stdout + cli.stderr

    # What a user's function sees in a worker.
    with Client(socket_path=d.socket_path) as client:
        fid = client.register_function(inspect_worker)
        seen = client.get_result(client.run(endpoint_id="local", function_id=fid), wait=WAIT)
    assert SECRET_ENV not in seen["environ"]
    assert seen["credentials_directory"] is None
    assert not [k for k, v in seen["environ"].items() if SECRET in v]

    # ps: every process's command line, and the workers' initial environment.
    workers = children(pid)
    assert seen["pid"] in workers
    assert len(workers) == 2
    for process in [pid, *workers]:
        assert SECRET not in proc_text(process, "cmdline")
    for worker in workers:
        assert SECRET not in proc_text(worker, "environ")
    if d.source != "environment":  # type: ignore[attr-defined]
        # A secret handed over by the environment stays in the daemon's own
        # initial environment (readable by its user and root only).
        assert SECRET not in proc_text(pid, "environ")

    assert d.stop() == 0
    assert SECRET not in d.log()


def run_gcgated(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GCGATE_")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "gcgated.cli.daemon",
            "--socket",
            str(tmp_path / "s.sock"),
            "--state-dir",
            str(tmp_path / "state"),
            "--workers",
            "1",
        ],
        env={**base, "XDG_CONFIG_HOME": str(tmp_path / "config"), **env},
        capture_output=True,
        text=True,
        timeout=WAIT,
    )


def test_daemon_refuses_a_readable_credential_file(tmp_path: Path, credentials_dir: Path) -> None:
    os.chmod(credentials_dir / "client_secret", 0o644)
    done = run_gcgated(tmp_path, {"CREDENTIALS_DIRECTORY": str(credentials_dir)})
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert f"chmod 600 {credentials_dir / 'client_secret'}" in done.stderr
    assert SECRET not in done.stdout + done.stderr
    assert not (tmp_path / "s.sock").exists()


def test_daemon_refuses_half_a_pair_from_the_environment(tmp_path: Path) -> None:
    done = run_gcgated(tmp_path, {SECRET_ENV: SECRET})
    assert done.returncode == 1, done.stderr
    assert f"a client secret is configured (${SECRET_ENV}) but no client id" in done.stderr
    assert SECRET not in done.stdout + done.stderr


# ------------------------------------------- through Globus Auth (the stand-in)


@script_function
def hello(name):
    return f"Hello {name}"


def test_neither_secret_nor_tokens_leak_through_a_globus_login(
    standin: StandIn, tmp_path: Path
) -> None:
    """The Globus backend logs in with the secret (client credentials) and keeps
    tokens: none of them may show in the log, Status, errors or the workers."""
    account = standin.auth.add_client(secret=SECRET, name="leak test")
    directory = tmp_path / "credentials"
    directory.mkdir(mode=0o700)
    write_private(directory / "client_id", account.client_id, 0o400)
    write_private(directory / "client_secret", SECRET, 0o400)
    d = Daemon(
        tmp_path / "state",
        workers=1,
        daemon_env={**standin.env(service_account=False), "CREDENTIALS_DIRECTORY": str(directory)},
    )
    try:
        d.start()
        assert d.process is not None
        with Client(socket_path=d.socket_path) as client:
            fid = client.register_function(hello)
            tid = client.run("Ada", endpoint_id=standin.endpoint_id, function_id=fid)
            assert client.get_result(tid, wait=WAIT) == "Hello Ada"
            # An unknown endpoint: accepted (submits go in the background), then the
            # task fails with the service's refusal, an error text to search too.
            refused = client.run("x", endpoint_id=str(uuid.uuid4()), function_id=fid)
            with pytest.raises(GcgateError) as failed:
                client.get_result(refused, wait=WAIT)
        tokens = [t.access_token for t in standin.auth.live_tokens()]
        tokens += list(standin.auth.refresh_tokens)
        assert [t for t in standin.auth.live_tokens() if t.client_id == account.client_id]
        secrets_ = [SECRET, *tokens]

        output, answer = gcgate_status_json(d.socket_path)
        assert answer["login"] == {"state": "client", "identity": account.client_id}
        seen = [output, str(failed.value)]
        for process in [d.process.pid, *children(d.process.pid)]:
            seen.append(proc_text(process, "cmdline"))
        for worker in children(d.process.pid):
            seen.append(proc_text(worker, "environ"))
        assert d.stop() == 0
        seen.append(d.log())
        leaked = [(i, s[:12]) for i, text in enumerate(seen) for s in secrets_ if s in text]
        assert not leaked, leaked

        token_file = d.state_dir / "globus-tokens.db"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(d.state_dir.stat().st_mode) == 0o700
    finally:
        d.close()


def test_a_wrong_secret_is_reported_without_showing_it(standin: StandIn, tmp_path: Path) -> None:
    account = standin.auth.add_client(name="wrong secret")
    wrong = "wrong-" + SECRET
    d = Daemon(
        tmp_path / "state",
        workers=1,
        daemon_env={
            **standin.env(service_account=False),
            ID_ENV: account.client_id,
            SECRET_ENV: wrong,
        },
    )
    try:
        d.start()
        with Client(socket_path=d.socket_path) as client:
            fid = client.register_function(hello)
            with pytest.raises(GcgateError) as failed:
                tid = client.run("Ada", endpoint_id=standin.endpoint_id, function_id=fid)
                client.get_result(tid, wait=WAIT)
        message = str(failed.value)
        assert message
        output, _ = gcgate_status_json(d.socket_path)
        assert d.stop() == 0
        for text in (message, output, d.log()):
            assert wrong not in text
    finally:
        d.close()
