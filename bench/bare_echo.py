"""The bare grpcio peer: a minimal echo service (unary and bidi) with no framework around it."""

import asyncio
import sys

import grpc

UNARY = "/bench.Echo/Unary"
BIDI = "/bench.Echo/Bidi"


async def _unary(request: bytes, context) -> bytes:
    return request


async def _bidi(request_iterator, context):
    async for chunk in request_iterator:
        yield chunk


async def serve(address: str) -> None:
    server = grpc.aio.server()
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary),
        "Bidi": grpc.stream_stream_rpc_method_handler(_bidi),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("bench.Echo", handlers)])
    port = server.add_insecure_port(address)
    await server.start()
    print(address if address.startswith("unix:") else f"127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
