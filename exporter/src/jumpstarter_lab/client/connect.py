"""Connecting to an exporter and building the client tree from its report."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import empty_pb2

from ..wire import metadata as wire_metadata
from ..wire.channels import is_tcp_address, open_channel, read_token_file
from ..wire.errors import ExporterUnavailable, JumpstarterLabError, exception_for_status
from ..wire.protocol import jumpstarter_pb2, jumpstarter_pb2_grpc, router_pb2_grpc
from .allowlist import Allowlist
from .portal import Portal, blocking
from .tree import build_tree

ENV_HOST = "JUMPSTARTER_HOST"  # set by `shell`, as upstream's `jmp shell` does
ENV_SESSION = "JUMPSTARTER_LAB_SESSION"
ENV_INSECURE = "JMP_GRPC_INSECURE"  # "1": plaintext TCP; set by `shell --insecure`, read by upstream too
# How to reach a standalone exporter, handed by `shell` to the commands it runs.
ENV_TLS_CA = "JUMPSTARTER_LAB_TLS_CA"
ENV_TLS_CERT = "JUMPSTARTER_LAB_TLS_CERT"
ENV_TLS_KEY = "JUMPSTARTER_LAB_TLS_KEY"
ENV_TOKEN_FILE = "JUMPSTARTER_LAB_TOKEN_FILE"


@dataclass
class Connection:
    """What every client in one tree shares: channel, stubs, session metadata, portal."""

    address: str
    channel: grpc.aio.Channel
    metadata: tuple = ()
    call_timeout: float | None = None
    portal: Portal | None = None
    # Why the exporter may be out of reach beyond what gRPC saw (a lease's end), or None; bounded in time.
    explain_unavailable: Callable[[], Awaitable[str | None]] | None = None
    stub: jumpstarter_pb2_grpc.ExporterServiceStub = field(init=False)
    router: router_pb2_grpc.RouterServiceStub = field(init=False)

    def __post_init__(self):
        self.stub = jumpstarter_pb2_grpc.ExporterServiceStub(self.channel)
        self.router = router_pb2_grpc.RouterServiceStub(self.channel)

    async def failure(self, code: grpc.StatusCode, details: str | None, what: str) -> JumpstarterLabError:
        """The error for a call that ended with `code`: the one mapping, plus the reason the exporter is out of
        reach when the connection knows one (gRPC itself says only "Socket closed")."""
        error = exception_for_status(code, details, what)
        if isinstance(error, ExporterUnavailable) and self.explain_unavailable:
            reason = await self.explain_unavailable()
            if reason:
                error = ExporterUnavailable(f"{error} ({reason})")
        return error

    async def end_session(self) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError):
            await self.stub.EndSession(jumpstarter_pb2.EndSessionRequest(), metadata=self.metadata, timeout=10)


@contextlib.asynccontextmanager
async def connect_async(address: str | None = None, *, allow: Allowlist | list[str] | None = None,
                        tls_ca: str | None = None, insecure: bool = False, session: str | None = None,
                        tls_cert: str | None = None, tls_key: str | None = None, token_file: str | None = None,
                        timeout: float = 10.0, call_timeout: float | None = None, portal: Portal | None = None):
    """Connect to an exporter (Unix socket path or HOST:PORT) and yield the root DriverClient.

    A standalone exporter may ask for a client certificate (`tls_cert`, `tls_key`) or a token
    (`token_file`); each option not given is read from its environment variable."""
    address = address or os.environ.get(ENV_HOST)
    if not address:
        raise JumpstarterLabError(f"no exporter address given and {ENV_HOST} is not set")
    session = session or os.environ.get(ENV_SESSION)
    allowlist = allow if isinstance(allow, Allowlist) else Allowlist(allow)
    if not is_tcp_address(address) and not Path(address).exists():
        raise ExporterUnavailable(f"no exporter socket at {address}")
    insecure = insecure or os.environ.get(ENV_INSECURE) == "1"
    channel = open_channel(address, ca=tls_ca or os.environ.get(ENV_TLS_CA), insecure=insecure,
                           cert=tls_cert or os.environ.get(ENV_TLS_CERT), key=tls_key or os.environ.get(ENV_TLS_KEY))
    metadata = ((wire_metadata.SESSION, session),) if session else ()
    token_file = token_file or os.environ.get(ENV_TOKEN_FILE)
    if token_file:
        metadata += wire_metadata.bearer_metadata(read_token_file(token_file))
    connection = Connection(address=address, channel=channel, call_timeout=call_timeout, portal=portal,
                            metadata=metadata)
    try:
        try:
            await asyncio.wait_for(channel.channel_ready(), timeout)
        except asyncio.TimeoutError:
            raise ExporterUnavailable(f"cannot reach exporter at {address} within {timeout:g}s") from None
        try:
            report = await connection.stub.GetReport(empty_pb2.Empty(), metadata=connection.metadata, timeout=timeout)
        except grpc.aio.AioRpcError as e:
            raise await connection.failure(e.code(), e.details(), f"exporter at {address}") from None
        yield build_tree(report, connection, allowlist)
    finally:
        await channel.close()


@contextlib.contextmanager
def connect(address: str | None = None, **kwargs):
    """Blocking form of connect_async, for synchronous callers."""
    with blocking(lambda portal: connect_async(address, portal=portal, **kwargs)) as root:
        yield root
