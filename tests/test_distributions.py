"""The repository's two distributions, built and installed as users and admins get them.

- ``gcgate`` (client/pyproject.toml): the thin client and the ``gcgate`` command,
  installed into users' analysis environments, so what it pulls in matters. Its
  wheel goes into a fresh venv, which must then hold gcgate, grpcio, protobuf and
  dill (and what grpcio itself requires) and nothing else; from there, with none of
  the daemon's dependencies present, it imports and runs tasks on a real daemon
  (started from this run's venv), and its command line without the ``cli`` extra
  says how to get it.
- ``gcgated`` (pyproject.toml): the daemon, which depends on the client of its own
  version for the wire contract.

Wheels are built from copies of the sources (nothing is written into the working
tree) in one pip command, with build isolation, exactly as ``pip install`` does.
"""

from __future__ import annotations

import ast
import email.message
import email.parser
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import gcgate
import pytest
from harness import Daemon

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the daemon's tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
CLIENT_SOURCES = ROOT / "client" / "gcgate"

#: What a fresh venv may gain from installing the client wheel: the client, its three
#: requirements, and typing-extensions, which grpcio requires (not a choice of ours).
CLIENT_CLOSURE = {"gcgate", "grpcio", "protobuf", "dill", "typing-extensions"}
#: The daemon's dependencies and the CLI extra, none of which a user's venv gets.
ABSENT_FROM_CLIENT_VENV = (
    "gcgated",
    "diskcache",
    "globus_sdk",
    "platformdirs",
    "grpc_health",
    "grpc_reflection",
    "aio_pika",
    "globus_compute_common",
    "globus_compute_sdk",
    "rich",
    "shtab",
)
#: Import name -> the distribution that provides it, for the client's third-party imports.
DISTRIBUTION_OF = {"grpc": "grpcio", "google": "protobuf", "dill": "dill"}
#: Build copies leave out what a build or a run in the working tree left behind.
IGNORED = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
PIP_TIMEOUT = 300


def canonical(name: str) -> str:
    """A distribution name as PEP 503 compares them (``typing_extensions`` is
    ``typing-extensions``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(requirements: Iterable[str]) -> set[str]:
    """The distribution names of requirement strings, extras and markers dropped."""
    return {canonical(re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0]) for req in requirements}


def run(command: list[str | Path], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run ``command`` and fail the test with its output if it fails."""
    done = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT,
        **kwargs,  # type: ignore[call-overload]
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done


def isolated(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without the variables that would point Python into another venv."""
    return {k: v for k, v in env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


@dataclass
class Wheels:
    client: Path
    daemon: Path

    @staticmethod
    def read(wheel: Path, name: str) -> str:
        """A file of the wheel's ``.dist-info`` (``entry_points.txt``, ...)."""
        with zipfile.ZipFile(wheel) as zf:
            (path,) = [n for n in zf.namelist() if n.endswith(f".dist-info/{name}")]
            return zf.read(path).decode()

    @staticmethod
    def metadata(wheel: Path) -> email.message.Message:
        return email.parser.Parser().parsestr(Wheels.read(wheel, "METADATA"))

    @staticmethod
    def packages(wheel: Path) -> set[str]:
        """The top-level names a wheel installs (its .dist-info aside)."""
        with zipfile.ZipFile(wheel) as zf:
            tops = {name.split("/")[0] for name in zf.namelist()}
        return {top for top in tops if not top.endswith(".dist-info")}


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Wheels:
    """Both distributions' wheels, built from copies of their sources."""
    src = tmp_path_factory.mktemp("src")
    shutil.copytree(ROOT / "client", src / "client", ignore=IGNORED)
    shutil.copytree(ROOT / "daemon", src / "daemon" / "daemon", ignore=IGNORED)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / "daemon" / name)
    out = tmp_path_factory.mktemp("wheels")
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", out]
    run([*pip_wheel, src / "client", src / "daemon"])
    (client,) = out.glob("gcgate-*.whl")
    (daemon,) = out.glob("gcgated-*.whl")
    return Wheels(client, daemon)


@dataclass
class ClientVenv:
    """A fresh venv with only the client wheel installed into it."""

    path: Path
    #: Distributions the venv had before the wheel (pip, and setuptools on 3.11).
    baseline: set[str]

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"


def installed(venv: Path) -> set[str]:
    """The distributions the venv's Python sees, by canonical name (run in the venv's
    directory: ``-c`` puts the working directory on sys.path)."""
    code = "import importlib.metadata as m; print(*(d.name for d in m.distributions()))"
    done = run([venv / "bin" / "python", "-c", code], env=isolated(os.environ), cwd=venv)
    return {canonical(name) for name in done.stdout.split()}


