"""ControllerService (exporters, and clients dialing), ClientService (clients) over the store."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc
from google.protobuf import empty_pb2, timestamp_pb2

from ..wire.errors import JumpstarterLabError, NotAuthenticated, status_for_exception
from ..wire.protocol import client_pb2, jumpstarter_pb2, kubernetes_pb2
from . import lease_policy, selectors
from .auth import Authority, Identity
from .dials import Dials
from .lease_record import LeaseRecord, LeaseState
from .leases import Leases
from .store import now
from .subscriptions import Subscriptions

logger = logging.getLogger(__name__)


def bearer(context) -> str:
    return dict(context.invocation_metadata() or ()).get("authorization", "").removeprefix("Bearer ").strip()


async def authenticate(context, authority: Authority, kind: str) -> Identity:
    token = bearer(context)
    if not token:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"no {kind} token (authorization: Bearer ...)")
    identity = authority.verified(token, kind)
    if identity is not None:
        if authority.refresh_due(token, kind):  # verified again off the call's path
            _refreshes.add(task := asyncio.ensure_future(asyncio.to_thread(authority.refresh, token, kind)))
            task.add_done_callback(_refreshes.discard)
        return identity
    try:
        return await asyncio.to_thread(authority.verify, token, kind)
    except NotAuthenticated as e:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(e))


_refreshes: set[asyncio.Future] = set()  # background token refreshes: held so they are not collected mid-way


async def _abort(context, exc: Exception):
    if not isinstance(exc, (JumpstarterLabError, ValueError)):
        logger.exception("controller call failed")
    await context.abort(status_for_exception(exc), str(exc))


def short_name(resource: str) -> str:
    """`namespaces/ns/leases/x` -> `x` (a bare name passes through)."""
    return resource.rsplit("/", 1)[-1]


def _timestamp(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    if seconds is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def lease_message(view: LeaseRecord) -> client_pb2.Lease:
    lease = client_pb2.Lease(name=f"namespaces/{view.namespace}/leases/{view.name}", selector=view.selector,
                             client=f"namespaces/{view.namespace}/clients/{view.client}")
    lease.duration.FromSeconds(int(view.duration))
    lease.effective_duration.FromSeconds(int((view.ended_at or now()) - view.granted_at) if view.granted_at else 0)
    lease.begin_time.CopyFrom(_timestamp(view.requested_at))
    if view.granted_at:
        lease.effective_begin_time.CopyFrom(_timestamp(view.granted_at))
        lease.end_time.CopyFrom(_timestamp(view.end_time))
    if view.ended_at:
        lease.effective_end_time.CopyFrom(_timestamp(view.ended_at))
    if view.exporter:
        lease.exporter = f"namespaces/{view.namespace}/exporters/{view.exporter}"
    ready = view.state == "granted"
    reason = {"queued": "Pending", "granted": "Ready", "released": "Released", "expired": "Expired"}[view.state]
    message = (f"waiting, position {view.position} in the queue" if view.state == "queued"
               else view.reason or f"granted, epoch {view.epoch}")
    lease.conditions.append(kubernetes_pb2.Condition(type="Ready", status="True" if ready else "False",
                                                     reason=reason, message=message))
    if view.state in ("released", "expired"):
        lease.conditions.append(kubernetes_pb2.Condition(type="Ended", status="True", reason=reason, message=message))
    return lease


class ControllerServicer:
    """jumpstarter.v1.ControllerService."""

    def __init__(self, authority: Authority, leases: Leases, dials: Dials, subscriptions: Subscriptions,
                 router_endpoint: str):
        self.authority, self.leases, self.dials = authority, leases, dials
        self.subscriptions, self.router_endpoint = subscriptions, router_endpoint

    async def Register(self, request, context):
        identity = await authenticate(context, self.authority, "exporter")
        uuid_ = request.reports[0].uuid if request.reports else ""
        reports = jumpstarter_pb2.GetReportResponse(uuid=uuid_, labels=dict(request.labels),
                                                    reports=request.reports).SerializeToString()
        await asyncio.to_thread(self.leases.exporters.register, identity, uuid_, dict(request.labels), reports)
        logger.info("exporter %s/%s registered", identity.namespace, identity.name)
        return jumpstarter_pb2.RegisterResponse(uuid=uuid_)

    async def Unregister(self, request, context):
        identity = await authenticate(context, self.authority, "exporter")
        await asyncio.to_thread(self.leases.exporters.heartbeat, identity, False)
        await self.leases.schedule((identity.namespace, identity.name))  # its lease ends now, not after the grace
        return jumpstarter_pb2.UnregisterResponse()

    async def ReportStatus(self, request, context):
        identity = await authenticate(context, self.authority, "exporter")
        await asyncio.to_thread(self.leases.exporters.report_status, identity, request.status, request.message)
        if request.HasField("release_lease") and request.release_lease:
            await self.leases.release_by_exporter(identity, "released by the exporter")
        return jumpstarter_pb2.ReportStatusResponse()

    async def Status(self, request, context):
        """Lease changes for this exporter; an open Status stream is what keeps an exporter online."""
        identity = await authenticate(context, self.authority, "exporter")
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
                await self.subscriptions.changed(key, lease, 5.0)

    async def Listen(self, request, context):
        identity = await authenticate(context, self.authority, "exporter")
        name = short_name(request.lease_name)
        key = (identity.namespace, identity.name)
        with self.subscriptions.listening(name) as dials:
            while not context.done():
                lease = self.subscriptions.grants.get(key)
                if lease is None or lease.name != name:
                    return  # the lease ended: so does listening for it
                with contextlib.suppress(asyncio.TimeoutError):
                    endpoint, token = await asyncio.wait_for(dials.get(), 1.0)
                    yield jumpstarter_pb2.ListenResponse(router_endpoint=endpoint, router_token=token)

    async def Dial(self, request, context):
        identity = await authenticate(context, self.authority, "client")
        try:
            # Read from the database: another replica may have granted it a moment ago.
            lease = await self.leases.get(identity, short_name(request.lease_name), fresh=True)
            if lease.state != LeaseState.GRANTED:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                    f"lease {lease.name} is {lease.state}, not ready: {lease.reason or 'waiting'}")
            token = self.authority.router_token(lease.name, lease.epoch, identity.name, identity.capabilities)
            await asyncio.to_thread(self.dials.add, lease.name, self.router_endpoint, token)
            self.subscriptions.poke()
            return jumpstarter_pb2.DialResponse(router_endpoint=self.router_endpoint, router_token=token)
        except JumpstarterLabError as e:
            await _abort(context, e)

    async def AuditStream(self, request_iterator, context):
        await authenticate(context, self.authority, "exporter")
        async for entry in request_iterator:
            logger.info("audit %s %s: %s", entry.exporter_uuid, entry.severity, entry.message)
        return empty_pb2.Empty()

    # The legacy lease calls on ControllerService, for older clients.
    async def RequestLease(self, request, context):
        identity = await authenticate(context, self.authority, "client")
        selector = ",".join(f"{k}={v}" for k, v in sorted(request.selector.match_labels.items()))
        try:
            lease = await self.leases.create(identity, selector, float(request.duration.seconds or 1800))
        except (JumpstarterLabError, ValueError) as e:
            await _abort(context, e)
        return jumpstarter_pb2.RequestLeaseResponse(name=lease.name)

    async def GetLease(self, request, context):
        identity = await authenticate(context, self.authority, "client")
        try:
            lease = await self.leases.get(identity, short_name(request.name))
        except JumpstarterLabError as e:
            await _abort(context, e)
        response = jumpstarter_pb2.GetLeaseResponse(conditions=lease_message(lease).conditions)
        response.duration.FromSeconds(int(lease.duration))
        if lease.exporter:
            response.exporter_uuid = lease.exporter
        return response

    async def ReleaseLease(self, request, context):
        identity = await authenticate(context, self.authority, "client")
        try:
            await self.leases.release(identity, short_name(request.name))
        except JumpstarterLabError as e:
            await _abort(context, e)
        return jumpstarter_pb2.ReleaseLeaseResponse()

    async def ListLeases(self, request, context):
        identity = await authenticate(context, self.authority, "client")
        views = await self.leases.list(identity)
        return jumpstarter_pb2.ListLeasesResponse(names=[v.name for v in views])


class ClientServicer:
    """jumpstarter.client.v1.ClientService."""

    def __init__(self, authority: Authority, leases: Leases, subscriptions: Subscriptions):
        self.authority, self.leases, self.subscriptions = authority, leases, subscriptions

    async def _exporters(self, identity: Identity, name_filter: str | None = None):
        listed = await asyncio.to_thread(self.leases.exporters.listing, identity.namespace)
        granted = {name for namespace, name in self.leases.grants() if namespace == identity.namespace}
        t = now()
        result = []
        for name, seen in listed:
            if not lease_policy.allows(identity.allowed_exporters, seen.labels):
                continue
            if name_filter is not None and not selectors.matches(name_filter, seen.labels):
                continue
            leased = name in granted
            result.append(client_pb2.Exporter(name=f"namespaces/{identity.namespace}/exporters/{name}", labels=seen.labels,
                                              online=seen.online(t), status=seen.status_at(t, leased),
                                              status_message="leased" if leased else seen.status_message))
        return result

    async def ListExporters(self, request, context):
        identity = await authenticate(context, self.authority, "client")
        try:
            exporters = await self._exporters(identity, request.filter or None)
        except JumpstarterLabError as e:
            await _abort(context, e)
        return client_pb2.ListExportersResponse(exporters=exporters)

    async def GetExporter(self, request, context):
        identity = await authenticate(context, self.authority, "client")
        for exporter in await self._exporters(identity):
            if short_name(exporter.name) == short_name(request.name):
                return exporter
        await context.abort(grpc.StatusCode.NOT_FOUND, f"no exporter {request.name}")

    async def CreateLease(self, request, context):
        identity = await authenticate(context, self.authority, "client")
        duration = request.lease.duration.ToTimedelta().total_seconds() if request.lease.HasField("duration") else 1800
        try:
            ttl = float(dict(context.invocation_metadata() or ()).get("x-jumpstarter-lab-lease-ttl", 30))
        except ValueError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "x-jumpstarter-lab-lease-ttl must be seconds")
        try:
            exporter = short_name(request.lease.exporter_name) if request.lease.HasField("exporter_name") else None
            view = await self.leases.create(identity, request.lease.selector, duration, ttl, 0,
                                            request.lease_id or None, exporter or None)
        except (JumpstarterLabError, ValueError) as e:
            await _abort(context, e)
        return lease_message(view)

    async def GetLease(self, request, context):
        identity = await authenticate(context, self.authority, "client")
        try:
            return lease_message(await self.leases.get(identity, short_name(request.name)))
        except JumpstarterLabError as e:
            await _abort(context, e)

    async def ListLeases(self, request, context):
        identity = await authenticate(context, self.authority, "client")
        active = request.only_active if request.HasField("only_active") else True
        views = await self.leases.list(identity, active)
        return client_pb2.ListLeasesResponse(leases=[lease_message(v) for v in views])

    async def UpdateLease(self, request, context):
        """Renews the lease (keepalive); the lease's selector and duration do not change."""
        identity = await authenticate(context, self.authority, "client")
        try:
            return lease_message(await self.leases.keepalive(identity, short_name(request.lease.name)))
        except JumpstarterLabError as e:
            await _abort(context, e)

    async def DeleteLease(self, request, context):
        identity = await authenticate(context, self.authority, "client")
        try:
            await self.leases.release(identity, short_name(request.name))
        except JumpstarterLabError as e:
            await _abort(context, e)
        return empty_pb2.Empty()

    async def RotateToken(self, request, context):
        """A new token for the calling client; the one it called with stops working."""
        identity = await authenticate(context, self.authority, "client")
        token, expiry = await asyncio.to_thread(self.authority.rotate, identity)
        return client_pb2.RotateTokenResponse(token=token, expiry=_timestamp(expiry))
