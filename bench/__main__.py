"""``python -m bench``: measure every figure, print the table, write docs/benchmarks.md.

The full run (no flags) rewrites docs/benchmarks.md; ``--quick`` (CI smoke sizes)
and ``--only`` print without touching it unless ``--write`` is given.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console

from bench import imports, latency, local, memory, purge, remote, reuse, store
from bench.common import Row, Settings, Shared
from bench.machine import describe
from bench.report import DOC, as_json, markdown, print_table, with_fresh_notes, write_doc

#: Figure name -> measurement, in the issue's order.
FIGURES: dict[str, Callable[[Settings], list[Row]]] = {
    "roundtrip": local.roundtrip,
    "batch": local.batch,
    "executor": local.executor,
    "remote": remote.remote,
    "remote_latency": latency.remote_latency,
    "cached": store.cached,
    "reuse": reuse.reuse,
    "purge": purge.purge,
    "memory": memory.memory,
    "imports": imports.imports,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="CI smoke sizes (< 30 s)")
    parser.add_argument(
        "--only", action="append", choices=list(FIGURES), help="run this figure (repeatable)"
    )
    parser.add_argument("--json", action="store_true", help="results as JSON on stdout")
    parser.add_argument(
        "--write",
        action="store_true",
        help=f"rewrite {DOC.relative_to(DOC.parent.parent)} (default only for a full run)",
    )
    parser.add_argument(
        "--notes-only",
        action="store_true",
        help="measure nothing: refresh the bench/notes.md part of the document",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="worker processes on both sides (default 2)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.notes_only:
        write_doc(with_fresh_notes(DOC.read_text()))
        return 0
    # With --json, stdout carries only the JSON document.
    console = Console(stderr=args.json)
    if not console.is_terminal:
        console.width = 200  # a log or a pipe: keep table rows on one line
    names = args.only or list(FIGURES)
    work_dir = Path(tempfile.mkdtemp(prefix="gcgate-bench-"))
    shared = Shared(work_dir)
    settings = Settings(quick=args.quick, workers=args.workers, work_dir=work_dir, shared=shared)
    started = time.monotonic()
    machine = describe()  # before the figures: the load average is the machine's, not ours
    rows: list[Row] = []
    failed: list[str] = []
    try:
        for name in names:
            t0 = time.monotonic()
            console.print(f"[bold]{name}[/bold] ...", end=" ")
            try:
                rows.extend(FIGURES[name](settings))
            except Exception:  # one broken figure must not cost the others' minutes
                console.print_exception()
                failed.append(name)
                continue
            console.print(f"{time.monotonic() - t0:.1f} s")
    finally:
        shared.close()
        shutil.rmtree(work_dir, ignore_errors=True)
    command = "make bench" + (f" BENCH_ARGS='{' '.join(sys.argv[1:])}'" if sys.argv[1:] else "")
    meta = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "quick": args.quick,
        "workers": args.workers,
        "figures": names,
        "seconds": time.monotonic() - started,
    }
    print_table(rows, console)
    if args.json:
        print(as_json(rows, machine, meta))
    if failed:
        console.print(f"[red]failed: {', '.join(failed)}[/red]; {DOC.name} left as it was")
        return 1
    if args.write or not (args.quick or args.only):
        write_doc(markdown(rows, machine, meta))
        console.print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
