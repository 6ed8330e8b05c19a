"""Console logs of ended leases, as their exporters hand them in (wire.console_logs): kept for a week,
fetched only by the lease's client."""

from __future__ import annotations

import asyncio

import grpc
import sqlalchemy as sa

from ..wire import console_logs as wire
from ..wire import names
from ..wire.errors import AccessDenied, DriverInvalidArgument, MethodNotFound
from .auth import Authority, Identity
from .lease_writer import read_lease
from .rpc import rpc
from .store import Store, console_logs, now


class ConsoleLogs:
    def __init__(self, store: Store):
        self.store = store

    def put(self, exporter: Identity, lease: str, data: bytes) -> None:
        """The log of `lease`, from the exporter that held it; replaces one handed in before (a retry)."""
        with self.store.transaction() as conn:
            record = read_lease(conn, lease)
            if record is None or record.namespace != exporter.namespace or record.exporter != exporter.name:
                raise AccessDenied(f"lease {lease} was not held by exporter {exporter.namespace}/{exporter.name}")
            conn.execute(console_logs.delete().where((console_logs.c.lease == lease)
                                                     | (console_logs.c.created < now() - wire.KEEP_DAYS * 86400)))
            conn.execute(console_logs.insert().values(lease=lease, namespace=record.namespace, client=record.client,
                                                      exporter=exporter.name, data=data, created=now()))

    def get(self, client: Identity, lease: str) -> bytes:
        with self.store.transaction(read_only=True) as conn:
            row = conn.execute(sa.select(console_logs).where(console_logs.c.lease == lease)).first()
            if row is None:
                record = read_lease(conn, lease)
                if record is not None and record.namespace == client.namespace and record.client != client.name:
                    raise AccessDenied(f"lease {lease} belongs to another client")
                state = "has not ended yet" if record is not None and record.active else "has not arrived (yet)"
                raise MethodNotFound(f"no console log for lease {lease}: it {state}, or its exporter has no console")
        if row.namespace != client.namespace or row.client != client.name:
            raise AccessDenied(f"lease {lease} belongs to another client")
        return row.data


class ConsoleLogServicer:
    def __init__(self, authority: Authority, logs: ConsoleLogs):
        self.authority, self.logs = authority, logs

    @rpc("exporter")
    async def Put(self, identity, request_iterator, context):
        lease = names.short(dict(context.invocation_metadata() or ()).get(wire.LEASE, ""))
        data = bytearray()
        async for chunk in request_iterator:
            data += chunk.value
            if len(data) > wire.LIMIT + wire.CHUNK:
                raise DriverInvalidArgument(f"a console log holds at most {wire.LIMIT} bytes")
        await asyncio.to_thread(self.logs.put, identity, lease, bytes(data))
        return wire.Empty()

    @rpc("client")
    async def Get(self, identity, request, context):
        data = await asyncio.to_thread(self.logs.get, identity, names.short(request.value))
        for chunk in wire.chunks(data) if data else [wire.Bytes()]:
            yield chunk

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(wire.SERVICE, {
            "Put": grpc.stream_unary_rpc_method_handler(self.Put, request_deserializer=wire.Bytes.FromString,
                                                        response_serializer=wire.Empty.SerializeToString),
            "Get": grpc.unary_stream_rpc_method_handler(self.Get, request_deserializer=wire.Name.FromString,
                                                        response_serializer=wire.Bytes.SerializeToString),
        })