@pytest.fixture(scope="session")
def client_venv(tmp_path_factory: pytest.TempPathFactory, wheels: Wheels) -> ClientVenv:
    venv = ClientVenv(tmp_path_factory.mktemp("client-venv"), set())
    run([sys.executable, "-m", "venv", venv.path])
    venv.baseline = installed(venv.path)
    run([venv.python, "-m", "pip", "install", "--quiet", wheels.client], env=isolated(os.environ))
    return venv


# ------------------------------------------------------------------- the client


@pytest.mark.slow
def test_client_wheel_installs_only_grpcio_protobuf_and_dill(client_venv: ClientVenv) -> None:
    added = installed(client_venv.path) - client_venv.baseline
    assert added == CLIENT_CLOSURE


@pytest.mark.slow
def test_client_without_daemon_dependencies_runs_tasks_on_a_daemon(
    client_venv: ClientVenv, daemon: Daemon
) -> None:
    script = textwrap.dedent(
        f"""
        import importlib.util, json
        present = [m for m in {ABSENT_FROM_CLIENT_VENV!r} if importlib.util.find_spec(m)]
        assert not present, present

        from gcgate import Client, Executor

        def double(x):
            return 2 * x

        with Client() as gcc:
            fid = gcc.register_function(double)
            tid = gcc.run(21, endpoint_id="local", function_id=fid)
            result = gcc.get_result(tid, wait=60)
        with Executor(endpoint_id="local") as ex:
            mapped = list(ex.map(double, [1, 2, 3], timeout=60))
        print(json.dumps({{"result": result, "mapped": mapped}}))
        """
    )
    done = run([client_venv.python, "-c", script], env=isolated(daemon.env), cwd=client_venv.path)
    assert json.loads(done.stdout) == {"result": 42, "mapped": [2, 4, 6]}


@pytest.mark.slow
def test_cli_without_the_extra_says_how_to_get_it(client_venv: ClientVenv) -> None:
    done = subprocess.run(
        [client_venv.path / "bin" / "gcgate", "status"],
        capture_output=True,
        text=True,
        timeout=60,
        env=isolated(os.environ),
        cwd=client_venv.path,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert "pip install 'gcgate[cli]'" in done.stderr
    assert "Traceback" not in done.stderr


def module_imports(path: Path) -> set[str]:
    """The top-level names of the absolute imports in a source file, wherever they are."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
    return names


@pytest.mark.fast
def test_client_imports_only_what_it_declares() -> None:
    """Every import in the client is the standard library, gcgate or a requirement
    client/pyproject.toml declares; rich and shtab only in the CLI, which is what the
    ``cli`` extra covers. An allow-list, so a new undeclared import fails here, not in
    a user's venv (.importlinter's thin-client contract forbids the daemon's packages
    by name). Function-level imports count too: they fail just the same where the
    package is missing."""
    project = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]
    required = requirement_names(project["dependencies"])
    cli_extra = requirement_names(project["optional-dependencies"]["cli"])
    assert required == {"grpcio", "protobuf", "dill"}
    assert cli_extra == {"rich", "shtab"}
    for path in CLIENT_SOURCES.rglob("*.py"):
        allowed = required | (
            cli_extra if "cli" in path.relative_to(CLIENT_SOURCES).parts else set()
        )
        third_party = module_imports(path) - set(sys.stdlib_module_names) - {"gcgate"}
        undeclared = {
            name for name in third_party if DISTRIBUTION_OF.get(name, name) not in allowed
        }
        assert not undeclared, f"{path.relative_to(ROOT)} imports {sorted(undeclared)}"


# --------------------------------------------------------------- both, and the daemon


@pytest.mark.slow
def test_each_wheel_installs_only_its_own_package(wheels: Wheels) -> None:
    assert Wheels.packages(wheels.client) == {"gcgate"}
    assert Wheels.packages(wheels.daemon) == {"gcgated"}
    with zipfile.ZipFile(wheels.client) as zf:
        names = set(zf.namelist())
    assert {"gcgate/py.typed", "gcgate/v1/gateway_pb2.pyi", "gcgate/cli/__main__.py"} <= names
    assert "gcgate = gcgate.cli:main" in Wheels.read(wheels.client, "entry_points.txt")
    scripts = Wheels.read(wheels.daemon, "entry_points.txt")
    assert "gcgated = gcgated.cli.daemon:main" in scripts
    assert "gcgate =" not in scripts


@pytest.mark.slow
def test_daemon_requires_the_client_of_its_own_version(wheels: Wheels) -> None:
    client, daemon = Wheels.metadata(wheels.client), Wheels.metadata(wheels.daemon)
    assert client["Name"] == "gcgate"
    assert daemon["Name"] == "gcgated"
    assert client["Version"] == daemon["Version"] == gcgate.__version__
    assert f"gcgate[cli]=={gcgate.__version__}" in daemon.get_all("Requires-Dist")
