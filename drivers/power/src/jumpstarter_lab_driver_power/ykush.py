"""Yepkit YKUSH switchable USB hubs, spoken to through the kernel's hidraw device.

The YKUSH (USB 04d8:f2f7) takes 64-byte HID output reports whose first byte is a
command and answers each with a 64-byte input report:

    0x01..0x03 port 1..3 down   0x0a all ports down
    0x11..0x13 port 1..3 up     0x1a all ports up
    0x21..0x23 port 1..3 status; answer byte 1 is (state << 4) | port

On hidraw a report is written with its report number in front (0 for a device
without numbered reports, as the YKUSH is) and read back without one. The hub's
HID interface stays bound to the kernel's usbhid driver, so nothing is detached;
the exporter's user needs read/write access to the /dev/hidrawN node (a udev rule).
"""

from __future__ import annotations

import errno
import os
import select
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from jumpstarter_lab.driver import Driver, export
from jumpstarter_lab.wire.errors import ExporterUnavailable

from .interface import PowerInterface, PowerReading

VENDOR_ID = 0x04D8
PRODUCT_ID = 0xF2F7
REPORT_SIZE = 64
PORTS = ("1", "2", "3", "all")
DEFAULTS = ("on", "off", "keep")
SYSFS_HIDRAW = Path("/sys/class/hidraw")

# hidraw hands every input report to every open descriptor of the node, so two drivers on
# one hub (port 1 and port 2) must not have commands in flight at once: one lock per node.
_node_locks: dict[str, threading.Lock] = {}
_node_locks_guard = threading.Lock()


def _node_lock(node: str) -> threading.Lock:
    with _node_locks_guard:
        return _node_locks.setdefault(os.path.realpath(node), threading.Lock())


def command(action: str, port: str) -> int:
    """The YKUSH command byte for `up`, `down` or `status` of a port (1-3, or `all` for up/down)."""
    index = 0x0A if port == "all" else int(port)
    if action == "status" and port == "all":
        raise ValueError("the YKUSH reports status per port, not for all ports at once")
    return {"down": 0x00, "up": 0x10, "status": 0x20}[action] | index


def output_report(cmd: int) -> bytes:
    """What to write to the hidraw node: report number 0, then the 64-byte report."""
    return bytes([0, cmd]) + bytes(REPORT_SIZE - 1)


@dataclass(frozen=True)
class HidrawDevice:
    node: str
    vendor: int
    product: int
    serial: str


def hidraw_devices(sysfs: Path = SYSFS_HIDRAW, dev: Path = Path("/dev")) -> Iterator[HidrawDevice]:
    """Every hidraw node with the USB ids and serial number (HID_UNIQ) its sysfs uevent gives."""
    if not sysfs.is_dir():
        return
    for entry in sorted(sysfs.iterdir()):
        try:
            uevent = (entry / "device" / "uevent").read_text()
        except OSError:
            continue
        fields = dict(line.split("=", 1) for line in uevent.splitlines() if "=" in line)
        try:
            _bus, vendor, product = fields.get("HID_ID", "").split(":")
            yield HidrawDevice(node=str(dev / entry.name), vendor=int(vendor, 16), product=int(product, 16),
                               serial=fields.get("HID_UNIQ", ""))
        except ValueError:
            continue


def find_ykush(serial: str | None, sysfs: Path = SYSFS_HIDRAW, dev: Path = Path("/dev")) -> HidrawDevice:
    found = [d for d in hidraw_devices(sysfs, dev) if (d.vendor, d.product) == (VENDOR_ID, PRODUCT_ID)]
    matching = [d for d in found if serial is None or d.serial == serial]
    if not matching:
        wanted = f"YKUSH with serial {serial}" if serial else "YKUSH"
        seen = f" (found: {', '.join(d.serial or d.node for d in found)})" if found else ""
        raise ExporterUnavailable(f"{wanted} (USB {VENDOR_ID:04x}:{PRODUCT_ID:04x}) is not connected: "
                                  f"no such hidraw device under {sysfs}{seen}")
    return matching[0]


@dataclass(kw_only=True)
class Ykush(PowerInterface, Driver):
    """Yepkit YKUSH USB hub: switches the power of its downstream ports"""

    serial: str | None = None
    default: Literal["on", "off", "keep"] = "off"
    port: Literal["1", "2", "3", "all", 1, 2, 3] = "all"
    # A hidraw node to use instead of looking the hub up by serial (e.g. a udev symlink).
    device: str | None = None
    timeout: float = 2.0

    def __post_init__(self):
        self.port = str(self.port)
        if self.port not in PORTS:
            raise ValueError(f"port must be one of {', '.join(PORTS)}, got {self.port!r}")
        if self.default not in DEFAULTS:
            raise ValueError(f"default must be one of {', '.join(DEFAULTS)}, got {self.default!r}")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be positive, got {self.timeout}")

    def _node(self) -> tuple[str, str]:
        """The hidraw node to open and how to name the hub in messages."""
        if self.device:
            return self.device, f"YKUSH at {self.device}"
        hub = find_ykush(self.serial)
        return hub.node, f"YKUSH {hub.serial or hub.node}"

    def _transfer(self, cmd: int) -> bytes:
        """Send one command report and return the hub's answer, within the timeout."""
        node, name = self._node()
        with _node_lock(node):
            return self._transfer_locked(node, name, cmd)

    def _transfer_locked(self, node: str, name: str, cmd: int) -> bytes:
        try:
            fd = os.open(node, os.O_RDWR | os.O_NOCTTY)
        except OSError as e:
            hint = " (the exporter's user needs a udev rule giving it the node)" if e.errno == errno.EACCES else ""
            raise ExporterUnavailable(f"{name} cannot be opened: {e.strerror}{hint}") from None
        try:
            os.write(fd, output_report(cmd))
            answer = b""
            deadline = time.monotonic() + self.timeout
            while len(answer) < REPORT_SIZE:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                    raise TimeoutError(f"{name} did not answer command 0x{cmd:02x} within {self.timeout:g}s")
                chunk = os.read(fd, REPORT_SIZE - len(answer))
                if not chunk:
                    raise ExporterUnavailable(f"{name} went away during command 0x{cmd:02x}")
                answer += chunk
            return answer
        except (TimeoutError, ExporterUnavailable):
            raise
        except OSError as e:
            raise ExporterUnavailable(f"{name} failed command 0x{cmd:02x}: {e.strerror or e}") from None
        finally:
            os.close(fd)

    @export
    def on(self) -> None:
        """Switch the port's power on"""
        self._transfer(command("up", self.port))
        self.logger.info("YKUSH port %s on", self.port)

    @export
    def off(self) -> None:
        """Switch the port's power off"""
        self._transfer(command("down", self.port))
        self.logger.info("YKUSH port %s off", self.port)

    @export
    def read(self) -> Iterator[PowerReading]:
        """Not available: a YKUSH does not measure voltage or current"""
        yield from ()  # a generator that gives nothing, so clients reach it as a streaming call
        raise NotImplementedError("a YKUSH hub does not measure voltage or current")

    @export(read_only=True)
    def status(self) -> str:
        """Port state read from the hub: on, off (or mixed, for port all)"""
        ports = ("1", "2", "3") if self.port == "all" else (self.port,)
        states = set()
        for port in ports:
            answer = self._transfer(command("status", port))
            states.add("on" if answer[1] >> 4 else "off")
        return states.pop() if len(states) == 1 else "mixed"

    def reset(self) -> None:
        """Put the port in its configured default state (on, off, or keep as it is)."""
        if self.default == "on":
            self.on()
        elif self.default == "off":
            self.off()
        super().reset()
