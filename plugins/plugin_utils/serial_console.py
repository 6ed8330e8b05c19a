# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""A board's serial console as text: the bytes that arrive, cleaned, and waits for patterns in them.

Pure logic over a byte channel with `send(bytes)` and `receive(timeout) -> bytes` (b"" meaning the
channel ended; TimeoutError when nothing arrived in time), so it is tested on recorded console bytes
as well as on real consoles. Every wait has a deadline, and its error says what it waited for.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

# CSI, OSC (ended by BEL or ST), and the two-byte escapes; ESC ] alone is the start of an OSC, never a whole one
# (read as one, an OSC cut after it left its text in the console's output).
ANSI = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\^_]")


class ConsoleError(Exception):
    """The console did not do what was expected; the message says what and where."""


class ConsoleTimeout(ConsoleError):
    pass


class ConsoleQuiet(ConsoleTimeout):
    """Nothing new on the console for a while, where output was expected to flow."""


def clean(data: bytes) -> bytes:
    """Console bytes without terminal escapes, carriage returns and flow control (XON/XOFF a board's tty
    sends when its input buffer fills, in the middle of its output)."""
    return ANSI.sub(b"", data).replace(b"\r", b"").replace(b"\x11", b"").replace(b"\x13", b"")


@dataclass
class Prompts:
    login: bytes = rb"login:\s*$"
    password: bytes = rb"[Pp]assword:\s*$"
    shell: bytes = rb"[#$>]\s*$"


class SerialConsole:
    """The console of one board: what it showed that no wait has consumed yet, and the state of the shell on it."""

    def __init__(self, channel, *, prompts: Prompts | None = None, log=None):
        self.channel = channel
        self.prompts = prompts or Prompts()
        self.buffer = b""  # cleaned console text not consumed yet
        self._raw = b""  # received bytes not cleaned yet (a cut escape sequence)
        self.log = log or (lambda message: None)
        self.ready = False  # the shell on the console was made machine-friendly, and nothing has ended it since
        self.received = 0  # bytes that arrived, ever: whether the board said anything at all

    def fill(self, deadline: float, what: str) -> None:
        """Add what arrives within a second (at most until `deadline`) to the buffer, cleaned."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ConsoleTimeout(f"timed out waiting for {what}; console showed: {self.tail()!r}")
        try:
            chunk = self.channel.receive(timeout=min(remaining, 1.0))
        except TimeoutError:
            return
        if not chunk:
            raise ConsoleError(f"console closed while waiting for {what}")
        self._raw += chunk
        self.received += len(chunk)
        # Clean what has arrived, holding back an escape sequence that may be cut in two.
        cut = self._raw.rfind(b"\x1b", max(0, len(self._raw) - 64))
        if cut >= 0 and not ANSI.match(self._raw, cut):
            self.buffer += clean(self._raw[:cut])
            self._raw = self._raw[cut:]
        else:
            self.buffer += clean(self._raw)
            self._raw = b""

    def expect(self, patterns: dict[str, bytes], timeout: float, what: str,
               idle: float | None = None) -> tuple[str, re.Match]:
        """Wait for the first of several patterns in the cleaned console output; consume through it.

        With `idle`, a console that shows nothing new for that many seconds ends the wait early
        (ConsoleQuiet): for output that comes in one go once it has begun."""
        compiled = {name: re.compile(p, re.MULTILINE) for name, p in patterns.items()}
        deadline = time.monotonic() + timeout
        scanned = 0
        last = time.monotonic()
        while True:
            hits = [(m.start(), name, m) for name, rx in compiled.items() if (m := rx.search(self.buffer, scanned))]
            if hits:
                _position, name, match = min(hits, key=lambda h: h[0])
                self.buffer = self.buffer[match.end():]
                return name, match
            scanned = max(0, len(self.buffer) - 512)  # patterns are short: only new text needs a look
            now = time.monotonic()
            if idle is not None and now - last >= idle and now < deadline:
                raise ConsoleQuiet(f"the console showed nothing new for {idle:g}s while waiting for {what}; "
                                   f"console showed: {self.tail()!r}")
            size = len(self.buffer) + len(self._raw)
            self.fill(deadline if idle is None else min(deadline, last + idle), what)
            if len(self.buffer) + len(self._raw) != size:
                last = time.monotonic()

    def tail(self) -> str:
        """The last of what the console showed, for an error message."""
        return (self.buffer + self._raw)[-300:].decode(errors="replace")

    def send(self, text: str | bytes) -> None:
        self.channel.send(text.encode() if isinstance(text, str) else text)
