from __future__ import annotations

from abc import ABCMeta, abstractmethod

from jumpstarter_lab.wire import labels


class SerialInterface(metaclass=ABCMeta):
    """A console byte stream; the label is upstream's PySerial client so either side can use it."""

    @classmethod
    def client(cls) -> str:
        return labels.SERIAL

    @abstractmethod
    async def connect(self):
        """An async context manager yielding the console's byte stream."""
