from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

from jumpstarter_lab.driver import Driver, export
from jumpstarter_lab_driver_power.interface import PowerInterface, PowerReading

from .common import PinState
from .interface import DigitalInputInterface, DigitalOutputInterface
from .lines import GpiodLine, LineConfig, MockLine

__all__ = ["DigitalInput", "DigitalOutput", "MockDigitalInput", "MockDigitalOutput", "PowerSwitch"]

# Literals (None included) so a wrong value is reported by the config schema with its line.
Drive = Literal["push_pull", "open_drain", "open_source", None]
Bias = Literal["as_is", "pull_up", "pull_down", "disabled", None]
EDGES = ("rising", "falling")


@dataclass(kw_only=True)
class _Gpio(Driver):
    """Config shared by every line driver. The line is requested on first use, not at
    construction, so an exporter with a missing chip still serves and the call names it."""

    device: str = "/dev/gpiochip0"
    line: int
    drive: Drive = None
    active_low: bool = False
    bias: Bias = None
    _requested: GpiodLine | MockLine | None = field(init=False, repr=False, default=None)

    _backend = GpiodLine
    _output = False

    def __post_init__(self):
        if self.line < 0:
            raise ValueError(f"line must be a line offset (0 or more), got {self.line}")

    def _initial_active(self) -> bool:
        return False

    def _line(self) -> GpiodLine | MockLine:
        if self._requested is None:
            self._requested = self._backend(LineConfig(
                device=self.device, line=self.line, output=self._output, active_low=self.active_low,
                drive=self.drive, bias=self.bias, initial_active=self._initial_active()))
        return self._requested

    def _pin(self) -> PinState:
        return PinState.ACTIVE if self._line().get() else PinState.INACTIVE

    def close(self) -> None:
        if self._requested is not None:
            self._requested.close()
            self._requested = None
        super().close()


@dataclass(kw_only=True)
class DigitalOutput(DigitalOutputInterface, _Gpio):
    """A GPIO output line (libgpiod)"""

    initial_value: Literal["active", "inactive", "on", "off", True, False] = "inactive"
    _output = True

    def __post_init__(self):
        super().__post_init__()
        if self.initial_value not in ("active", "inactive", "on", "off", True, False):
            raise ValueError(f"initial_value must be active, inactive, on, off, true or false, "
                             f"got {self.initial_value!r}")

    def _initial_active(self) -> bool:
        return self.initial_value in ("active", "on", True)

    @export
    async def read_pin(self) -> PinState:
        """Read the line's logical level back: 1 active, 0 inactive"""
        return self._pin()

    @export
    async def on(self) -> None:
        """Set the line active"""
        self._line().set(True)
        self.logger.info("line %d of %s on", self.line, self.device)

    @export
    async def off(self) -> None:
        """Set the line inactive"""
        self._line().set(False)
        self.logger.info("line %d of %s off", self.line, self.device)


@dataclass(kw_only=True)
class DigitalInput(DigitalInputInterface, _Gpio):
    """A GPIO input line (libgpiod), with edge waits"""

    _waiting: bool = field(init=False, repr=False, default=False)

    @export
    async def read_pin(self) -> PinState:
        """Read the line's logical level: 1 active, 0 inactive"""
        return self._pin()

    async def _wait(self, edge: str, timeout: float | None, level: bool | None) -> None:
        """Wait for an edge of the given kind; with `level`, return at once if the line already reads it."""
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must not be negative, got {timeout}")
        if self._waiting:  # one request, one event queue: a second waiter would steal the first one's edges
            raise ValueError(f"line {self.line} of {self.device} already has a wait in progress in this session")
        self._waiting = True
        try:
            await self._wait_edge(edge, timeout, level)
        finally:
            self._waiting = False

    async def _wait_edge(self, edge: str, timeout: float | None, level: bool | None) -> None:
        line = self._line()
        line.read_events()  # only edges from now on count
        if level is not None and line.get() == level:
            return
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            ready = loop.create_future()
            loop.add_reader(line.fileno(), _wake, ready)
            try:
                remaining = None if deadline is None else max(0.0, deadline - loop.time())
                await asyncio.wait_for(ready, remaining)
            except asyncio.TimeoutError:
                raise TimeoutError(f"no {edge} edge on line {self.line} of {self.device} "
                                   f"within {timeout:g}s") from None
            finally:
                with contextlib.suppress(OSError, ValueError, KeyError):
                    loop.remove_reader(line.fileno())
            if edge in line.read_events():
                return

    @export
    async def wait_for_active(self, timeout: float | None = None) -> None:
        """Return once the line reads active (at once if it does)"""
        await self._wait("rising", timeout, level=True)

    @export
    async def wait_for_inactive(self, timeout: float | None = None) -> None:
        """Return once the line reads inactive (at once if it does)"""
        await self._wait("falling", timeout, level=False)

    @export
    async def wait_for_edge(self, edge_type: str, timeout: float | None = None) -> None:
        """Return at the next rising or falling edge"""
        if edge_type not in EDGES:
            raise ValueError(f"Invalid edge type: {edge_type}, must be one of: rising, falling")
        await self._wait(edge_type, timeout, level=None)


def _wake(ready: asyncio.Future) -> None:
    if not ready.done():
        ready.set_result(None)


@dataclass(kw_only=True)
class PowerSwitch(PowerInterface, DigitalOutput):
    """Board power switched by a GPIO output line (a relay, a load switch)"""

    mode: str = "push_pull"  # accepted for upstream configs; the line's drive is `drive`

    @export
    async def on(self) -> None:
        """Switch the power on (line active)"""
        await DigitalOutput.on(self)

    @export
    async def off(self) -> None:
        """Switch the power off (line inactive)"""
        await DigitalOutput.off(self)

    @export
    async def read(self) -> AsyncIterator[PowerReading]:
        """Not available: a GPIO line does not measure voltage or current"""
        for reading in ():  # a generator that gives nothing, so clients reach it as a streaming call
            yield reading
        raise NotImplementedError("a GPIO power switch does not measure voltage or current")


@dataclass(kw_only=True)
class MockDigitalOutput(DigitalOutput):
    """A simulated GPIO output: drives the mock wire of (device, line)"""

    _backend = MockLine


@dataclass(kw_only=True)
class MockDigitalInput(DigitalInput):
    """A simulated GPIO input: reads the mock wire of (device, line)"""

    _backend = MockLine
