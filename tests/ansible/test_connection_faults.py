"""Faults on the console: bytes lost on the way out or in, and a board that restarts under a task.

Each ends in the exact result or a failure that says what happened, within a bounded time,
never a hang until the command timeout.

The lossy console is a real shell on a pseudo-terminal behind a relay in this process that
loses bytes on purpose; the exporter's PySerial driver opens the relay's other end, so the
plugin talks to it through a real exporter like to any UART.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import threading
import time
import tty
from pathlib import Path

import pytest

from conftest import Lab, start_exporter
from jumpstarter_lab.client import connect

OUTPUT = "".join(f"{i}\n" for i in range(1, 1501))  # what `seq 1 1500` prints: ~20 lines of base64 on the console


class LossyLine:
    """A shell's terminal behind a relay that loses or changes chosen bytes, in either direction."""

    def __init__(self, workdir: Path):
        self._outer, self._outer_slave = os.openpty()  # the exporter's side: a UART's device node
        tty.setraw(self._outer_slave)
        self.device = os.ttyname(self._outer_slave)
        self._inner, inner_slave = os.openpty()  # the board's side: the shell's controlling terminal
        self.shell = subprocess.Popen(  # setsid --ctty: a session of its own, with the pty as its terminal
            ["setsid", "--ctty", "/bin/sh", "-i"], stdin=inner_slave, stdout=inner_slave, stderr=inner_slave,
            cwd=workdir, env={"PATH": os.environ["PATH"], "HOME": str(workdir), "PS1": "$ ", "LC_ALL": "C"})
        os.close(inner_slave)
        self._lock = threading.Lock()
        self._out_rules: list[list] = []  # [pattern, times left]: lose a byte in the middle of such lines
        self._in_rules: list[tuple] = []  # (pattern, replacement): the middle byte of the next such line sent
        self.lost: list[bytes] = []  # the lines that lost a byte, for the tests to see the fault happened
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._relay, daemon=True)
        self._thread.start()

    def lose_out(self, pattern: str, times: int = 1) -> None:
        """Lose one byte of each of the next `times` lines from the board matching `pattern` (-1: all)."""
        with self._lock:
            self._out_rules.append([re.compile(pattern.encode()), times])

    def lose_in(self, pattern: str, replace: bytes = b"") -> None:
        """Lose (or replace) the middle byte of the next line sent to the board that matches `pattern`."""
        with self._lock:
            self._in_rules.append((re.compile(pattern.encode()), replace))

    def clear(self) -> None:
        with self._lock:
            self._out_rules.clear()
            self._in_rules.clear()

    def _damage_out(self, line: bytes) -> bytes:
        with self._lock:
            for rule in self._out_rules:
                if rule[1] != 0 and rule[0].search(line):
                    rule[1] -= 1
                    self.lost.append(line)
                    middle = len(line) // 2
                    return line[:middle] + line[middle + 1:]
        return line

    def _damage_in(self, data: bytes) -> bytes:
        with self._lock:
            if not self._in_rules:
                return data
            pattern, replace = self._in_rules[0]
            lines = data.split(b"\n")
            for number, line in enumerate(lines):
                if pattern.search(line):
                    self._in_rules.pop(0)
                    self.lost.append(line)
                    middle = len(line) // 2
                    lines[number] = line[:middle] + replace + line[middle + 1:]
                    break
            return b"\n".join(lines)

    def _relay(self) -> None:
        pending = b""  # output of the board not yet ended by a newline
        while not self._stop.is_set():
            ready = select.select([self._outer, self._inner], [], [], 0.02)[0]
            try:
                if self._outer in ready:
                    os.write(self._inner, self._damage_in(os.read(self._outer, 65536)))
                if self._inner in ready:
                    pending += os.read(self._inner, 65536)
                    *lines, pending = pending.split(b"\n")
                    os.write(self._outer, b"".join(self._damage_out(line + b"\n") for line in lines))
                elif pending:  # a prompt: no newline comes
                    os.write(self._outer, pending)
                    pending = b""
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.shell.kill()
        self.shell.wait(timeout=10)
        for fd in (self._outer, self._outer_slave, self._inner):
            os.close(fd)


