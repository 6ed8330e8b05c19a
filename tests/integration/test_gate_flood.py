"""An exporter keeps serving through a flood of idle connections (issue 18, item 2): idle ones are closed
after the handshake time, running out of file descriptors only pauses accepting, and the gate spends
no thread per connection."""

from __future__ import annotations

import socket
import time

from helpers import CLI, STANDARD_EXPORT, ExporterProcess, exporter_config
from jumpstarter_lab.client import connect
from jumpstarter_lab.wire.errors import ExporterUnavailable


def _limited_cli(tmp_path, files: int) -> str:
    wrapper = tmp_path / "jumpstarter-lab-limited"
    wrapper.write_text(f"#!/bin/sh\nulimit -n {files}\nexec {CLI} \"$@\"\n")
    wrapper.chmod(0o755)
    return str(wrapper)


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


def test_a_flood_of_idle_connections_does_not_stop_the_exporter(tmp_path):
    config = tmp_path / "exporter.yaml"
    config.write_text(exporter_config(STANDARD_EXPORT))
    exporter = ExporterProcess(["--config", str(config), "--listen", "127.0.0.1:0", "--insecure"],
                               tmp_path / "exporter.log", cli=_limited_cli(tmp_path, 128))
    host, port = exporter.address.rsplit(":", 1)
    try:
        with connect(exporter.address, insecure=True) as root:
            root.power.on()
        threads_before = _threads(exporter.process.pid)
        flood = []
        for _i in range(200):  # far more than 128 file descriptors' worth
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex((host, int(port)))
            flood.append(sock)
        time.sleep(1)
        assert _threads(exporter.process.pid) <= threads_before + 2  # no thread per connection
        # Idle connections are closed after the handshake time, so a real client gets in during the flood.
        deadline, served = time.monotonic() + 90, False  # a liveness bound: idle ones go after 10 s a round
        while not served and time.monotonic() < deadline:
            try:
                with connect(exporter.address, insecure=True, timeout=5) as root:
                    served = root.power.call("status") == "off"
            except ExporterUnavailable:
                time.sleep(1)
        assert served, exporter.logs()[-2000:]
        for sock in flood:
            sock.close()
        with connect(exporter.address, insecure=True) as root:  # and it accepts on, once the flood has gone
            assert root.power.call("status") == "off"
        assert "Too many open files" in exporter.logs()  # the flood did reach the limit
        assert exporter.process.poll() is None
    finally:
        exporter.stop()
