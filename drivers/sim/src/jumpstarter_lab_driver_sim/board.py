"""Drivers of the sim board: the board itself (a composite) and its power, console and storage."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from jumpstarter_lab.driver import CompositeInterface, Driver, export
from jumpstarter_lab_driver_power.interface import PowerInterface, PowerReading
from jumpstarter_lab_driver_serial.driver import DeviceConsole
from jumpstarter_lab_driver_storage.driver import ImageStorage

from .dut import SimDut


class SimPower(PowerInterface, Driver):
    """Power of the sim board"""

    def __init__(self, dut: SimDut):
        self._dut = dut

    @export
    async def on(self) -> None:
        """Power on: the board boots from its storage"""
        await self._dut.power_on()

    @export
    async def off(self) -> None:
        """Power off"""
        await asyncio.to_thread(self._dut.power_off)

    @export
    async def read(self) -> AsyncIterator[PowerReading]:
        """Read voltage and current"""
        yield PowerReading(voltage=5.0, current=0.4) if self._dut.powered else PowerReading(voltage=0.0, current=0.0)

    def close(self) -> None:
        self._dut.power_off()


class SimConsole(DeviceConsole):
    """Serial console of the sim board"""

    def __init__(self, dut: SimDut):
        super().__init__(dut.console, dut.write)


class SimStorage(ImageStorage):
    """Storage of the sim board: an image file switched between host and DUT"""

    def __init__(self, dut: SimDut):
        self._dut = dut

    @property
    def side(self) -> str:
        return self._dut.storage

    def _medium(self):
        return self._dut.image

    async def _switch(self, side: str) -> None:
        self._dut.storage = side


@dataclass(kw_only=True)
class SimBoard(CompositeInterface, Driver):
    """A simulated board: power, a console with a login and a real shell, storage"""

    image: str | None = None
    login: str = "root"  # another name: an account of the board's own, the shell runs as it (see firmware.own_accounts)
    password: str = "jumpstarter"
    root_password: str | None = None  # root's password for su, with a login other than root; None: root is locked
    hostname: str = "simboard"
    shell: str = "/bin/bash"
    baudrate: int | None = None  # pace the console like a UART at this rate, 8N1, both ways; None: as fast as a pty

    def __post_init__(self):
        if not Path(self.shell).is_file():
            raise ValueError(f"shell {self.shell} does not exist")
        if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", self.login):
            raise ValueError(f"login {self.login!r} is not a user name (lower case letters, digits, _ and -)")
        if self.login == "root" and self.root_password is not None:
            raise ValueError("root_password is for a board whose login is not root (root's su asks nothing)")
        if self.login != "root" and os.geteuid() != 0:
            raise ValueError(f"login {self.login}: the board runs its shell as an account of its own, "
                             "which needs the exporter to run as root")
        if self.baudrate is not None and self.baudrate <= 0:
            raise ValueError(f"baudrate must be positive, got {self.baudrate}")
        self._workdir = Path(tempfile.mkdtemp(prefix="simboard-"))
        image = Path(self.image) if self.image else self._workdir / "disk.img"
        self.dut = SimDut(image=image, login=self.login, password=self.password, hostname=self.hostname,
                          shell=self.shell, home=self._workdir, baudrate=self.baudrate,
                          root_password=self.root_password)

    def make_children(self) -> dict[str, Driver]:
        return {"power": SimPower(self.dut), "console": SimConsole(self.dut), "storage": SimStorage(self.dut)}

    def close(self) -> None:
        super().close()
        self.dut.power_off()
        shutil.rmtree(self._workdir, ignore_errors=True)
