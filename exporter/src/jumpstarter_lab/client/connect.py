"""Connecting to an exporter and building the client tree from its report."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import empty_pb2

from ..errors import ExporterUnavailable, JumpstarterLabError, exception_for_rpc_error
from ..protocol import jumpstarter_pb2, jumpstarter_pb2_grpc, router_pb2_grpc
from ..session import SESSION_METADATA
from .allowlist import Allowlist
from .core import DriverClient, UnavailableClient
from .portal import Portal, blocking

ENV_HOST = "JUMPSTARTER_HOST"  # set by `shell`, as upstream's `jmp shell` does
ENV_SESSION = "JUMPSTARTER_LAB_SESSION"


def is_tcp_address(address: str) -> bool:
    host, sep, port = address.rpartition(":")
    return bool(sep and host and port.isdigit() and "/" not in address)


@dataclass
class Connection:
    """What every client in one tree shares: channel, stubs, session metadata, portal."""

    address: str
    channel: grpc.aio.Channel
    metadata: tuple = ()
    call_timeout: float | None = None
    portal: Portal | None = None
    stub: jumpstarter_pb2_grpc.ExporterServiceStub = field(init=False)
    router: router_pb2_grpc.RouterServiceStub = field(init=False)

    def __post_init__(self):
        self.stub = jumpstarter_pb2_grpc.ExporterServiceStub(self.channel)
        self.router = router_pb2_grpc.RouterServiceStub(self.channel)

    async def end_session(self) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError):
            await self.stub.EndSession(jumpstarter_pb2.EndSessionRequest(), metadata=self.metadata, timeout=10)


def _channel(address: str, *, tls_ca: str | None, insecure: bool) -> grpc.aio.Channel:
    # A private subchannel pool: gRPC would otherwise share one connection between
    # channels to the same address, and a connection is a session to the exporter.
    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024), ("grpc.use_local_subchannel_pool", 1)]
    if not is_tcp_address(address):
        return grpc.aio.insecure_channel(f"unix:{Path(address).resolve()}", options=options)
    if insecure:
        return grpc.aio.insecure_channel(address, options=options)
    root = None
    if tls_ca:
        try:
            root = Path(tls_ca).read_bytes()
        except OSError as e:
            raise JumpstarterLabError(f"cannot read CA certificate {tls_ca}: {e.strerror}") from None
    return grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(root), options=options)


def build_tree(report: jumpstarter_pb2.GetReportResponse, connection: Connection, allow: Allowlist) -> DriverClient:
    """Client objects for every driver, children first; returns the root."""
    by_uuid = {r.uuid: r for r in report.reports}
    child_ids: dict[str, list[str]] = {r.uuid: [] for r in report.reports}
    roots = []
    for r in report.reports:
        if r.HasField("parent_uuid") and r.parent_uuid in child_ids:
            child_ids[r.parent_uuid].append(r.uuid)
        else:
            roots.append(r.uuid)
    if len(roots) != 1:
        raise JumpstarterLabError(f"exporter report has {len(roots)} root drivers, expected one")

    def make(uid: str) -> DriverClient:
        r = by_uuid[uid]
        children = {}
        for child in child_ids[uid]:
            client = make(child)
            children[client.name] = client
        kwargs = dict(uuid=uuidlib.UUID(uid), labels=dict(r.labels), connection=connection, children=children,
                      description=r.description if r.HasField("description") else None,
                      methods_description=dict(r.methods_description))
        label = r.labels.get("jumpstarter.dev/client", "")
        try:
            cls = allow.load(label)
            if not (isinstance(cls, type) and issubclass(cls, DriverClient)):
                raise JumpstarterLabError(f"'{label}' is not a jumpstarter.lab driver client class")
        except JumpstarterLabError as e:
            return UnavailableClient(reason=e, **kwargs)
        return cls(**kwargs)

    return make(roots[0])


@contextlib.asynccontextmanager
async def connect_async(address: str | None = None, *, allow: Allowlist | list[str] | None = None,
                        tls_ca: str | None = None, insecure: bool = False, session: str | None = None,
                        timeout: float = 10.0, call_timeout: float | None = None, portal: Portal | None = None):
    """Connect to an exporter (Unix socket path or HOST:PORT) and yield the root DriverClient."""
    address = address or os.environ.get(ENV_HOST)
    if not address:
        raise JumpstarterLabError(f"no exporter address given and {ENV_HOST} is not set")
    session = session or os.environ.get(ENV_SESSION)
    allowlist = allow if isinstance(allow, Allowlist) else Allowlist(allow)
    if not is_tcp_address(address) and not Path(address).exists():
        raise ExporterUnavailable(f"no exporter socket at {address}")
    channel = _channel(address, tls_ca=tls_ca, insecure=insecure)
    connection = Connection(address=address, channel=channel, call_timeout=call_timeout, portal=portal,
                            metadata=((SESSION_METADATA, session),) if session else ())
    try:
        try:
            await asyncio.wait_for(channel.channel_ready(), timeout)
        except asyncio.TimeoutError:
            raise ExporterUnavailable(f"cannot reach exporter at {address} within {timeout:g}s") from None
        try:
            report = await connection.stub.GetReport(empty_pb2.Empty(), metadata=connection.metadata, timeout=timeout)
        except grpc.aio.AioRpcError as e:
            raise exception_for_rpc_error(e, f"exporter at {address}") from None
        yield build_tree(report, connection, allowlist)
    finally:
        await channel.close()


@contextlib.contextmanager
def connect(address: str | None = None, **kwargs):
    """Blocking form of connect_async, for synchronous callers."""
    with blocking(lambda portal: connect_async(address, portal=portal, **kwargs)) as root:
        yield root
