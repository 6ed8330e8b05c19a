"""A pyserial port as a ByteStream. A reader thread blocks on the port so the event
loop never does; the bounded queue pushes back on a reader that cannot keep up."""

from __future__ import annotations

import asyncio
import threading

import serial


class SerialStream:
    def __init__(self, port: serial.SerialBase, cps: float | None = None, tap=None):
        """`tap(data)`: also called with what the port printed, as the reader takes it."""
        self._port = port
        self._cps = cps
        self._tap = tap
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(64)
        self._closed = threading.Event()
        self._eof = False
        self._thread = threading.Thread(target=self._read_loop, name=f"serial-{port.portstr}", daemon=True)
        self._thread.start()

    def _read_loop(self) -> None:
        try:
            while not self._closed.is_set():
                data = self._port.read(max(1, self._port.in_waiting))
                if data and self._port.in_waiting:  # take what arrived meanwhile in the same chunk
                    data += self._port.read(self._port.in_waiting)
                if data:
                    asyncio.run_coroutine_threadsafe(self._queue.put(data), self._loop).result()
        except (serial.SerialException, OSError, TypeError, RuntimeError):
            pass  # port closed or device gone: the stream ends
        finally:
            if not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._queue.put_nowait, None)

    async def send(self, data: bytes) -> None:
        if self._closed.is_set():
            raise ConnectionError("serial port closed")
        if self._cps:
            for i in range(len(data)):  # paced like a slow UART that has no flow control
                await asyncio.to_thread(self._port.write, data[i:i + 1])
                await asyncio.sleep(1 / self._cps)
        else:
            await asyncio.to_thread(self._port.write, data)

    async def receive(self) -> bytes:
        if self._eof:
            return b""
        chunk = await self._queue.get()
        if chunk is None:
            self._eof = True
            return b""
        if self._tap is not None:
            self._tap(chunk)
        return chunk

    async def send_eof(self) -> None:
        pass  # a UART has no end-of-file; the stream ends when either side closes

    async def aclose(self) -> None:
        self._closed.set()
        if hasattr(self._port, "cancel_read"):
            self._port.cancel_read()
        while not self._queue.empty():  # unblock a reader waiting on a full queue
            self._queue.get_nowait()
        await asyncio.to_thread(self._thread.join, 2)
        self._port.close()
