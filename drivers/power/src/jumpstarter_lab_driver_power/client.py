from __future__ import annotations

import time
from collections.abc import Iterator

from jumpstarter_lab.client import DriverClient
from jumpstarter_lab.wire.errors import JumpstarterLabError

from .interface import PowerReading


class PowerClient(DriverClient):
    """Client of any PowerInterface driver (and of upstream's power drivers)."""

    def on(self) -> None:
        self.call("on")

    def off(self) -> None:
        self.call("off")

    def cycle(self, wait: float = 2) -> None:
        """Off, wait `wait` seconds, on; composite behaviour lives client-side as upstream's."""
        self.off()
        time.sleep(wait)
        self.on()

    def read(self) -> Iterator[PowerReading]:
        for value in self.streamingcall("read"):
            yield PowerReading(voltage=float(value["voltage"]), current=float(value["current"]))

    def state(self) -> tuple[str, str] | None:
        """("on" or "off", what says so) from the driver's own status, else from a reading (0 V and 0 A: off);
        None when the driver can tell neither (no status, no meter) or does not answer."""
        try:
            if "status" in self.read_only_methods:
                status = self.call("status")
                if status in ("on", "off"):
                    return status, f"status() is {status}"
            items = self.read()
            try:
                reading = next(items, None)
            finally:
                items.close()
        except (JumpstarterLabError, ValueError, TypeError, KeyError):
            return None
        if reading is None:
            return None
        state = "off" if reading.voltage == 0 and reading.current == 0 else "on"
        return state, f"read() gives {reading.voltage:g} V, {reading.current:g} A"
