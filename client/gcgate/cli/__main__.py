"""``python -m gcgate.cli``: the ``gcgate`` command where the console script is not
on PATH (and what tests run as a subprocess of the venv's interpreter)."""

import sys

from gcgate.cli import main

sys.exit(main())
