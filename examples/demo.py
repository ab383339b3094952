"""`make run`: start gcgated on the local endpoint, run the guide, fetch from a new process.

Everything is real: a daemon process on a Unix socket, its diskcache store under
.run/, worker processes, and two separate client processes. The daemon is always
stopped at the end (SIGTERM, then checked to have exited cleanly).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / ".run"


def wait_until_serving(socket_path: Path, daemon: subprocess.Popen[bytes]) -> None:
    channel = grpc.insecure_channel(f"unix:{socket_path}")
    try:
        grpc.channel_ready_future(channel).result(timeout=60)
    except grpc.FutureTimeoutError:
        sys.exit(f"gcgated did not come up (exit code {daemon.poll()}); see its log above")
    finally:
        channel.close()


def main() -> int:
    RUN_DIR.mkdir(exist_ok=True)
    socket_dir = Path(tempfile.mkdtemp(prefix="gcgate-demo-"))
    socket_path = socket_dir / "gcgate.sock"
    env = {**os.environ, "GCGATE_SOCKET": str(socket_path)}
    print(f"== starting gcgated (socket {socket_path}, state {RUN_DIR / 'state'})")
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gcgated.cli.daemon",
            "--state-dir",
            str(RUN_DIR / "state"),
            "--log-level",
            "WARNING",
        ],
        env=env,
    )
    try:
        wait_until_serving(socket_path, daemon)
        ids_file = RUN_DIR / "task_ids.json"
        print("== process 1: the Client user guide's examples")
        subprocess.run(
            [sys.executable, str(ROOT / "examples" / "seed_guide.py"), str(ids_file)],
            env=env,
            check=True,
        )
        print("== process 2: a new process fetches earlier results by task id")
        subprocess.run(
            [sys.executable, str(ROOT / "examples" / "fetch_result.py"), str(ids_file)],
            env=env,
            check=True,
        )
        print("== daemon status")
        subprocess.run([sys.executable, "-m", "gcgate.cli", "status"], env=env, check=True)
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=60)
        shutil.rmtree(socket_dir, ignore_errors=True)
        print(f"== gcgated stopped (exit code {code})")
    return code


if __name__ == "__main__":
    sys.exit(main())
