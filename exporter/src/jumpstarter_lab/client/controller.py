"""Distributed mode, client side: one client's view of the controller (exporters, leases, dials)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import grpc

from ..wire import console_logs, defaults, names
from ..wire import metadata as wire_metadata
from ..wire.channels import channel_for
from ..wire.errors import DriverError, DriverInvalidArgument, DriverTimeout, ExporterNotReady, exception_for_rpc_error
from ..wire.protocol import client_pb2, client_pb2_grpc, jumpstarter_pb2, jumpstarter_pb2_grpc
from .config import ClientConfig


@dataclass
class LeaseStatus:
    name: str
    ready: bool
    ended: bool
    exporter: str | None
    message: str
    ends: float | None = None  # when a granted lease ends at the latest (seconds since the epoch)
    begins: float | None = None  # when it may be granted from: asked for then, or its reservation begins
    tags: dict[str, str] = field(default_factory=dict)


def _status(lease: client_pb2.Lease) -> LeaseStatus:
    conditions = {c.type: c for c in lease.conditions}
    ready = conditions.get("Ready")
    ended = conditions.get("Ended")
    return LeaseStatus(name=names.short(lease.name), ready=bool(ready and ready.status == "True"),
                       ended=bool(ended and ended.status == "True"),
                       exporter=names.short(lease.exporter) if lease.HasField("exporter") else None,
                       message=(ready.message if ready else ""),
                       ends=lease.end_time.ToSeconds() if lease.HasField("end_time") else None,
                       begins=lease.begin_time.ToSeconds() if lease.HasField("begin_time") else None,
                       tags=dict(lease.tags))


def exporter_record(exporter: client_pb2.Exporter) -> dict:
    """An exporter as listings show it (the CLI's -o json|yaml, the exporter_info module)."""
    return {"name": names.short(exporter.name), "online": exporter.online, "status": names.status_name(exporter.status),
            "enabled": exporter.enabled, "message": exporter.status_message,
            "labels": dict(sorted(exporter.labels.items()))}


def lease_record(status: LeaseStatus) -> dict:
    """A lease as listings show it (the CLI's -o json|yaml, the lease_info module)."""
    return {"name": status.name, "state": "ready" if status.ready else "ended" if status.ended else "waiting",
            "exporter": status.exporter, "message": status.message, "tags": dict(sorted(status.tags.items())),
            "ends": status.ends, "begins": status.begins}


class ControllerClient:
    """One client's view of the controller: exporters, leases, dialing."""

    def __init__(self, config: ClientConfig, timeout: float = defaults.CONTROLLER_CALL):
        """`timeout`: seconds each call may wait for the controller's answer."""
        self.config, self.timeout = config, timeout
        self.channel = channel_for(config.endpoint, config.tls)
        self.metadata = wire_metadata.identity_metadata(config.token, "Client", config.namespace, config.name)
        self.clients = client_pb2_grpc.ClientServiceStub(self.channel)
        self.controller = jumpstarter_pb2_grpc.ControllerServiceStub(self.channel)
        self._ttls: dict[str, float] = {}  # leases this client created -> their ttl

    @property
    def parent(self) -> str:
        return names.namespace(self.config.namespace)

    def _lease(self, name: str) -> str:
        return names.lease(self.config.namespace, name)

    async def close(self) -> None:
        await self.channel.close()

    async def _call(self, what: str, method, request, extra: tuple = ()):
        try:
            return await method(request, metadata=self.metadata + extra, timeout=self.timeout)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:  # the message would say only "Deadline Exceeded"
                raise DriverTimeout(f"{what}: the controller at {self.config.endpoint} did not answer within "
                                    f"{self.timeout:g}s") from None
            raise exception_for_rpc_error(e, what) from None

    async def exporters(self, selector: str = "") -> list[client_pb2.Exporter]:
        response = await self._call("list exporters", self.clients.ListExporters,
                                    client_pb2.ListExportersRequest(parent=self.parent, filter=selector))
        return list(response.exporters)

    async def create_lease(self, selector: str, duration: float = defaults.LEASE_DURATION,
                           ttl: float = defaults.LEASE_TTL, exporter: str | None = None,
                           tags: dict[str, str] | None = None, begin_time: float | None = None,
                           priority: int = 0) -> LeaseStatus:
        """Ask for a lease on an exporter matching `selector` (and named `exporter`, when given), with the
        client's own `tags` on it; from `begin_time` (seconds since the epoch) on, a reservation, when given.
        A higher `priority` goes ahead in the queue (above 0 as far as the client's capabilities allow)."""
        lease = client_pb2.Lease(selector=selector, tags=tags or {})
        if exporter:
            lease.exporter_name = exporter
        if begin_time is not None:
            lease.begin_time.FromNanoseconds(int(begin_time * 1e9))
        lease.duration.FromSeconds(int(duration))
        status = _status(await self._call("create lease", self.clients.CreateLease,
                                          client_pb2.CreateLeaseRequest(parent=self.parent, lease=lease),
                                          ((wire_metadata.LEASE_TTL, str(ttl)),
                                           *(((wire_metadata.LEASE_PRIORITY, str(priority)),) if priority else ()))))
        self._ttls[status.name] = ttl
        return status

    def renew_every(self, name: str) -> float:
        """Seconds between renewals of a lease in use: often enough for the ttl it was created with."""
        return min(defaults.LEASE_RENEW_EVERY, self._ttls.get(name, defaults.LEASE_TTL) / 3)

    async def get_lease(self, name: str) -> LeaseStatus:
        return _status(await self._call(f"lease {name}", self.clients.GetLease,
                                        client_pb2.GetLeaseRequest(name=self._lease(name))))

    async def leases(self, active_only: bool = True, tag_filter: str = "") -> list[LeaseStatus]:
        """This client's leases (those whose tags match `tag_filter`, a label selector, when given)."""
        response = await self._call("list leases", self.clients.ListLeases,
                                    client_pb2.ListLeasesRequest(parent=self.parent, only_active=active_only,
                                                                 tag_filter=tag_filter))
        return [_status(lease) for lease in response.leases]

    async def keepalive(self, name: str) -> LeaseStatus:
        lease = client_pb2.Lease(name=self._lease(name))
        return _status(await self._call(f"renew lease {name}", self.clients.UpdateLease,
                                        client_pb2.UpdateLeaseRequest(lease=lease)))

    async def update_lease(self, name: str, duration: float | None = None, client: str | None = None) -> LeaseStatus:
        """Extend or shorten a lease (its `duration`, counted from the grant) and/or hand it to another `client`
        of the namespace, with upstream's update_mask."""
        lease = client_pb2.Lease(name=self._lease(name))
        paths = []
        if duration is not None:
            lease.duration.FromNanoseconds(round(duration * 1e9))
            paths.append("duration")
        if client is not None:
            lease.client = names.client(self.config.namespace, client)
            paths.append("client")
        if not paths:
            raise DriverInvalidArgument("say what to change in the lease: its duration or its client")
        request = client_pb2.UpdateLeaseRequest(lease=lease)
        request.update_mask.paths.extend(paths)
        return _status(await self._call(f"update lease {name}", self.clients.UpdateLease, request))

    async def release(self, name: str) -> None:
        await self._call(f"release lease {name}", self.clients.DeleteLease,
                         client_pb2.DeleteLeaseRequest(name=self._lease(name)))

    async def wait_ready(self, name: str, timeout: float = defaults.LEASE_WAIT, on_update=None) -> LeaseStatus:
        """Poll until ready (granted, and its exporter prepared), renewing meanwhile; `on_update(status)` sees each
        change (queue position, the exporter's beforeLease hook)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last_message, renewed = None, loop.time()
        while True:
            status = await self.get_lease(name)
            if status.message != last_message and on_update:
                on_update(status)
            last_message = status.message
            if status.ready:
                return status
            if status.ended:
                raise DriverError(f"lease {name} ended before it was ready: {status.message}")
            if loop.time() > deadline:
                raise ExporterNotReady(f"lease {name} was not granted within {timeout:g}s ({status.message})")
            if loop.time() - renewed > self.renew_every(name):
                await self.keepalive(name)
                renewed = loop.time()
            await asyncio.sleep(0.3)

    async def console_log(self, name: str, wait: float = 0.0) -> bytes:
        """The console log of lease `name`, which its exporter hands the controller once the lease ended;
        waiting up to `wait` seconds for it to arrive."""
        get = self.channel.unary_stream(console_logs.GET, request_serializer=console_logs.Name.SerializeToString,
                                        response_deserializer=console_logs.Bytes.FromString)
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            try:
                call = get(console_logs.Name(value=name), metadata=self.metadata, timeout=max(self.timeout, 60))
                return b"".join([chunk.value async for chunk in call])
            except grpc.aio.AioRpcError as e:
                if e.code() != grpc.StatusCode.NOT_FOUND or asyncio.get_running_loop().time() >= deadline:
                    raise exception_for_rpc_error(e, f"console log of lease {name}") from None
            await asyncio.sleep(0.5)

    async def dial(self, name: str) -> tuple[str, str]:
        response = await self._call(f"dial lease {name}", self.controller.Dial,
                                    jumpstarter_pb2.DialRequest(lease_name=name))
        return response.router_endpoint, response.router_token
