"""The benchmark harness runs end to end (``python -m bench --quick --json``).

Speed is not asserted here (the machine may be loaded): only that every figure
ran against its baseline and produced sane numbers, and that a quick run leaves
docs/benchmarks.md alone.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"

#: Every figure of issue 6, by the name ``--only`` takes.
FIGURES = {
    "roundtrip",
    "batch",
    "executor",
    "remote",
    "remote_latency",
    "cached",
    "reuse",
    "purge",
    "memory",
    "imports",
}


@pytest.mark.slow
def test_quick_run_measures_every_figure() -> None:
    doc_before = DOC.read_bytes() if DOC.exists() else None
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)

    assert report["quick"] is True
    assert set(report["figures"]) == FIGURES
    assert {"CPU", "cores", "RAM", "kernel", "Python", "grpcio", "diskcache"} <= set(
        report["machine"]
    )
    rows = report["rows"]
    assert {r["figure"] for r in rows} == FIGURES
    for row in rows:
        assert math.isfinite(row["value"]) and row["value"] > 0, row
        if row["baseline"] is not None:
            assert row["baseline"] > 0, row
            assert row["ratio"] == pytest.approx(row["value"] / row["baseline"]), row
        if row["target"] is not None:
            assert row["passed"] in (True, False), row
    # Every figure but memory has a baseline measured beside it.
    with_baseline = {r["figure"] for r in rows if r["baseline"] is not None}
    assert with_baseline == FIGURES - {"memory"}
    assert (DOC.read_bytes() if DOC.exists() else None) == doc_before
