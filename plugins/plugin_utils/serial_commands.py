# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""Commands run over a board's serial console, framed so the results are exact.

How a command runs: each command gets a fresh random token; it travels as a file (serial_input),
its stdout and stderr go to files on the board, and an emit step prints rc, sizes and sha256
sums, then the output as base64 lines prefixed with the token. Anything else on the console (the
echoed line, kernel messages) is ignored; a checksum mismatch (a kernel message cut into a line)
makes the emit step run again.

Faults end in the exact result or a ConsoleError within a deadline: the board confirms (by sha256)
that a command arrived before running it, or says it did not (sent again); an emit whose first or
last line is lost is run again (its markers carry the attempt, so late pieces of an earlier one
never count); a login prompt or the kernel's reboot message while a command runs means the board
restarted.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from dataclasses import dataclass

from ansible_collections.jumpstarter.lab.plugins.plugin_utils.serial_console import (
    ConsoleError,
    ConsoleQuiet,
    ConsoleTimeout,
    SerialConsole,
)
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.serial_input import sums_to, write_text
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.serial_markers import (
    ARRIVED,
    DAMAGED,
    END,
    START,
    STDERR,
    STDOUT,
    twice,
    working,
)

DELIVERIES = 3  # times a command found damaged on arrival is sent again
EMITS = 5  # times a command's output is printed before it counts as undeliverable
EMIT_QUIET = 10.0  # seconds an emit may pause: it prints in one go once it has begun
ACK_BASE, ACK_RATE = 10.0, 1000  # a step of a command's arrival takes at most 10 s + 1 ms per byte it sends
# A kernel message printed into a line of output: "[   12.345678] text" up to its own newline.
KERNEL_MESSAGE = re.compile(rb"\[ *\d+\.\d+\] [^\n]*\n")
# What the kernel prints as the board restarts or stops, even with a quiet console loglevel.
REBOOTED = rb"^(?:\[ *\d+\.\d+\] )?reboot: (?:Restarting system|Power down|System halted)"


@dataclass
class Result:
    rc: int
    stdout: bytes
    stderr: bytes


class _Corrupt(ConsoleError):
    pass


