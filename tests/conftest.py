"""Shared fixtures: a real daemon per test module, clients bound to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Daemon


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One running gcgated for the whole module (stopped cleanly at the end)."""
    d = Daemon(tmp_path_factory.mktemp("daemon") / "state").start()
    try:
        yield d
    finally:
        if d.process is not None:
            assert d.stop() == 0, d.log()
        d.close()


@pytest.fixture
def fresh_daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A daemon of its own for tests that stop, kill or restart it."""
    d = Daemon(tmp_path / "state").start()
    try:
        yield d
    finally:
        d.close()


@pytest.fixture
def client(daemon: Daemon):
    from gcgate import Client

    with Client(socket_path=daemon.socket_path) as c:
        yield c
