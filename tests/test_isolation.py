"""Isolation: core dumps, the state dir, secrets, and no file reached through a request field.

What the other modules already prove is not repeated here:
``tests/test_access.py`` runs clients as other uids (refused at the 0600 socket;
group members served with ``--group``), ``tests/test_systemd_credentials.py``
hunts the service-account secret in the log, ``gcgate status``, errors,
``/proc`` and the workers. This module adds:

- core dumps are off in the daemon and its workers, whatever limit it started with;
- another uid cannot read the state dir, even one that was left open;
- a whole Globus session (service account, or a user's login with a token
  renewal, plus a client's pass-through token) leaks no secret, token or login
  code through any RPC reply, error, CLI output, log, ``/proc`` entry or file
  of the state dir other than the 0600 token store;
- path-like values in every string field of every RPC create, change or read
  no file outside the state dir (file listings and mtimes before and after, a
  bait file's content never answered, and with ``strace`` installed: no file
  system call names anything the requests sent).

See docs/reliability.md#5-isolation for the list of places where the daemon
opens files and why no request field reaches them.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import uuid
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import globus_sdk
import grpc
import pytest
from gcgate import Client
from gcgate.constants import OWNER_KEY_FILE
from gcgate.serialize import Serializer
from gcgate.v1 import gateway_pb2 as pb
from gcgate.v1 import gateway_pb2_grpc as pb_grpc
from google.protobuf.message import Message
from harness import Daemon, script_function, write_private
from procfs import children, proc_limit, proc_text
from standin import StandIn

GCGATE = Path(sys.executable).with_name("gcgate")
NOBODY = 65534
WAIT = 60.0
TOKEN_FILE = "globus-tokens.db"
#: The names a daemon may create in its state dir (SQLite adds -journal/-wal
#: files next to the token store while it writes; the user file has a .tmp).
STATE_NAMES = ("store", "gcgated.lock", TOKEN_FILE, "globus-user.json", OWNER_KEY_FILE)
AS_NOBODY = ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")


@script_function
def echo(x):
    return x


def only_state_names(state_dir: Path) -> bool:
    return all(p.name.startswith(STATE_NAMES) for p in state_dir.iterdir())


@contextlib.contextmanager
def stub_for(daemon: Daemon) -> Iterator[pb_grpc.GatewayStub]:
    with grpc.insecure_channel(f"unix:{daemon.socket_path}") as channel:
        yield pb_grpc.GatewayStub(channel)


# ------------------------------------------------------------------ core dumps


def highest_core_limit() -> str:
    """The most this process may allow its children (root: anything)."""
    hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
    if os.geteuid() == 0 or hard == resource.RLIM_INFINITY:
        return "unlimited"
    return str(hard)


class UnlimitedCoreDaemon(Daemon):
    """Started by ``prlimit`` with core dumps allowed, as a careless shell would."""

    def command(self) -> list[str]:
        limit = highest_core_limit()
        return ["prlimit", f"--core={limit}:{limit}", *super().command()]


@pytest.mark.skipif(not shutil.which("prlimit"), reason="needs prlimit (util-linux)")
def test_core_dumps_are_off_in_the_daemon_and_its_workers(tmp_path: Path) -> None:
    if highest_core_limit() == "0":
        pytest.skip("core dumps are off for this user already; only root could allow them")
    d = UnlimitedCoreDaemon(tmp_path / "state", workers=2)
    try:
        d.start()
        assert d.process is not None
        with Client(socket_path=d.socket_path) as client:
            fid = client.register_function(echo)
            task = client.run(1, endpoint_id="local", function_id=fid)
            assert client.get_result(task, wait=WAIT) == 1
        workers = children(d.process.pid)
        assert len(workers) == 2
        for pid in [d.process.pid, *workers]:
            assert proc_limit(pid, "Max core file size") == ("0", "0"), pid
        assert d.stop() == 0
    finally:
        d.close()


# ------------------------------------------------------------------ state dir


@pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user needs root")
@pytest.mark.skipif(not shutil.which("setpriv"), reason="needs setpriv (util-linux)")
def test_another_uid_cannot_read_the_state_dir() -> None:
    """Even a state dir created open (0755, under an open parent) is closed at start."""
    base = Path(f"/tmp/gcg-iso-{uuid.uuid4().hex[:8]}")  # pytest's tmp dirs are 0700
    base.mkdir(mode=0o755)
    state = base / "state"
    state.mkdir(mode=0o755)
    d = Daemon(state, workers=1)
    try:
        d.start()
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        probe = (
            "import os, sys\n"
            "for path in sys.argv[1:]:\n"
            "    try:\n"
            "        os.listdir(path) if os.path.isdir(path) else open(path).close()\n"
            "    except PermissionError:\n"
            "        continue\n"
            "    print('readable:', path)\n"
        )
        targets = [state, state / "store", state / "gcgated.lock"]
        done = subprocess.run(
            [*AS_NOBODY, sys.executable, "-c", probe, *map(str, targets)],
            capture_output=True,
            text=True,
            timeout=WAIT,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == ""
        assert d.stop() == 0
    finally:
        d.close()
        shutil.rmtree(base, ignore_errors=True)


# --------------------------------------------------------------- secrets


def reply_text(reply: Message | Iterator[Message]) -> str:
    if isinstance(reply, Message):
        return str(reply)
    return "\n".join(str(m) for m in reply)


def every_reply(stub: pb_grpc.GatewayStub, endpoint: str, fid: str, tids: list[str]) -> list[str]:
    """Every read-only RPC's answer, and the errors of some bad calls, as text."""
    calls: list[tuple[Any, Message]] = [
        (stub.Status, pb.StatusRequest()),
        (stub.WhoAmI, pb.WhoAmIRequest()),
        (stub.ListEndpoints, pb.ListEndpointsRequest()),
        (stub.GetEndpointStatus, pb.EndpointRequest(endpoint_id=endpoint)),
        (stub.GetEndpointMetadata, pb.EndpointRequest(endpoint_id=endpoint)),
        (stub.GetFunction, pb.GetFunctionRequest(function_id=fid)),
        (stub.ListTasks, pb.ListTasksRequest(include_results=True)),
        (stub.GetBatchResult, pb.GetBatchResultRequest(task_ids=tids)),
        (stub.GetResult, pb.GetResultRequest(task_id=tids[0])),
        (stub.WatchTasks, pb.WatchTasksRequest(task_ids=tids)),
        # Errors:
        (stub.GetResult, pb.GetResultRequest(task_id=str(uuid.uuid4()))),
        (stub.GetEndpointStatus, pb.EndpointRequest(endpoint_id=str(uuid.uuid4()))),
        (stub.Run, pb.RunRequest(endpoint_id=str(uuid.uuid4()), function_id=fid, payload="x")),
        (stub.CompleteLogin, pb.CompleteLoginRequest(login_id="nope", auth_code="wrong")),
        (stub.StartLogin, pb.StartLoginRequest()),
        (stub.DeleteFunction, pb.DeleteFunctionRequest(function_id=str(uuid.uuid4()))),
    ]
    seen = []
    for call, request in calls:
        try:
            seen.append(reply_text(call(request, timeout=WAIT)))
        except grpc.RpcError as exc:
            assert exc.code() not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), exc
            seen.append(f"{exc.code()}: {exc.details()}")
    return seen


