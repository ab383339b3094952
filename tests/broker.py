"""A RabbitMQ node of its own, for tests and the bench: the AMQP broker results are
pushed to, as Globus Compute pushes them (see :mod:`standin.compute`).

Debian's ``rabbitmq-server`` (3.10), started on loopback only, with everything it
writes under one base directory:

* free ports picked on 127.0.0.1 for AMQP (and AMQPS with ``tls=True``), the Erlang
  distribution (``RABBITMQ_DIST_PORT``, bound to 127.0.0.1 too) and an ``epmd`` of
  its own (``ERL_EPMD_PORT``), so a system RabbitMQ or epmd on the machine (5672,
  4369, node ``rabbit@host``) is neither used nor disturbed;
* a unique node name (``gcgate-<pid>-<n>@localhost``), its own ``HOME`` (so its own
  ``.erlang.cookie``), data (``RABBITMQ_MNESIA_BASE``), logs, config file, empty
  ``rabbitmq-env.conf`` and enabled-plugins file: nothing under ``/etc/rabbitmq`` or
  ``/var/lib/rabbitmq`` is read or written;
* a trimmed ``RABBITMQ_HOME``: the server's own scripts with a plugins directory
  holding only the applications the broker needs (``rabbit`` and its dependencies,
  found from their ``.app`` files; no management plugin), because the broker loads
  every module of every application in that directory while it boots;
* a classic Erlang-terms config file (no cuttlefish translation at boot).

With those, a start takes about 3 s on a 2-CPU machine (6 s as Debian runs it),
most of it the VM booting and loading its ~1000 modules; a restart about the same,
a graceful stop 0.1-0.3 s. TLS adds about 0.3 s. The node and its epmd are tied to
the process that started them (``setpriv --pdeathsig``): a test run killed outright
leaves no broker behind.

Administration (users, passwords, connections, queues) goes to the running node
through ``erl_call`` (Erlang's C distribution client, a few milliseconds a call;
``rabbitmqctl`` boots a whole VM, about a second), calling the same internal
functions ``rabbitmqctl`` calls. That makes :meth:`Broker.user` cheap enough for
an HTTP handler.

Quick reference::

    with Broker(tmp_path / "rabbit") as b:        # start() blocks until AMQP answers
        user, pw = b.user("identity-id")           # created on first use
        url = b.url_for(user, pw)                  # amqp://user:pw@127.0.0.1:port/%2F
        b.rotate_password(user)                    # old password refused from now on
        b.close_connections()                      # every client connection dropped
        b.queue_counts("q")                        # (ready, unacked) or None
        b.delete_queue("q")
        b.restart()                                # same ports, data kept
        b.kill()                                   # SIGKILL, as in a crash
        b.user_password(user), b.admin_url         # current credentials; the administrator
        b.eval("rabbit:status().")                 # any Erlang expression on the node

    Broker(path, tls=True)                         # + AMQPS: b.url_for(u, p, tls=True),
                                                   #   b.ca_file, b.tls_env()
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import re
import secrets
import shutil
import signal
import socket
import string
import subprocess
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
#: How long one ``erl_call`` may take before it counts as failed.
CALL_TIMEOUT = 30.0
ADMIN_USER = "gcgate-admin"
ACTING_USER = "gcgate-tests"

_node_numbers = itertools.count(1)


class BrokerError(RuntimeError):
    """The broker could not be started or did not do what it was asked."""


def rabbitmq_home() -> Path | None:
    """The installed RabbitMQ server's home (``.../rabbitmq_server-<version>``),
    or ``None`` if ``rabbitmq-server`` is not installed.

    ``GCGATE_RABBITMQ_HOME`` overrides the search.
    """
    env = os.environ.get("GCGATE_RABBITMQ_HOME")
    candidates = [env] if env else sorted(glob.glob("/usr/lib/rabbitmq/lib/rabbitmq_server-*"))
    for c in reversed(candidates):
        home = Path(c)
        if (home / "sbin" / "rabbitmq-server").exists() and (home / "plugins").is_dir():
            return home
    return None


def erl_call_path() -> str | None:
    """Erlang's ``erl_call`` (in ``erts-*/bin`` since OTP 23, ``erl_interface`` before)."""
    found = shutil.which("erl_call")
    if found:
        return found
    for pattern in (
        "/usr/lib/erlang/erts-*/bin/erl_call",
        "/usr/lib/erlang/lib/erl_interface-*/bin/erl_call",
        "/usr/local/lib/erlang/erts-*/bin/erl_call",
    ):
        hits = sorted(glob.glob(pattern))
        if hits:
            return hits[-1]
    return None


