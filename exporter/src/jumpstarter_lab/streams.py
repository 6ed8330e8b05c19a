"""Byte streams: the one shape every exported stream, socket and router frame takes.

A ByteStream has `send(bytes)`, `receive() -> bytes` (b"" once the peer is done),
`send_eof()` and `aclose()`. `forward` joins two of them until both directions end.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Awaitable, Callable
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
        self.broken: str | None = None  # why the sender stopped short, when it did


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
            return self._end()
        chunk = await self._in.queue.get()
        if chunk is None:
            self._in.closed = True
            return self._end()
        return chunk

    def _end(self) -> bytes:
        if self._in.broken:
            raise ClosedStream(self._in.broken)
        return b""

    def abort(self, reason: str) -> None:
        """End what this end sends short: the peer gets what was queued, then ClosedStream(reason)
        instead of a clean end (so a cut-off upload is never taken for a whole one)."""
        if not self._out.closed:
            self._out.broken = reason
            self._out.closed = True
            with contextlib.suppress(asyncio.QueueFull):
                self._out.queue.put_nowait(None)

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


class Fanout:
    """One device's output (a console) to every listener, each with its own backlog.

    A backlog is bounded in bytes, not pieces (a guest's UART under emulation comes a few
    bytes per piece): a listener that cannot keep up loses the oldest output, as a UART
    overruns, and never holds the device back. `publish` runs on the event loop's thread.
    """

    def __init__(self, limit: int = 4 << 20):
        self.limit = limit
        self._listeners: set[_Backlog] = set()

    def publish(self, data: bytes) -> None:
        for backlog in list(self._listeners):
            backlog.put(data)

    def listen(self) -> _Backlog:
        backlog = _Backlog(self.limit)
        self._listeners.add(backlog)
        return backlog

    def unlisten(self, backlog: _Backlog) -> None:
        self._listeners.discard(backlog)


class _Backlog:
    """What one listener of a Fanout has not read yet."""

    def __init__(self, limit: int):
        self._limit, self._size = limit, 0
        self._pieces: collections.deque[bytes] = collections.deque()
        self._ready = asyncio.Event()

    def put(self, data: bytes) -> None:
        self._pieces.append(data)
        self._size += len(data)
        while self._size > self._limit:
            self._size -= len(self._pieces.popleft())
        self._ready.set()

    def take(self) -> bytes:
        """All that waits, at once (nothing when nothing does)."""
        data = b"".join(self._pieces)
        self._pieces.clear()
        self._size = 0
        return data

    async def get(self, most: int = 65536) -> bytes:
        """What waits, in one piece of up to `most` bytes (at least one whole piece): fewer, larger
        messages for a reader that must keep up with a fast device."""
        while not self._pieces:
            self._ready.clear()
            await self._ready.wait()
        data = self._pieces.popleft()
        while self._pieces and len(data) + len(self._pieces[0]) <= most:
            data += self._pieces.popleft()
        self._size -= len(data)
        return data


class ConsoleStream:
    """A ByteStream onto a device's console: what it prints (from its Fanout), and `write` for
    what is sent to it. A console has no end of file: send_eof does nothing."""

    def __init__(self, output: Fanout, write: Callable[[bytes], Awaitable[None]]):
        self._output, self._write = output, write
        self._backlog = output.listen()

    async def send(self, data: bytes) -> None:
        await self._write(data)

    async def receive(self) -> bytes:
        return await self._backlog.get()

    async def send_eof(self) -> None:
        pass

    async def aclose(self) -> None:
        self._output.unlisten(self._backlog)


async def _copy(dst: ByteStream, src: ByteStream, whole: bool) -> None:
    complete = False
    try:
        while chunk := await src.receive():
            await dst.send(chunk)
        complete = True
    except (ConnectionError, OSError):
        pass
    finally:
        if not complete and whole and hasattr(dst, "abort"):
            dst.abort("the stream broke off before its end (the sender went away or failed)")
        else:
            with contextlib.suppress(ConnectionError, OSError):
                await dst.send_eof()


async def forward(a: ByteStream, b: ByteStream, *, whole: bool = False) -> None:
    """Copy a→b and b→a until both sides have sent EOF or one has failed.

    With `whole`, data must arrive whole: a side whose source fails or is cancelled
    aborts its destination (when the destination can tell an abort from an end)
    rather than ending it cleanly."""
    await asyncio.gather(_copy(a, b, whole), _copy(b, a, whole))
