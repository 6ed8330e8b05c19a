"""The digital output and input interfaces (method names as upstream's gpiod drivers)."""

from __future__ import annotations

from jumpstarter_lab.driver import Interface, call
from jumpstarter_lab.wire import labels


class DigitalOutputInterface(Interface):
    label = labels.DIGITAL_OUTPUT
    on = call("Drive the line active")
    off = call("Drive the line inactive")
    read_pin = call("The line's state (PinState)", read_only=True)


class DigitalInputInterface(Interface):
    label = labels.DIGITAL_INPUT
    read_pin = call("The line's state (PinState)", read_only=True)
    wait_for_active = call("Wait (timeout seconds, None: forever) until the line is active", read_only=True)
    wait_for_inactive = call("Wait (timeout seconds, None: forever) until the line is inactive", read_only=True)
    wait_for_edge = call("Wait (edge_type: rising, falling or both; timeout) for an edge", read_only=True)
