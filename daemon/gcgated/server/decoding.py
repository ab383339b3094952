"""Requests whose bytes are not the method's protobuf message get INVALID_ARGUMENT.

gRPC's Python server runs the request deserializer before any servicer code, and
turns an exception there (a ``DecodeError`` for corrupt wire data or a string
field with bad UTF-8) into UNKNOWN with the exception's repr, logged with a
traceback at ERROR. That is a client's mistake, not ours: this interceptor lets
the deserializer fail softly and answers such calls with INVALID_ARGUMENT and a
message naming the method and what was wrong, for every service on the server
(Gateway, health, reflection).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from gcgated.logs import log_refusal

from .handlers import MethodInterceptor, behavior_of, is_async

log = logging.getLogger(__name__)

Check = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class _Undecodable:
    """Takes the place of a request that did not parse; never reaches a servicer."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class RequestDecoding(MethodInterceptor):
    """Wraps each method's deserializer and behaviour; see the module docstring."""

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        if handler.request_deserializer is None:
            return handler
        decode = handler.request_deserializer

        def tolerant(data: bytes) -> Any:
            try:
                return decode(data)
            except Exception as exc:
                return _Undecodable(str(exc))

        async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, _Undecodable):
                message = (
                    f"{method}: the request is not a valid message for this method"
                    f" ({request.reason})"
                )
                log_refusal(log, method, "INVALID_ARGUMENT", message, "")
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)
            return request

        async def refuse_each(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            async def checked() -> AsyncIterator[Any]:
                async for request in requests:
                    yield await refuse(request, context)

            return checked()

        streaming_in, streaming_out = handler.request_streaming, handler.response_streaming
        behavior = behavior_of(handler)
        if not is_async(behavior):
            return handler
        factory = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[(streaming_in, streaming_out)]
        return factory(
            _checked(behavior, refuse_each if streaming_in else refuse),
            request_deserializer=tolerant,
            response_serializer=handler.response_serializer,
        )


def _checked(behavior: Callable[..., Any], check: Check) -> Callable[..., Any]:
    """``behavior`` with ``check`` applied to its request first, as the same kind of
    function (the aio server picks how to drive a handler by its function type)."""
    if inspect.isasyncgenfunction(behavior):

        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async for response in behavior(await check(request, context), context):
                yield response

        return streaming

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await behavior(await check(request, context), context)

    return unary
