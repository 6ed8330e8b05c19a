"""The simulated device: a firmware process on a pty, its console output and its disk."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from jumpstarter_lab.streams import Fanout

logger = logging.getLogger("driver.SimBoard")

# Lateness (scheduling jitter) a busy line makes up for; a line idle longer than this starts afresh.
CATCH_UP = 0.05


class LinePacer:
    """One direction of a serial line at `baudrate` 8N1: ten bits on the wire per byte.

    `reserve(n)` books the line for n more bytes and returns the seconds from now until
    their last bit has gone. A busy line is booked back to back, so time lost to the event
    loop is made up and the long-run rate is the line rate, never above it.
    """

    def __init__(self, baudrate: int):
        self.bytes_per_second = baudrate / 10
        self.chunk = max(1, int(self.bytes_per_second / 100))  # about 10 ms of line time
        self._free_at = 0.0

    def reserve(self, size: int) -> float:
        now = time.monotonic()
        start = self._free_at if now - self._free_at < CATCH_UP else now
        self._free_at = start + size / self.bytes_per_second
        return max(0.0, self._free_at - now)


class SimDut:
    def __init__(self, *, image: Path, login: str, password: str, hostname: str, shell: str, home: Path,
                 baudrate: int | None = None, root_password: str | None = None):
        self.image = image
        self.login, self.password, self.hostname, self.shell, self.home = login, password, hostname, shell, home
        self.root_password = root_password
        # With a baud rate the console is a UART line: each direction carries baudrate/10 bytes/s.
        self._to_board = LinePacer(baudrate) if baudrate else None
        self._from_board = LinePacer(baudrate) if baudrate else None
        self._generation = 0  # which power-on a paused console reader belongs to
        self.storage = "dut"  # which side the disk is attached to: dut, host or off
        self._process: subprocess.Popen | None = None
        self._master: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.console = Fanout()  # what the board prints, to every attached console stream
        self._lock = threading.Lock()

    @property
    def powered(self) -> bool:
        return self._process is not None and self._process.poll() is None

    async def power_on(self) -> None:
        if self.powered:
            return
        self._loop = asyncio.get_running_loop()
        # With the disk on the host side the DUT boots from nothing, as a real board would.
        image = self.image if self.storage == "dut" else Path("/nonexistent")
        master, slave = os.openpty()
        env = dict(os.environ, SIM_PASSWORD=self.password, SIM_HOME=str(self.home))
        if self.root_password is not None:
            env["SIM_ROOT_PASSWORD"] = self.root_password
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "jumpstarter_lab_driver_sim.firmware", "--image", str(image),
                 "--login", self.login, "--hostname", self.hostname, "--shell", self.shell],
                stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True, close_fds=True)
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self._master = master
        self._generation += 1
        self._loop.add_reader(master, self._on_output, master)
        logger.info("sim board powered on (pid %d)", self._process.pid)

    def _on_output(self, master: int) -> None:
        pacer = self._from_board
        try:
            data = os.read(master, pacer.chunk if pacer else 65536)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno != errno.EIO:  # EIO: every process holding the terminal has gone
                logger.warning("console read failed: %s", e)
            data = b""
        if not data:
            self._loop.remove_reader(master)
            return
        if pacer is None:
            self.console.publish(data)
            return
        # These bytes are on the line for a while: read no more until they have arrived. Meanwhile
        # the terminal's buffer fills and the board's writes block, as behind a slow UART.
        self._loop.remove_reader(master)
        self._loop.call_later(pacer.reserve(len(data)), self._arrived, master, self._generation, data)

    def _arrived(self, master: int, generation: int, data: bytes) -> None:
        self.console.publish(data)
        if self._master == master and self._generation == generation and self.powered:
            self._loop.add_reader(master, self._on_output, master)

    async def write(self, data: bytes) -> None:
        pacer = self._to_board
        if pacer is None:
            await self._write(data)
            return
        for offset in range(0, len(data), pacer.chunk):  # each piece reaches the board once it has crossed the line
            piece = data[offset:offset + pacer.chunk]
            await asyncio.sleep(pacer.reserve(len(piece)))
            await self._write(piece)

    async def _write(self, data: bytes) -> None:
        while data:
            master = self._master
            if master is None or not self.powered:
                return  # a powered-off board ignores its serial input
            try:
                written = os.write(master, data)
                data = data[written:]
            except BlockingIOError:
                await self._writable(master)
            except OSError:
                return

    async def _writable(self, master: int) -> None:
        """Wait until the terminal takes input again (the board reads slower than we send)."""
        ready = self._loop.create_future()
        self._loop.add_writer(master, lambda: ready.done() or ready.set_result(None))
        try:
            await asyncio.wait_for(ready, 1.0)
        except asyncio.TimeoutError:
            pass  # check power and try again
        finally:
            self._loop.remove_writer(master)

    def power_off(self) -> None:
        """Kill the firmware and everything it started; safe from any thread, idempotent."""
        with self._lock:
            process, master, self._process, self._master = self._process, self._master, None, None
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            logger.info("sim board powered off")
        if master is not None:
            loop = self._loop

            def release():
                loop.remove_reader(master)
                os.close(master)

            if loop is not None and not loop.is_closed():
                try:
                    running = asyncio.get_running_loop()
                except RuntimeError:
                    running = None
                if running is loop:
                    release()
                else:
                    loop.call_soon_threadsafe(release)
            else:
                os.close(master)
