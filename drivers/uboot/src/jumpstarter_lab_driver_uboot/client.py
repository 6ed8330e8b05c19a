"""The U-Boot client: stop autoboot, run commands with their return codes, load over TFTP, boot or write the disk.

Everything is a dialogue on the board's console stream, every wait with a deadline. A
command's return code comes from an `echo` of `$?` with a marker of this call, so the
echo of the typed line itself never matches.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

from jumpstarter_lab.client.base import CompositeClient
from jumpstarter_lab.wire.errors import DriverError, DriverTimeout, MethodNotFound
from jumpstarter_lab_driver_serial.client import Console

CTRL_C = "\x03"
KEY_INTERVAL = 0.1  # how often the interrupt is sent until the prompt shows
KERNEL_STARTED = re.compile(rb"Starting kernel|Linux version \d")
DEFAULTS = {"interrupt": " ", "prompt_timeout": 60.0, "init_commands": [], "max_line": 256}
BOOT_METHODS = {"x86": "zboot", "arm": "bootz", "arm64": "booti"}  # by U-Boot's `arch` variable
_calls = itertools.count(1)


class UBootCommandFailed(DriverError):
    """A U-Boot command returned non-zero; its output and return code are kept."""

    def __init__(self, command: str, rc: int, output: str):
        last = " | ".join(line for line in output.strip().splitlines()[-4:] if line.strip())
        super().__init__(f"U-Boot command {command!r} failed with return code {rc}: {last or 'no output'}")
        self.command, self.rc, self.output = command, rc, output


@dataclass
class Result:
    output: str
    rc: int
    seconds: float
    bytes: int | None = None  # what a load brought into RAM


class UBootClient(CompositeClient):
    """U-Boot on a board: `with uboot.reboot_to_console(): uboot.run_command_checked("version")`"""

    @cached_property
    def prompt(self) -> str:
        return self.call("get_prompt")

    @cached_property
    def settings(self) -> dict:
        try:
            settings = self.call("get_settings")
        except MethodNotFound:  # upstream's driver has only the prompt
            settings = {}
        return DEFAULTS | {"prompt": self.prompt} | (settings or {})

    # --- reaching the prompt ---------------------------------------------------------------------

    @contextlib.contextmanager
    def reboot_to_console(self, timeout: float | None = None) -> Iterator[UBootClient]:
        """Power-cycle the board and stop its autoboot; inside, the commands below talk to the prompt.

        The console is attached before power-on, so nothing the board prints is missed."""
        with self.serial.open() as console:
            self.power.off()
            self.power.on()
            with self._at_prompt(console, timeout, "after power-on"):
                yield self

    def autoboot(self, wait_for: str, timeout: float = 300.0) -> float:
        """Power-cycle the board and let U-Boot boot by itself (no key is sent) until `wait_for` (a regular
        expression, such as a login prompt) shows; the seconds it took. A U-Boot that stops at its prompt, its
        autoboot having found nothing to boot, fails at once with what it printed."""
        pattern = re.compile(wait_for.encode())
        stopped = re.compile(rb"\n" + re.escape(self.prompt.encode()) + rb"$")
        with self.serial.open() as console:
            self.power.off()
            started = time.monotonic()
            self.power.on()
            seen = b""
            while not pattern.search(seen[-8192:]):
                if stopped.search(seen[-4096:]):
                    raise DriverError(f"{self.name}: U-Boot stopped at its prompt instead of booting (its autoboot "
                                      f"found nothing to boot); last output: {_last(seen, 600)!r}")
                if time.monotonic() - started > timeout:
                    raise DriverTimeout(f"{self.name}: no {wait_for!r} on the console within {timeout:g}s of "
                                        f"power-on; last output: {_last(seen)!r}")
                seen += _receive(console, 0.5)
        return time.monotonic() - started

    @contextlib.contextmanager
    def attach(self, timeout: float = 10.0) -> Iterator[UBootClient]:
        """Talk to a board already at its U-Boot prompt (no power cycle)."""
        with self.serial.open() as console:
            console.send(CTRL_C)
            with self._at_prompt(console, timeout, "at the console"):
                yield self

    @contextlib.contextmanager
    def _at_prompt(self, console: Console, timeout: float | None, when: str):
        self._interrupt(console, timeout or self.settings["prompt_timeout"], when)
        self._console = self._attached = console
        try:
            for command in self.settings["init_commands"]:
                self.run_command_checked(command)
            yield
        finally:
            self._console = self._attached = None

    def _interrupt(self, console: Console, timeout: float, when: str) -> None:
        """Send the interrupt until the prompt shows, then clear whatever extra keys were typed."""
        prompt = self.prompt.encode()
        deadline = time.monotonic() + timeout
        seen = b""
        while True:
            tail = seen[-4096:]
            if KERNEL_STARTED.search(tail):
                raise DriverError(f"{self.name}: the board booted its kernel {when}: autoboot was not stopped by "
                                  f"{self.settings['interrupt']!r} (set the U-Boot driver's 'interrupt' for a keyed "
                                  f"autoboot); last output: {_last(tail)!r}")
            if prompt in tail:
                break
            if time.monotonic() > deadline:
                silent = "the console printed nothing (is the board powered, and is this its console?)"
                what = f"last output: {_last(seen)!r}" if seen else silent
                raise DriverTimeout(f"{self.name}: no U-Boot prompt {self.prompt.strip()!r} within {timeout:g}s "
                                    f"{when}; {what}")
            console.send(self.settings["interrupt"])
            seen += _receive(console, KEY_INTERVAL)
        console.buffer = b""
        console.send(CTRL_C)  # a prompt with the extra interrupt keys typed on it starts afresh
        self._console = console
        self._sync(min(10.0, max(1.0, deadline - time.monotonic())))

    def _sync(self, timeout: float) -> None:
        number = next(_calls)
        self._console.sendline(f"echo JSL{number}${{jsl_unset}}SYNC")  # the typed line does not match what it prints
        self._console.expect(f"JSL{number}SYNC\r?\n", timeout)
        self._console.expect(re.escape(self.prompt), timeout)

    # --- commands ------------------------------------------------------------------------------

    def run(self, command: str, timeout: float = 60.0) -> Result:
        """Run a command at the prompt: its output (the typed line left out) and its return code."""
        console = self._console
        if console is None:
            raise DriverError(f"{self.name}: not at the U-Boot prompt; run commands inside reboot_to_console() "
                              "or attach()")
        marker = f"JSL{next(_calls)}RC"
        line = f"{command}; echo {marker}=$?"
        if len(line) >= self.settings["max_line"]:
            raise ValueError(f"U-Boot command too long: {len(command)} characters, the bootloader reads lines of "
                             f"up to {self.settings['max_line'] - 1} with the return-code echo (the driver's "
                             f"max_line): {command[:60]!r}...")
        if "\n" in command or "\r" in command:
            raise ValueError(f"a U-Boot command is one line: {command!r}")
        started = time.monotonic()
        console.buffer = b""
        console.sendline(line)
        try:
            found = console.expect(re.escape(marker).encode() + rb"=(\d+)\r?\n", timeout)
        except DriverTimeout:
            raise DriverTimeout(f"{self.name}: U-Boot command {command!r} did not finish within {timeout:g}s; "
                                f"last output: {_last(console.buffer)!r}") from None
        text = found.string[:found.start()].decode(errors="replace")
        console.expect(re.escape(self.prompt), 10.0)
        output = text.split("\n", 1)[1] if "\n" in text else ""  # the first line is the echo of what was typed
        return Result(output.replace("\r\n", "\n").strip("\n"), int(found.group(1)), time.monotonic() - started)

    def run_command(self, cmd: str, timeout: float = 60.0) -> bytes:
        """Upstream's form: the command's output."""
        return self.run(cmd, timeout).output.encode()

    def run_command_checked(self, cmd: str, timeout: float = 60.0, check: bool = True) -> list[str]:
        """Upstream's form: the output's lines; UBootCommandFailed when it returns non-zero (with check)."""
        result = self.checked(cmd, timeout) if check else self.run(cmd, timeout)
        return result.output.splitlines()

    def checked(self, command: str, timeout: float = 60.0) -> Result:
        result = self.run(command, timeout)
        if result.rc != 0:
            raise UBootCommandFailed(command, result.rc, result.output)
        return result

    # --- environment ---------------------------------------------------------------------------

    def get_env(self, key: str, timeout: float = 10.0) -> str | None:
        """A variable's value, None when it is not set."""
        _check_name(key)
        result = self.run(f"printenv {key}", timeout)
        if result.rc != 0:
            return None
        prefix = f"{key}="
        for line in result.output.splitlines():
            if line.startswith(prefix):
                return line[len(prefix):]
        raise DriverError(f"{self.name}: cannot read {key} from printenv's output {result.output!r}")

    def set_env(self, key: str, value: str | None, timeout: float = 10.0) -> None:
        """Set a variable (None removes it). The value is taken literally: no $ expansion."""
        _check_name(key)
        if value is None:
            self.checked(f"setenv {key}", timeout)
            return
        value = str(value)
        if "'" in value or "\n" in value:
            raise ValueError(f"U-Boot variable {key}: a value cannot hold a single quote or a newline: {value!r}")
        self.checked(f"setenv {key} '{value}'", timeout)

    def set_env_dict(self, env: dict[str, str | None]) -> None:
        for key, value in env.items():
            self.set_env(key, value)

    def wait_for(self, pattern: str, timeout: float = 300.0) -> float:
        """After a boot, in the same context: wait for `pattern` (a regular expression) on the console, such
        as a login prompt; the seconds it took."""
        console = getattr(self, "_attached", None)
        if console is None:
            raise DriverError(f"{self.name}: wait_for() needs the console of reboot_to_console() or attach()")
        started = time.monotonic()
        try:
            console.expect(pattern.encode(), timeout)
        except DriverTimeout as e:
            raise DriverTimeout(f"{self.name}: the kernel started but {pattern!r} did not show: {e}") from None
        return time.monotonic() - started

    # --- network, TFTP, boot, disk -------------------------------------------------------------

    def setup_dhcp(self, timeout: float = 60.0) -> dict:
        """Configure the network by DHCP without loading anything: ip_address, gateway, netmask."""
        autoload = self.get_env("autoload")
        self.set_env("autoload", "no")
        try:
            self.checked("dhcp", timeout)
        finally:
            self.set_env("autoload", autoload)
        found = {"ip_address": self.get_env("ipaddr"), "gateway": self.get_env("gatewayip"),
                 "netmask": self.get_env("netmask") or "255.255.255.0"}
        if not found["ip_address"]:
            raise DriverError(f"{self.name}: DHCP answered but U-Boot has no ipaddr")
        return found

    def tftp(self, name: str, address: str = "${loadaddr}", server: str | None = None,
             timeout: float = 300.0) -> Result:
        """Load a file from the TFTP server into RAM; the result's output is U-Boot's. A file missing from the
        server's root fails with U-Boot's 'File not found'."""
        if server:
            self.set_env("serverip", server)
        self.set_env("netretry", "no")  # U-Boot's default retries an unanswered TFTP forever
        result = self.checked(f"tftpboot {address} {name}", timeout)
        result.bytes = self.size_loaded()
        return result

    def size_loaded(self) -> int:
        """Bytes of the last load (U-Boot's `filesize`, hexadecimal)."""
        value = self.get_env("filesize")
        if not value:
            raise DriverError(f"{self.name}: U-Boot has no filesize: nothing was loaded")
        return int(value, 16)

    def boot_method(self) -> str:
        arch = self.get_env("arch") or ""
        if arch not in BOOT_METHODS:
            raise DriverError(f"{self.name}: no boot command known for U-Boot arch {arch!r}; give method "
                              f"({', '.join(sorted(set(BOOT_METHODS.values())))} or bootm)")
        return BOOT_METHODS[arch]

    def boot(self, *, initrd: bool, dtb: bool = False, bootargs: str | None = None, method: str | None = None,
             timeout: float = 60.0) -> None:
        """Boot the kernel loaded at kernel_addr_r (initrd at ramdisk_addr_r, whose size is `initrd_size`, and
        the device tree at fdt_addr_r): returns when the kernel starts; the console then belongs to Linux."""
        method = method or self.boot_method()
        if bootargs is not None:
            self.set_env("bootargs", bootargs)
        if method == "zboot":
            words = ["zboot", "${kernel_addr_r}", "0"] + (["${ramdisk_addr_r}", "${initrd_size}"] if initrd else [])
        else:
            words = [method, "${kernel_addr_r}", "${ramdisk_addr_r}:${initrd_size}" if initrd else "-"]
            words += ["${fdt_addr_r}"] if dtb else []
        command = " ".join(words)
        console = self._console
        console.buffer = b""
        console.sendline(command)
        back_at_prompt = b"\n" + re.escape(self.prompt.encode())
        try:
            found = console.expect(KERNEL_STARTED.pattern + b"|" + back_at_prompt, timeout)
        except DriverTimeout:
            raise DriverTimeout(f"{self.name}: {command!r} did not start the kernel within {timeout:g}s; last "
                                f"output: {_last(console.buffer)!r}") from None
        if not KERNEL_STARTED.search(found.group(0)):
            raise UBootCommandFailed(command, 1, found.string[:found.start()].decode(errors="replace"))
        self._console = None  # U-Boot is gone; its prompt will not come back

    def netboot(self, kernel: str, initrd: str | None = None, dtb: str | None = None, *, server: str,
                bootargs: str | None = None, method: str | None = None, timeout: float = 300.0) -> list[Result]:
        """DHCP, then kernel (and initrd, device tree) over TFTP from `server`, then boot: the loads' results."""
        self.setup_dhcp()
        self.set_env("serverip", server)
        loads = [self.tftp(kernel, "${kernel_addr_r}", timeout=timeout)]
        if initrd:
            loads.append(self.tftp(initrd, "${ramdisk_addr_r}", timeout=timeout))
            self.set_env("initrd_size", f"{self.size_loaded():x}")
        if dtb:
            loads.append(self.tftp(dtb, "${fdt_addr_r}", timeout=timeout))
        self.boot(initrd=bool(initrd), dtb=bool(dtb), bootargs=bootargs, method=method)
        return loads

    def write_image(self, name: str, device: str = "virtio 0", *, server: str, timeout: float = 600.0) -> list[Result]:
        """Write an image from the TFTP server to a block device: a .gz through gzwrite (decompressed as it is
        written), otherwise raw from block 0. The loads' and writes' results."""
        interface, _space, number = device.partition(" ")
        if not interface or not number.strip().isdigit():
            raise ValueError(f"device: expected '<interface> <number>' such as 'virtio 0' or 'mmc 1', got {device!r}")
        self.setup_dhcp()
        load = self.tftp(name, "${loadaddr}", server=server, timeout=timeout)
        size = self.size_loaded()
        if name.endswith(".gz"):
            written = self.checked(f"gzwrite {device} ${{loadaddr}} {size:x}", timeout)
        else:
            written = self.checked(f"{interface} write ${{loadaddr}} 0 {-(-size // 512):x}", timeout)
        return [load, written]


def _check_name(key: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_.:-]+", key or ""):
        raise ValueError(f"not a U-Boot variable name: {key!r}")


def _receive(console: Console, timeout: float) -> bytes:
    try:
        return console.stream.receive(timeout=timeout) or b""
    except TimeoutError:
        return b""


def _last(data: bytes, size: int = 300) -> str:
    """The end of what the console printed, its bells (a full command line) and runs of blanks dropped."""
    text = " ".join(data.replace(b"\x07", b"").decode(errors="replace").split())
    return text[-size:]
