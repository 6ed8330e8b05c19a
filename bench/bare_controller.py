"""The floor for bench/controller.py: the same RPCs on bare grpcio, with nothing behind them.

    python bench/bare_controller.py HOST:PORT

Exporters Register and hold a Status stream; CreateLease hands out the first free
exporter from a set and tells it on its Status stream; DeleteLease frees it and tells
it again. No tokens, no database, no queue, no selectors: what is left is the cost of
grpcio's asyncio server carrying the same traffic as the controller, measured in the
same run so the two figures can be divided.
"""

from __future__ import annotations

import asyncio
import sys
import uuid

import grpc
from google.protobuf import empty_pb2

from jumpstarter_lab.wire import names
from jumpstarter_lab.wire.protocol import client_pb2, client_pb2_grpc, jumpstarter_pb2, jumpstarter_pb2_grpc, kubernetes_pb2


def _name(context) -> str:
    return dict(context.invocation_metadata() or ()).get("jumpstarter-name", "")


class Bare:
    def __init__(self):
        self.free: dict[str, None] = {}  # registered exporters not leased, in order
        self.leases: dict[str, str] = {}  # lease -> exporter
        self.streams: dict[str, asyncio.Queue] = {}  # exporter -> its Status stream


# The generated servicers answer every method UNIMPLEMENTED; grpc.aio takes async overrides.
class Controller(jumpstarter_pb2_grpc.ControllerServiceServicer):
    """The exporters' side: Register and Status (the generated base answers the rest UNIMPLEMENTED)."""

    def __init__(self, state: Bare):
        self.state = state

    async def Register(self, request, context):  # pylint: disable=invalid-overridden-method
        self.state.free[_name(context)] = None
        return jumpstarter_pb2.RegisterResponse()

    async def Status(self, request, context):  # pylint: disable=invalid-overridden-method
        queue = self.state.streams[_name(context)] = asyncio.Queue()
        yield jumpstarter_pb2.StatusResponse(leased=False)
        while True:
            lease = await queue.get()
            yield jumpstarter_pb2.StatusResponse(leased=lease is not None, lease_name=lease or "")


class Clients(client_pb2_grpc.ClientServiceServicer):
    """The clients' side: CreateLease and DeleteLease."""

    def __init__(self, state: Bare):
        self.state = state

    async def CreateLease(self, request, context):  # pylint: disable=invalid-overridden-method
        exporter = next(iter(self.state.free))
        del self.state.free[exporter]
        name = str(uuid.uuid4())
        self.state.leases[name] = exporter
        self.state.streams[exporter].put_nowait(name)
        lease = client_pb2.Lease(name=names.lease("default", name), selector=request.lease.selector,
                                 exporter=names.exporter("default", exporter))
        lease.conditions.append(kubernetes_pb2.Condition(type="Ready", status="True", reason="Ready"))
        return lease

    async def DeleteLease(self, request, context):  # pylint: disable=invalid-overridden-method
        exporter = self.state.leases.pop(names.short(request.name))
        self.state.free[exporter] = None
        self.state.streams[exporter].put_nowait(None)
        return empty_pb2.Empty()


async def main(address: str) -> None:
    server = grpc.aio.server()
    state = Bare()
    jumpstarter_pb2_grpc.add_ControllerServiceServicer_to_server(Controller(state), server)
    client_pb2_grpc.add_ClientServiceServicer_to_server(Clients(state), server)
    server.add_insecure_port(address)
    await server.start()
    print(f"listening on {address}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
