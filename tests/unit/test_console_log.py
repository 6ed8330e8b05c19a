"""A lease's console log as the exporter keeps it: timestamped lines, the boot and the end kept within a bound."""

from __future__ import annotations

import asyncio
import re

from jumpstarter_lab.exporter.console_log import ConsoleLog, ConsoleRecorder
from jumpstarter_lab.streams import Fanout

STAMP = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ", re.M)


def lines(log: bytes) -> list[bytes]:
    return STAMP.sub(b"", log).splitlines()


def test_a_full_log_keeps_its_start_and_its_latest_lines_and_says_what_it_dropped():
    log = ConsoleLog(limit=4000)
    for i in range(1000):
        log.add(b"line %04d" % i)
    text = log.text()
    assert len(text) <= 4000 + 100
    kept = lines(text)
    assert kept[0] == b"line 0000"  # the boot
    assert kept[-1] == b"line 0999"  # the end
    gap = next(line for line in kept if line.startswith(b"[..."))
    dropped = int(gap.split()[1])
    assert dropped > 0 and b"line 0500" not in text
    assert dropped == sum(len(b"2026-12-03T00:00:00.000Z line 0000\n") for line in range(1000)) - (
        len(text) - len(gap) - 1)


def test_the_recorder_takes_every_console_by_lines_and_writes_a_waiting_prompt_after_a_moment():
    async def scenario():
        console, debug = Fanout(), Fanout()
        recorder = ConsoleRecorder({"board.console": console, "board.debug": debug})
        await asyncio.sleep(0)
        console.publish(b"U-Boot 2023.01\r\nHit any key to stop autoboot:  3")
        debug.publish(b"dbg ready\n")
        await asyncio.sleep(1.0)  # the countdown waits for a key: written as it stands
        console.publish(b"\r\nlogin: ")
        return await recorder.stop()

    assert lines(asyncio.run(scenario())) == [
        b"[board.console] U-Boot 2023.01", b"[board.debug] dbg ready",
        b"[board.console] Hit any key to stop autoboot:  3", b"[board.console] login: "]
