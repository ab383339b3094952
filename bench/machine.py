"""The machine and software a run was measured on, for the report."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

#: Packages whose versions decide the numbers (ours talks gRPC and diskcache;
#: the baselines are the Globus SDKs).
PACKAGES = ("grpcio", "diskcache", "globus-sdk", "globus-compute-sdk", "dill")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def describe() -> dict[str, str]:
    """Name -> value, in the order the report shows them."""
    ram = _ram_gib()
    info = {
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count()),
        "RAM": f"{ram:.1f} GiB" if ram is not None else "unknown",
        "kernel": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
    }
    for name in PACKAGES:
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info[name] = "not installed"
    # Other work on the machine changes every number; the lead re-runs on a quiet one.
    info["load average at start"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    info["gcgate revision"] = revision()
    return info


def revision() -> str:
    """``git describe`` of the tree measured (``-dirty`` when it had uncommitted changes)."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"
