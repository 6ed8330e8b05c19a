"""jumpstarter.client.v1.ClientService: clients list exporters, and create, renew, read and end leases."""

from __future__ import annotations

import asyncio

from google.protobuf import empty_pb2

from ..wire import defaults, metadata, names
from ..wire.errors import DriverInvalidArgument, MethodNotFound
from ..wire.protocol import client_pb2
from . import lease_policy, selectors
from .auth import Authority, Identity
from .leases import SILENT_CLIENT_TTL, Leases
from .rpc import lease_message, rpc, timestamp
from .store import now


class ClientServicer:
    def __init__(self, authority: Authority, leases: Leases):
        self.authority, self.leases = authority, leases

    async def _exporters(self, identity: Identity, name_filter: str | None = None) -> list[client_pb2.Exporter]:
        """The exporters of the caller's namespace its capabilities let it lease (and `name_filter` selects);
        not those an admin revoked: they have left the lab."""
        listed = await asyncio.to_thread(self.leases.exporters.listing, identity.namespace)
        granted = {name: lease.client for (namespace, name), lease in self.leases.grants().items()
                   if namespace == identity.namespace}
        t = now()
        result = []
        for name, seen in listed:
            if seen.revoked or not lease_policy.allows(identity.allowed_exporters, seen.labels):
                continue
            if name_filter is not None and not selectors.matches(name_filter, seen.labels):
                continue
            leased = name in granted
            holder = f"leased by {granted[name]}" if leased else ""
            message = holder or seen.status_message
            if seen.disabled is not None:
                message = f"out of service: {seen.disabled}" + (f"; {holder}" if leased else "")
            result.append(client_pb2.Exporter(name=names.exporter(identity.namespace, name), labels=seen.labels,
                                              online=seen.online(t), status=seen.status_at(t, leased),
                                              status_message=message, enabled=seen.disabled is None))
        return result

    @rpc("client")
    async def ListExporters(self, identity, request, context):
        return client_pb2.ListExportersResponse(exporters=await self._exporters(identity, request.filter or None))

    @rpc("client")
    async def GetExporter(self, identity, request, context):
        for exporter in await self._exporters(identity):
            if names.short(exporter.name) == names.short(request.name):
                return exporter
        raise MethodNotFound(f"no exporter {request.name}")

    @rpc("client")
    async def CreateLease(self, identity, request, context):
        lease = request.lease
        duration = (lease.duration.ToTimedelta().total_seconds() if lease.HasField("duration")
                    else defaults.LEASE_DURATION)
        sent = dict(context.invocation_metadata() or ())
        try:
            ttl = float(sent.get(metadata.LEASE_TTL, SILENT_CLIENT_TTL))
        except ValueError:
            raise DriverInvalidArgument(f"{metadata.LEASE_TTL} must be seconds") from None
        try:
            priority = int(sent.get(metadata.LEASE_PRIORITY, 0))
        except ValueError:
            raise DriverInvalidArgument(f"{metadata.LEASE_PRIORITY} must be a whole number") from None
        if request.lease_id:
            names.check(request.lease_id, "lease_id")
        exporter = names.short(lease.exporter_name) if lease.HasField("exporter_name") else None
        begin_at = lease.begin_time.ToNanoseconds() / 1e9 if lease.HasField("begin_time") else None
        record = await self.leases.create(identity, lease.selector, duration, ttl, priority, request.lease_id or None,
                                          exporter or None, dict(lease.tags), begin_at)
        return lease_message(record)

    @rpc("client")
    async def GetLease(self, identity, request, context):
        return lease_message(await self.leases.get(identity, names.short(request.name)))

    @rpc("client")
    async def ListLeases(self, identity, request, context):
        active = request.only_active if request.HasField("only_active") else True
        selectors.parse(request.tag_filter)  # a malformed filter is refused, not taken to match nothing
        return client_pb2.ListLeasesResponse(leases=[lease_message(lease)
                                                     for lease in await self.leases.list(identity, active)
                                                     if selectors.matches(request.tag_filter, dict(lease.tags))])

    @rpc("client")
    async def UpdateLease(self, identity, request, context):
        """Renews the lease (keepalive); with upstream's update_mask, also sets its `duration` (extend or
        shorten, counted from the grant) or hands it to another `client` of the namespace."""
        name, lease = names.short(request.lease.name), request.lease
        paths = set(request.update_mask.paths)
        if not paths:
            return lease_message(await self.leases.keepalive(identity, name))
        unknown = paths - {"duration", "client"}
        if unknown:
            raise DriverInvalidArgument(f"a lease's {', '.join(sorted(unknown))} cannot be changed (duration and "
                                        "client can)")
        duration = lease.duration.ToTimedelta().total_seconds() if "duration" in paths else None
        new_owner = None
        if "client" in paths:
            wanted = names.short(lease.client)
            new_owner = await asyncio.to_thread(self.authority.identity, "client", identity.namespace, wanted)
            if new_owner is None:
                raise MethodNotFound(f"no client {wanted} in namespace {identity.namespace} to hand lease {name} to")
        return lease_message(await self.leases.update(identity, name, duration, new_owner))

    @rpc("client")
    async def DeleteLease(self, identity, request, context):
        await self.leases.release(identity, names.short(request.name))
        return empty_pb2.Empty()

    @rpc("client")
    async def RotateToken(self, identity, request, context):
        """A new token for the calling client; the one it called with stops working."""
        token, expiry = await asyncio.to_thread(self.authority.rotate, identity)
        return client_pb2.RotateTokenResponse(token=token, expiry=timestamp(expiry))
