"""One requested GPIO line, from libgpiod or from a mock chip, behind one small shape:

    get() -> bool            logical level (True: active)
    set(active)              drive an output
    fileno()                 readable while edge events are pending (inputs)
    read_events() -> list    pending edges, "rising" or "falling" in logical terms; non-blocking
    close()

Edge events queue up per request from the moment the line is requested, as the kernel
queues them, so a driver can wait on the fd with its event loop instead of a thread.
"""

from __future__ import annotations

import os
import select
import threading
from dataclasses import dataclass

from jumpstarter_lab.wire.errors import ExporterUnavailable

CONSUMER = "jumpstarter-lab"


@dataclass(frozen=True)
class LineConfig:
    device: str
    line: int
    output: bool
    active_low: bool = False
    drive: str | None = None
    bias: str | None = None
    initial_active: bool = False

    def name(self) -> str:
        return f"line {self.line} of GPIO chip {self.device}"


class GpiodLine:
    """A line requested from the kernel through libgpiod's Python bindings (gpiod 2.x)."""

    def __init__(self, config: LineConfig):
        try:
            import gpiod
            from gpiod.line import Bias, Direction, Drive, Edge, Value
        except ImportError as e:
            raise ExporterUnavailable(f"{config.name()}: libgpiod's Python bindings are not installed "
                                      f"on the exporter ({e})") from None
        self._gpiod, self._value, self._offset = gpiod, Value, config.line
        try:
            self._chip = gpiod.Chip(config.device)
        except FileNotFoundError:
            raise ExporterUnavailable(f"GPIO chip {config.device} does not exist "
                                      f"(wanted for line {config.line})") from None
        except OSError as e:
            raise ExporterUnavailable(f"{config.device} is not a usable GPIO chip (wanted for line "
                                      f"{config.line}): {e.strerror or e}") from None
        try:
            settings = gpiod.LineSettings(
                direction=Direction.OUTPUT if config.output else Direction.INPUT,
                edge_detection=Edge.NONE if config.output else Edge.BOTH,
                drive={"open_drain": Drive.OPEN_DRAIN, "open_source": Drive.OPEN_SOURCE}.get(
                    config.drive or "", Drive.PUSH_PULL),
                bias={"pull_up": Bias.PULL_UP, "pull_down": Bias.PULL_DOWN, "disabled": Bias.DISABLED}.get(
                    config.bias or "", Bias.AS_IS),
                active_low=config.active_low,
                output_value=Value.ACTIVE if config.initial_active else Value.INACTIVE)
            self._request = self._chip.request_lines(config={config.line: settings}, consumer=CONSUMER)
        except ValueError as e:
            self._chip.close()
            raise ValueError(f"{config.name()}: {e}") from None
        except OSError as e:
            self._chip.close()
            busy = " (another consumer holds it)" if e.errno == 16 else ""
            raise ExporterUnavailable(f"{config.name()} cannot be requested: {e.strerror or e}{busy}") from None

    def get(self) -> bool:
        return self._request.get_value(self._offset) == self._value.ACTIVE

    def set(self, active: bool) -> None:
        self._request.set_value(self._offset, self._value.ACTIVE if active else self._value.INACTIVE)

    def fileno(self) -> int:
        return self._request.fd

    def read_events(self) -> list[str]:
        events = []
        while select.select([self._request.fd], [], [], 0)[0]:
            for event in self._request.read_edge_events():
                if event.line_offset == self._offset:
                    rising = event.event_type == self._gpiod.EdgeEvent.Type.RISING_EDGE
                    events.append("rising" if rising else "falling")
        return events

    def close(self) -> None:
        try:
            self._request.release()
        finally:
            self._chip.close()


class _Wire:
    """The physical level of one mock line, and the input requests watching it."""

    def __init__(self, level: bool):
        self.level = level
        self.driven = False
        self.watchers: set[MockLine] = set()


_wires: dict[tuple[str, int], _Wire] = {}
_wires_lock = threading.Lock()


class MockLine:
    """A line of a simulated chip: outputs and inputs on the same (device, line) share a wire.

    Wires live as long as the exporter process, like the hardware they stand for.
    An undriven wire rests at the level its bias gives (high for pull_up, else low).
    """

    def __init__(self, config: LineConfig):
        self._config = config
        self._events: list[bool] = []  # physical rising?
        self._signal_r = self._signal_w = -1
        with _wires_lock:
            wire = _wires.setdefault((config.device, config.line), _Wire(config.bias == "pull_up"))
            self._wire = wire
            if config.output:
                wire.driven = True
                self._drive(config.initial_active != config.active_low)
            else:
                if not wire.driven:
                    wire.level = config.bias == "pull_up"
                self._signal_r, self._signal_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
                wire.watchers.add(self)

    def _drive(self, level: bool) -> None:  # called with _wires_lock held
        if self._wire.level == level:
            return
        self._wire.level = level
        for watcher in self._wire.watchers:
            watcher._events.append(level)
            try:
                os.write(watcher._signal_w, b"e")
            except BlockingIOError:
                pass  # already signalled

    def get(self) -> bool:
        with _wires_lock:
            return self._wire.level != self._config.active_low

    def set(self, active: bool) -> None:
        if not self._config.output:
            raise ValueError(f"{self._config.name()} is an input")
        with _wires_lock:
            self._drive(active != self._config.active_low)

    def fileno(self) -> int:
        return self._signal_r

    def read_events(self) -> list[str]:
        with _wires_lock:
            events, self._events = self._events, []
            try:
                while os.read(self._signal_r, 4096):
                    pass
            except BlockingIOError:
                pass
        # active_low turns a physical rising edge into a logical falling one, as the kernel does.
        return ["rising" if rising != self._config.active_low else "falling" for rising in events]

    def close(self) -> None:
        with _wires_lock:
            self._wire.watchers.discard(self)
        for fd in (self._signal_r, self._signal_w):
            if fd >= 0:
                os.close(fd)
        self._signal_r = self._signal_w = -1
