"""Worker process of the local endpoint: ``python -m gcgated.backends.local.worker``.

It does what a Globus Compute endpoint worker does with a task: deserialize the
function and its arguments, call it, serialize the result (or format the
traceback). It is the only place where user data is unpickled; the daemon just
moves the opaque strings.

Protocol (newline-delimited JSON, one object per line):

* daemon -> worker, on stdin: ``{"op": "task", "id", "fid", "payload",
  ["code", "serialized", "name"], ["result_serializers"]}``. ``code`` (with
  ``serialized`` and ``name``) is present only when the worker does not have
  ``fid`` in its function cache; both sides keep an LRU of the same size and
  update it in the order tasks are sent, so they agree on what is cached.
* daemon -> worker: ``{"op": "cancel", "id"}`` for a task sent before and not
  started: the worker skips it. It reads ahead (everything the daemon has sent
  by then) before it starts each task, so a cancel sent while the task before
  runs is seen in time.
* worker -> daemon, on the worker's *original* stdout: ``{"op": "ready", ...}``
  once, then ``{"op": "done", "id", "status", "result" | "exception",
  "completion_t"}`` per task, in the order the tasks arrived (a skipped task:
  status "cancelled").

User code may print, read stdin or fork; none of that may touch the protocol.
So the worker first moves both protocol pipes to private descriptors, points fd 1
at stderr (the daemon passes it through to its log) and fd 0 at /dev/null.

This module must stay cheap to import: the daemon imports it for its constants,
and it never loads user data there. Heavy imports happen in :func:`main`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import linecache
import os
import platform
import select
import signal
import socket
import sys
import time
import traceback
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any

from gcgate.constants import TaskStatus

from .limits import DEFAULT_LIMIT_MB, MB, buffer_bytes, result_too_large

if TYPE_CHECKING:
    from gcgate.serialize import Serializer

#: Functions each worker keeps deserialized; the daemon mirrors the same LRU.
FUNCTION_CACHE_SIZE = 256

#: The largest result a worker returns unless told otherwise (``--max-result-bytes``,
#: from the setting ``local_max_result_mb``), in the user's serialized bytes.
RESULT_SIZE_LIMIT = int(DEFAULT_LIMIT_MB * MB)

Message = dict[str, Any]


class TaskError(Exception):
    """A task failure whose text is final (not a traceback of user code)."""


class _FunctionLoadFailure:
    """A cached failure to load a function: later tasks of it fail the same way.

    Why cache it: the daemon sends a function's code only once, so a worker that
    forgot the failure would have nothing to retry with on the next task.
    """

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


# --------------------------------------------------------------------- process setup


def claim_protocol_fds() -> tuple[int, int]:
    """Move stdin/stdout to private descriptors; return ``(proto_in, proto_out)``.

    Afterwards fd 0 is /dev/null (user ``input()`` gets EOF instead of eating a
    task) and fd 1 is a copy of fd 2 (user prints go to the daemon's log instead
    of corrupting outcomes). The private descriptors are not inheritable, so
    user subprocesses do not get them either.
    """
    proto_in = os.dup(0)
    proto_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]

    def forget_protocol_in_child() -> None:
        # A process forked by user code (multiprocessing, os.fork) must not hold
        # the protocol pipes open, or the daemon would never see this worker die.
        # dup2 rather than close, so the file objects in the child stay harmless.
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, proto_in)
        os.dup2(null, proto_out)
        os.close(null)

    os.register_at_fork(after_in_child=forget_protocol_in_child)
    return proto_in, proto_out


def die_with_parent(parent_pid: int) -> None:
    """Get SIGKILLed if the daemon dies, so no orphan keeps running a task (Linux).

    Elsewhere the worker still exits when its stdin closes, after the current task.
    """
    if sys.platform != "linux" or parent_pid <= 0:
        return
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL))
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


# ------------------------------------------------------------------------ execution


def call_user_function(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Call the user's function (in a frame of this module, which tracebacks drop)."""
    return fn(*args, **kwargs)


