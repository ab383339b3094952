"""gcgate errors that the Globus SDKs' ``except`` clauses catch, without importing them.

A ported script keeps ``except globus_compute_sdk.errors.TaskExecutionFailed:`` or
``except globus_sdk.GlobusAPIError:``. ``except`` matches by the exception's real
class hierarchy (not ``__subclasscheck__``, so registering with an ABC cannot
help), and gcgate must not import either SDK. So the choice is made when an error
is built (:meth:`gcgate.errors.GcgateError.__new__`): if the module of the class's
SDK counterpart is already imported, the instance is made of a *twin*, a subclass
of both the gcgate class and the counterpart, built once per pair and cached. A
script that never imported the SDK cannot name its classes in an ``except``, so
it gets gcgate's plain classes and nothing is imported.

A twin keeps the gcgate class's name, module, ``__init__``, ``str()`` and
``repr()`` (the gcgate class comes first in its MRO), and pickles or copies as
the gcgate class (rebuilt as a twin wherever that SDK is imported).
"""

from __future__ import annotations

import json
import sys
from typing import Any, ClassVar

#: An SDK class, by module and attribute name, e.g. ("globus_sdk", "ComputeAPIError").
Counterpart = tuple[str, str]

_TWINS: dict[tuple[type, type], type] = {}


def twin_class(cls: type) -> type:
    """``cls``, or its twin when the module of its SDK counterpart is imported.

    The counterpart is the first ``_sdk_counterpart`` along ``cls``'s MRO, so a
    user's subclass of a gcgate error is twinned like its gcgate base.
    """
    spec: Counterpart | None = getattr(cls, "_sdk_counterpart", None)
    if spec is None:
        return cls
    module_name, name = spec
    module = sys.modules.get(module_name)
    # getattr, not the module's __dict__: globus_sdk resolves its names lazily.
    sdk_cls = getattr(module, name, None) if module is not None else None
    if not isinstance(sdk_cls, type) or issubclass(cls, sdk_cls):
        return cls
    twin = _TWINS.get((cls, sdk_cls))
    if twin is None:
        twin = _TWINS[(cls, sdk_cls)] = _build(cls, module_name, sdk_cls)
    return twin


def _build(cls: type, module: str, sdk_cls: type) -> type:
    mixins = _MIXINS.get(module, ())
    namespace = {
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
        "__reduce__": _reduce_as_gcgate_class,
    }
    return type(cls.__name__, (cls, *mixins, sdk_cls), namespace)


def _reduce_as_gcgate_class(self: BaseException) -> tuple[Any, ...]:
    """BaseException's reduce with the gcgate class in place of the twin, which no
    name leads to; unpickling builds through ``__new__`` again, so it is a twin
    again in a process that imported the SDK."""
    _, args, *state = BaseException.__reduce__(self)
    return (type(self).__bases__[0], args, *state)


class GlobusAPIErrorFields:
    """What ``globus_sdk.GlobusAPIError``'s attributes read, for a daemon refusal.

    The SDK's ``__init__`` parses a ``requests.Response``; a twin never runs it
    (there is no HTTP response, and it would import ``requests``). These answer
    instead, from the gcgate error's ``code``, ``message`` and ``http_status``, as
    if the service had sent the "type zero" error document ``{"code",
    "message"}`` that Globus Compute sends. The SDK's own ``content_type``,
    ``info`` and ``_dict_data`` work on top of them.
    """

    # Plain class attributes shadow the SDK's read-only ``message`` property, so
    # GatewayError.__init__ can set the instance's message.
    message: str | None = None
    request_id: str | None = None
    _info: Any = None
    # Set by the gcgate class (GatewayError) this mixes into.
    code: str
    http_status: int
    MESSAGE_FIELDS: ClassVar[list[str]]

    @property
    def raw_json(self) -> dict[str, Any]:
        """The error document the service would have sent."""
        return {"code": self.code, "message": self.message}

    @property
    def text(self) -> str:
        return json.dumps(self.raw_json)

    @property
    def binary_content(self) -> bytes:
        return self.text.encode()

    @property
    def headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json"}

    @property
    def http_reason(self) -> str:
        """The status line's phrase, e.g. "Not Found" ("" for a code HTTP lacks)."""
        from http import HTTPStatus  # only twins need it; keeps gcgate's import light

        try:
            return HTTPStatus(self.http_status).phrase
        except ValueError:
            return ""

    @property
    def messages(self) -> list[str]:
        return [self.message] if self.message else []

    @property
    def errors(self) -> list[Any]:
        """The document as the SDK's one ``ErrorSubdocument``, as it parses type zero."""
        subdocument = sys.modules["globus_sdk"].ErrorSubdocument
        return [subdocument(self.raw_json, message_fields=self.MESSAGE_FIELDS)]


#: Extra bases a twin gets by its counterpart's module, before the SDK class.
_MIXINS: dict[str, tuple[type, ...]] = {"globus_sdk": (GlobusAPIErrorFields,)}