def cli_outputs(daemon: Daemon) -> list[str]:
    """What ``gcgate`` prints for a few commands (run side by side)."""
    commands = [["status", "--json"], ["whoami", "--json"], ["tasks", "--json"], ["status"]]
    running = [
        subprocess.Popen(
            [str(GCGATE), "--socket", str(daemon.socket_path), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    seen = []
    for process in running:
        out, err = process.communicate(timeout=WAIT)
        assert process.returncode == 0, err
        seen.append(out + err)
    return seen


def state_file_texts(state_dir: Path) -> list[tuple[str, bytes]]:
    """Every file of the state dir but the token store: raw bytes, and for the
    store's SQLite databases every cell, zlib-inflated where it is compressed
    (diskcache's JSONDisk compresses values, so raw bytes alone would hide them)."""
    found = []
    for path in sorted(p for p in state_dir.rglob("*") if p.is_file()):
        if path.name.startswith(TOKEN_FILE):
            continue
        data = path.read_bytes()
        found.append((str(path), data))
        found.extend((f"{path} (inflated)", inflated) for inflated in inflate_all([data]))
        if data.startswith(b"SQLite format 3"):
            found.extend((f"{path} (rows)", cell) for cell in sqlite_cells(path))
    return found


def sqlite_cells(path: Path) -> list[bytes]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [
            r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        cells: list[bytes] = []
        for table in tables:
            for row in connection.execute(f'SELECT * FROM "{table}"'):
                raw = [c if isinstance(c, bytes) else str(c).encode() for c in row]
                cells.extend(raw)
                cells.extend(inflate_all(raw))
        return cells
    finally:
        connection.close()


def inflate_all(blobs: list[bytes]) -> list[bytes]:
    out = []
    for blob in blobs:
        with contextlib.suppress(zlib.error):
            out.append(zlib.decompress(blob))
    return out


def unspaced(tmp_path: Path) -> tuple[str, ...]:
    """Daemon flags for a request budget the stand-in does not enforce: these
    tests are about what is sent, not how often (test_load.py keeps the real one)."""
    config = write_private(tmp_path / "gcgated.toml", "rate_limit_requests = 1000\n")
    return ("--config", str(config))


@pytest.fixture(params=["service-account", "user-login"])
def globus_session(
    request: pytest.FixtureRequest, standin: StandIn, tmp_path: Path
) -> Iterator[tuple[Daemon, list[str]]]:
    """A daemon logged in to the stand-in one way or the other, and the
    secrets of that login that must stay inside it (more are added later)."""
    secret = "gcgate-iso-secret-" + uuid.uuid4().hex
    env = standin.env(service_account=False)
    if request.param == "service-account":
        account = standin.auth.add_client(secret=secret, name="isolation")
        creds = tmp_path / "credentials"
        creds.mkdir(mode=0o700)
        write_private(creds / "client_id", account.client_id, 0o400)
        write_private(creds / "client_secret", secret, 0o400)
        env["CREDENTIALS_DIRECTORY"] = str(creds)
    d = Daemon(tmp_path / "state", workers=1, daemon_env=env, extra_args=unspaced(tmp_path))
    try:
        d.start()
        secrets_ = [secret]
        if request.param == "user-login":
            with stub_for(d) as stub:
                started = stub.StartLogin(pb.StartLoginRequest(), timeout=WAIT)
                code = standin.auth.authorize(started.authorize_url)
                who = stub.CompleteLogin(
                    pb.CompleteLoginRequest(login_id=started.login_id, auth_code=code),
                    timeout=WAIT,
                )
                assert who.login.state == "user", who
            secrets_.append(code)
        yield d, secrets_
    finally:
        d.close()


def test_no_secret_or_token_leaves_the_daemon(
    globus_session: tuple[Daemon, list[str]], standin: StandIn
) -> None:
    d, secrets_ = globus_session
    assert d.process is not None
    endpoint = standin.endpoint_id
    seen: list[tuple[str, str]] = []
    with Client(socket_path=d.socket_path) as client:
        fid = client.register_function(echo)
        batch = client.create_batch()
        for n in range(2):
            batch.add(fid, args=(n,))
        tids = client.batch_run(endpoint, batch)["tasks"][fid]
        tids.append(client.run(2, endpoint_id="local", function_id=fid))
        results = client.get_batch_result(tids, wait=WAIT)
        assert [results[t]["result"] for t in tids] == [0, 1, 2]
        # Force a renewal: a refresh (user) or a new grant (service account).
        assert standin.auth.expire_tokens() >= 1
        tids.append(client.run(3, endpoint_id=endpoint, function_id=fid))
        assert client.get_result(tids[-1], wait=WAIT) == 3
    passthrough = standin.auth.mint_token(standin.auth.add_user("carol@example.org"))
    authorizer = globus_sdk.AccessTokenAuthorizer(passthrough)
    with Client(socket_path=d.socket_path, authorizer=authorizer) as carol:
        tids.append(carol.run(4, endpoint_id=endpoint, function_id=fid))
        assert carol.get_result(tids[-1], wait=WAIT) == 4
    with stub_for(d) as stub:
        seen += [("reply", text) for text in every_reply(stub, endpoint, fid, tids)]
    seen += [("cli", text) for text in cli_outputs(d)]
    workers = children(d.process.pid)
    assert workers
    for pid in [d.process.pid, *workers]:
        seen.append((f"cmdline {pid}", proc_text(pid, "cmdline")))
        seen.append((f"environ {pid}", proc_text(pid, "environ")))
    assert d.stop() == 0
    seen.append(("log", d.log()))

    tokens = list(standin.auth.tokens) + list(standin.auth.refresh_tokens)
    assert standin.auth.grants, "no token was ever granted"
    secrets_ = [*secrets_, *tokens]
    assert passthrough in secrets_
    leaked = [(where, s[:10]) for where, text in seen for s in secrets_ if s in text]
    assert not leaked, leaked
    files = state_file_texts(d.state_dir)
    assert any("store" in name for name, _ in files)
    leaked = [(name, s[:10]) for name, data in files for s in secrets_ if s.encode() in data]
    assert not leaked, leaked
    stored = [p for p in d.state_dir.iterdir() if p.name.startswith(TOKEN_FILE)]
    assert stored
    # The search would have found them: the token store holds some, readably.
    kept = b"".join(sqlite_cells(d.state_dir / TOKEN_FILE))
    assert [s for s in tokens if s.encode() in kept]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in stored)
    assert only_state_names(d.state_dir)


# ------------------------------------------------- paths in request fields


def path_values(sentinel: Path) -> list[str]:
    """What a request might carry to steer the daemon at a file. All but ".."
    name the sentinel directory, so a file system call that names it can only
    have come from a request (the daemon itself reads /etc/passwd, for one:
    ``getpass.getuser()`` for the local endpoint's metadata)."""
    up = "../" * 12
    name = sentinel.name
    return [
        f"{sentinel}/written",
        f"{sentinel}/bait",
        f"{up}{str(sentinel).lstrip('/')}/relative",
        f"file://{sentinel}/bait",
        f"{up}etc/{name}",
        "..",
        f"~/{name}",
        f"{uuid.uuid4()}/../../{name}",
        f"%2e%2e%2f{name}",
        f"..\\..\\{name}",
    ]


def base_requests(endpoint: str, fid: str, tid: str) -> dict[str, Message]:
    """A valid request of every RPC that has a text field, so a path placed in
    one field gets as deep as that field can go."""
    payload = Serializer().task_payload((1,), {})
    options = pb.SubmitOptions(
        task_group_id=str(uuid.uuid4()),
        resource_specification_json="{}",
        user_endpoint_config_json="{}",
        result_serializers=["globus_compute_sdk.serialize.DillDataBase64"],
        user_runtime_json="{}",
    )
    return {
        "RegisterFunction": pb.RegisterFunctionRequest(
            function_name="f",
            function_code="def f(x):\n    return x\n",
            meta=pb.FunctionMeta(python_version="3.11", sdk_version="4", serde_identifier="10"),
            description="d",
            group="",
        ),
        "GetFunction": pb.GetFunctionRequest(function_id=fid),
        "Run": pb.RunRequest(
            endpoint_id=endpoint, function_id=fid, payload=payload, options=options
        ),
        "Run(json)": pb.RunRequest(
            endpoint_id=endpoint,
            function_id=fid,
            json_arguments=pb.JsonArguments(args_json="[1]", kwargs_json="{}"),
        ),
        "BatchRun": pb.BatchRunRequest(
            endpoint_id=endpoint,
            tasks=[
                pb.BatchTasks(
                    function_id=fid,
                    payloads=[payload],
                    json_arguments=[pb.JsonArguments(args_json="[2]", kwargs_json="{}")],
                )
            ],
            options=options,
        ),
        "GetResult": pb.GetResultRequest(task_id=tid),
        "GetBatchResult": pb.GetBatchResultRequest(task_ids=[tid]),
        "WatchTasks": pb.WatchTasksRequest(task_ids=[tid]),
        "GetEndpointStatus": pb.EndpointRequest(endpoint_id=endpoint),
        "GetEndpointMetadata": pb.EndpointRequest(endpoint_id=endpoint),
        "ListTasks": pb.ListTasksRequest(status="success", include_results=True),
        "ListEndpoints": pb.ListEndpointsRequest(role="owner"),
        "DeleteFunction": pb.DeleteFunctionRequest(function_id=fid),
        "CompleteLogin": pb.CompleteLoginRequest(login_id=str(uuid.uuid4()), auth_code="code"),
    }


def text_fields(message: Message, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Paths (field names, list indexes) of every string field, set or not."""
    for field in message.DESCRIPTOR.fields:
        here = (*prefix, field.name)
        if field.type == field.TYPE_STRING:
            yield here
        elif field.message_type is not None and field.is_repeated:
            for i, item in enumerate(getattr(message, field.name)):
                yield from text_fields(item, (*here, i))
        elif field.message_type is not None:
            yield from text_fields(getattr(message, field.name), here)


def with_value(base: Message, path: tuple[Any, ...], value: str) -> Message:
    request = type(base)()
    request.CopyFrom(base)
    target: Any = request
    for step in path[:-1]:
        target = target[step] if isinstance(step, int) else getattr(target, step)
    field = target.DESCRIPTOR.fields_by_name[path[-1]]
    if field.is_repeated:
        del getattr(target, path[-1])[:]
        getattr(target, path[-1]).append(value)
    else:
        setattr(target, path[-1], value)
    return request


def snapshot(*roots: Path, skip: tuple[Path, ...] = ()) -> dict[str, tuple[int, int, int]]:
    found = {}
    for root in roots:
        for path in [root, *root.rglob("*")]:
            if any(path == s or s in path.parents for s in skip):
                continue
            info = path.lstat()
            found[str(path)] = (info.st_mode, info.st_size, info.st_mtime_ns)
    return found


class FileCalls:
    """``strace -f`` attached to the daemon (all its threads) and its workers:
    every file system call they make, with the names they passed."""

    def __init__(self, process: subprocess.Popen[str], out: Path) -> None:
        self.process, self.out = process, out

    @classmethod
    def attach(cls, pids: list[int], out: Path) -> FileCalls | None:
        """Tracing, or None where strace is missing or may not attach (no
        CAP_SYS_PTRACE under Yama's ptrace_scope 1, e.g. in some containers)."""
        if not shutil.which("strace"):
            return None
        attach = [arg for pid in pids for arg in ("-p", str(pid))]
        process = subprocess.Popen(
            ["strace", "-f", "-s", "4096", "-e", "trace=%file", "-o", str(out), *attach],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stderr is not None
        # "strace: Process N attached[ with M threads]" once per process.
        for _ in pids:
            line = process.stderr.readline()
            if "Operation not permitted" in line:
                process.kill()
                process.communicate(timeout=WAIT)
                return None
            assert "attached" in line, line + process.stderr.read()
        return cls(process, out)

    def stop(self) -> list[str]:
        self.process.send_signal(signal.SIGINT)
        self.process.communicate(timeout=WAIT)
        return self.out.read_text(errors="replace").splitlines()


def call(stub: pb_grpc.GatewayStub, name: str, request: Message) -> str:
    """The answer or the error of one call, as text; never UNKNOWN or INTERNAL."""
    method = getattr(stub, name.split("(")[0])
    try:
        return reply_text(method(request, timeout=WAIT))
    except grpc.RpcError as exc:
        assert exc.code() not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), (
            name,
            request,
            exc,
        )
        return f"{exc.code()}: {exc.details()}"


@pytest.fixture(params=["globus-endpoint", "local-endpoint"])
def sweep_daemon(
    request: pytest.FixtureRequest, standin: StandIn, tmp_path: Path
) -> Iterator[tuple[Daemon, str]]:
    """A daemon with the stand-in's service account, sent requests for the Globus
    endpoint; or one without a login (so login RPCs go further), for the local one."""
    remote = request.param == "globus-endpoint"
    env = standin.env(service_account=remote)
    d = Daemon(tmp_path / "state", workers=1, daemon_env=env, extra_args=unspaced(tmp_path))
    try:
        yield d.start(), standin.endpoint_id if remote else "local"
    finally:
        d.close()


def test_paths_in_request_fields_reach_no_file(
    sweep_daemon: tuple[Daemon, str],
    standin: StandIn,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    d, endpoint = sweep_daemon
    assert d.process is not None
    sentinel = Path(f"/tmp/gcg-bait-{uuid.uuid4().hex[:8]}")
    sentinel.mkdir(mode=0o755)
    bait = "bait-" + uuid.uuid4().hex
    (sentinel / "bait").write_text(bait)
    values = path_values(sentinel)
    try:
        with Client(socket_path=d.socket_path) as client:
            fid = client.register_function(echo)
            tid = client.run(1, endpoint_id=endpoint, function_id=fid)
            assert client.get_result(tid, wait=WAIT) == 1
        roots, skip = (sentinel, tmp_path, d.socket_dir), (d.state_dir, d.log_path)
        before = snapshot(*roots, skip=skip)
        trace = FileCalls.attach(
            [d.process.pid, *children(d.process.pid)], tmp_path_factory.mktemp("strace") / "calls"
        )
        requests = [
            (name, with_value(base, path, value))
            for name, base in base_requests(endpoint, fid, tid).items()
            for path in text_fields(base)
            for value in values
        ]
        # Concurrently: the daemon merges the Globus submissions, as it would
        # for many clients, instead of spacing out one request per call.
        with stub_for(d) as stub, ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(lambda r, s=stub: call(s, *r), requests))
        file_calls = trace.stop() if trace else []
        assert len(answers) > 400
        assert snapshot(*roots, skip=skip) == before
        assert (sentinel / "bait").read_text() == bait
        assert only_state_names(d.state_dir)
        odd = [str(p) for p in d.state_dir.rglob("*") if sentinel.name in p.name]
        assert not odd
        assert d.stop() == 0
        assert not [a for a in answers if bait in a]
        assert bait not in d.log()
        # Nothing the requests sent named a file in any file system call
        # (there were some: the trace works)...
        assert file_calls or trace is None
        named = [line for line in file_calls if sentinel.name in line]
        assert not named, named[:5]
        # ...nor a path at Globus: every request went to a known route.
        stray = [r.path for r in standin.stats.records if r.route is None or ".." in r.path]
        assert not stray, stray[:5]
        traced = f"{len(file_calls)} file system calls traced" if trace else "no strace"
        print(f"\n{len(answers)} requests with paths; {traced}")
    finally:
        shutil.rmtree(sentinel, ignore_errors=True)
