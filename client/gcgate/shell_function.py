"""``ShellFunction``, ``MPIFunction`` and ``ShellResult``: the SDK's, without the SDK.

A ``ShellFunction`` is a callable object that runs a command line on the endpoint
and returns a ``ShellResult`` (its return code and the tails of its output).
These classes behave as ``globus_compute_sdk.ShellFunction``, ``MPIFunction``
and ``ShellResult`` (4.19) do, attribute for attribute, and they are *named* as
the SDK's classes (their ``__module__`` is the SDK's module): gcgate's pickler
(:mod:`gcgate.pickling`) writes them under those names, so a real endpoint,
which has the SDK, runs what gcgate sends as the SDK's own ``ShellFunction``,
and gcgate reads the SDK's ``ShellResult`` coming back as the class here.

``ShellFunction`` has no class docstring, like the SDK's: ``register_function``
takes a function's docstring as its description, and the registration should be
the SDK's.
"""

from __future__ import annotations

import keyword
import os
import subprocess
import tempfile
import uuid
from typing import IO, Any

__all__ = ["MPIFunction", "ShellFunction", "ShellResult"]

#: Where the SDK defines ShellFunction and ShellResult (MPIFunction: below).
SDK_MODULE = "globus_compute_sdk.sdk.shell_function"
#: Shown (and kept) of a long output or command in ``str()``.
_SHOWN_CHARS, _SHOWN_LINES = 1024, 10


def _tail(text: str, what: str) -> str:
    """The last lines of ``text`` as ``str(ShellResult)`` shows them."""
    full = text.lstrip("\n").rstrip()
    tail = "\n".join(full[-_SHOWN_CHARS:].splitlines()[-_SHOWN_LINES:])
    if tail != full:
        tail = f"[... truncated; see .{what} for full output ...]\n{tail}"
    return tail


class ShellResult:
    """What a ``ShellFunction`` returns: the command run, the last lines of its
    output and its return code."""

    __module__ = SDK_MODULE

    def __init__(
        self,
        cmd: str,
        stdout: str,
        stderr: str,
        returncode: int,
        exception_name: str | None = None,
    ) -> None:
        """
        :param cmd: the command line run, arguments filled in
        :param stdout: the last ``snippet_lines`` lines of its standard output
        :param stderr: the last ``snippet_lines`` lines of its standard error
        :param returncode: its exit status (124 when it ran out of ``walltime``)
        :param exception_name: ``"subprocess.CalledProcessError"`` for a non-zero
            exit, ``"subprocess.TimeoutExpired"`` for a timeout, else None
        """
        self.cmd = cmd
        self.stdout = stdout
        self.stderr = stderr
        self.returncode = returncode
        self.exception_name = exception_name

    def __str__(self) -> str:
        message = f"exit code: {self.returncode}\n   stdout:\n{_tail(self.stdout, 'stdout')}"
        if self.returncode != 0:
            message += f"\n\n   stderr:\n{_tail(self.stderr, 'stderr')}"
            if self.exception_name:
                message += f"\n\nexception: {self.exception_name}"
        return message

    def __repr__(self) -> str:
        parts = [f"returncode={self.returncode!r}", f"cmd={self.cmd!r}"]
        if self.exception_name is not None:
            parts.append(f"exception_name={self.exception_name!r}")
        parts.extend((f"stdout={self.stdout!r}", f"stderr={self.stderr!r}"))
        return f"{type(self).__name__}({', '.join(parts)})"


