"""The storage mux interface (method names as upstream's StorageMux)."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

from jumpstarter_lab.wire import labels


class StorageMuxInterface(metaclass=ABCMeta):
    @classmethod
    def client(cls) -> str:
        return labels.STORAGE_MUX

    @abstractmethod
    async def host(self) -> None:
        """Attach the storage to the exporter host."""

    @abstractmethod
    async def dut(self) -> None:
        """Attach the storage to the board."""

    @abstractmethod
    async def off(self) -> None:
        """Detach the storage from both."""

    @abstractmethod
    async def write(self, src: dict) -> dict:
        """Write an image the client pushed (a resource handle); returns what was written."""

    @abstractmethod
    async def read(self, dst: dict) -> dict:
        """Read the storage back to the client (a resource handle of a client sink)."""
