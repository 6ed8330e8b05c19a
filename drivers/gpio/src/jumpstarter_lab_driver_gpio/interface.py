"""The digital output and input interfaces (method names as upstream's gpiod drivers)."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

from jumpstarter_lab.wire import labels

from .common import PinState


class DigitalOutputInterface(metaclass=ABCMeta):
    @classmethod
    def client(cls) -> str:
        return labels.DIGITAL_OUTPUT

    @abstractmethod
    async def on(self) -> None: ...

    @abstractmethod
    async def off(self) -> None: ...

    @abstractmethod
    async def read_pin(self) -> PinState: ...


class DigitalInputInterface(metaclass=ABCMeta):
    @classmethod
    def client(cls) -> str:
        return labels.DIGITAL_INPUT

    @abstractmethod
    async def read_pin(self) -> PinState: ...

    @abstractmethod
    async def wait_for_active(self, timeout: float | None = None) -> None: ...

    @abstractmethod
    async def wait_for_inactive(self, timeout: float | None = None) -> None: ...

    @abstractmethod
    async def wait_for_edge(self, edge_type: str, timeout: float | None = None) -> None: ...
