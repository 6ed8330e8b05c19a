from __future__ import annotations

import asyncio
import contextlib
from abc import ABCMeta, abstractmethod
from dataclasses import dataclass

from jumpstarter_lab.driver import Driver, export, exportstream
from jumpstarter_lab.errors import ExporterUnavailable
from jumpstarter_lab.streams import LoopbackStream, SocketStream


class NetworkInterface(metaclass=ABCMeta):
    @classmethod
    def client(cls) -> str:
        return "jumpstarter_driver_network.client.NetworkClient"

    @abstractmethod
    def connect(self): ...


@dataclass(kw_only=True)
class TcpNetwork(NetworkInterface, Driver):
    """A TCP service reachable from the exporter (a board's ssh, a debug port)."""

    host: str
    port: int
    enable_address: bool = True

    def __post_init__(self):
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1-65535, got {self.port}")

    @exportstream
    @contextlib.asynccontextmanager
    async def connect(self):
        """Open a TCP connection to host:port"""
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError as e:
            raise ExporterUnavailable(f"cannot connect to {self.host}:{self.port}: {e.strerror or e}") from None
        stream = SocketStream(reader, writer)
        try:
            yield stream
        finally:
            await stream.aclose()

    @export
    async def address(self) -> str:
        """The tcp:// address this driver connects to"""
        if not self.enable_address:
            raise ValueError("address is disabled by enable_address: false in the exporter config")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


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
