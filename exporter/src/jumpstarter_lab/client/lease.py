"""Distributed mode, client side: the client config, leases with keepalive, and a local
Unix socket whose every connection is dialed through the controller's router.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import yaml

from ..config import API_VERSION, parse_yaml, validate
from ..distributed import auth_metadata, channel_to
from ..errors import ConfigError, DriverError, ExporterNotReady, exception_for_rpc_error
from ..protocol import client_pb2, client_pb2_grpc, jumpstarter_pb2, jumpstarter_pb2_grpc, router_pb2_grpc
from ..streams import SocketStream, forward
from .core import ClientFrames

logger = logging.getLogger(__name__)
TTL_METADATA = "x-jumpstarter-lab-lease-ttl"  # keepalive period a client promises; upstream clients send none

CLIENT_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "endpoint", "token"],
    "properties": {
        "apiVersion": {"const": API_VERSION},
        "kind": {"const": "ClientConfig"},
        "metadata": {"type": "object", "required": ["name"],
                     "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}}},
        "endpoint": {"type": "string", "minLength": 1},
        "token": {"type": "string", "minLength": 1},
        "tls": {"type": "object", "properties": {"ca": {"type": "string"}, "insecure": {"type": "boolean"}},
                "additionalProperties": False},
        "drivers": {"type": "object", "properties": {"allow": {"type": "array", "items": {"type": "string"}},
                                                     "unsafe": {"type": "boolean"}}},
        "grpcOptions": {"type": ["object", "null"]},
        "shell": {"type": "object"},
        "leases": {"type": "object"},
        "alias": {"type": "string"},
    },
    "additionalProperties": False,
}


@dataclass
class ClientConfig:
    """A client's config file (upstream's ClientConfig format): who it is and where the controller is."""

    name: str
    namespace: str
    endpoint: str
    token: str
    tls: dict = field(default_factory=dict)
    allow: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: str | Path) -> ClientConfig:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise ConfigError(f"cannot read client config {path}: {e.strerror}") from None
        data, source = parse_yaml(text, str(path))
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a ClientConfig mapping")
        validate(data, CLIENT_SCHEMA, source)
        return cls(name=data["metadata"]["name"], namespace=data["metadata"].get("namespace", "default"),
                   endpoint=data["endpoint"], token=data["token"], tls=data.get("tls") or {},
                   allow=(data.get("drivers") or {}).get("allow") or [])

    def dump(self) -> str:
        return yaml.safe_dump({"apiVersion": API_VERSION, "kind": "ClientConfig",
                               "metadata": {"namespace": self.namespace, "name": self.name},
                               "endpoint": self.endpoint, "token": self.token, "tls": self.tls,
                               "drivers": {"allow": self.allow}}, sort_keys=False)


@dataclass
class LeaseStatus:
    name: str
    ready: bool
    ended: bool
    exporter: str | None
    message: str


def _status(lease: client_pb2.Lease) -> LeaseStatus:
    conditions = {c.type: c for c in lease.conditions}
    ready = conditions.get("Ready")
    ended = conditions.get("Ended")
    return LeaseStatus(name=lease.name.rsplit("/", 1)[-1], ready=bool(ready and ready.status == "True"),
                       ended=bool(ended and ended.status == "True"),
                       exporter=lease.exporter.rsplit("/", 1)[-1] if lease.HasField("exporter") else None,
                       message=(ready.message if ready else ""))


class ControllerClient:
    """One client's view of the controller: exporters, leases, dialing."""

    def __init__(self, config: ClientConfig):
        self.config = config
        self.channel = channel_to(config.endpoint, config.tls)
        self.metadata = auth_metadata(config.token, "Client", config.namespace, config.name)
        self.clients = client_pb2_grpc.ClientServiceStub(self.channel)
        self.controller = jumpstarter_pb2_grpc.ControllerServiceStub(self.channel)

    @property
    def parent(self) -> str:
        return f"namespaces/{self.config.namespace}"

    async def close(self) -> None:
        await self.channel.close()

    async def _call(self, what: str, method, request, extra: tuple = ()):
        try:
            return await method(request, metadata=self.metadata + extra, timeout=30)
        except grpc.aio.AioRpcError as e:
            raise exception_for_rpc_error(e, what) from None

    async def exporters(self, selector: str = "") -> list[client_pb2.Exporter]:
        response = await self._call("list exporters", self.clients.ListExporters,
                                    client_pb2.ListExportersRequest(parent=self.parent, filter=selector))
        return list(response.exporters)

    async def create_lease(self, selector: str, duration: float = 1800, ttl: float = 30,
                           exporter: str | None = None) -> LeaseStatus:
        """Ask for a lease on an exporter matching `selector` (and named `exporter`, when given)."""
        lease = client_pb2.Lease(selector=selector)
        if exporter:
            lease.exporter_name = exporter
        lease.duration.FromSeconds(int(duration))
        return _status(await self._call("create lease", self.clients.CreateLease,
                                        client_pb2.CreateLeaseRequest(parent=self.parent, lease=lease),
                                        ((TTL_METADATA, str(ttl)),)))

    async def get_lease(self, name: str) -> LeaseStatus:
        return _status(await self._call(f"lease {name}", self.clients.GetLease,
                                        client_pb2.GetLeaseRequest(name=f"{self.parent}/leases/{name}")))

    async def leases(self, active_only: bool = True) -> list[LeaseStatus]:
        response = await self._call("list leases", self.clients.ListLeases,
                                    client_pb2.ListLeasesRequest(parent=self.parent, only_active=active_only))
        return [_status(lease) for lease in response.leases]

    async def keepalive(self, name: str) -> LeaseStatus:
        lease = client_pb2.Lease(name=f"{self.parent}/leases/{name}")
        return _status(await self._call(f"renew lease {name}", self.clients.UpdateLease,
                                        client_pb2.UpdateLeaseRequest(lease=lease)))

    async def release(self, name: str) -> None:
        await self._call(f"release lease {name}", self.clients.DeleteLease,
                         client_pb2.DeleteLeaseRequest(name=f"{self.parent}/leases/{name}"))

    async def wait_ready(self, name: str, timeout: float, on_update=None, ttl: float = 30) -> LeaseStatus:
        """Poll until granted, renewing meanwhile; `on_update(status)` sees each change (queue position)."""
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
                raise DriverError(f"lease {name} ended before it was granted: {status.message}")
            if loop.time() > deadline:
                raise ExporterNotReady(f"lease {name} was not granted within {timeout:g}s ({status.message})")
            if loop.time() - renewed > ttl / 3:
                await self.keepalive(name)
                renewed = loop.time()
            await asyncio.sleep(0.3)

    async def dial(self, name: str) -> tuple[str, str]:
        response = await self._call(f"dial lease {name}", self.controller.Dial,
                                    jumpstarter_pb2.DialRequest(lease_name=name))
        return response.router_endpoint, response.router_token

    @contextlib.asynccontextmanager
    async def serve_lease(self, name: str, ttl: float = 30):
        """A private Unix socket for the lease (yields its path), renewed while it is open."""
        with tempfile.TemporaryDirectory(prefix="jumpstarter-lab-lease-") as tmp:
            path = str(Path(tmp) / "lease.sock")
            server = await asyncio.start_unix_server(lambda r, w: self._connection(name, r, w), path=path)
            keeper = asyncio.ensure_future(self._keep(name, ttl))
            try:
                yield path
            finally:
                keeper.cancel()
                server.close()
                await server.wait_closed()

    async def _keep(self, name: str, ttl: float) -> None:
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                await self.keepalive(name)
            except DriverError as e:
                logger.warning("renewing lease %s failed: %s", name, e)

    async def _connection(self, name: str, reader, writer) -> None:
        local = SocketStream(reader, writer)
        try:
            endpoint, token = await self.dial(name)
            async with channel_to(endpoint, self.config.tls) as channel:
                call = router_pb2_grpc.RouterServiceStub(channel).Stream(metadata=(("authorization", f"Bearer {token}"),))
                await forward(local, ClientFrames(call, f"router for lease {name}"))
        except asyncio.CancelledError:
            pass  # the lease socket is closing; this handler is the task's top level
        except Exception as e:
            logger.warning("connection through lease %s ended: %s", name, e)
        finally:
            await local.aclose()


@contextlib.asynccontextmanager
async def connect_lease_async(config: ClientConfig, lease: str, *, allow=None, timeout: float = 10.0,
                              portal=None):
    """The root DriverClient of a granted lease's exporter, through the controller's router.

    The lease's exporter session is the session: what one connection does to the drivers,
    the next connection of the same lease sees. The lease is renewed while connected.
    """
    from .allowlist import DEFAULT_ALLOW, Allowlist
    from .connect import connect_async

    client = ControllerClient(config)
    try:
        status = await client.get_lease(lease)
        if not status.ready:
            raise ExporterNotReady(f"lease {lease} is not granted: {status.message or 'ended'}")
        async with client.serve_lease(lease) as path, connect_async(
                path, allow=allow if allow is not None else Allowlist([*DEFAULT_ALLOW, *config.allow]), timeout=timeout,
                portal=portal) as root:
            yield root
    finally:
        await client.close()


@contextlib.contextmanager
def connect_lease(config: ClientConfig, lease: str, **kwargs):
    """Blocking form of connect_lease_async, for synchronous callers."""
    from .portal import blocking

    with blocking(lambda portal: connect_lease_async(config, lease, portal=portal, **kwargs)) as root:
        yield root