def missing() -> str | None:
    """Why a :class:`Broker` cannot run here, or ``None`` if it can."""
    if rabbitmq_home() is None:
        return "rabbitmq-server is not installed (apt-get install rabbitmq-server)"
    for tool in ("erl", "epmd"):
        if shutil.which(tool) is None:
            return f"{tool} (Erlang) is not on PATH"
    if erl_call_path() is None:
        return "erl_call (Erlang's erlang-base package) was not found"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tied_to_us(command: list[str]) -> list[str]:
    """``command`` made to get SIGTERM when this process dies (``setpriv
    --pdeathsig``), so a test run killed outright leaves no broker behind. Only from
    the main thread: the signal follows the thread that started the child."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or threading.current_thread() is not threading.main_thread():
        return command
    return [setpriv, "--pdeathsig", "TERM", "--", *command]


def _bindable(port: int) -> bool:
    """Whether ``port`` on 127.0.0.1 is free to listen on now."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _accepts(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is still running (zombies, which hold no
    ports or files and wait for init to reap them, do not count)."""
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _erl_binary(value: str) -> str:
    """``value`` as an Erlang binary literal (byte list form: nothing to escape)."""
    data = value.encode()
    return "<<" + ",".join(str(b) for b in data) + ">>" if data else "<<>>"


def _erl_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _password() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(24))


def _app_dependencies(plugins: Path, roots: Iterable[str]) -> list[Path]:
    """The directories under ``plugins`` of ``roots`` and everything they depend on."""
    apps: dict[str, tuple[Path, list[str]]] = {}
    for app_file in plugins.glob("*/ebin/*.app"):
        text = app_file.read_text(errors="replace")
        deps: list[str] = []
        for key in ("applications", "included_applications"):
            m = re.search(r"\{" + key + r",\s*\[([^\]]*)\]", text)
            if m:
                deps += [d.strip() for d in m.group(1).split(",") if d.strip()]
        apps[app_file.stem] = (app_file.parent.parent, deps)
    needed: dict[str, Path] = {}
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in needed or name not in apps:
            continue  # OTP applications live in the Erlang install, not here
        needed[name] = apps[name][0]
        stack += apps[name][1]
    return sorted(needed.values())


def make_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A self-signed CA and a server certificate for ``localhost`` / ``127.0.0.1``
    signed by it (EC P-256: fast to make). Returns ``(ca, cert, key)`` PEM paths."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=30)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gcgate test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    ca_path, cert_path, key_path = (directory / n for n in ("ca.pem", "server.pem", "server.key"))
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(key_path, 0o600)
    return ca_path, cert_path, key_path


class Broker:
    """One RabbitMQ node under ``base_dir`` on free loopback ports (see the module doc).

    ``tls=True`` adds an AMQPS listener (:attr:`amqps_port`) with a certificate for
    ``localhost`` and ``127.0.0.1`` signed by a CA made for it (:attr:`ca_file`).
    """

    def __init__(
        self, base_dir: Path, *, tls: bool = False, start_timeout: float = START_TIMEOUT
    ) -> None:
        why = missing()
        if why is not None:
            raise BrokerError(why)
        self.base_dir = Path(base_dir)
        self.tls = tls
        self.start_timeout = start_timeout
        self.node = f"gcgate-{os.getpid()}-{next(_node_numbers)}@localhost"
        self.amqp_port = free_port()
        self.amqps_port = free_port() if tls else None
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.admin = (ADMIN_USER, _password())
        self.cookie = "".join(secrets.choice(string.ascii_uppercase) for _ in range(20))
        self.ca_file: Path | None = None
        self._erl_call = erl_call_path() or "erl_call"
        self._server: subprocess.Popen[bytes] | None = None
        self._epmd: subprocess.Popen[bytes] | None = None
        #: identity -> (username, password), as handed out by :meth:`user`.
        self._users: dict[str, tuple[str, str]] = {}
        self._passwords: dict[str, str] = {}
        #: Serializes user creation (the stand-in calls :meth:`user` from HTTP threads).
        self._users_lock = threading.Lock()
        self._prepared = False
        #: Seconds the last :meth:`start` took (launch to AMQP accepting logins).
        self.last_start_seconds: float | None = None

    # ------------------------------------------------------------ paths

    @property
    def home(self) -> Path:
        return self.base_dir / "home"

    @property
    def rabbitmq_home(self) -> Path:
        return self.base_dir / "rabbitmq"

    @property
    def log_dir(self) -> Path:
        return self.base_dir / "log"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.node}.log"

    @property
    def console_path(self) -> Path:
        return self.base_dir / "console.log"

    def _prepare(self) -> None:
        """Write the base dir: HOME and cookie, trimmed RABBITMQ_HOME, config, TLS files."""
        if self._prepared:
            return
        for d in (self.home, self.log_dir, self.base_dir / "mnesia"):
            d.mkdir(parents=True, exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        cookie.write_text(self.cookie)
        os.chmod(cookie, 0o400)

        source = rabbitmq_home()
        assert source is not None
        rhome = self.rabbitmq_home
        (rhome / "plugins").mkdir(parents=True, exist_ok=True)
        shutil.copytree(source / "sbin", rhome / "sbin", dirs_exist_ok=True)
        if (source / "escript").exists() and not (rhome / "escript").exists():
            (rhome / "escript").symlink_to(source / "escript")
        for app_dir in _app_dependencies(source / "plugins", ["rabbit", "rabbitmq_prelaunch"]):
            link = rhome / "plugins" / app_dir.name
            if not link.exists():
                link.symlink_to(app_dir)

        (self.base_dir / "rabbitmq-env.conf").write_text("")
        (self.base_dir / "enabled_plugins").write_text("[].\n")
        self._write_config()
        self._prepared = True

    def _write_config(self) -> None:
        rabbit = [
            f'{{tcp_listeners, [{{"127.0.0.1", {self.amqp_port}}}]}}',
            f"{{default_user, {_erl_binary(self.admin[0])}}}",
            f"{{default_pass, {_erl_binary(self.admin[1])}}}",
            "{default_user_tags, [administrator]}",
            '{default_permissions, [<<".*">>, <<".*">>, <<".*">>]}',
            "{loopback_users, []}",
            "{log, [{file, [{level, info}]}, {console, [{enabled, false}]}]}",
        ]
        if self.tls:
            ca, cert, key = make_tls_files(self.base_dir / "tls")
            self.ca_file = ca
            rabbit += [
                f'{{ssl_listeners, [{{"127.0.0.1", {self.amqps_port}}}]}}',
                "{ssl_options, ["
                f"{{cacertfile, {_erl_string(str(ca))}}}, "
                f"{{certfile, {_erl_string(str(cert))}}}, "
                f"{{keyfile, {_erl_string(str(key))}}}, "
                "{verify, verify_none}, {fail_if_no_peer_cert, false}]}",
            ]
        else:
            rabbit.append("{ssl_listeners, []}")
        text = "[\n {rabbit, [\n   " + ",\n   ".join(rabbit) + "\n ]}\n].\n"
        (self.base_dir / "rabbitmq.config").write_text(text)

    def _env(self) -> dict[str, str]:
        b = self.base_dir
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": str(self.home),
            "RABBITMQ_HOME": str(self.rabbitmq_home),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(b / "rabbitmq.config"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(b / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(b / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(b / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(b / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.log_dir),
            "RABBITMQ_PID_FILE": str(b / "rabbitmq.pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    # ------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.poll() is None

    @property
    def pid(self) -> int | None:
        """The server's process (group leader of everything the node runs)."""
        return self._server.pid if self._server is not None else None

    def start(self) -> Broker:
        """Start the node (again on the same ports and data after :meth:`stop` or
        :meth:`kill`); blocks until it accepts AMQP logins."""
        if self.running:
            return self
        self._prepare()
        if not _bindable(self.dist_port):
            # Taken since the last start (an ephemeral port of some client): only
            # this node and its admin calls use it, so another one will do.
            self.dist_port = free_port()
        t0 = time.monotonic()
        deadline = t0 + self.start_timeout
        self._start_epmd(deadline)
        env = self._env()
        with open(self.console_path, "ab") as out:
            self._server = subprocess.Popen(
                _tied_to_us([str(self.rabbitmq_home / "sbin" / "rabbitmq-server")]),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.base_dir,
                start_new_session=True,
            )
        self._wait_amqp(deadline)
        self.last_start_seconds = time.monotonic() - t0
        return self

    def _start_epmd(self, deadline: float) -> None:
        if self._epmd is not None and self._epmd.poll() is None:
            return
        epmd = shutil.which("epmd") or "epmd"
        self._epmd = subprocess.Popen(
            _tied_to_us([epmd, "-port", str(self.epmd_port), "-address", "127.0.0.1"]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        while not _accepts(self.epmd_port, 0.2):
            if self._epmd.poll() is not None:
                raise BrokerError(f"epmd on port {self.epmd_port} exited: {self._epmd.returncode}")
            if time.monotonic() > deadline:
                raise BrokerError(f"epmd did not listen on port {self.epmd_port}")
            time.sleep(0.01)

    def _wait_amqp(self, deadline: float) -> None:
        import pika
        import pika.exceptions

        params = pika.URLParameters(self.url_for(*self.admin))
        params.connection_attempts = 1
        params.socket_timeout = 2
        params.blocked_connection_timeout = 2
        while True:
            assert self._server is not None
            if self._server.poll() is not None:
                code = self._server.returncode
                self._server = None
                raise BrokerError(
                    f"rabbitmq-server ({self.node}) exited with {code} while starting:\n"
                    + self.log_tail()
                )
            if _accepts(self.amqp_port, 0.2):
                try:
                    pika.BlockingConnection(params).close()
                    return
                except pika.exceptions.AMQPError:
                    pass
            if time.monotonic() > deadline:
                self.kill()
                raise BrokerError(
                    f"rabbitmq-server ({self.node}) did not accept AMQP logins on"
                    f" 127.0.0.1:{self.amqp_port} within {self.start_timeout:g} s:\n"
                    + self.log_tail()
                )
            time.sleep(0.02)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Graceful shutdown, then SIGKILL for the node's process group if that takes
        longer than ``timeout``; epmd is stopped too.

        Graceful is what ``rabbitmqctl stop`` does for the broker (the ``rabbit``
        application stops: clients get CONNECTION_FORCED, queues and message stores
        are synced and closed; then Mnesia), after which the VM halts at once rather
        than stopping its remaining applications one by one (0.3 s instead of 1.1 s
        for SIGTERM). If the node cannot be reached, SIGTERM."""
        if self.running:
            try:
                self.eval(
                    "spawn(fun() -> rabbit:stop(), mnesia:stop(), erlang:halt(0) end), ok.",
                    timeout=5,
                )
            except BrokerError:
                assert self._server is not None
                with contextlib.suppress(ProcessLookupError):
                    self._server.send_signal(signal.SIGTERM)
        server, self._server = self._server, None
        if server is not None:
            if server.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    server.wait(timeout=timeout)
            self._reap_group(server)
        self._stop_epmd()

    def kill(self) -> None:
        """SIGKILL the node's whole process group (a crash: nothing is flushed
        beyond what the broker had already written)."""
        server, self._server = self._server, None
        if server is not None:
            self._reap_group(server)
        self._stop_epmd()

    @staticmethod
    def _reap_group(server: subprocess.Popen[bytes]) -> None:
        """SIGKILL what is left of the process group ``server`` leads, by its id."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(server.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=STOP_TIMEOUT)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _group_alive(server.pid) and time.monotonic() < deadline:
            time.sleep(0.01)  # beam and its port programs go with the group

    def _stop_epmd(self) -> None:
        epmd, self._epmd = self._epmd, None
        if epmd is not None and epmd.poll() is None:
            epmd.kill()
            epmd.wait(timeout=STOP_TIMEOUT)

    def restart(self, *, graceful: bool = True) -> Broker:
        """Stop (or kill) and start again: same node, ports, users and data
        (durable queues and their persistent messages survive)."""
        if graceful:
            self.stop()
        else:
            self.kill()
        return self.start()

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for path in (self.console_path, self.log_path):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {path} ---\n" + "\n".join(text))
        return "\n".join(out) or "(no log written)"

    # ------------------------------------------------------------ administration

    def eval(self, expression: str, timeout: float = CALL_TIMEOUT) -> str:
        """Evaluate Erlang ``expression`` (terminated by ``.``) on the node through
        ``erl_call``; returns the printed result term."""
        if not self.running:
            raise BrokerError(f"broker {self.node} is not running")
        try:
            proc = subprocess.run(
                [
                    self._erl_call,
                    "-address",
                    f"127.0.0.1:{self.dist_port}",
                    "-c",
                    self.cookie,
                    "-timeout",
                    str(max(1, int(timeout))),
                    "-e",
                ],
                input=expression.encode() + b"\n",
                capture_output=True,
                timeout=timeout + 5,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home)},
            )
        except subprocess.TimeoutExpired:
            raise BrokerError(f"erl_call timed out on {self.node}: {expression}") from None
        out = proc.stdout.decode(errors="replace").strip()
        if proc.returncode != 0 or not out.startswith("{ok,"):
            err = proc.stderr.decode(errors="replace").strip()
            raise BrokerError(f"erl_call on {self.node} failed ({expression}): {out} {err}")
        return out[len("{ok,") : -1].strip()

    def user(
        self, identity: str, *, configure: str = ".*", write: str = ".*", read: str = ".*"
    ) -> tuple[str, str]:
        """``(username, password)`` of the broker user for ``identity`` (named
        ``gc-<identity>``), created on first use with the given permissions (regular
        expressions over resource names, RabbitMQ's ``set_permissions``: ``"^$"``
        allows nothing) on vhost ``/``.

        Later calls return the current credentials (after :meth:`rotate_password`,
        the new password) without asking the broker; creating a user takes one
        ``erl_call``, about 10 ms.
        """
        with self._users_lock:
            if identity in self._users:
                return self.user_password(self._users[identity][0])
            name = f"gc-{identity}"
            password = _password()
            u, p, acting = _erl_binary(name), _erl_binary(password), _erl_binary(ACTING_USER)
            perms = ", ".join(_erl_binary(x) for x in (configure, write, read))
            self.eval(
                f"ok = rabbit_auth_backend_internal:add_user({u}, {p}, {acting}),"
                f' ok = rabbit_auth_backend_internal:set_permissions({u}, <<"/">>, {perms},'
                f" {acting}), ok."
            )
            self._users[identity] = (name, password)
            self._passwords[name] = password
            return name, password

    def user_password(self, username: str) -> tuple[str, str]:
        """``(username, current password)`` of a user made by :meth:`user` (or the admin)."""
        if username == self.admin[0]:
            return self.admin
        return username, self._passwords[username]

    def rotate_password(self, username: str) -> str:
        """Give ``username`` a new password; the old one is refused from now on
        (connections already open stay open: see :meth:`close_connections`).
        Returns the new password."""
        password = _password()
        self.eval(
            f"ok = rabbit_auth_backend_internal:change_password({_erl_binary(username)},"
            f" {_erl_binary(password)}, {_erl_binary(ACTING_USER)}), ok."
        )
        self._passwords[username] = password
        if username == self.admin[0]:
            self.admin = (username, password)
        return password

    def close_connections(self, user: str | None = None, reason: str = "test") -> None:
        """Close every client connection (or only those of username ``user``), as
        ``rabbitmqctl close_all_connections`` does; clients see CONNECTION_FORCED."""
        why = _erl_string(f"Closed by gcgate tests: {reason}")
        if user is None:
            self.eval(f"rabbit_networking:close_all_connections({why}), ok.")
        else:
            self.eval(
                f"rabbit_networking:close_all_user_connections({_erl_binary(user)}, {why}), ok."
            )

    def connection_count(self) -> int:
        """Client connections open now."""
        return int(self.eval("length(rabbit_networking:connections())."))

    def _queue_expr(self, name: str, vhost: str, body: str) -> str:
        return (
            f"case rabbit_amqqueue:lookup(rabbit_misc:r({_erl_binary(vhost)}, queue,"
            f" {_erl_binary(name)})) of {{ok, Q}} -> {body}; {{error, not_found}} -> none end."
        )

    def queue_counts(self, name: str, vhost: str = "/") -> tuple[int, int] | None:
        """``(messages ready, messages delivered but not acknowledged)`` of queue
        ``name``, or ``None`` if the broker does not know it."""
        out = self.eval(
            self._queue_expr(
                name,
                vhost,
                "[{_, R}, {_, U}] = rabbit_amqqueue:info(Q, [messages_ready,"
                " messages_unacknowledged]), {R, U}",
            )
        )
        if out == "none":
            return None
        m = re.fullmatch(r"\{(\d+),\s*(\d+)\}", out)
        if not m:
            raise BrokerError(f"unexpected queue info for {name}: {out}")
        return int(m.group(1)), int(m.group(2))

    def queue_exists(self, name: str, vhost: str = "/") -> bool:
        return self.queue_counts(name, vhost) is not None

    def delete_queue(self, name: str, vhost: str = "/") -> bool:
        """Delete queue ``name`` (with its messages; consumers are cancelled).
        ``False`` if there was no such queue."""
        out = self.eval(
            self._queue_expr(
                name,
                vhost,
                f"rabbit_amqqueue:delete(Q, false, false, {_erl_binary(ACTING_USER)}), deleted",
            )
        )
        return out == "deleted"

    # ------------------------------------------------------------ addresses

    def url_for(
        self,
        username: str,
        password: str,
        vhost: str = "/",
        *,
        tls: bool = False,
        ca_in_query: bool = False,
    ) -> str:
        """``amqp://user:pw@127.0.0.1:port/%2F`` (``amqps://`` on the TLS port with
        ``tls=True``; ``ca_in_query`` appends ``?cafile=<ca>``, the form aiormq and
        aio-pika read; pika refuses unknown query keys, so for pika trust the CA
        through ``SSL_CERT_FILE`` instead, see :meth:`tls_env`)."""
        auth = f"{quote(username, safe='')}:{quote(password, safe='')}"
        path = quote(vhost, safe="")
        if not tls:
            return f"amqp://{auth}@127.0.0.1:{self.amqp_port}/{path}"
        if self.amqps_port is None:
            raise BrokerError("this broker was started without tls=True")
        url = f"amqps://{auth}@127.0.0.1:{self.amqps_port}/{path}"
        if ca_in_query:
            url += f"?cafile={quote(str(self.ca_file), safe='/')}"
        return url

    @property
    def admin_url(self) -> str:
        """URL of the administrator (configure, write and read everything)."""
        return self.url_for(*self.admin)

    def tls_env(self) -> dict[str, str]:
        """Environment that makes OpenSSL's default trust (Python's
        ``ssl.create_default_context()``, so pika and aiormq) accept the broker's
        certificate, as a public CA would be for the real service."""
        if self.ca_file is None:
            raise BrokerError("this broker was started without tls=True")
        return {"SSL_CERT_FILE": str(self.ca_file)}

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"Broker<{self.node} amqp={self.amqp_port} {state}>"
