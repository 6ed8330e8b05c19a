"""The power interface shared by drivers and clients (method names as upstream's)."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass

from jumpstarter_lab.wire import labels


@dataclass(frozen=True)
class PowerReading:
    voltage: float
    current: float

    @property
    def apparent_power(self) -> float:
        return self.voltage * self.current


class PowerInterface(metaclass=ABCMeta):
    @classmethod
    def client(cls) -> str:
        return labels.POWER

    @abstractmethod
    async def on(self) -> None: ...

    @abstractmethod
    async def off(self) -> None: ...

    @abstractmethod
    async def read(self) -> AsyncIterator[PowerReading]:
        """Readings of voltage and current (an async generator)."""
        yield PowerReading(0.0, 0.0)
