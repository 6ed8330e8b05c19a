"""The console interface: a byte stream; the label is upstream's PySerial client so either side can use it."""

from __future__ import annotations

from jumpstarter_lab.driver import Interface, stream
from jumpstarter_lab.wire import labels


class SerialInterface(Interface):
    label = labels.SERIAL
    connect = stream("The console's byte stream")
