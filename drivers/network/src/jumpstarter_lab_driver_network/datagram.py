"""A connected UDP socket as a ByteStream: one send is one datagram, one receive one datagram.

Router frames keep their boundaries end to end, so a client that sends one chunk per
datagram gets one chunk per datagram back. UDP has no end-of-stream: `send_eof` does
nothing and the stream ends when either side closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

logger = logging.getLogger(__name__)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, depth: int):
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(depth)
        self.dropped = 0

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:  # as a full socket buffer would: the datagram is lost
            self.dropped += 1

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: nothing listens yet; UDP carries on.
        logger.debug("udp: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)


class DatagramStream:
    def __init__(self, transport: asyncio.DatagramTransport, protocol: _Protocol):
        self._transport, self._protocol = transport, protocol
        self._ended = False

    @classmethod
    async def connect(cls, host: str, port: int, depth: int = 256) -> DatagramStream:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(lambda: _Protocol(depth),
                                                                  remote_addr=(host, port))
        return cls(transport, protocol)

    async def send(self, data: bytes) -> None:
        if self._transport.is_closing():
            raise ConnectionError("udp socket closed")
        self._transport.sendto(data)

    async def receive(self) -> bytes:
        if self._ended:
            return b""
        data = await self._protocol.queue.get()
        if data is None:
            self._ended = True
            return b""
        return data

    async def send_eof(self) -> None:
        pass

    async def aclose(self) -> None:
        self._transport.close()
