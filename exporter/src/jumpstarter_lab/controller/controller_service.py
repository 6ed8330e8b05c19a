"""jumpstarter.v1.ControllerService: exporters register, report and listen for dials; clients
dial a leased exporter (and older clients lease through it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc
from google.protobuf import empty_pb2

from ..wire import defaults, names
from ..wire.labels import HOOKS
from ..wire.errors import AccessDenied, NotAuthenticated
from ..wire.protocol import jumpstarter_pb2
from .auth import Authority
from .dials import Dials
from .lease_policy import AFTER_LEASE, BEFORE_LEASE
from .lease_record import LeaseState
from .leases import Leases
from .router import Router
from .rpc import lease_message, rpc
from .subscriptions import Subscriptions

logger = logging.getLogger(__name__)

# Seconds a Status stream waits for a change of grant before it looks again: a safety net only, since
# grants and revocations wake the streams they concern, and a stream whose exporter went away is cancelled.
# At 10,000 streams, waking each every 5 s cost 6% of a core, every 60 s still 2.6% (the event loop's share).
STATUS_WAKE = 600.0


class ControllerServicer:
    def __init__(self, authority: Authority, leases: Leases, dials: Dials, subscriptions: Subscriptions,
                 router: Router, router_endpoint: str):
        self.authority, self.leases, self.dials = authority, leases, dials
        self.subscriptions, self.router, self.router_endpoint = subscriptions, router, router_endpoint

    # --- exporters ------------------------------------------------------------------------

    @rpc("exporter")
    async def Register(self, identity, request, context):
        uuid_ = request.reports[0].uuid if request.reports else ""
        reports = jumpstarter_pb2.GetReportResponse(uuid=uuid_, labels=dict(request.labels),
                                                    reports=request.reports).SerializeToString()
        hooks = request.reports[0].labels.get(HOOKS, "") if request.reports else ""
        await asyncio.to_thread(self.leases.exporters.register, identity, uuid_, dict(request.labels), reports,
                                ",".join(sorted(set(hooks.split(",")) & {BEFORE_LEASE, AFTER_LEASE})))
        logger.info("exporter %s/%s registered", identity.namespace, identity.name)
        return jumpstarter_pb2.RegisterResponse(uuid=uuid_)

    @rpc("exporter")
    async def Unregister(self, identity, request, context):
        await asyncio.to_thread(self.leases.exporters.heartbeat, identity, False)
        await self.leases.schedule((identity.namespace, identity.name))  # its lease ends now, not after the grace
        return jumpstarter_pb2.UnregisterResponse()

    @rpc("exporter")
    async def ReportStatus(self, identity, request, context):
        await self.leases.report_status(identity, request.status, request.message,
                                        release=request.HasField("release_lease") and request.release_lease)
        return jumpstarter_pb2.ReportStatusResponse()

    @rpc("exporter")
    async def Status(self, identity, request, context):
        """Lease changes for this exporter; an open Status stream is what keeps an exporter online."""
        key = (identity.namespace, identity.name)
        with self.subscriptions.exporter_connected(key):
            await asyncio.to_thread(self.leases.exporters.heartbeat, identity)
            await self.leases.schedule(key)  # an exporter coming online may be what a queued lease waits for
            last = ()
            while not context.done():
                lease = self.subscriptions.grants.get(key)
                current = (lease.name, lease.client) if lease else None
                if current != last:
                    last = current
                    if lease:
                        yield jumpstarter_pb2.StatusResponse(leased=True, lease_name=lease.name,
                                                             client_name=lease.client)
                    else:
                        yield jumpstarter_pb2.StatusResponse(leased=False)
                await self.subscriptions.changed(key, lease, STATUS_WAKE)
                seen = self.leases.writer.exporters_seen.get(key)
                if seen is not None and seen.revoked:  # its token was voided since the stream began
                    raise NotAuthenticated(f"the identity of exporter {identity.namespace}/{identity.name} was revoked")

    @rpc("exporter")
    async def Listen(self, identity, request, context):
        name = names.short(request.lease_name)
        key = (identity.namespace, identity.name)
        holder = next((exporter for exporter, lease in self.subscriptions.grants.items() if lease.name == name), None)
        if holder is None:
            return  # not granted (any more): nothing to listen for
        if holder != key:  # another exporter's lease: its dials are not this one's to take
            raise AccessDenied(f"lease {name} is not granted to exporter {identity.namespace}/{identity.name}")
        with self.subscriptions.listening(name) as dials:
            while not context.done():
                lease = self.subscriptions.grants.get(key)
                if lease is None or lease.name != name:
                    return  # the lease ended: so does listening for it
                with contextlib.suppress(asyncio.TimeoutError):
                    endpoint, token = await asyncio.wait_for(dials.get(), 1.0)
                    yield jumpstarter_pb2.ListenResponse(router_endpoint=endpoint, router_token=token)

    @rpc("exporter")
    async def AuditStream(self, identity, request_iterator, context):
        async for entry in request_iterator:
            logger.info("audit %s %s: %s", entry.exporter_uuid, entry.severity, entry.message)
        return empty_pb2.Empty()

    # --- clients ------------------------------------------------------------------------------

    @rpc("client")
    async def Dial(self, identity, request, context):
        # Read from the database: another replica may have granted it a moment ago.
        lease = await self.leases.get(identity, names.short(request.lease_name), fresh=True)
        if lease.state != LeaseState.GRANTED:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"lease {lease.name} is {lease.state}, not ready: {lease.reason or 'waiting'}")
        jti = self.router.expect(lease.name)  # Busy when too many of this lease's dials are still being set up
        token = self.authority.router_token(lease.name, lease.epoch, identity.name, identity.capabilities, jti=jti)
        await asyncio.to_thread(self.dials.add, lease.name, self.router_endpoint, token)
        self.subscriptions.poke()
        return jumpstarter_pb2.DialResponse(router_endpoint=self.router_endpoint, router_token=token)

    # The legacy lease calls on ControllerService, for older clients.
    @rpc("client")
    async def RequestLease(self, identity, request, context):
        selector = ",".join(f"{k}={v}" for k, v in sorted(request.selector.match_labels.items()))
        lease = await self.leases.create(identity, selector, float(request.duration.seconds or defaults.LEASE_DURATION))
        return jumpstarter_pb2.RequestLeaseResponse(name=lease.name)

    @rpc("client")
    async def GetLease(self, identity, request, context):
        lease = await self.leases.get(identity, names.short(request.name))
        response = jumpstarter_pb2.GetLeaseResponse(conditions=lease_message(lease).conditions)
        response.duration.FromSeconds(int(lease.duration))
        if lease.exporter:
            response.exporter_uuid = lease.exporter
        return response

    @rpc("client")
    async def ReleaseLease(self, identity, request, context):
        await self.leases.release(identity, names.short(request.name))
        return jumpstarter_pb2.ReleaseLeaseResponse()

    @rpc("client")
    async def ListLeases(self, identity, request, context):
        return jumpstarter_pb2.ListLeasesResponse(names=[lease.name for lease in await self.leases.list(identity)])
