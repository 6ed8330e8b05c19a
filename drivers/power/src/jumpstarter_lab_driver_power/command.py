"""Power switched by commands run on the exporter host (uhubctl, a relay CLI, ipmitool...)."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from jumpstarter_lab.driver import Driver, export
from jumpstarter_lab.driver.processes import kill_process_group
from jumpstarter_lab.wire.errors import DriverError, ExporterUnavailable

from .interface import PowerInterface, PowerReading

STDERR_TAIL = 400


@dataclass(kw_only=True)
class CommandPower(PowerInterface, Driver):
    """Power switched by running commands on the exporter host"""

    # A string runs through `shell` (sh -c); a list runs as it is, without a shell.
    on_command: str | list[str]
    off_command: str | list[str]
    # Prints one reading per line: `VOLTAGE CURRENT` or {"voltage": V, "current": A}.
    read_command: str | list[str] | None = None
    timeout: float = 30.0
    shell: list[str] = field(default_factory=lambda: ["sh", "-c"])
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None

    def __post_init__(self):
        for name in ("on_command", "off_command", "read_command"):
            command = getattr(self, name)
            if command is None and name == "read_command":
                continue
            if not command or (isinstance(command, str) and not command.strip()):
                raise ValueError(f"{name} must be a non-empty command")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be positive, got {self.timeout}")
        if not self.shell:
            raise ValueError("shell must name a program, e.g. [sh, -c]")

    def _argv(self, command: str | list[str]) -> list[str]:
        return [*self.shell, command] if isinstance(command, str) else list(command)

    @staticmethod
    def _show(command: str | list[str]) -> str:
        return command if isinstance(command, str) else shlex.join(command)

    async def _run(self, what: str, command: str | list[str]) -> str:
        """Run one command to completion within the timeout; its stdout, or an error naming it."""
        shown = self._show(command)
        self.logger.info("%s: running %s", what, shown)
        try:
            process = await asyncio.create_subprocess_exec(
                *self._argv(command), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env={**os.environ, **self.env}, cwd=self.cwd,
                start_new_session=True)
        except FileNotFoundError as e:
            missing = e.filename or self._argv(command)[0]
            raise ExporterUnavailable(f"{what}: cannot run {shown!r}: {missing} not found") from None
        except OSError as e:
            raise ExporterUnavailable(f"{what}: cannot run {shown!r}: {e.strerror or e}") from None
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), self.timeout)
        except asyncio.TimeoutError:
            await kill_process_group(process)
            raise TimeoutError(f"{what}: {shown!r} did not finish within {self.timeout:g}s and was killed") from None
        finally:
            if process.returncode is None:  # cancelled: the command ends with its caller
                await kill_process_group(process)
        if process.returncode != 0:
            raise DriverError(f"{what}: {shown!r} {_exit_status(process.returncode)}{_tail(stderr)}")
        return stdout.decode(errors="replace")

    @export
    async def on(self) -> None:
        """Power on by running on_command"""
        await self._run("power on", self.on_command)

    @export
    async def off(self) -> None:
        """Power off by running off_command"""
        await self._run("power off", self.off_command)

    @export
    async def read(self) -> AsyncIterator[PowerReading]:
        """Read voltage and current by running read_command"""
        if self.read_command is None:
            raise NotImplementedError("this CommandPower has no read_command configured")
        output = await self._run("power read", self.read_command)
        readings = [parse_reading(line) for line in output.splitlines() if line.strip()]
        if not readings:
            raise DriverError(f"power read: {self._show(self.read_command)!r} printed no reading")
        for reading in readings:
            yield reading


def parse_reading(line: str) -> PowerReading:
    """`12.0 0.5`, `12.0,0.5` or {"voltage": 12.0, "current": 0.5}."""
    text = line.strip()
    try:
        if text.startswith("{"):
            data = json.loads(text)
            return PowerReading(voltage=float(data["voltage"]), current=float(data["current"]))
        voltage, current = text.replace(",", " ").split()
        return PowerReading(voltage=float(voltage), current=float(current))
    except (ValueError, KeyError, TypeError):
        raise DriverError(f"power read: cannot parse {text[:80]!r}; expected 'VOLTAGE CURRENT' "
                          'or {"voltage": V, "current": A}') from None


def _exit_status(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _tail(stderr: bytes) -> str:
    text = stderr.decode(errors="replace").strip()
    if not text:
        return ""
    if len(text) > STDERR_TAIL:
        text = "..." + text[-STDERR_TAIL:]
    return f": {text}"
