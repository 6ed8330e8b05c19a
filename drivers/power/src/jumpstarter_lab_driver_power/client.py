from __future__ import annotations

import time
from collections.abc import Iterator

from jumpstarter_lab.client import DriverClient

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
