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
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from gcgated.services.metrics import RpcInstruments

KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


class RpcMetrics(grpc.aio.ServerInterceptor):
    """Feeds :class:`~gcgated.services.metrics.RpcInstruments` with each call."""

    def __init__(self, instruments: RpcInstruments) -> None:
        self._instruments = instruments

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        kind = next(k for k in KINDS if getattr(handler, k) is not None)
        behavior = getattr(handler, kind)
        if not (inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior)):
            return handler  # synchronous servicers run elsewhere; none on this server
        method = handler_call_details.method
        timed = _timed(behavior, lambda code, start: self._observe(method, code, start))
        return handler._replace(**{kind: timed})

    def _observe(self, method: str, code: grpc.StatusCode, start: float) -> None:
        self._instruments.observe(method, code, time.perf_counter() - start)


Observe = Callable[[grpc.StatusCode, float], None]


def _timed(behavior: Callable[..., Any], observe: Observe) -> Callable[..., Any]:
    """``behavior`` reporting its status code and start time when it ends, as the
    same kind of function (the aio server picks how to drive it by its type)."""
    if inspect.isasyncgenfunction(behavior):

        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> Any:
            start, code = time.perf_counter(), grpc.StatusCode.UNKNOWN
            try:
                async for response in behavior(request, context):
                    yield response
                code = _code(context)
            except BaseException as exc:
                code = _failure(exc, context)
                raise
            finally:
                observe(code, start)

        return streaming

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        start, code = time.perf_counter(), grpc.StatusCode.UNKNOWN
        try:
            response = await behavior(request, context)
            code = _code(context)
            return response
        except BaseException as exc:
            code = _failure(exc, context)
            raise
        finally:
            observe(code, start)

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
