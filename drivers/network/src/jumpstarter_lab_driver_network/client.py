from __future__ import annotations

from jumpstarter_lab.client import DriverClient


class NetworkClient(DriverClient):
    """Client of network drivers: `stream()` gives the byte stream, `address()` where it leads."""

    def address(self) -> str:
        return self.call("address")
