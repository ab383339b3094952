"""The ``gcgate`` command line, shipped with the client it is built on.

It talks to the daemon only through :class:`gcgate.Client`, so it belongs with
the client, not the daemon. Its colours, progress bar and shell completion need
``rich`` and ``shtab``, which a program using the client has no use for: they
come with the ``cli`` extra (``pip install 'gcgate[cli]'``), and without them
the console script says so instead of failing with a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

#: What the ``cli`` extra installs (client/pyproject.toml), by import name.
CLI_EXTRA_MODULES = ("rich", "shtab")


def main(argv: Sequence[str] | None = None) -> int:
    """The ``gcgate`` console script: run one command (see :mod:`gcgate.cli.commands`),
    or exit 1 naming the missing extra where rich or shtab are not installed."""
    try:
        from gcgate.cli.commands import main as run
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.partition(".")[0] not in CLI_EXTRA_MODULES:
            raise
        print(
            f"gcgate: the command line needs the client's 'cli' extra ({exc.name} is not"
            " installed): pip install 'gcgate[cli]'",
            file=sys.stderr,
        )
        return 1
    return run(argv)