class Commands:
    """Commands run by /bin/sh on the machine-friendly shell of `console`, their files under `tmpdir`."""

    def __init__(self, console: SerialConsole, tmpdir: str = "/tmp"):
        self.console = console
        self.tmpdir = tmpdir.rstrip("/") or "/tmp"

    def files(self, token: str) -> str:
        """The common name of the files on the board of the command (or transfer) `token`."""
        return f"{self.tmpdir}/.jl-{token}"

    def run(self, command: str, stdin: bytes | None = None, *, timeout: float = 600,
            on_prompt: tuple[bytes, bytes] | None = None) -> Result:
        """Run `command` with /bin/sh; return rc, stdout and stderr exactly.

        The command travels as a file (no quoting, no tty line-length limit). on_prompt =
        (pattern, reply): when pattern shows on the console while the command runs (a become
        password prompt on /dev/tty), reply once.

        Every wait has a deadline and fails naming what it waited for. The board checks the
        sha256 of what arrived before running it and says so: a byte lost on the way in leaves
        `head` waiting (no word comes: fail once the time the transfer could take has passed)
        or changes the digest (the command is sent again; nothing ran). Output damaged on the
        way out is emitted again. A login prompt or the kernel's reboot message while the
        command runs means the board restarted: that fails at once, not at the timeout.
        """
        deadline = time.monotonic() + timeout
        for _delivery in range(DELIVERIES):
            token = secrets.token_hex(8)
            if self._deliver(token, command, stdin, deadline):
                break
            self.console.log(f"command {token} arrived damaged on the board; sending it again")
        else:
            raise ConsoleError(f"{brief(command)} arrived damaged on the board {DELIVERIES} times: the console is "
                               "losing or changing bytes on the way in")
        prompt = on_prompt
        for attempt in range(EMITS):
            if attempt:
                self.console.send(self._emit(token, attempt) + "\n")
            try:
                start = self._start(token, attempt, command, deadline, prompt)
                prompt = None  # answered, or it had its chance: the command has ended
                result = self._collect(token, attempt, start, command, deadline)
                break
            except _Corrupt as e:
                prompt = None
                self.console.log(f"output of {token} arrived damaged ({e}); emitting it again")
        else:
            raise ConsoleError(f"the output of {brief(command)} kept arriving damaged on the console "
                               f"({EMITS} attempts): the console is losing or changing bytes")
        self.console.send(f"rm -f {self.files(token)}.*\n")
        return result

    def _deliver(self, token: str, command: str, stdin: bytes | None, deadline: float) -> bool:
        """Send the command and its input; True once the board has them intact and runs them,
        False when the board found them damaged (and removed them)."""
        files = self.files(token)
        script = write_text(self.console, self.tmpdir, command.encode(), f"{files}.cmd")
        if stdin:
            script += write_text(self.console, self.tmpdir, stdin, f"{files}.in")
        digest = hashlib.sha256(command.encode() + (stdin or b"")).hexdigest()
        summed = f"cat {files}.cmd {files}.in | sha256sum" if stdin else f"sha256sum < {files}.cmd"
        script += (f"if {sums_to(summed, digest)}; then "
                   f"{twice(f'{ARRIVED}:{token}')}; "
                   f"/bin/sh {files}.cmd < {files + '.in' if stdin else '/dev/null'} > {files}.out 2> {files}.err; "
                   f"echo $? > {files}.rc; {self._emit(token, 0)}; "
                   f"else rm -f {files}.*; {twice(f'{DAMAGED}:{token}')}; fi\n")
        self.console.log(f"running command (token {token})")
        self.console.send(script)
        # The board prints WORKING after each step of putting the input together: a slow board (a
        # starved TCG guest) keeps talking, a stuck one (`head` waiting for bytes that were lost) falls
        # silent. A step is allowed ACK_BASE, and the time its bytes take on a slow line.
        quiet = ACK_BASE + max(len(step) for step in script.split(working())) / ACK_RATE
        what = (f"the board to confirm it received {brief(command)} ({len(script)} bytes sent; "
                "were some lost on the way?)")
        tag = re.escape(f"{token}.0".encode())
        try:
            name, _match = self.wait({"ack": f"^{ARRIVED}:{token}$".encode(),
                                      "nack": f"^{DAMAGED}:{token}$".encode(),
                                      # the command's output, should both acknowledgements have been cut: left in place
                                      "output": rb"^(?=" + _line(START, tag) + rb":|" + _output_line(tag) + rb":|"
                                      + _line(END, tag) + rb"$)"},
                                     deadline - time.monotonic(), what, command, idle=quiet)
        except ConsoleTimeout as e:
            self.console.ready = False  # the shell's state is unknown (the next attach interrupts `head`)
            if isinstance(e, ConsoleQuiet):
                raise ConsoleTimeout(f"timed out waiting for {what}: the board was silent for {quiet:.0f}s; "
                                     f"console showed: {self.console.tail()!r}") from None
            raise
        return name != "nack"

    def _start(self, token: str, attempt: int, command: str, deadline: float,
               on_prompt: tuple[bytes, bytes] | None) -> re.Match:
        """Wait for the first line of an emit: rc, sizes and sums. The first emit follows the command,
        which may run long and print nothing; a repeated one comes at once, or is lost."""
        tag = re.escape(f"{token}.{attempt}".encode())
        patterns = {"start": rb"^" + _line(START, tag) + rb":(-?\d+):(\d+):(\d+):([0-9a-f]{64}):([0-9a-f]{64})$",
                    # the emit's later lines without its first: that line was lost
                    "later": rb"^(?:" + _output_line(tag) + rb":|" + _line(END, tag) + rb"$)"}
        if on_prompt:
            patterns["prompt"] = on_prompt[0]
        what = f"{brief(command)} to finish"
        while True:
            try:
                name, match = self.wait(patterns, deadline - time.monotonic(), what, command,
                                        idle=EMIT_QUIET if attempt else None)
            except ConsoleQuiet as e:
                raise _Corrupt(str(e)) from None
            if name == "start":
                return match
            if name == "later":
                raise _Corrupt("its first line was lost")
            self.console.send(on_prompt[1] + b"\n")
            patterns.pop("prompt")

    def _collect(self, token: str, attempt: int, start: re.Match, command: str, deadline: float) -> Result:
        rc, out_size, err_size, out_sum, err_sum = start.groups()
        tag = f"{token}.{attempt}".encode()
        try:
            _name, end = self.wait({"end": rb"^" + _line(END, re.escape(tag)) + rb"$"}, deadline - time.monotonic(),
                                   f"the output of {brief(command)}", command, idle=EMIT_QUIET)
        except ConsoleQuiet as e:
            raise _Corrupt(str(e)) from None
        body = KERNEL_MESSAGE.sub(b"", end.string[:end.start()])
        if not _twinned(start, body):
            raise _Corrupt("the two copies of its first line differ, or one was lost")
        out = _decode_lines(body, STDOUT.encode() + tag + b":")
        err = _decode_lines(body, STDERR.encode() + tag + b":")
        for name, data, size, digest in (("stdout", out, out_size, out_sum), ("stderr", err, err_size, err_sum)):
            if len(data) != int(size) or hashlib.sha256(data).hexdigest().encode() != digest:
                raise _Corrupt(f"{name} checksum mismatch")
        return Result(int(rc), out, err)

    def _emit(self, token: str, attempt: int) -> str:
        """Shell text printing a command's result: a line with rc, sizes and sha256 sums, the output as
        base64 lines, an end line. Each marker line goes out twice (console noise may cut one; the first
        line's two copies must agree, as nothing else checks its rc) and carries the attempt, so what
        arrives late from an earlier attempt never counts."""
        files, tag = self.files(token), f"{token}.{attempt}"
        # Few processes (each ~20 ms on a TCG guest): one sha256sum and one wc for both files, read by the
        # shell; printf reuses its format for the second copy; an empty output is not encoded at all.
        start = f"{START}:{tag}:%s:%s:%s:%s:%s\\n"
        return (f"__jl_r=; read -r __jl_r < {files}.rc; {{ sha256sum {files}.out {files}.err; wc -c {files}.out "
                f"{files}.err; }} | {{ read -r __jl_a _; read -r __jl_b _; read -r __jl_n _; read -r __jl_m _; "
                f"printf '{start}{start}' \"$__jl_r\" \"$__jl_n\" \"$__jl_m\" \"$__jl_a\" \"$__jl_b\" \"$__jl_r\" "
                f"\"$__jl_n\" \"$__jl_m\" \"$__jl_a\" \"$__jl_b\"; }}; "
                f"[ -s {files}.out ] && base64 < {files}.out | sed 's/^/{STDOUT}{tag}:/'; "
                f"[ -s {files}.err ] && base64 < {files}.err | sed 's/^/{STDERR}{tag}:/'; "
                f"{twice(f'{END}:{tag}')}")

    def wait(self, patterns: dict[str, bytes], timeout: float, what: str, command: str,
             idle: float | None = None) -> tuple[str, re.Match]:
        """expect(), failing at once when the console shows that the board restarted."""
        restarted = {"rebooted": REBOOTED, "login": self.console.prompts.login}
        name, match = self.console.expect(patterns | restarted, max(0.1, timeout), what, idle=idle)
        if name in restarted:
            self.console.ready = False  # the shell is gone: nothing to give back
            if name == "login":
                raise ConsoleError(f"the console shows a login prompt while running {brief(command)}: the board "
                                   "restarted or the shell ended")
            shown = match.group(0).decode(errors="replace").strip()
            raise ConsoleError(f"the board restarted while running {brief(command)}: its console shows {shown!r}")
        return name, match


