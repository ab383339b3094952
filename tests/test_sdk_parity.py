"""gcgate's public API against the pinned globus-compute-sdk's, by introspection.

Porting is meant to be a one-line import change, so every public name of the
SDK's ``Client``, ``Executor``, ``Batch``, ``ComputeFuture``, errors, serializer
module and top level is compared with gcgate's: which members exist, their kind
(method, read-only property, or attribute a user may set), their parameters'
names, kinds, order and simple defaults. Any difference fails the test unless
``tests/sdk_parity_allowlist.py`` names it with the reason; an allowlist entry
that no longer matches a difference fails too, so the list only shrinks
honestly. ``docs/api.md``'s "Differences from globus-compute-sdk" section names
exactly the allowlisted differences.

The SDK is the version pinned in pyproject.toml (``globus-compute-sdk==...``),
imported here as the oracle; gcgate itself never imports it.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sdk_parity_allowlist import ALLOWED

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parent.parent
API_DOC = ROOT / "docs" / "api.md"
DIFFERENCES_HEADING = "## Differences from globus-compute-sdk"

#: Dunder methods that are part of a class's API (how it is used), compared like
#: public methods; every other underscore name is private.
API_DUNDERS = frozenset(
    {"__init__", "__call__", "__enter__", "__exit__", "__len__", "__bool__", "__iter__"}
)
#: Defaults compared by value; others (sentinels, objects) only by presence.
LITERAL_DEFAULTS = (type(None), bool, int, float, str, tuple)


@dataclass(frozen=True)
class Param:
    name: str
    kind: inspect._ParameterKind
    default: Any

    @property
    def optional(self) -> bool:
        return self.default is not inspect.Parameter.empty or self.kind in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        )


@dataclass(frozen=True)
class Member:
    """``kind``: "method", "property" (read-only), "attribute" (settable: a plain
    attribute or a property with a setter) or "class"."""

    kind: str
    params: tuple[Param, ...] = ()


def _init_attributes(cls: type) -> set[str]:
    """Public names the ``__init__`` of ``cls`` itself assigns on ``self``:
    instance attributes that no class attribute shows."""
    names: set[str] = set()
    init = cls.__dict__.get("__init__")
    if inspect.isfunction(init):
        tree = ast.parse(textwrap.dedent(inspect.getsource(init)))
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AnnAssign):
                targets = [node.target]
            else:
                continue
            for target in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "self"
                    and not target.attr.startswith("_")
                ):
                    names.add(target.attr)
    return names


def _public(name: str) -> bool:
    return not name.startswith("_") or name in API_DUNDERS


def own_names(cls: type) -> set[str]:
    """The API names ``cls`` defines itself (not inherited unchanged)."""
    return {n for n in vars(cls) if _public(n)} | _init_attributes(cls)


def _params(function: Any, *, bound: bool) -> tuple[Param, ...]:
    try:
        params = list(inspect.signature(function).parameters.values())
    except ValueError:  # a builtin without one (str.maketrans, on str enums): name only
        return ()
    if bound:
        params = params[1:]  # self / cls
    return tuple(Param(p.name, p.kind, p.default) for p in params)


def members(cls: type) -> dict[str, Member]:
    """The public API of ``cls``: name -> kind and parameters."""
    found: dict[str, Member] = {}
    for name in dir(cls):
        if not _public(name):
            continue
        value = inspect.getattr_static(cls, name)
        if isinstance(value, property):
            found[name] = Member("attribute" if value.fset else "property")
        elif isinstance(value, staticmethod):
            found[name] = Member("method", _params(value.__func__, bound=False))
        elif isinstance(value, classmethod):
            found[name] = Member("method", _params(value.__func__, bound=True))
        elif inspect.isfunction(value):
            found[name] = Member("method", _params(value, bound=True))
        elif inspect.isclass(value):
            found[name] = Member("class")
        elif callable(value):  # a slot wrapper: object.__init__ and the like
            found[name] = Member("method")
        else:
            found[name] = Member("attribute")
    for klass in cls.__mro__:
        for name in _init_attributes(klass):
            found.setdefault(name, Member("attribute"))
    return found


def _default_text(param: Param) -> str:
    return "required" if param.default is inspect.Parameter.empty else f"={param.default!r}"


def _positional(params: tuple[Param, ...]) -> list[str]:
    return [
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]


def param_differences(
    where: str, sdk: tuple[Param, ...], ours: tuple[Param, ...]
) -> Iterator[tuple[str, str]]:
    """``(key, what)`` for each parameter of ``where`` that differs."""
    sdk_by_name = {p.name: p for p in sdk}
    our_by_name = {p.name: p for p in ours}
    sdk_slots, our_slots = _positional(sdk), _positional(ours)
    for param in sdk:
        key = f"{where}({param.name})"
        mine = our_by_name.get(param.name)
        if mine is None:
            yield key, f"SDK parameter {param.name!r} missing"
            continue
        if mine.kind != param.kind:
            yield key, f"{param.kind.description} in the SDK, {mine.kind.description} here"
        elif param.name in sdk_slots and sdk_slots.index(param.name) != our_slots.index(param.name):
            yield (
                key,
                (
                    f"positional slot {sdk_slots.index(param.name)} in the SDK,"
                    f" {our_slots.index(param.name)} here"
                ),
            )
        if param.optional != mine.optional or (
            isinstance(param.default, LITERAL_DEFAULTS)
            and isinstance(mine.default, LITERAL_DEFAULTS)
            and (type(param.default), param.default) != (type(mine.default), mine.default)
        ):
            yield key, f"default {_default_text(param)} in the SDK, {_default_text(mine)} here"
    for param in ours:
        if param.name not in sdk_by_name:
            at_end = param.kind is inspect.Parameter.KEYWORD_ONLY and param.optional
            where_it_is = (
                "keyword-only"
                if at_end
                else f"{param.kind.description}, {_default_text(param)}: not keyword-only"
            )
            yield f"{where}({param.name})", f"gcgate-only parameter ({where_it_is})"


def class_differences(owner: str, sdk_cls: type, our_cls: type) -> Iterator[tuple[str, str]]:
    """``(key, what)`` for each member of ``owner`` that differs. Members both
    classes inherit are left to the base classes (compared themselves when
    exported), so a difference is reported once, where it is defined."""
    sdk, ours = members(sdk_cls), members(our_cls)
    names = own_names(sdk_cls) | own_names(our_cls)
    for name, member in sorted(sdk.items()):
        if name not in names:
            continue
        key = f"{owner}.{name}"
        mine = ours.get(name)
        if mine is None:
            yield key, f"SDK {member.kind} missing"
        elif mine.kind != member.kind:
            yield key, f"{member.kind} in the SDK, {mine.kind} here"
        elif member.kind == "method":
            yield from param_differences(key, member.params, mine.params)
    for name, mine in sorted(ours.items()):
        if name in names and name not in sdk:
            yield f"{owner}.{name}", f"gcgate-only {mine.kind}"


def module_differences(prefix: str, sdk: ModuleType, ours: ModuleType) -> Iterator[tuple[str, str]]:
    """``(key, what)`` for names of one module's ``__all__`` (and ``__version__``)
    and the other's, and for the members of the classes both export."""
    sdk_names, our_names = (
        set(module.__all__) | ({"__version__"} & set(vars(module))) for module in (sdk, ours)
    )
    for name in sorted(sdk_names - our_names):
        yield f"{prefix}.{name}", "SDK name missing"
    for name in sorted(our_names - sdk_names):
        yield f"{prefix}.{name}", "gcgate-only name"
    for name in sorted(sdk_names & our_names):
        sdk_value, our_value = getattr(sdk, name), getattr(ours, name)
        if inspect.isclass(sdk_value) and inspect.isclass(our_value):
            yield from class_differences(f"{prefix}.{name}", sdk_value, our_value)


