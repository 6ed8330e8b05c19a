"""Who may use a standalone exporter: the bearer token every RPC must carry, when one is set.

(Mutual TLS needs nothing here: gRPC itself refuses a client without a certificate from the
client CA before any RPC.) Distributed mode needs neither: there the controller authenticates.
"""

from __future__ import annotations

import hmac
import logging

import grpc

from ..wire.metadata import bearer

logger = logging.getLogger(__name__)


class TokenCheck(grpc.aio.ServerInterceptor):
    """Refuse, as UNAUTHENTICATED, every RPC whose `authorization: Bearer` is not the token."""

    def __init__(self, token: str):
        self._token = token.encode()

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        offered = bearer(handler_call_details.invocation_metadata).encode()
        if handler is None or hmac.compare_digest(offered, self._token):
            return handler
        logger.warning("refused %s: %s", handler_call_details.method,
                       "a wrong token" if offered else "no token")
        return _refusing(handler, "a wrong token" if offered else "no token (authorization: Bearer ...)")


def _refusing(handler: grpc.RpcMethodHandler, why: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that aborts before touching the request."""
    message = f"this exporter needs its client token: {why}"

    async def refuse(_request, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def refuse_streaming(_request, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # an async generator, as streaming responses are

    codec = dict(request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer)
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse_streaming, **codec)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse, **codec)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse_streaming, **codec)
    return grpc.unary_unary_rpc_method_handler(refuse, **codec)
