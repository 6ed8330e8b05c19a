from __future__ import annotations

from jumpstarter_lab.client import DriverClient


class NetworkClient(DriverClient):
    """Client of network drivers: `stream()` gives the byte stream, `address()` where it leads.

    To reach the stream through a local port (ssh, a browser), see
    `jumpstarter_lab_driver_network.adapters.TcpPortforwardAdapter`.
    """

    def address(self) -> str:
        return self.call("address")
