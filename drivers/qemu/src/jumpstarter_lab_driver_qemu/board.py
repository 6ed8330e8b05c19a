"""Drivers of the QEMU board: the board (a composite) and its power, console, storage and network."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from jumpstarter_lab.driver import CompositeInterface, Driver, export, exportstream
from jumpstarter_lab_driver_network.driver import NetworkInterface, tcp_stream
from jumpstarter_lab_driver_power.interface import PowerInterface, PowerReading
from jumpstarter_lab_driver_serial.driver import DeviceConsole
from jumpstarter_lab_driver_storage.driver import ImageStorage

from .machine import MACHINES, Forward, Machine, Spec

CONNECT_TIMEOUT = 10.0
BUILTIN_CHILDREN = ("power", "console", "storage", "network")
# Debian's u-boot-qemu builds (the 32-bit x86 one: zboot of a 64-bit kernel hangs in Debian 12's x86_64 build).
# Its device tree is i440fx's: on q35 it takes the NIC in slot 1 for the chipset and finds no network.
UBOOT_FIRMWARE = {"x86_64": ("/usr/lib/u-boot/qemu-x86/u-boot.rom", "pc"),
                  "aarch64": ("/usr/lib/u-boot/qemu_arm64/u-boot.bin", "virt")}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.I)


def parse_size(value: str | int, unit: int, what: str) -> int:
    """Bytes in '512M', '1G', '2GiB' (binary units); a bare number counts in `unit` bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        number, suffix = float(value), ""
    else:
        found = _SIZE.match(str(value))
        if not found:
            raise ValueError(f"{what}: expected a size such as 512M or 2G, got {value!r}")
        number, suffix = float(found.group(1)), found.group(2).lower()
    scale = 1024 ** ("kmgt".index(suffix) + 1) if suffix else unit
    size = int(number * scale)
    if size <= 0:
        raise ValueError(f"{what}: must be more than zero, got {value!r}")
    return size


class QemuPower(PowerInterface, Driver):
    """Power of the QEMU board: starts and stops the virtual machine"""

    def __init__(self, machine: Machine):
        self._machine = machine

    @export
    async def on(self) -> None:
        """Power on: start the VM, which boots from the storage"""
        await self._machine.power_on()

    @export
    async def off(self) -> None:
        """Power off: stop the VM at once, like pulling the plug"""
        await self._machine.power_off()

    @export
    async def read(self) -> AsyncIterator[PowerReading]:
        """Read voltage and current"""
        yield PowerReading(voltage=12.0, current=0.5) if self._machine.powered else PowerReading(voltage=0.0, current=0.0)

    @export(read_only=True)
    def status(self) -> str:
        """Current power state: on or off"""
        return "on" if self._machine.powered else "off"


class QemuConsole(DeviceConsole):
    """Serial console of the QEMU board (the guest's first UART); stays open across power cycles"""

    def __init__(self, machine: Machine):
        super().__init__(machine.console, machine.console_write)


class QemuStorage(ImageStorage):
    """Storage of the QEMU board: its disk image, switched between host and DUT and flashed from the client"""

    def __init__(self, machine: Machine):
        self._machine = machine

    @property
    def side(self) -> str:
        return self._machine.storage

    def _medium(self) -> Path:
        return self._machine.workdir / "disk.img"  # replaced whole at the end: a running guest keeps its old one

    def _flashed(self, result: dict) -> None:
        self._machine.flashed(self._medium())
        self.logger.info("flashed a %s image: %d bytes on the disk%s", result["compression"], result["bytes_written"],
                         " (the running guest keeps its old disk until it is powered off)" if self._machine.powered else "")

    async def _readable(self) -> Path:
        return await self._machine.raw_disk()

    async def _switch(self, side: str) -> None:
        self._machine.storage = side


class QemuNetwork(NetworkInterface, Driver):
    """A guest TCP port forwarded to the exporter host (the guest's sshd by default)"""

    def __init__(self, machine: Machine, name: str):
        self._machine = machine
        self._name = name

    @exportstream
    @contextlib.asynccontextmanager
    async def connect(self):
        """Open a TCP connection to the guest port"""
        host, port = self._machine.forward_address(self._name)
        async with tcp_stream(host, port, CONNECT_TIMEOUT, "the forwarded port ") as stream:
            yield stream

    @export(read_only=True)
    async def address(self) -> str:
        """The tcp:// address on the exporter host that reaches the guest port (while powered on)"""
        host, port = self._machine.forward_address(self._name)
        return f"tcp://{f'[{host}]' if ':' in host else host}:{port}"


def _optional_path(value: str | None) -> Path | None:
    return Path(value).expanduser().absolute() if value else None  # QEMU runs in the session's directory


