"""Whether Python source text defines a function, found by parsing it (never running it).

Source registered as text is run by the endpoint, which then looks the function's
name up; source that does not parse, or never defines that name, would fail only
then, once per task, as a remote traceback. The CLI (before sending) and the
daemon (at RegisterFunction, for clients in any language) refuse it at once.
"""

from __future__ import annotations

import ast
from collections.abc import Callable


class SourceError(ValueError):
    """The source cannot serve as the function; the message says why, and where."""


def top_level_names(tree: ast.Module) -> set[str]:
    """Names a module binds at top level: definitions, assignments, imports."""
    defined: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
    return defined


def check_source(
    source: str, name: str, filename: str = "<source>", quote: Callable[[str], str] = repr
) -> None:
    """Refuse source that does not parse, or does not define ``name`` at top level.
    ``quote`` shows the name in the message (the daemon cuts a long one short).

    :raises SourceError: naming ``filename`` and, for a syntax error, the line
    """
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as exc:
        where = f"{filename}:{exc.lineno}" if exc.lineno else filename
        raise SourceError(f"{where}: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError) as exc:  # NUL bytes; nesting too deep
        raise SourceError(f"{filename} cannot be parsed: {type(exc).__name__}: {exc}") from None
    if name not in top_level_names(tree):
        raise SourceError(f"{filename} does not define {quote(name)} at top level")
