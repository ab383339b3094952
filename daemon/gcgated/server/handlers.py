"""What the server's interceptors share: replacing a method's handler.

Both interceptors (``decoding``, ``rpcmetrics``) wrap the handler of every method
the server knows and pass unknown methods through; a handler's behaviour is
one of four kinds, and the aio server drives a coroutine and an async
generator differently, so a wrapper must be of the same kind as what it wraps.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

#: The attributes of a ``grpc.RpcMethodHandler`` that may hold its behaviour.
KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


class MethodInterceptor(grpc.aio.ServerInterceptor):
    """Replaces each known method's handler with :meth:`wrap`'s."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:  # an unknown method: gRPC answers UNIMPLEMENTED
            return handler
        return self.wrap(handler, handler_call_details.method)

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        raise NotImplementedError


def behavior_of(handler: grpc.RpcMethodHandler) -> Callable[..., Any]:
    return next(getattr(handler, k) for k in KINDS if getattr(handler, k) is not None)


def is_async(behavior: Callable[..., Any]) -> bool:
    """Whether the aio server runs ``behavior`` on its loop (synchronous servicers
    run in a thread pool; none on this server)."""
    return inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior)
