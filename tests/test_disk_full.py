"""A full disk: new work is refused with RESOURCE_EXHAUSTED, nothing accepted is lost.

The daemon's state dir lives on a small tmpfs (we may mount here; where mounting
is not allowed, a size-limited store stands in: the same refusal, by the limit).
Tasks are accepted and left running; the filesystem is then filled to the last
byte; while it is full:

- a submission answers RESOURCE_EXHAUSTED with a message naming the store and
  what to do (SQLite's "database or disk is full" is not an INTERNAL error);
- tasks that finish meanwhile cannot be written: the daemon keeps their outcomes
  and retries; their results can be read as soon as there is room again;
- results already stored can still be read, and Status answers.

Once space is freed the daemon recovers by itself: the held outcomes are
written, every accepted task has its correct result, new submissions run.
"""

from __future__ import annotations

import base64
import errno
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gcgate import Client
from gcgate.errors import ResourceExhausted
from harness import Daemon, script_function

WAIT = 60.0
#: Big enough for a daemon's empty store and a few hundred results.
TMPFS_SIZE = "24m"
#: The submission that must be refused once the disk (or the store) is full.
PROBE = "y" * 20_000


@script_function
def hold_then_double(x, marker):
    """Wait for ``marker`` (or for the daemon to die: our parent changes); then
    2x, with 20 kB of noise: outcomes too big for the slack in SQLite's files."""
    import os
    import time

    parent = os.getppid()
    while not os.path.exists(marker) and os.getppid() == parent:
        time.sleep(0.01)
    return x * 2, os.urandom(10_000).hex()


@script_function
def double(x):
    return x * 2


def mount_tmpfs(where: Path) -> bool:
    """Mount a small tmpfs at ``where``; False where this machine does not allow it."""
    where.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(where)],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def unmount(where: Path) -> None:
    if subprocess.run(["umount", str(where)], capture_output=True, timeout=30).returncode:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


def fill(directory: Path) -> Path:
    """Write a file in ``directory`` until the filesystem is full; returns it."""
    filler = directory / "filler"
    block = b"\0" * (1 << 20)
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    f.write(block[:size])
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return filler


def wait_until(what: str, condition: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def wait_for_log(daemon: Daemon, text: str) -> None:
    wait_until(f"{text!r} in the log", lambda: text in daemon.log())


class Disk:
    """Where the state dir lives: a tmpfs we can fill, or a size-limited store."""

    def __init__(self, tmp_path: Path) -> None:
        self.mount = tmp_path / "mnt"
        self.mounted = mount_tmpfs(self.mount)
        self.filler: Path | None = None
        args = () if self.mounted else ("--store-size-limit-mb", "1")
        self.daemon = Daemon(self.mount / "state", extra_args=args)
        self.daemon.log_path = tmp_path / "gcgated.log"  # the log must not fill up too

    def make_full(self, gcc: Client, function_id: str) -> None:
        if self.mounted:
            self.filler = fill(self.mount)
            return
        # Fallback: submit until the store's size limit refuses more.
        for _ in range(1000):
            try:
                gcc.run(PROBE, endpoint_id="local", function_id=function_id)
            except ResourceExhausted:
                return
        raise AssertionError("the size-limited store never refused a submission")

    def make_room(self) -> None:
        if self.filler is not None:
            self.filler.unlink()
            self.filler = None

    def close(self) -> None:
        self.daemon.close()
        if self.mounted:
            unmount(self.mount)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    made = Disk(tmp_path)
    try:
        yield made
    finally:
        made.close()


def big_source() -> str:
    """A function whose source does not compress: megabytes no store slack holds."""
    noise = base64.b64encode(os.urandom(6 << 20)).decode()
    return f"def big():\n    return {noise!r}\n"


def test_full_disk_refuses_new_work_and_loses_nothing(disk: Disk, tmp_path: Path) -> None:
    marker = tmp_path / "release"
    daemon = disk.daemon.start()
    with Client(socket_path=daemon.socket_path) as gcc:
        fid = gcc.register_function(double)
        hold = gcc.register_function(hold_then_double)
        read = {gcc.run(x, endpoint_id="local", function_id=fid): x for x in range(20)}
        for task_id, x in read.items():
            assert gcc.get_result(task_id, wait=WAIT) == 2 * x
        unread = {gcc.run(x, endpoint_id="local", function_id=fid): x for x in range(20, 30)}
        wait_until("30 results", lambda: gcc.status()["tasks"]["success"] >= 30)
        batch = gcc.create_batch()
        for x in range(100):
            batch.add(hold, args=(x, str(marker)))
        held = dict(zip(gcc.batch_run("local", batch)["tasks"][hold], range(100), strict=True))

        disk.make_full(gcc, fid)
        with pytest.raises(ResourceExhausted) as refused:
            gcc.run(PROBE, endpoint_id="local", function_id=fid)
        assert f"{daemon.state_dir}/store" in str(refused.value)
        assert "full" in str(refused.value)

        if disk.mounted:
            # Any write that finds no room (not only a submission) is RESOURCE_EXHAUSTED.
            with pytest.raises(ResourceExhausted, match="disk is full"):
                gcc.register_source_code(big_source(), "big")
            # The held tasks finish while nothing can be written: their outcomes wait.
            marker.touch()
            wait_for_log(daemon, "could not write")
            assert gcc.status()["tasks"]["pending"] == len(held)
        # Results stored before can still be read, for the first time too.
        stored = {**read, **unread}
        assert {t: gcc.get_result(t) for t in stored} == {t: 2 * x for t, x in stored.items()}

        disk.make_room()
        marker.touch()
        results = gcc.get_batch_result(list(held), wait=WAIT)
        assert {t: r["result"][0] for t, r in results.items()} == {
            t: 2 * x for t, x in held.items()
        }
        if disk.mounted:  # room again: new work runs (the fallback's limit stays full)
            task_id = gcc.run(21, endpoint_id="local", function_id=fid)
            assert gcc.get_result(task_id, wait=WAIT) == 42
        wait_until("nothing pending", lambda: gcc.status()["tasks"]["pending"] == 0)
        status = gcc.status()
    counts = status["tasks"]
    assert counts["success"] + counts["failed"] == status["store"]["task_records"]
    assert "internal error" not in daemon.log()


def test_a_start_on_a_full_disk_says_so_without_a_traceback(tmp_path: Path) -> None:
    """No room for the state lock, the owner key or the store: one line naming the
    directories and what to do, exit 1, instead of an OSError traceback."""
    mount = tmp_path / "mnt"
    if not mount_tmpfs(mount):
        pytest.skip("cannot mount a tmpfs here to fill")
    daemon = Daemon(mount / "state")
    try:
        daemon.state_dir.mkdir(mode=0o700)
        fill(mount)
        done = subprocess.run(
            daemon.command(), env=daemon.env, capture_output=True, text=True, timeout=WAIT
        )
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr
        assert (
            f"no space left to start ([Errno {errno.ENOSPC}] No space left on device): the"
            f" daemon writes to its state directory {daemon.state_dir} and its socket"
            f" directory {daemon.socket_dir}; free space on their file system"
            f" (`df -h {daemon.state_dir} {daemon.socket_dir}`), then start it again"
        ) in done.stderr
        assert not daemon.socket_path.exists()
    finally:
        daemon.close()
        unmount(mount)
