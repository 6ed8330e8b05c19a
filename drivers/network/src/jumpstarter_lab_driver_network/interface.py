"""The network interface shared by drivers and clients (method names as upstream's)."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

from jumpstarter_lab.wire import labels


class NetworkInterface(metaclass=ABCMeta):
    """A byte stream to something on the exporter's network; clients open it with `stream()`."""

    @classmethod
    def client(cls) -> str:
        return labels.NETWORK

    @abstractmethod
    async def connect(self):
        """An async context manager yielding the ByteStream (an @exportstream)."""
