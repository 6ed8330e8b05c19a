from __future__ import annotations

from jumpstarter_lab.client import DriverClient
from jumpstarter_lab_driver_power.client import PowerClient

from .common import PinState

__all__ = ["DigitalInputClient", "DigitalOutputClient", "PinState"]


class DigitalOutputClient(PowerClient):
    """Client of a GPIO output: on/off (and cycle) as a power switch, plus the pin's level."""

    def on(self) -> None:
        self.call("on")

    def off(self) -> None:
        self.call("off")

    def read_pin(self) -> PinState:
        return PinState(int(self.call("read_pin")))

    def read(self) -> PinState:  # upstream's name: an output reads its pin, not a power reading
        return self.read_pin()


class DigitalInputClient(DriverClient):
    """Client of a GPIO input: its level and waits for levels and edges (timeouts in seconds)."""

    def read_pin(self) -> PinState:
        return PinState(int(self.call("read_pin")))

    def read(self) -> PinState:  # upstream's name
        return self.read_pin()

    def wait_for_active(self, timeout: float | None = None) -> None:
        self.call("wait_for_active", timeout)

    def wait_for_inactive(self, timeout: float | None = None) -> None:
        self.call("wait_for_inactive", timeout)

    def wait_for_edge(self, edge_type: str, timeout: float | None = None) -> None:
        self.call("wait_for_edge", edge_type, timeout)
