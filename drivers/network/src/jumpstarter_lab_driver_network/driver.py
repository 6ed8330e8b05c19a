from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import ClassVar

from jumpstarter_lab.driver import Driver, export, exportstream
from jumpstarter_lab.wire.errors import ExporterUnavailable
from jumpstarter_lab.streams import LoopbackStream, SocketStream

from .datagram import DatagramStream
from .interface import NetworkInterface

__all__ = ["EchoNetwork", "NetworkInterface", "TcpNetwork", "UdpNetwork", "UnixNetwork"]


def _check_port(port: int) -> None:
    if not 0 < port < 65536:
        raise ValueError(f"port must be 1-65535, got {port}")


def _url(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


@dataclass(kw_only=True)
class _HostPortNetwork(NetworkInterface, Driver, partial=True):
    """What TCP and UDP drivers share: a host:port target and its address."""

    SCHEME: ClassVar[str]
    host: str
    port: int
    enable_address: bool = True

    def __post_init__(self):
        _check_port(self.port)

    @export(read_only=True)
    async def address(self) -> str:
        """The scheme://host:port address this driver connects to"""
        if not self.enable_address:
            raise ValueError("address is disabled by enable_address: false in the exporter config")
        return _url(self.SCHEME, self.host, self.port)


@contextlib.asynccontextmanager
async def _connected(opening, what: str, timeout: float | None = None):
    """A SocketStream from an asyncio open_*_connection coroutine, closed on the way out; failures
    (and no answer within `timeout`) are ExporterUnavailable naming `what`."""
    try:
        reader, writer = await asyncio.wait_for(opening, timeout)
    except asyncio.TimeoutError:
        raise ExporterUnavailable(f"cannot connect to {what}: no answer within {timeout:g}s") from None
    except OSError as e:
        raise ExporterUnavailable(f"cannot connect to {what}: {e.strerror or e}") from None
    stream = SocketStream(reader, writer)
    try:
        yield stream
    finally:
        await stream.aclose()


def tcp_stream(host: str, port: int, timeout: float, what: str = ""):
    """A SocketStream to host:port, connected within `timeout` seconds (a host that drops SYNs
    must not hold a client for the kernel's two minutes); closed on the way out."""
    return _connected(asyncio.open_connection(host, port), f"{what}{host}:{port}", timeout)


@dataclass(kw_only=True)
class TcpNetwork(_HostPortNetwork):
    """A TCP service reachable from the exporter (a board's ssh, a debug port)."""

    SCHEME: ClassVar[str] = "tcp"
    connect_timeout: float = 10.0  # seconds to establish the connection

    def __post_init__(self):
        super().__post_init__()
        if self.connect_timeout <= 0:
            raise ValueError(f"connect_timeout must be positive, got {self.connect_timeout}")

    @exportstream
    @contextlib.asynccontextmanager
    async def connect(self):
        """Open a TCP connection to host:port"""
        async with tcp_stream(self.host, self.port, self.connect_timeout) as stream:
            yield stream


@dataclass(kw_only=True)
class UdpNetwork(_HostPortNetwork):
    """A UDP service reachable from the exporter: each chunk of the stream is one datagram."""

    SCHEME: ClassVar[str] = "udp"

    @exportstream
    @contextlib.asynccontextmanager
    async def connect(self):
        """Open a UDP socket connected to host:port (one chunk per datagram)"""
        try:
            stream = await DatagramStream.connect(self.host, self.port)
        except OSError as e:
            raise ExporterUnavailable(f"cannot open UDP to {self.host}:{self.port}: {e.strerror or e}") from None
        try:
            yield stream
        finally:
            await stream.aclose()


@dataclass(kw_only=True)
class UnixNetwork(NetworkInterface, Driver):
    """A Unix domain socket on the exporter host (a QEMU monitor, a daemon's control socket)."""

    path: str

    def __post_init__(self):
        if not self.path:
            raise ValueError("path must name a Unix socket")

    @exportstream
    @contextlib.asynccontextmanager
    async def connect(self):
        """Open a connection to the Unix socket at path"""
        async with _connected(asyncio.open_unix_connection(self.path), f"Unix socket {self.path}") as stream:
            yield stream


class EchoNetwork(NetworkInterface, Driver):
    """A stream that sends back what it receives."""

    @exportstream
    @contextlib.asynccontextmanager
    async def connect(self):
        """Open an echo stream"""
        stream = LoopbackStream()
        try:
            yield stream
        finally:
            await stream.aclose()
