"""Client import time: a fresh interpreter importing gcgate, against globus_compute_sdk.

Each sample is the wall time of a whole ``python -c "<statement>"`` process, as a
user's script pays it (interpreter start included, identical on both sides); the
median of ``n`` runs, the sides alternating. ``python -c pass`` is shown for scale.
"""

from __future__ import annotations

import subprocess
import sys

from bench.common import Row, Settings, Target, median, timed

SDK = "import globus_compute_sdk"
STATEMENTS = ("import gcgate", "from gcgate import Client")


def _run(statement: str) -> float:
    return timed(lambda: subprocess.run([sys.executable, "-c", statement], check=True, timeout=120))


def imports(settings: Settings) -> list[Row]:
    n = settings.pick(10, 2)
    # One untimed run of each first, so every side starts with a warm page cache.
    for statement in ("pass", SDK, *STATEMENTS):
        _run(statement)
    samples: dict[str, list[float]] = {s: [] for s in ("pass", SDK, *STATEMENTS)}
    for _ in range(n):
        for statement in samples:
            samples[statement].append(_run(statement))
    ms = {s: median(v) * 1e3 for s, v in samples.items()}
    rows = [
        Row(
            "imports",
            f'python -c "{statement}"',
            "ms",
            ms[statement],
            ms[SDK],
            Target("<=", 0.5),
            SDK,
            f"median of {n}",
        )
        for statement in STATEMENTS
    ]
    rows.append(
        Row("imports", 'python -c "pass"', "ms", ms["pass"], note="interpreter start, for scale")
    )
    return rows
