"""The console log of a lease: what every console of the leased board printed from the lease's start to
its end (the afterLease hook included), one timestamped line at a time, bounded in size. The exporter
records it whether or not a client is attached, so the boot log of a board nobody watched is kept."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime

from ..wire.console_logs import LIMIT

IDLE = 0.5  # seconds after which a line without its end (a prompt) is written as it is


def _stamp() -> bytes:
    now = datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.").encode() + b"%03dZ " % (now.microsecond // 1000)


class ConsoleLog:
    """Timestamped lines, bounded: the first quarter of `limit` (the boot) and the latest lines after it."""

    def __init__(self, limit: int = LIMIT):
        self._head_limit, self._tail_limit = limit // 4, limit - limit // 4
        self._head = bytearray()
        self._tail: collections.deque[bytes] = collections.deque()
        self._tail_size = self._dropped = 0

    def add(self, line: bytes) -> None:
        line = _stamp() + line + b"\n"
        if len(self._head) + len(line) <= self._head_limit and not self._tail:
            self._head += line
            return
        self._tail.append(line)
        self._tail_size += len(line)
        while self._tail_size > self._tail_limit:
            dropped = self._tail.popleft()
            self._tail_size -= len(dropped)
            self._dropped += len(dropped)

    def text(self) -> bytes:
        gap = b"[... %d bytes of console output not kept ...]\n" % self._dropped if self._dropped else b""
        return bytes(self._head) + gap + b"".join(self._tail)


class ConsoleRecorder:
    """Records the consoles (drivers whose `console_output()` is a Fanout) of one session into one log."""

    def __init__(self, consoles: dict[str, object], limit: int = LIMIT):
        """`consoles`: driver path -> its Fanout. With more than one, each line names its console."""
        self.log = ConsoleLog(limit)
        self._tasks = [asyncio.ensure_future(self._record(path if len(consoles) > 1 else "", fanout))
                       for path, fanout in consoles.items()]

    async def _record(self, name: str, fanout) -> None:
        prefix = f"[{name}] ".encode() if name else b""
        backlog = fanout.listen()
        partial, written = b"", False  # written: the partial line went out already, its end is no new line

        def add(data: bytes, last: bool = False) -> bytes:
            nonlocal written
            data = data.replace(b"\r", b"")
            if written and data.startswith(b"\n"):
                data = data[1:]
            written = False
            *lines, rest = (partial + data).split(b"\n")
            for line in lines + ([rest] if last and rest else []):
                self.log.add(prefix + line)
            return rest

        try:
            while True:
                try:
                    async with asyncio.timeout(IDLE if partial else None):
                        data = await backlog.get()
                except TimeoutError:  # a prompt waits for input: write it now
                    self.log.add(prefix + partial)
                    partial, written = b"", True
                    continue
                partial = add(data)
        finally:  # what the console printed up to the end is the log's too
            fanout.unlisten(backlog)
            add(backlog.take(), last=True)

    async def stop(self) -> bytes:
        """Stop recording; the log."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return self.log.text()
