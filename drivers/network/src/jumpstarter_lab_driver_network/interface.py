"""The network interface shared by drivers and clients (method names as upstream's)."""

from __future__ import annotations

from jumpstarter_lab.driver import Interface, stream
from jumpstarter_lab.wire import labels


class NetworkInterface(Interface):
    """A byte stream to something on the exporter's network; clients open it with `stream()`."""

    label = labels.NETWORK
    connect = stream("A connection to the network endpoint")