@pytest.fixture(scope="module")
def lossy(tmp_path_factory, collections_path):
    workdir = tmp_path_factory.mktemp("lossy")
    line = LossyLine(workdir)
    exporter = start_exporter(workdir, f"""
board:
  children:
    console:
      type: jumpstarter_driver_pyserial.driver.PySerial
      config: {{url: {line.device}, baudrate: 115200}}
""")
    try:
        yield Lab(workdir, collections_path, exporter.address), line
    finally:
        exporter.stop()
        line.close()


BASE64_LINE = r"^[A-Za-z0-9+/]{24,}=*$"  # a line of a file or command on its way to the board


def raw(lab: Lab, command: str, agent: bool = False) -> tuple[dict, float]:
    """Run `command` as a task through the console's shell (the framing these tests damage), or the agent."""
    started = time.monotonic()
    result = lab.adhoc("raw", command, "-e", "jumpstarter_command_timeout=600", "-e", f"jumpstarter_agent={agent}",
                       timeout=120)
    return result, time.monotonic() - started


@pytest.mark.parametrize("agent, pattern, times, what", [
    (False, r"^O", 1, "a line of the output"),
    (False, r"^JLS:", 2, "both copies of the first line of the output"),
    (False, r"^JLE:", 2, "both copies of the last line of the output"),
    (False, r"^JLA:", 2, "both acknowledgements of the command"),
    (True, r"^R[0-9a-f]{16}:0:", 1, "a line of the agent's reply"),
    (True, r"^JLR:", 2, "both copies of the agent's reply's first line"),
    (True, r"^JLE:", 2, "both copies of the agent's reply's last line"),
    (True, r"^JLA:", 2, "both acknowledgements of the agent's request"),
])
def test_output_losing_bytes_is_sent_again_and_exact(lossy, agent, pattern, times, what):
    lab, line = lossy
    assert raw(lab, "true", agent)[0]["rc"] == 0  # attached (the agent runs): what follows is about the command alone
    line.lost.clear()
    line.lose_out(pattern, times)
    result, took = raw(lab, "seq 1 1500", agent)
    line.clear()
    assert len(line.lost) == times, f"the relay did not damage {what}"
    assert result.get("unreachable") is not True, result
    assert (result["rc"], result["stdout"]) == (0, OUTPUT), result
    print(f"{what} lost: exact result in {took:.1f}s")


@pytest.mark.parametrize("agent, pattern, said", [
    (False, r"^JLS:", "the output of 'seq 1 1500' kept arriving damaged on the console (5 attempts)"),
    (True, r"^JLR:", "the reply to 'seq 1 1500' kept arriving damaged on the console (5 attempts)"),
])
def test_output_that_always_loses_bytes_fails_clearly(lossy, agent, pattern, said):
    lab, line = lossy
    assert raw(lab, "true", agent)[0]["rc"] == 0
    line.lose_out(pattern, -1)
    try:
        result, took = raw(lab, "seq 1 1500", agent)
    finally:
        line.clear()
    assert result["unreachable"] is True, result
    assert said in result["msg"], result
    print(f"output always damaged: failed clearly in {took:.1f}s")
    assert raw(lab, "echo fine", agent)[0]["stdout"] == "fine\n"  # the next task goes on (attaches afresh)


@pytest.mark.parametrize("length, pattern, replace, how", [
    (300, r"^printf 'echo ", b"#", "a byte of its printf line changed"),
    (300, r"^printf 'echo ", b"", "a byte of its printf line lost"),
    (3000, BASE64_LINE, b"-", "a byte of its base64 line changed"),  # not base64: the board decodes other bytes
])
def test_command_changed_on_the_way_in_is_sent_again(lossy, length, pattern, replace, how):
    """A short command crosses as the shell's printf text, a long one as base64 that `head` reads: either way a
    byte changed (or lost, from a line that still ends) fails the board's check of what arrived, and the command
    is sent again with nothing run."""
    lab, line = lossy
    assert raw(lab, "true")[0]["rc"] == 0
    line.lost.clear()
    line.lose_in(pattern, replace=replace)
    result, took = raw(lab, "echo " + "x" * length + " | wc -c")
    assert line.lost, "the relay did not change the command"
    assert result.get("unreachable") is not True, result
    assert (result["rc"], result["stdout"].strip()) == (0, str(length + 1)), result
    print(f"command with {how}: exact result in {took:.1f}s")


