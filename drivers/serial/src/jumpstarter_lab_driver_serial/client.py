from __future__ import annotations

import re
import time

from jumpstarter_lab.client import DriverClient
from jumpstarter_lab.wire.errors import DriverTimeout


class SerialClient(DriverClient):
    """Client of serial/console drivers: the byte stream, plus expect-style helpers."""

    def open(self):
        """A context manager yielding a Console on the stream."""
        return _ConsoleContext(self)


class Console:
    """Send text and wait for patterns on a console stream, every wait with a deadline."""

    def __init__(self, stream):
        self.stream = stream
        self.buffer = b""

    def send(self, data: bytes | str) -> None:
        self.stream.send(data.encode() if isinstance(data, str) else data)

    def sendline(self, line: str = "") -> None:
        self.send(line + "\r")

    def expect(self, pattern: bytes | str, timeout: float = 10.0) -> re.Match:
        regex = re.compile(pattern.encode() if isinstance(pattern, str) else pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.buffer)
            if match:
                self.buffer = self.buffer[match.end():]
                return match
            if time.monotonic() > deadline:
                tail = self.buffer[-200:].decode(errors="replace")
                raise DriverTimeout(f"no {regex.pattern!r} on the console within {timeout:g}s; last output: {tail!r}")
            try:
                chunk = self.stream.receive(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                continue
            if not chunk:
                raise EOFError(f"console closed while waiting for {regex.pattern!r}")
            self.buffer += chunk


class _ConsoleContext:
    def __init__(self, client: SerialClient):
        self._client = client
        self._manager = None

    def __enter__(self) -> Console:
        self._manager = self._client.stream()
        return Console(self._manager.__enter__())

    def __exit__(self, *exc):
        return self._manager.__exit__(*exc)
