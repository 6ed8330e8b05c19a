"""The power interface shared by drivers and clients (method names as upstream's)."""

from __future__ import annotations

from dataclasses import dataclass

from jumpstarter_lab.driver import Interface, call, streaming_call
from jumpstarter_lab.wire import labels


@dataclass(frozen=True)
class PowerReading:
    voltage: float
    current: float

    @property
    def apparent_power(self) -> float:
        return self.voltage * self.current


class PowerInterface(Interface):
    label = labels.POWER
    on = call("Power on")
    off = call("Power off")
    read = streaming_call("Readings of voltage and current (PowerReading)", read_only=True)