def test_command_losing_bytes_on_the_way_in_fails_clearly(lossy):
    lab, line = lossy
    assert raw(lab, "true")[0]["rc"] == 0
    line.lost.clear()
    line.lose_in(BASE64_LINE)  # `head -c` then waits for one byte more, which never comes
    result, took = raw(lab, "echo " + "y" * 3000 + " | wc -c")  # long: it crosses as base64, not printf text
    assert line.lost, "the relay did not lose a byte"
    assert result["unreachable"] is True, result
    assert "timed out waiting for the board to confirm it received" in result["msg"], result
    assert "were some lost on the way?" in result["msg"], result
    print(f"command lost a byte on the way in: failed clearly in {took:.1f}s")
    assert raw(lab, "echo fine")[0]["stdout"] == "fine\n"  # the next task interrupts the stuck `head`


# --- the agent: requests damaged on the way in ---------------------------------------------

@pytest.mark.parametrize("pattern, replace, command, printed, how", [
    (BASE64_LINE, b"-", "echo " + "x" * 3000 + " | wc -c", "3001", "a byte of a line changed"),
    (BASE64_LINE, b"", "echo " + "x" * 3000 + " | wc -c", "3001", "a byte of a line lost"),
    (r"^#JLQ ", b"", "echo again", "again", "a byte of its first line (the middle: its sha256) lost"),
])
def test_a_request_damaged_on_the_way_in_is_sent_again(lossy, pattern, replace, command, printed, how):
    """The agent checks a request's length and sha256 when its last line comes: a byte changed or lost fails
    the check (the request runs nothing), the agent says so and the request is sent again."""
    lab, line = lossy
    assert raw(lab, "true", agent=True)[0]["rc"] == 0
    line.lost.clear()
    line.lose_in(pattern, replace=replace)
    result, took = raw(lab, command, agent=True)
    assert line.lost, "the relay did not change the request"
    assert result.get("unreachable") is not True, result
    assert (result["rc"], result["stdout"].strip()) == (0, printed), result
    print(f"agent request with {how}: exact result in {took:.1f}s")


def test_a_request_whose_last_line_is_damaged_fails_clearly_and_the_next_task_goes_on(lossy):
    """A request without its last line is dropped by the agent when the next one begins: it stays silent, and the
    task fails once the time its bytes could take has passed."""
    lab, line = lossy
    assert raw(lab, "true", agent=True)[0]["rc"] == 0
    line.lost.clear()
    line.lose_in(r"^#JLZ$")
    result, _took = raw(lab, "echo lost", agent=True)
    assert line.lost, "the relay did not damage the request"
    assert result["unreachable"] is True, result
    assert "timed out waiting for the board to confirm it received 'echo lost'" in result["msg"], result
    assert raw(lab, "echo fine", agent=True)[0]["stdout"] == "fine\n"


# --- a board that restarts under a task ----------------------------------------------------

def test_power_cycle_during_a_task_fails_at_once(lab):
    """The sim board's console stays open across a power cycle and shows its boot and a login prompt."""
    assert lab.adhoc("raw", "true")["rc"] == 0
    done = threading.Event()

    def cycle():
        time.sleep(3)  # the task's command runs by then
        with connect(lab.address, session="ansible-board1") as root:
            root.board.power.cycle(wait=0.5)
        done.set()

    thread = threading.Thread(target=cycle)
    thread.start()
    started = time.monotonic()
    try:
        result = lab.adhoc("command", "sleep 120", "-e", "jumpstarter_command_timeout=600", timeout=120)
    finally:
        thread.join()
    took = time.monotonic() - started
    assert done.is_set()
    assert result["unreachable"] is True, result
    assert "the console shows a login prompt while running" in result["msg"], result
    assert "the board restarted or the shell ended" in result["msg"], result
    print(f"power cycle under `sleep 120`: failed clearly {took:.1f}s after the task began")
    assert lab.adhoc("command", "echo back")["stdout"] == "back"  # logs in again
