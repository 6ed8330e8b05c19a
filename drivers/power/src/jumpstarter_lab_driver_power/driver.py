from __future__ import annotations

from collections.abc import AsyncIterator

from jumpstarter_lab.driver import Driver, export

from .interface import PowerInterface, PowerReading


class MockPower(PowerInterface, Driver):
    """Power switch with no hardware: remembers its state and reports 5 V / 2 A when on."""

    def __init__(self):
        self.state = "off"

    @export
    async def on(self) -> None:
        """Power on"""
        self.state = "on"
        self.logger.info("power on")

    @export
    async def off(self) -> None:
        """Power off"""
        self.state = "off"
        self.logger.info("power off")

    @export
    async def read(self) -> AsyncIterator[PowerReading]:
        """Read voltage and current"""
        yield PowerReading(voltage=5.0, current=2.0) if self.state == "on" else PowerReading(voltage=0.0, current=0.0)

    @export(read_only=True)
    def status(self) -> str:
        """Current switch state: on or off"""
        return self.state