class ShellFunction:
    # No class docstring: see the module's.

    __module__ = SDK_MODULE

    def __init__(
        self,
        cmd: str,
        stdout: str | None = None,
        stderr: str | None = None,
        walltime: float | None = None,
        snippet_lines: int = 1000,
        name: str | None = None,
        return_dict: bool = False,
    ) -> None:
        """A command line to run on the endpoint, formatted with the call's kwargs.

        :param cmd: the command, e.g. ``"lammps -in {input_file}"``; calling the
            object with ``input_file=...`` fills it in (``str.format``)
        :param stdout: a file to append the command's standard output to
            (default: a new file in the task's directory)
        :param stderr: likewise for its standard error
        :param walltime: seconds after which the command is stopped (return code 124)
        :param snippet_lines: lines of each output kept in the result
        :param name: the name it is registered under (default: the class name);
            must be a Python identifier
        :param return_dict: return the result as a JSON-compatible dict instead of
            a :class:`ShellResult`
        :raises ValueError: ``name`` is not a valid Python name
        """
        # The attributes are set in the SDK's order: dill pickles them as a dict
        # in this order, and the pickle is to be the SDK's byte for byte.
        self.cmd = cmd
        self.stdout = stdout
        self.stderr = stderr
        self.walltime = walltime
        if walltime and walltime < 0:
            raise AssertionError(f"Negative walltime={walltime} is not allowed")
        self.snippet_lines = snippet_lines
        name = name or type(self).__name__
        if not isinstance(name, str):
            raise AssertionError(f"name must be a str, not {type(name).__name__}")
        self.__name__ = self.valid_function_name(name)
        self.return_dict = return_dict

    def __str__(self) -> str:
        parts = []
        if self.walltime is not None:
            parts.append(f" wall time: {self.walltime}")
        if self.stdout is not None:
            parts.append(f"    stdout: {self.stdout!r}")
        if self.stderr is not None:
            parts.append(f"    stderr: {self.stderr!r}")
        parts.append(f"     lines: {self.snippet_lines!r}")
        header = "   command: "
        full = self.cmd.strip()
        cmd = "\n".join(full[:_SHOWN_CHARS].splitlines()[:_SHOWN_LINES])
        if cmd != full:
            cmd += "\n[... truncated; see .cmd for full script ...]"
        if "\n" in cmd:
            indent = "\n" + len(header) * " "
            cmd = cmd.strip().replace("\n", indent)
            cmd = f"-----{indent}{cmd}{indent}-----"
        parts.append(f"{header}{cmd}")
        return f"{self.__name__}\n" + "\n".join(parts)

    def __repr__(self) -> str:
        parts = []
        if self.__name__ != type(self).__name__:
            parts.append(f"name={self.__name__!r}")
        if self.walltime is not None:
            parts.append(f"walltime={self.walltime!r}")
        if self.stdout is not None:
            parts.append(f"stdout={self.stdout!r}")
        if self.stderr is not None:
            parts.append(f"stderr={self.stderr!r}")
        parts.append(f"snippet_lines={self.snippet_lines}")
        parts.append(f"cmd={self.cmd!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def valid_function_name(self, v: str) -> str:
        """``v`` if it can name a Python function; else ValueError."""
        if not (v.isidentifier() and not keyword.iskeyword(v)):
            raise ValueError("Function name must be valid python name")
        return v

    def open_std_fd(self, fname: str | None, mode: str = "a+") -> IO[str] | None:
        """Open an output file (creating its directory); None for no file."""
        if fname is None:
            return None
        if os.path.dirname(fname):
            os.makedirs(os.path.dirname(fname), exist_ok=True)
        return open(fname, mode)

    def get_snippet(self, file_obj: IO[str]) -> str:
        """The last ``snippet_lines`` lines of an output file."""
        file_obj.seek(0, 0)
        return "".join(file_obj.readlines()[-self.snippet_lines :])

    def get_and_close_streams(self, stdout: IO[str], stderr: IO[str]) -> tuple[str, str]:
        """The snippets of both output files, which are closed."""
        stdout_snippet = self.get_snippet(stdout)
        stderr_snippet = self.get_snippet(stderr)
        stdout.close()
        stderr.close()
        return stdout_snippet, stderr_snippet

    def execute_cmd_line(self, cmd: str) -> ShellResult | dict[str, Any]:
        """Run ``cmd`` with bash in the task's directory; the endpoint's side.

        The directory is ``$GC_TASK_SANDBOX_DIR`` (an endpoint sets it per task
        when sandboxing is on; gcgate's local endpoint always does); without it
        the command runs where the worker is, and its stderr starts with the
        SDK's warning about that. Output files are named after ``$GC_TASK_UUID``.
        """
        sandbox_warning = None
        run_dir = os.environ.get("GC_TASK_SANDBOX_DIR")
        if not run_dir:
            sandbox_warning = (
                "WARNING: Task sandboxing will not work due to "
                "endpoint misconfiguration. Please enable sandboxing "
                "on the remote endpoint. "
            )
        if run_dir:
            os.makedirs(run_dir, exist_ok=True)
            os.chdir(run_dir)
        # Older endpoints do not set GC_TASK_UUID: then a piece of a random uuid.
        prefix = os.environ.get("GC_TASK_UUID", str(uuid.uuid4())[-10:]) + "."
        stdout_path = self.stdout or _new_file_name(prefix, ".stdout")
        stderr_path = self.stderr or _new_file_name(prefix, ".stderr")
        std_out = self.open_std_fd(stdout_path)
        std_err = self.open_std_fd(stderr_path)
        assert std_out is not None and std_err is not None  # paths were given
        exception_name = None
        if sandbox_warning:
            print(sandbox_warning, file=std_err)
        try:
            proc = subprocess.Popen(
                cmd,
                stdout=std_out,
                stderr=std_err,
                shell=True,
                executable="/bin/bash",
                close_fds=False,
            )
            proc.wait(timeout=self.walltime)
            returncode = proc.returncode
            if returncode != 0:
                exception_name = "subprocess.CalledProcessError"
        except subprocess.TimeoutExpired:
            returncode = 124  # what the `timeout` command exits with
            exception_name = "subprocess.TimeoutExpired"
        finally:
            stdout_snippet, stderr_snippet = self.get_and_close_streams(std_out, std_err)
        result = {
            "cmd": cmd,
            "stdout": stdout_snippet,
            "stderr": stderr_snippet,
            "returncode": returncode,
            "exception_name": exception_name,
        }
        if self.return_dict:
            return result
        return ShellResult(**result)  # type: ignore[arg-type]

    def __call__(self, **kwargs: Any) -> ShellResult | dict[str, Any]:
        """Run the command with ``kwargs`` filled in; what the endpoint calls.

        :returns: a :class:`ShellResult`, or its fields as a dict with ``return_dict``
        """
        return self.execute_cmd_line(self.cmd.format(**kwargs))


def _new_file_name(prefix: str, suffix: str) -> str:
    """A fresh file name in the current directory (the SDK takes a temporary
    file's name there; the file itself is opened again, for appending)."""
    return tempfile.NamedTemporaryFile(dir=os.getcwd(), prefix=prefix, suffix=suffix).name


class MPIFunction(ShellFunction):
    """MPIFunction extends ShellFunction, as a thin wrapper that adds an
    MPI launcher prefix to the ShellFunction command.
    """

    # The docstring is the SDK's, word for word: it is the registration's description.
    __module__ = "globus_compute_sdk.sdk.mpi_function"

    def __call__(self, **kwargs: Any) -> ShellResult | dict[str, Any]:
        """Run the command behind the endpoint's MPI launcher (``$PARSL_MPI_PREFIX``,
        set from the executor's ``resource_specification``)."""
        return self.execute_cmd_line("$PARSL_MPI_PREFIX " + self.cmd.format(**kwargs))