def _line(marker: str, tag: bytes) -> bytes:
    """The pattern of a marker line `marker`:`tag` (tag escaped already), without anchors."""
    return marker.encode() + b":" + tag


def _output_line(tag: bytes) -> bytes:
    """The pattern of the start of a line of output (stdout or stderr) of the emit `tag` (escaped already)."""
    return b"[" + STDOUT.encode() + STDERR.encode() + b"]" + tag


def _twinned(start: re.Match, body: bytes) -> bool:
    """Whether the first line of an emit (`start`) shows twice alike: the copy matched and another, before or
    after it (kernel messages taken out; only this emit prints lines of its tag). Its rc has no checksum: a copy
    changed on the way ('0' to '1') must not pass for the result, so one that no twin confirms makes the emit
    run again."""
    twin = b"\n" + start.group(0) + b"\n"
    return twin in body or twin in b"\n" + KERNEL_MESSAGE.sub(b"", start.string[:start.start()])


def _decode_lines(body: bytes, prefix: bytes) -> bytes:
    data = bytearray()
    for line in body.split(b"\n"):
        index = line.find(prefix)
        if index >= 0:
            try:
                data += base64.b64decode(line[index + len(prefix):].strip(), validate=True)
            except ValueError:
                raise _Corrupt("undecodable line") from None
    return bytes(data)


def brief(command: str) -> str:
    """A command as an error message names it: on one line, long ones cut."""
    text = " ".join(command.split())
    return repr(text if len(text) <= 60 else text[:57] + "...")