def is_shell_function(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` is a ShellFunction (or MPIFunction). The worker unpickles the
    SDK's class as gcgate's (:mod:`gcgate.pickling`), so only gcgate's is checked,
    and only once some task has loaded it."""
    module = sys.modules.get("gcgate.shell_function")
    return module is not None and isinstance(fn, module.ShellFunction)


@contextlib.contextmanager
def shell_task_environment(task_id: str, task_dir: str) -> Iterator[None]:
    """What an endpoint that runs tasks in sandboxes sets for a task, for the length
    of a ShellFunction's call: ``GC_TASK_UUID``, and ``GC_TASK_SANDBOX_DIR``, a
    directory of the task's own under ``task_dir``, which the ShellFunction creates
    and runs its command in (its output files go there). Without them it would
    write those files into the worker's directory, warning about it in stderr.
    The worker's directory and environment are restored afterwards, so that the
    next task finds them as before.
    """
    cwd = os.getcwd()
    os.environ["GC_TASK_UUID"] = task_id
    os.environ["GC_TASK_SANDBOX_DIR"] = os.path.join(task_dir, task_id)
    try:
        yield
    finally:
        del os.environ["GC_TASK_UUID"], os.environ["GC_TASK_SANDBOX_DIR"]
        os.chdir(cwd)


def format_user_exception(exc: BaseException) -> str:
    """``traceback.format_exc()`` text starting at the user's frame.

    The worker's own leading frames (recognisable by running with this module's
    globals) are dropped: they are noise to the user, and the text then reads
    like the traceback an endpoint returns.
    """
    tb = exc.__traceback__
    own_globals = globals()
    while tb is not None and tb.tb_frame.f_globals is own_globals:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def describe_error(exc: BaseException) -> str:
    """``Type: message``, for failures of the task machinery rather than user code.

    The bare class name: the module path of gcgate's error classes means nothing
    to the user, and our own :class:`TaskError` texts stand on their own.
    """
    if isinstance(exc, TaskError):
        return str(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def safe_text(text: str) -> str:
    """Make text valid UTF-8 (lone surrogates escaped), so every hop can encode it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def exec_source(name: str, source: str, function_id: str) -> Callable[..., Any]:
    """Run a source-registered function's text in a fresh namespace; return ``name``.

    Like the SDK's PureSourceTextInspect, but the code gets a file name and its
    lines go into ``linecache``, so tracebacks show the user's source lines.
    """
    filename = f"<gcgate function {name or function_id}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {"__name__": "__gcgate_function__"}
    exec(compile(source, filename, "exec"), namespace)
    try:
        fn = namespace[name]
    except KeyError:
        raise TaskError(
            f"The function's source does not define {name!r}"
            f" (function_id {function_id}); it defines: "
            + (", ".join(k for k in namespace if not k.startswith("__")) or "nothing")
        ) from None
    if not callable(fn):
        raise TaskError(f"{name!r} in the function's source is a {type(fn).__name__}, not callable")
    return fn


class TaskRunner:
    """Executes task messages; keeps the LRU of loaded functions."""

    def __init__(
        self,
        serializer: Serializer,
        cache_size: int = FUNCTION_CACHE_SIZE,
        task_dir: str | None = None,
        max_result_bytes: int = RESULT_SIZE_LIMIT,
    ) -> None:
        self.serializer = serializer
        self.cache_size = cache_size
        #: Results larger than this (serialized, before base64) fail the task.
        self.max_result_bytes = max_result_bytes
        #: Where ShellFunction tasks get their directories (None: where the worker is).
        self.task_dir = task_dir
        self.functions: OrderedDict[str, Callable[..., Any] | _FunctionLoadFailure] = OrderedDict()

    def run(self, msg: Message) -> Message:
        """Execute one task message; return the ``done`` message for it."""
        reply: Message = {"op": "done", "id": msg["id"]}
        try:
            fn = self.function(msg)
            args, kwargs = self.arguments(msg["payload"])
            try:
                if self.task_dir is not None and is_shell_function(fn):
                    with shell_task_environment(msg["id"], self.task_dir):
                        value = call_user_function(fn, args, kwargs)
                else:
                    value = call_user_function(fn, args, kwargs)
            except BaseException as exc:  # SystemExit too: the worker must survive it
                raise TaskError(format_user_exception(exc)) from None
            reply["result"] = self.serialize_result(value, msg.get("result_serializers") or ())
            reply["status"] = TaskStatus.SUCCESS.value
        except TaskError as exc:
            reply["status"] = TaskStatus.FAILED.value
            reply["exception"] = safe_text(str(exc))
        reply["completion_t"] = time.time()
        return reply

    def keep_cache_in_step(self, msg: Message) -> None:
        """The function cache bookkeeping of a task that is skipped, not run: the
        daemon's mirror applied it when it sent the task (a function sent with it
        is loaded and cached, as the next task of that function expects)."""
        with contextlib.suppress(TaskError):
            self.function(msg)

    def function(self, msg: Message) -> Callable[..., Any]:
        """The task's function: from the cache, or loaded from ``code`` and cached.

        Cache bookkeeping happens before any failure can surface, in exactly the
        order the daemon applies it to its mirror.
        """
        fid = msg["fid"]
        functions = self.functions
        if "code" in msg:
            entry = self.load_function(
                msg["code"], msg.get("serialized", True), msg.get("name"), fid
            )
            functions[fid] = entry
            functions.move_to_end(fid)
            while len(functions) > self.cache_size:
                functions.popitem(last=False)
        else:
            try:
                entry = functions[fid]
            except KeyError:
                raise TaskError(
                    f"Internal gcgate error: worker {os.getpid()} was sent no code for function"
                    f" {fid} and does not have it cached; please report this."
                ) from None
            functions.move_to_end(fid)
        if isinstance(entry, _FunctionLoadFailure):
            raise TaskError(entry.message)
        return entry

    def load_function(
        self, code: str, serialized: bool, name: str | None, function_id: str
    ) -> Callable[..., Any] | _FunctionLoadFailure:
        """Deserialize (or exec) a function; a failure is returned, to be cached."""
        try:
            if not serialized:
                return exec_source(name or "", code, function_id)
            buffers = self.serializer.unpack_buffers(code)
            if len(buffers) != 1:
                raise TaskError(f"function_code must hold 1 buffer, got {len(buffers)}")
            fn = self.serializer.deserialize(buffers[0])
            if not callable(fn):
                raise TaskError(f"function_code decodes to a {type(fn).__name__}, not a callable")
            return fn
        except BaseException as exc:  # loading runs user code too
            what = "run the source of" if not serialized else "deserialize"
            detail = format_user_exception(exc) if not serialized else describe_error(exc)
            return _FunctionLoadFailure(
                f"Could not {what} the task's function (function_id {function_id}):\n{detail}"
            )

    def arguments(self, payload: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Deserialize ``pack_buffers([args, kwargs])`` with the checks ``unpack_task`` makes."""
        try:
            buffers = self.serializer.unpack_buffers(payload)
            if len(buffers) != 2:
                raise TaskError(
                    f"the payload must hold 2 buffers (args, kwargs), got {len(buffers)}"
                )
            args = self.serializer.deserialize(buffers[0])
            kwargs = self.serializer.deserialize(buffers[1])
            if not isinstance(args, (tuple, list)):
                raise TaskError(f"args decode to a {type(args).__name__}, not a tuple")
            if not isinstance(kwargs, dict):
                raise TaskError(f"kwargs decode to a {type(kwargs).__name__}, not a dict")
        except BaseException as exc:
            raise TaskError(
                f"Could not deserialize the task's arguments:\n{describe_error(exc)}"
            ) from None
        return tuple(args), kwargs

    def serialize_result(self, value: Any, result_serializers: Iterable[str]) -> str:
        """The result in Compute format, within the endpoint's size limit (counted
        in the user's serialized bytes, see :mod:`.limits`)."""
        try:
            text = self.serializer.serialize_from_list(value, tuple(result_serializers))
        except BaseException as exc:
            raise TaskError(
                f"The task's result could not be serialized:\n{describe_error(exc)}"
            ) from None
        size = buffer_bytes(text)
        if size > self.max_result_bytes:
            raise TaskError(result_too_large(size, self.max_result_bytes))
        return text


# ------------------------------------------------------------------------------ main


class Inbox:
    """The daemon's messages, read ahead of the task being run.

    Why: a cancel for a task the worker holds arrives after that task's own
    message, so reading one line at a time would start the task first.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.eof = False
        #: Task messages received and not run yet, in order.
        self.tasks: deque[Message] = deque()
        #: Ids of held tasks the daemon cancelled.
        self.cancelled: set[str] = set()
        self._partial = b""

    def fill(self, block: bool) -> None:
        """Take in what the daemon sent; wait for something only if ``block``."""
        while not self.eof:
            if not block and not select.select([self.fd], [], [], 0)[0]:
                return
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                self.eof = True
                return
            *lines, self._partial = (self._partial + chunk).split(b"\n")
            for line in lines:
                self._take(json.loads(line))
            block = block and not self.tasks

    def _take(self, msg: Message) -> None:
        if msg.get("op") == "cancel":
            if any(task["id"] == msg["id"] for task in self.tasks):
                self.cancelled.add(msg["id"])
        else:
            self.tasks.append(msg)

    def next_task(self) -> Message | None:
        """The next task to run or skip (None: the daemon closed the channel)."""
        self.fill(block=not self.tasks)
        return self.tasks.popleft() if self.tasks else None


def skipped(msg: Message) -> Message:
    """The ``done`` message of a task cancelled before it started."""
    return {
        "op": "done",
        "id": msg["id"],
        "status": TaskStatus.CANCELLED.value,
        "exception": "cancelled before it started",
        "completion_t": time.time(),
    }


def send(out: IO[bytes], msg: Message) -> None:
    """Write one protocol message and flush, so the daemon sees it at once."""
    out.write(json.dumps(msg, separators=(",", ":")).encode() + b"\n")
    out.flush()


def hello() -> Message:
    """The ready message: who this worker is, for the outcomes' ``details``."""
    return {
        "op": "ready",
        "pid": os.getpid(),
        "hostname": socket.gethostname(),
        "python_version": platform.python_version(),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gcgated.backends.local.worker")
    parser.add_argument("--parent-pid", type=int, default=0)
    parser.add_argument("--function-cache-size", type=int, default=FUNCTION_CACHE_SIZE)
    parser.add_argument("--task-dir", default=None)
    parser.add_argument("--max-result-bytes", type=int, default=RESULT_SIZE_LIMIT)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Serve tasks from stdin until it closes."""
    options = parse_args(argv)
    proto_in, proto_out = claim_protocol_fds()
    die_with_parent(options.parent_pid)

    from gcgate.serialize import Serializer

    runner = TaskRunner(
        Serializer(), options.function_cache_size, options.task_dir, options.max_result_bytes
    )
    inbox = Inbox(proto_in)
    with os.fdopen(proto_out, "wb") as out:
        send(out, hello())
        while (msg := inbox.next_task()) is not None:
            if msg["id"] in inbox.cancelled:
                inbox.cancelled.discard(msg["id"])
                runner.keep_cache_in_step(msg)
                send(out, skipped(msg))
            else:
                send(out, runner.run(msg))
    os.close(proto_in)
    return 0


if __name__ == "__main__":
    sys.exit(main())