@dataclass(kw_only=True)
class QemuBoard(CompositeInterface, Driver):
    """A virtual board: a QEMU guest with power, a serial console, flashable storage and a forwarded port"""

    image_path: str | None = None
    kernel: str | None = None
    initrd: str | None = None
    append: str | None = None
    memory: str | int | None = None
    cpu_cores: int | None = None
    accel: Literal["auto", "kvm", "tcg"] = "auto"
    qemu_binary: str | None = None
    guest_port: int = 22
    extra_args: list[str] = field(default_factory=list)
    firmware: Literal["default", "u-boot"] = "default"
    # Upstream's QEMU driver's names for the same things, accepted as they are.
    arch: str = "x86_64"
    cpu: str | None = None
    smp: int | None = None
    mem: str | None = None
    disk_size: str | None = None
    default_partitions: dict[str, str] = field(default_factory=dict)
    hostfwd: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self):
        if self.arch not in MACHINES:
            raise ValueError(f"arch: {self.arch!r} is not supported (known: {', '.join(MACHINES)})")
        partitions = dict(self.default_partitions)
        unknown = sorted(set(partitions) - {"root", "bios"})
        if unknown:
            raise ValueError(f"default_partitions: '{unknown[0]}' is not supported by this driver (root, bios)")
        image = _one_of("image_path", self.image_path, "default_partitions.root", partitions.get("root"))
        memory = _one_of("memory", self.memory, "mem", self.mem)
        cpus = _one_of("cpu_cores", self.cpu_cores, "smp", self.smp) or 2
        if cpus < 1:
            raise ValueError(f"cpu_cores: must be at least 1, got {cpus}")
        if (self.initrd or self.append) and not self.kernel:
            raise ValueError("initrd and append need a kernel (direct kernel boot)")
        bios = partitions.get("bios")
        if self.firmware == "u-boot":
            if self.kernel:
                raise ValueError("firmware u-boot loads its kernel itself (tftpboot, or from the disk): "
                                 "remove the kernel setting")
            if bios:
                raise ValueError("firmware u-boot and default_partitions.bios both name the firmware; give one")
            bios, machine = UBOOT_FIRMWARE[self.arch]
        else:
            machine = None
        if not 0 < self.guest_port < 65536:
            raise ValueError(f"guest_port: must be 1-65535, got {self.guest_port}")
        forwards = {"network": Forward(guest_port=self.guest_port)}
        for name, options in self.hostfwd.items():
            forwards[name] = _forward(name, options)
        default_append = f"console={MACHINES[self.arch][1]} root=/dev/vda rw quiet"
        self.machine = Machine(Spec(
            image=_optional_path(image), kernel=_optional_path(self.kernel), initrd=_optional_path(self.initrd),
            append=self.append if self.append is not None else default_append if self.kernel else None,
            bios=_optional_path(bios), bios_package="u-boot-qemu" if self.firmware == "u-boot" else None, machine=machine,
            memory_mib=parse_size(memory if memory is not None else "512M", 1 << 20, "memory") >> 20,
            cpus=cpus, cpu=self.cpu, arch=self.arch, accel=self.accel, binary=self.qemu_binary,
            disk_bytes=parse_size(self.disk_size, 1, "disk_size") if self.disk_size else None,
            extra_args=list(self.extra_args)), forwards, workdir=lambda: self.context.workdir / f"qemu-{self.uuid}")

    def make_children(self) -> dict[str, Driver]:
        children: dict[str, Driver] = {"power": QemuPower(self.machine), "console": QemuConsole(self.machine),
                                       "storage": QemuStorage(self.machine)}
        for name in self.machine.forwards:
            children[name] = QemuNetwork(self.machine, name)
        return children

    def close(self) -> None:
        super().close()
        self.machine.close()


def _one_of(name: str, value, alias: str, alias_value):
    if value is not None and alias_value is not None and value != alias_value:
        raise ValueError(f"{name} and {alias} say different things ({value!r}, {alias_value!r}); give one")
    return value if value is not None else alias_value


def _forward(name: str, options: dict[str, Any]) -> Forward:
    where = f"hostfwd.{name}"
    if name in BUILTIN_CHILDREN:
        raise ValueError(f"{where}: '{name}' is the name of one of the board's own children")
    unknown = sorted(set(options) - {"protocol", "hostaddr", "hostport", "guestport"})
    if unknown:
        raise ValueError(f"{where}: unknown field '{unknown[0]}' (known: protocol, hostaddr, hostport, guestport)")
    if options.get("protocol", "tcp") != "tcp":
        raise ValueError(f"{where}.protocol: only tcp is supported, got {options['protocol']!r}")
    ports = {}
    for key, required in (("guestport", True), ("hostport", False)):
        value = options.get(key)
        if value is None and not required:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
            raise ValueError(f"{where}.{key}: expected a port number 1-65535, got {value!r}")
        ports[key] = value
    host = options.get("hostaddr", "127.0.0.1")
    if not isinstance(host, str) or not host:
        raise ValueError(f"{where}.hostaddr: expected an address, got {host!r}")
    return Forward(guest_port=ports["guestport"], host_port=ports.get("hostport", 0), host_addr=host)
