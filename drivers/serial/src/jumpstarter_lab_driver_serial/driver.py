from __future__ import annotations

import asyncio
import contextlib
import termios
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import serial

from jumpstarter_lab.driver import Driver, export, exportstream
from jumpstarter_lab.streams import ConsoleStream, Fanout
from jumpstarter_lab.wire.errors import ExporterUnavailable

from .interface import SerialInterface
from .stream import SerialStream


@dataclass(kw_only=True)
class PySerial(SerialInterface, Driver):
    """Serial port at any pyserial URL: a device path, loop://, socket://, rfc2217://"""

    url: str
    baudrate: int = 115200
    check_present: bool = True
    cps: float | None = None
    disable_hupcl: bool = False

    def __post_init__(self):
        if self.baudrate <= 0:
            raise ValueError(f"baudrate must be positive, got {self.baudrate}")
        self._seen = Fanout()  # what the port printed to attached clients, for the lease's console log

    def console_output(self) -> Fanout:
        """What the port printed while a client was attached (the exporter opens a real port only then)."""
        return self._seen

    def _open(self) -> serial.SerialBase:
        try:
            port = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=0.05)
        except (serial.SerialException, OSError, ValueError) as e:
            raise ExporterUnavailable(f"serial device {self.url} is not available: {e}") from None
        if self.disable_hupcl and hasattr(port, "fileno"):
            with contextlib.suppress(OSError, AttributeError, termios.error):
                attrs = termios.tcgetattr(port.fileno())
                attrs[2] &= ~termios.HUPCL
                termios.tcsetattr(port.fileno(), termios.TCSANOW, attrs)
        return port

    @exportstream
    @contextlib.asynccontextmanager
    async def connect(self):
        """Open the serial port as a byte stream"""
        port = await asyncio.to_thread(self._open)
        stream = SerialStream(port, cps=self.cps, tap=self._seen.publish)
        self.logger.info("connected to %s at %d baud", self.url, self.baudrate)
        try:
            yield stream
        finally:
            await stream.aclose()

    def _set_line(self, name: str, value: bool) -> None:
        port = self._open()
        try:
            setattr(port, name, value)
        finally:
            port.close()

    @export
    def set_dtr(self, value: bool) -> None:
        """Set the DTR control line"""
        self._set_line("dtr", value)

    @export
    def set_rts(self, value: bool) -> None:
        """Set the RTS control line"""
        self._set_line("rts", value)


class DeviceConsole(SerialInterface, Driver):
    """Console of a device the exporter runs itself (a simulated or virtual board)

    What the device prints comes from its Fanout (every attached stream gets all of it);
    what a client sends goes to `write`. Boards name it with a subclass for their report.
    """

    def __init__(self, output: Fanout, write: Callable[[bytes], Awaitable[None]]):
        self._output, self._write = output, write

    def console_output(self) -> Fanout:
        return self._output

    @exportstream
    @contextlib.asynccontextmanager
    async def connect(self):
        """Attach to the console"""
        stream = ConsoleStream(self._output, self._write)
        try:
            yield stream
        finally:
            await stream.aclose()
