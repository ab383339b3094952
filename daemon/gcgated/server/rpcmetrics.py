"""Every gRPC call timed and counted by method and status code, for the metrics.

An interceptor rather than a line in each servicer method: it sees every
service on the server (Gateway, health, reflection) and every way a call ends
(answered, aborted with a status, failed, cancelled by the client). It is the
outermost interceptor, so calls the request decoding refuses are counted too.
Only methods the server knows are counted (a client cannot make up label values).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import grpc

from gcgated.services.metrics import RpcInstruments

from .handlers import KINDS, MethodInterceptor, behavior_of, is_async


class RpcMetrics(MethodInterceptor):
    """Feeds :class:`~gcgated.services.metrics.RpcInstruments` with each call."""

    def __init__(self, instruments: RpcInstruments) -> None:
        self._instruments = instruments

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        behavior = behavior_of(handler)
        if not is_async(behavior):
            return handler
        kind = next(k for k in KINDS if getattr(handler, k) is behavior)
        return handler._replace(**{kind: _timed(behavior, method, self._instruments)})


class _Timing:
    """One call, timed from entry to exit, then observed with the status it ended with."""

    __slots__ = ("_context", "_instruments", "_method", "_start")

    def __init__(
        self, method: str, instruments: RpcInstruments, context: grpc.aio.ServicerContext
    ) -> None:
        self._method = method
        self._instruments = instruments
        self._context = context
        self._start = 0.0

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        code = _code(self._context) if exc is None else _failure(exc, self._context)
        self._instruments.observe(self._method, code, time.perf_counter() - self._start)


def _timed(
    behavior: Callable[..., Any], method: str, instruments: RpcInstruments
) -> Callable[..., Any]:
    """``behavior`` timed, as the same kind of function (the aio server picks how to
    drive a handler by its function type)."""
    if inspect.isasyncgenfunction(behavior):

        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> Any:
            with _Timing(method, instruments, context):
                async for response in behavior(request, context):
                    yield response

        return streaming

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        with _Timing(method, instruments, context):
            return await behavior(request, context)

    return unary


def _code(
    context: grpc.aio.ServicerContext, unset: grpc.StatusCode = grpc.StatusCode.OK
) -> grpc.StatusCode:
    """The status the servicer set or aborted with (``unset`` if none)."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):
        return next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
    return unset


def _failure(exc: BaseException, context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    """The status of a call that ended by ``exc``: an abort's, CANCELLED when the
    client went away, else UNKNOWN (as gRPC answers an unexpected exception)."""
    if isinstance(exc, grpc.aio.AbortError):
        return _code(context, grpc.StatusCode.UNKNOWN)
    if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN
