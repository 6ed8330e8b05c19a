"""PySerial on a real pseudo-terminal device path: bytes both ways through the exporter."""

from __future__ import annotations

import os
import select
import tty

from jumpstarter_lab.client import connect
from jumpstarter_lab.wire.errors import ExporterUnavailable

import pytest


def read_exactly(fd: int, size: int, timeout: float = 10) -> bytes:
    data = b""
    while len(data) < size:
        ready = select.select([fd], [], [], timeout)[0]
        assert ready, f"only {data!r} arrived on the pty"
        data += os.read(fd, size - len(data))
    return data


def test_pyserial_on_a_pty_device(make_config, run_exporter):
    master, slave = os.openpty()
    tty.setraw(slave)
    device = os.ttyname(slave)
    try:
        exporter = run_exporter(make_config(f"""
uart:
  type: jumpstarter_driver_pyserial.driver.PySerial
  config: {{url: {device}, baudrate: 115200}}
missing:
  type: jumpstarter_driver_pyserial.driver.PySerial
  config: {{url: /dev/ttyNOPE0}}
"""))
        with connect(exporter.address) as root:
            with root.uart.stream() as stream:
                stream.send(b"to the board\n")
                assert read_exactly(master, 13) == b"to the board\n"
                payload = bytes(range(256)) * 64
                os.write(master, payload)
                assert stream.receive_exactly(len(payload), timeout=10) == payload
            with pytest.raises(ExporterUnavailable, match="serial device /dev/ttyNOPE0 is not available"):
                with root.missing.stream():
                    pass
            with root.uart.stream() as stream:  # the exporter is unharmed by the failed open
                os.write(master, b"again")
                assert stream.receive_exactly(5, timeout=10) == b"again"
    finally:
        os.close(master)
        os.close(slave)
