"""The QEMU process behind a board: its command line, start and stop, its console and its disk.

One Machine per board instance (so per session). The guest starts paused (-S); the
console is attached before the CPUs run, so no boot output is lost. The disk a guest
boots is a qcow2 copy-on-write layer over the configured image (or over the last image
flashed in this session), so image_path itself is never written.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from jumpstarter_lab.streams import Fanout
from jumpstarter_lab.wire.errors import DriverError, DriverTimeout, ExporterUnavailable

logger = logging.getLogger("driver.QemuBoard")

START_TIMEOUT = 30.0  # from exec to a running guest with its console attached
STOP_TIMEOUT = 10.0
QEMU_IMG_TIMEOUT = 60.0
CONSOLE_WRITE_TIMEOUT = 10.0
KVM_GET_API_VERSION, KVM_CREATE_VM, KVM_CREATE_VCPU = 0xAE00, 0xAE01, 0xAE41
QCOW2_MAGIC = b"QFI\xfb"
MACHINES = {"x86_64": ("q35", "ttyS0"), "aarch64": ("virt", "ttyAMA0")}


def kvm_usable() -> tuple[bool, str]:
    """Whether this process can create a KVM guest with a vCPU, and if not, why."""
    try:
        kvm = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return False, f"/dev/kvm: {e.strerror}"
    try:
        if fcntl.ioctl(kvm, KVM_GET_API_VERSION, 0) != 12:
            return False, "/dev/kvm speaks an unknown KVM API version"
        vm = fcntl.ioctl(kvm, KVM_CREATE_VM, 0)
        try:
            os.close(fcntl.ioctl(vm, KVM_CREATE_VCPU, 0))
        finally:
            os.close(vm)
    except OSError as e:
        return False, f"KVM cannot create a guest: {e.strerror}"
    finally:
        os.close(kvm)
    return True, "KVM is usable"


def image_format(path: Path) -> str:
    with open(path, "rb") as f:
        return "qcow2" if f.read(4) == QCOW2_MAGIC else "raw"


def virtual_size(path: Path) -> int:
    with open(path, "rb") as f:
        header = f.read(32)
    if header[:4] == QCOW2_MAGIC:
        return struct.unpack(">Q", header[24:32])[0]
    return path.stat().st_size


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _qemu_option(path: Path | str) -> str:
    return str(path).replace(",", ",,")


@dataclass
class Forward:
    """A guest TCP port reachable on the exporter host (QEMU user networking's hostfwd)."""

    guest_port: int
    host_port: int = 0  # 0: a free port, chosen at the first power-on and kept while it stays free
    host_addr: str = "127.0.0.1"
    bound: int = 0

    def rule(self) -> str:
        return f"hostfwd=tcp:{self.host_addr}:{self.bound}-:{self.guest_port}"


@dataclass
class Spec:
    """What to run: validated by the board's config; files are checked at power-on."""

    image: Path | None
    kernel: Path | None
    initrd: Path | None
    append: str | None
    bios: Path | None
    memory_mib: int
    cpus: int
    cpu: str | None
    arch: str
    accel: str
    binary: str | None
    disk_bytes: int | None
    extra_args: list[str] = field(default_factory=list)
    bios_package: str | None = None  # the Debian package of a firmware the board chose itself
    machine: str | None = None  # QEMU -machine, when not the arch's usual one


class _Exited(Exception):
    def __init__(self, code: int | None, log: str):
        super().__init__(log)
        self.code, self.log = code, log


class Qmp:
    """Just enough of the QEMU Machine Protocol: handshake and commands, events skipped."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._reader, self._writer = reader, writer

    @classmethod
    async def connect(cls, path: Path) -> Qmp:
        qmp = cls(*await asyncio.open_unix_connection(str(path)))
        greeting = await qmp._message()
        if "QMP" not in greeting:
            raise ConnectionError(f"not a QMP greeting: {greeting}")
        await qmp.execute("qmp_capabilities")
        return qmp

    async def _message(self) -> dict:
        line = await self._reader.readline()
        if not line:
            raise ConnectionError("QMP connection closed")
        return json.loads(line)

    async def execute(self, command: str, **arguments) -> object:
        self._writer.write(json.dumps({"execute": command, "arguments": arguments}).encode() + b"\n")
        await self._writer.drain()
        while True:
            message = await self._message()
            if "return" in message:
                return message["return"]
            if "error" in message:
                raise DriverError(f"QEMU refused {command}: {message['error'].get('desc', message['error'])}")

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


class Machine:
    # KVM that opens but cannot run a guest (nested virtualisation, often) is remembered per exporter.
    kvm_failure: str | None = None

    def __init__(self, spec: Spec, forwards: dict[str, Forward], workdir: Callable[[], Path]):
        """`workdir()` gives the directory for the guest's disk, overlay, sockets and log (the session's)."""
        self.spec = spec
        self._make_workdir = workdir
        self.forwards = forwards
        self.storage = "dut"  # which side the disk is attached to: dut, host or off
        self._flashed: Path | None = None
        self._overlay_base: Path | None = None
        self._workdir: Path | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._console: asyncio.StreamWriter | None = None
        self._tasks: set[asyncio.Task] = set()
        self.console = Fanout()  # what the guest's first UART prints, to every attached console stream
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    # --- state ---------------------------------------------------------------------

    @property
    def powered(self) -> bool:
        return self._process is not None and self._process.returncode is None

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            self._workdir = self._make_workdir()
            self._workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self._workdir

    def flashed(self, image: Path) -> None:
        """A new disk image for the next power-on (the running guest keeps the one it booted)."""
        self._flashed = image
        self._overlay_base = None

    # --- power ---------------------------------------------------------------------

    async def power_on(self) -> None:
        async with self._lock:
            if self._closed:
                raise ExporterUnavailable("the QEMU board's session has ended")
            if self.powered:
                return
            self._loop = asyncio.get_running_loop()
            binary = self._binary()
            self._check_boot_files()
            disk = await self._disk() if self.storage == "dut" else None
            if disk is None:
                logger.warning("powering on with the storage on the %s side: the guest has no disk", self.storage)
            accels = self._accelerators()
            for accel in accels:
                try:
                    await self._start_on_free_ports(binary, accel, disk)
                except _Exited as e:
                    if accel == "kvm" and accel != accels[-1]:
                        Machine.kvm_failure = _tail(e.log, 1) or f"exit code {e.code}"
                        logger.warning("QEMU cannot run a guest under KVM here (%s); using TCG", Machine.kvm_failure)
                        continue
                    raise DriverError(f"QEMU exited at power-on (exit code {e.code}): {_tail(e.log)}") from None
                logger.info("QEMU board powered on (%s, pid %d)", accel, self._process.pid)
                return

    async def power_off(self) -> None:
        async with self._lock:
            process, self._process = self._process, None
            if process is not None:
                await self._stop(process)
                logger.info("QEMU board powered off")

    def close(self) -> None:
        """End the guest and remove the session's files; from any thread, once, when the session ends."""
        self._closed = True
        process = self._process
        loop = self._loop
        if process is not None and process.returncode is None:
            if loop is not None and loop.is_running() and not _in_loop(loop):
                future = asyncio.run_coroutine_threadsafe(self.power_off(), loop)
                try:
                    future.result(START_TIMEOUT + 2 * STOP_TIMEOUT)
                except Exception as e:  # noqa: BLE001 - whatever happened, the guest must not outlive its session
                    logger.warning("stopping QEMU cleanly failed (%s); killing it", e)
                    _kill(process.pid)
            else:
                _kill(process.pid)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    # --- starting ------------------------------------------------------------------

    def _binary(self) -> str:
        name = self.spec.binary or f"qemu-system-{self.spec.arch}"
        found = shutil.which(name)
        if found is None:
            package = "qemu-system-x86" if self.spec.arch == "x86_64" else "qemu-system-arm"
            where = "" if os.sep in name else " in PATH"
            raise DriverError(f"QEMU not found: looked for {name}{where} (Debian package {package})")
        return found

    def _check_boot_files(self) -> None:
        if self.spec.bios_package and not self.spec.bios.is_file():
            raise DriverError(f"firmware {self.spec.bios} not found (Debian package {self.spec.bios_package})")
        for name, path in (("kernel", self.spec.kernel), ("initrd", self.spec.initrd), ("bios", self.spec.bios)):
            if path is not None and not path.is_file():
                raise DriverError(f"{name} {path} not found (the board's '{name}' setting)")

    def _base(self) -> Path:
        base = self._flashed or self.spec.image
        if base is None:
            raise DriverError("the QEMU board has no disk image: set image_path in the exporter config "
                              "or flash one through its storage")
        if not base.is_file():
            raise DriverError(f"disk image {base} not found (the board's 'image_path' setting)")
        return base

    async def _disk(self) -> Path:
        base = self._base()
        overlay = self.workdir / "overlay.qcow2"
        if self._overlay_base == base and overlay.exists():
            return overlay  # the guest's own writes survive a power cycle, as on a real disk
        size = virtual_size(base)
        if self.spec.disk_bytes is not None and self.spec.disk_bytes < size:
            raise DriverError(f"disk_size {self.spec.disk_bytes} bytes is smaller than the image {base} ({size} bytes)")
        overlay.unlink(missing_ok=True)
        argv = ["create", "-q", "-f", "qcow2", "-b", str(base.absolute()), "-F", image_format(base), str(overlay)]
        if self.spec.disk_bytes is not None:
            argv.append(str(self.spec.disk_bytes))
        await _qemu_img(argv, f"layer a disk over {base}")
        self._overlay_base = base
        return overlay

    async def raw_disk(self) -> Path:
        """The disk as the guest sees it (its own writes included), as a raw image file."""
        base = self._base()
        overlay = self.workdir / "overlay.qcow2"
        source = overlay if self._overlay_base == base and overlay.exists() else base
        if source is base and image_format(base) == "raw":
            return base
        raw = self.workdir / "disk.raw"
        # -U: a running guest holds its disk's lock; what it has written so far is read.
        await _qemu_img(["convert", "-U", "-O", "raw", str(source), str(raw)], f"read the disk {source}")
        return raw

    def _accelerators(self) -> list[str]:
        if self.spec.accel == "tcg" or self.spec.arch != os.uname().machine:
            return ["tcg"]
        usable, why = kvm_usable()
        if self.spec.accel == "kvm":
            if not usable:
                raise DriverError(f"accel is kvm but {why}")
            return ["kvm"]
        if not usable or Machine.kvm_failure:
            logger.info("KVM not used (%s); using TCG", why if not usable else Machine.kvm_failure)
            return ["tcg"]
        return ["kvm", "tcg"]

    async def _start_on_free_ports(self, binary: str, accel: str, disk: Path | None) -> None:
        for attempt in range(3):
            self._choose_ports()
            try:
                return await self._start(self._argv(binary, accel, disk))
            except _Exited as e:
                if "host forwarding rule" not in e.log or attempt == 2:
                    raise
                for forward in self.forwards.values():  # a chosen port was taken meanwhile: choose again
                    forward.bound = forward.host_port

    def _choose_ports(self) -> None:
        for forward in self.forwards.values():
            if forward.host_port:
                forward.bound = forward.host_port
            elif not forward.bound:
                forward.bound = free_port(forward.host_addr)

    def _argv(self, binary: str, accel: str, disk: Path | None) -> list[str]:
        spec, work = self.spec, self.workdir
        machine = spec.machine or MACHINES[spec.arch][0]
        argv = [binary, "-name", "jumpstarter-lab-board", "-nodefaults", "-no-user-config", "-display", "none", "-S",
                "-machine", machine, "-accel", "tcg,thread=multi" if accel == "tcg" else accel,
                "-cpu", spec.cpu or "max", "-smp", str(spec.cpus), "-m", f"{spec.memory_mib}M",
                "-qmp", f"unix:{_qemu_option(work / 'qmp.sock')},server=on,wait=off",
                "-chardev", f"socket,id=console,path={_qemu_option(work / 'console.sock')},server=on,wait=off",
                "-serial", "chardev:console",
                "-netdev", ",".join(["user", "id=net0", *(f.rule() for f in self.forwards.values())]),
                "-device", "virtio-net-pci,netdev=net0,romfile=", "-device", "virtio-rng-pci"]
        if disk is not None:
            argv += ["-blockdev", f"driver=qcow2,node-name=disk,file.driver=file,file.filename={_qemu_option(disk)}",
                     "-device", "virtio-blk-pci,drive=disk,bootindex=1"]
        if spec.bios is not None:
            argv += ["-bios", str(spec.bios)]
        if spec.kernel is not None:
            argv += ["-kernel", str(spec.kernel)]
            if spec.initrd is not None:
                argv += ["-initrd", str(spec.initrd)]
            if spec.append:
                argv += ["-append", spec.append]
        return argv + spec.extra_args

    async def _start(self, argv: list[str]) -> None:
        work = self.workdir
        for name in ("qmp.sock", "console.sock"):
            (work / name).unlink(missing_ok=True)
        log = work / "qemu.log"
        logger.debug("starting %s", " ".join(argv))
        with open(log, "wb") as out:  # QEMU dies with the exporter (launch.py); the death signal follows
            # the spawning thread, here the event loop's, which lives as long as the exporter does.
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "jumpstarter_lab_driver_qemu.launch", str(os.getpid()), *argv,
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, cwd=work, start_new_session=True)
        try:
            async with asyncio.timeout(START_TIMEOUT):
                qmp = await self._qmp(process, work / "qmp.sock")
                try:
                    reader, self._console = await asyncio.open_unix_connection(str(work / "console.sock"))
                    await qmp.execute("cont")
                finally:
                    await qmp.close()
        except BaseException as e:
            exited = process.returncode is not None
            if not exited:
                with contextlib.suppress(asyncio.TimeoutError):
                    exited = (await asyncio.wait_for(asyncio.shield(process.wait()), 1.0)) is not None
            if not exited:
                await self._stop(process)
            self._drop_console()
            text = log.read_text(errors="replace")
            if isinstance(e, asyncio.CancelledError):
                raise
            if exited:
                raise _Exited(process.returncode, text) from None
            if isinstance(e, TimeoutError):
                raise DriverTimeout(f"QEMU did not start its guest within {START_TIMEOUT:g}s: {_tail(text)}") from None
            if isinstance(e, (ConnectionError, OSError, ValueError)):
                raise DriverError(f"cannot talk to QEMU: {e}; {_tail(text)}") from None
            raise
        self._process = process
        self._spawn(self._pump(reader))
        self._spawn(self._watch(process))

    async def _qmp(self, process: asyncio.subprocess.Process, path: Path) -> Qmp:
        while True:
            if process.returncode is not None:
                raise ConnectionError("QEMU exited")
            if path.exists():
                with contextlib.suppress(ConnectionRefusedError, FileNotFoundError):
                    return await Qmp.connect(path)
            await asyncio.sleep(0.05)

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        if self._process is process:  # not stopped by power_off: the guest powered off or QEMU died
            self._process = None
            self._drop_console()
            logger.warning("QEMU exited by itself (exit code %s): %s", code,
                           _tail((self.workdir / "qemu.log").read_text(errors="replace")) or "guest powered off")

    async def _stop(self, process: asyncio.subprocess.Process) -> None:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)  # QEMU quits at once, flushing its disk layer
            try:
                await asyncio.wait_for(asyncio.shield(process.wait()), STOP_TIMEOUT)
            except asyncio.TimeoutError:
                _kill(process.pid)
                await asyncio.wait_for(asyncio.shield(process.wait()), STOP_TIMEOUT)
        self._drop_console()

    # --- console -------------------------------------------------------------------

    async def _pump(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                self.console.publish(data)

    def _drop_console(self) -> None:
        console, self._console = self._console, None
        if console is not None:
            console.close()

    async def console_write(self, data: bytes) -> None:
        console = self._console
        if console is None or console.is_closing():
            return  # a powered-off board ignores its serial input
        console.write(data)
        try:
            await asyncio.wait_for(console.drain(), CONSOLE_WRITE_TIMEOUT)
        except (ConnectionError, asyncio.TimeoutError):
            pass  # the guest stopped reading or went away: the input is lost, as on a real line

    # --- network -------------------------------------------------------------------

    def forward_address(self, name: str) -> tuple[str, int]:
        forward = self.forwards[name]
        if not self.powered or not forward.bound:
            raise ExporterUnavailable(f"the QEMU board is powered off: nothing forwards to guest port "
                                      f"{forward.guest_port}")
        return forward.host_addr, forward.bound


async def _qemu_img(argv: list[str], what: str) -> None:
    """Run qemu-img with a deadline; DriverError saying what it could not do and why."""
    qemu_img = shutil.which("qemu-img")
    if qemu_img is None:
        raise DriverError(f"qemu-img not found (Debian package qemu-utils); it is needed to {what}")
    process = await asyncio.create_subprocess_exec(qemu_img, *argv, stdin=asyncio.subprocess.DEVNULL,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        output = (await asyncio.wait_for(process.communicate(), QEMU_IMG_TIMEOUT))[0]
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise DriverTimeout(f"qemu-img {argv[0]} did not finish within {QEMU_IMG_TIMEOUT:g}s") from None
    if process.returncode != 0:
        raise DriverError(f"qemu-img could not {what}: {output.decode(errors='replace').strip()}")


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])
