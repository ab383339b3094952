"""docs/configuration.md, ``gcgated --help`` and the config loader say the same.

The settings table of configuration.md (and globus.md's for the Globus backend's
tunables) is what an admin reads; ``gcgated --help`` is what they see at the
terminal; :mod:`gcgated.config` is what runs. These tests parse the two pages
and the help text and hold them against the loader itself: every setting is
documented once, its documented environment variable and flag are the ones the
loader reads (checked by loading through them, not by reading tables back),
its documented default is the loader's, and the settings a SIGHUP applies are
the ones the reload applies.
"""

from __future__ import annotations

import math
import re
from dataclasses import fields
from pathlib import Path

import pytest
from gcgated.cli.daemon import parse_args
from gcgated.config import ENV_VARS, FILE_ONLY, Config, load_config
from gcgated.daemon import RELOADABLE

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parent.parent
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
GLOBUS = (ROOT / "docs" / "globus.md").read_text()
#: Flags of gcgated that are not settings.
NOT_SETTINGS = {"-h", "--help", "--version", "--config", "--check-config"}
#: Sample values a flag or variable is loaded with, by setting (others take "1").
SAMPLES = {
    "socket_path": "/tmp/gcg-doc/s.sock",
    "state_dir": "/tmp/gcg-doc/state",
    "log_level": "ERROR",
    "log_level_libraries": "ERROR",
    "log_format": "json",
    "group": "0",
    "metrics_listen": "127.0.0.1:9999",
    "compute_url": "https://compute.example.org",
    "store_size_limit_mb": "7",
}

SETTINGS = {f.name: f for f in fields(Config) if f.metadata.get("setting", True)}


@pytest.fixture(autouse=True)
def no_outside_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Load as if nothing were configured: no GCGATE_* variables, no config file."""
    for var in ENV_VARS.values():
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GCGATE_CONFIG", str(tmp_path / "absent.toml"))


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def table(text: str, heading: str) -> list[list[str]]:
    """The rows of the first table under ``heading`` (a Markdown heading's text)."""
    section = text.split(f"\n{heading}\n", 1)[1]
    rows = []
    for line in section.splitlines():
        if line.startswith("|"):
            rows.append(cells(line))
        elif rows:
            break
    return [row for row in rows[1:] if not set(row[0]) <= {"-", " "}]


def names(cell: str) -> list[str]:
    """The backticked names in a cell: `a`, `b` -> [a, b]."""
    return re.findall(r"`([^`]+)`", cell)


#: configuration.md's settings: setting -> (env cell, flag cell, default cell).
DOCUMENTED: dict[str, tuple[str, str, str]] = {}
for row in table(CONFIGURATION, "## Settings"):
    for position, name in enumerate(names(row[0])):
        env = names(row[1])
        DOCUMENTED[name] = (env[position] if env else "", row[2], row[3])
#: globus.md's settings table: setting -> default cell (one value per name).
GLOBUS_DEFAULTS: dict[str, str] = {}
for row in table(GLOBUS, "## Settings"):
    for name, default in zip(names(row[0]), row[1].split(", "), strict=True):
        GLOBUS_DEFAULTS[name] = default


def help_text(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    return capsys.readouterr().out


def same_default(documented: str, actual: object) -> bool:
    """A default cell that is a plain value equals the loader's default (prose, such
    as "see above", is not compared)."""
    text = documented.replace(",", "").strip()
    if text in ("none", "production"):
        return actual == ""
    if text in ("true", "false"):
        return actual is (text == "true")
    try:
        number = float(text)
    except ValueError:
        return isinstance(actual, str) and text == actual
    return isinstance(actual, (int, float)) and math.isclose(number, actual)


def test_every_setting_is_documented_and_every_documented_name_is_a_setting() -> None:
    assert set(DOCUMENTED) == set(SETTINGS)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_documented_environment_variable_is_the_one_read(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = DOCUMENTED[name][0]
    if name in FILE_ONLY:
        # The service account is read by gcgated.credentials, never as a setting.
        assert env == f"GLOBUS_COMPUTE_{name.upper()}"
        assert name not in ENV_VARS
        return
    assert ENV_VARS.get(name, "") == env, f"{name}: docs say {env or 'no variable'}"
    if env:
        monkeypatch.setenv(env, SAMPLES.get(name, "1"))
        assert load_config(None, {}).sources.get(name) == "env"


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_documented_flag_is_the_one_parsed(name: str) -> None:
    flag = DOCUMENTED[name][1]
    if not flag.startswith("`--"):
        assert flag in ("", "none, by design"), f"{name}: unexpected flag cell {flag!r}"
        assert name not in vars(parse_args([])), f"{name} has a flag the docs do not list"
        return
    args = parse_args([flag.strip("`"), SAMPLES.get(name, "1")])
    assert getattr(args, name, None) is not None, f"{flag} does not set {name}"
    assert load_config(None, {name: getattr(args, name)}).sources[name] == "flag"


def test_help_lists_exactly_the_documented_flags(capsys: pytest.CaptureFixture[str]) -> None:
    shown = set(re.findall(r"(?m)^  (-{1,2}[a-z][a-z-]*)", help_text(capsys)))
    documented = {cell.strip("`") for _, cell, _ in DOCUMENTED.values() if cell.startswith("`--")}
    assert shown - NOT_SETTINGS == documented


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_documented_default_is_the_loaders(name: str) -> None:
    documented = DOCUMENTED[name][2]
    if documented.startswith("see [globus.md"):
        documented = GLOBUS_DEFAULTS[name]
    documented = documented.split(" = ")[0]  # "0 = one per CPU"
    if documented.startswith("see "):
        pytest.skip(f"{name}: the default is described, not given ({documented})")
    actual = getattr(Config(), name)
    actual = actual.get_secret_value() if hasattr(actual, "get_secret_value") else actual
    assert same_default(documented, actual), f"{name}: docs say {documented}, loader {actual!r}"


def test_reloadable_settings_are_the_ones_documented(capsys: pytest.CaptureFixture[str]) -> None:
    """configuration.md lists what a SIGHUP applies; so does the help's epilog."""
    listed = re.search(
        r"SIGHUP re-reads the config file and applies\n?(.*?)\(both", CONFIGURATION, re.S
    )
    assert listed, "configuration.md no longer says what SIGHUP applies"
    assert set(names(listed.group(1))) == set(RELOADABLE)
    epilog = " ".join(help_text(capsys).split())
    for phrase in ("log settings", "both retentions", "store size limit", "shutdown grace"):
        assert phrase in epilog, f"gcgated --help does not say SIGHUP applies the {phrase}"
