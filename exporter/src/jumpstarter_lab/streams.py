"""Byte streams: the one shape every exported stream, socket and router frame takes.

A ByteStream has `send(bytes)`, `receive() -> bytes` (b"" once the peer is done),
`send_eof()` and `aclose()`. `forward` joins two of them until both directions end.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol, runtime_checkable


@runtime_checkable
class ByteStream(Protocol):
    async def send(self, data: bytes) -> None: ...

    async def receive(self) -> bytes: ...

    async def send_eof(self) -> None: ...

    async def aclose(self) -> None: ...


class ClosedStream(ConnectionError):
    """Raised when sending on a stream whose other end has gone."""


class _Half:
    """One direction of an in-memory pipe: a bounded queue of chunks, None meaning EOF."""

    def __init__(self, depth: int):
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(depth)
        self.closed = False


class MemoryStream:
    """One end of an in-memory duplex pipe made by `memory_pipe`."""

    def __init__(self, inbound: _Half, outbound: _Half):
        self._in, self._out = inbound, outbound

    async def send(self, data: bytes) -> None:
        if self._out.closed:
            raise ClosedStream("stream closed by peer")
        if data:
            await self._out.queue.put(bytes(data))

    async def receive(self) -> bytes:
        if self._in.closed and self._in.queue.empty():
            return b""
        chunk = await self._in.queue.get()
        if chunk is None:
            self._in.closed = True
            return b""
        return chunk

    async def send_eof(self) -> None:
        if not self._out.closed:
            self._out.closed = True
            with contextlib.suppress(asyncio.QueueFull):
                self._out.queue.put_nowait(None)

    async def aclose(self) -> None:
        await self.send_eof()
        self._in.closed = True
        # Wake a peer blocked on a full queue; what it sent is discarded.
        while not self._in.queue.empty():
            self._in.queue.get_nowait()


def memory_pipe(depth: int = 32) -> tuple[MemoryStream, MemoryStream]:
    a_to_b, b_to_a = _Half(depth), _Half(depth)
    return MemoryStream(b_to_a, a_to_b), MemoryStream(a_to_b, b_to_a)


class LoopbackStream:
    """A stream that returns what is sent to it (an echo with no far end)."""

    def __init__(self, depth: int = 32):
        self._half = _Half(depth)
        self._end = MemoryStream(self._half, self._half)

    async def send(self, data: bytes) -> None:
        await self._end.send(data)

    async def receive(self) -> bytes:
        return await self._end.receive()

    async def send_eof(self) -> None:
        await self._end.send_eof()

    async def aclose(self) -> None:
        await self._end.aclose()


class SocketStream:
    """A ByteStream over asyncio's StreamReader/StreamWriter (TCP, Unix, pipes)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, chunk: int = 65536):
        self._reader, self._writer, self._chunk = reader, writer, chunk

    async def send(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise ClosedStream("socket closed")
        self._writer.write(data)
        await self._writer.drain()

    async def receive(self) -> bytes:
        try:
            return await self._reader.read(self._chunk)
        except ConnectionResetError:
            return b""

    async def send_eof(self) -> None:
        if self._writer.can_write_eof() and not self._writer.is_closing():
            with contextlib.suppress(OSError):
                self._writer.write_eof()

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await self._writer.wait_closed()


class FileSource:
    """A file read as a ByteStream (reads run in a thread); sending to it is an error.

    `on_chunk(chunk, total_so_far)` sees every chunk read (for checksums and progress).
    """

    def __init__(self, path, chunk: int = 256 * 1024, on_chunk=None):
        self._file = open(path, "rb")  # noqa: SIM115 - closed by aclose
        self._chunk = chunk
        self._on_chunk = on_chunk
        self._read = 0

    async def send(self, data: bytes) -> None:
        raise ClosedStream("a file source cannot be written")

    async def receive(self) -> bytes:
        if self._file.closed:
            return b""
        data = await asyncio.to_thread(self._file.read, self._chunk)
        self._read += len(data)
        if data and self._on_chunk:
            self._on_chunk(data, self._read)
        return data

    async def send_eof(self) -> None:
        pass

    async def aclose(self) -> None:
        self._file.close()


class FileSink:
    """A ByteStream that writes what it is sent into a file (in a thread) and has nothing to send."""

    def __init__(self, path):
        self._file = open(path, "wb")  # noqa: SIM115 - closed by aclose

    async def send(self, data: bytes) -> None:
        await asyncio.to_thread(self._file.write, data)

    async def receive(self) -> bytes:
        return b""

    async def send_eof(self) -> None:
        pass

    async def aclose(self) -> None:
        if not self._file.closed:
            await asyncio.to_thread(self._file.close)


async def _copy(dst: ByteStream, src: ByteStream) -> None:
    try:
        while chunk := await src.receive():
            await dst.send(chunk)
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            await dst.send_eof()


async def forward(a: ByteStream, b: ByteStream) -> None:
    """Copy a→b and b→a until both sides have sent EOF or one has failed."""
    await asyncio.gather(_copy(a, b), _copy(b, a))