def all_differences() -> dict[str, list[str]]:
    """Every difference between the SDK's public API and gcgate's: key -> what."""
    import gcgate
    import gcgate.errors
    import gcgate.serialize
    import globus_compute_sdk
    import globus_compute_sdk.errors
    import globus_compute_sdk.serialize
    from globus_compute_sdk.sdk.asynchronous.compute_future import ComputeFuture
    from globus_compute_sdk.sdk.batch import Batch

    found: dict[str, list[str]] = {}
    sources = [
        class_differences("Client", globus_compute_sdk.Client, gcgate.Client),
        class_differences("Executor", globus_compute_sdk.Executor, gcgate.Executor),
        class_differences("Batch", Batch, gcgate.Batch),
        class_differences("ComputeFuture", ComputeFuture, gcgate.ComputeFuture),
        module_differences("gcgate", globus_compute_sdk, gcgate),
        module_differences("errors", globus_compute_sdk.errors, gcgate.errors),
        module_differences("serialize", globus_compute_sdk.serialize, gcgate.serialize),
    ]
    for source in sources:
        for key, what in source:
            found.setdefault(key, []).append(what)
    # The classes the top level exports are compared above under their own names.
    for name in ("Client", "Executor"):
        for key in [k for k in found if k.startswith(f"gcgate.{name}.")]:
            del found[key]
    return found


def test_public_api_matches_the_sdk_but_for_the_allowlist() -> None:
    differences = all_differences()
    unexplained = {k: v for k, v in differences.items() if k not in ALLOWED}
    stale = sorted(k for k in ALLOWED if k not in differences)
    report = [f"  {k}: {'; '.join(v)}" for k, v in sorted(unexplained.items())]
    assert not unexplained, (
        "differences from globus-compute-sdk without an allowlist entry"
        " (fix them, or add them with the reason to tests/sdk_parity_allowlist.py"
        " and docs/api.md):\n" + "\n".join(report)
    )
    assert not stale, f"allowlist entries that are no longer differences: {stale}"


def test_every_allowlist_entry_says_why() -> None:
    short = [key for key, why in ALLOWED.items() if len(why.split()) < 4]
    assert not short, f"allowlist entries without a reason: {short}"


def documented_differences() -> set[str]:
    """The names in the first column of the table under DIFFERENCES_HEADING."""
    text = API_DOC.read_text()
    assert DIFFERENCES_HEADING in text, f"{API_DOC} has no {DIFFERENCES_HEADING!r} section"
    section = text.split(DIFFERENCES_HEADING, 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| ---"):
            first = line.split(" | ", 1)[0]
            names.update(re.findall(r"`([^`]+)`", first))
    return names


def test_docs_section_names_exactly_the_allowlisted_differences() -> None:
    documented = documented_differences()
    assert not ALLOWED.keys() - documented, (
        f"allowlisted but not in {API_DOC.name}'s {DIFFERENCES_HEADING!r}:"
        f" {sorted(ALLOWED.keys() - documented)}"
    )
    assert not documented - ALLOWED.keys(), (
        f"in {API_DOC.name}'s {DIFFERENCES_HEADING!r} but not allowlisted:"
        f" {sorted(documented - ALLOWED.keys())}"
    )
