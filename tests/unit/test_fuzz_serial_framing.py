"""The framing of a command's output on a serial console, fuzzed with hypothesis: the emit a real /bin/sh prints
for a result (rc, sizes and sha256 sums twice, the output as base64 lines, the end line twice), with console
noise put into it (kernel messages between and inside lines, garbage bytes and lines, terminal escapes, lines
cut short, lost, repeated or with a byte changed), crosses a real pseudo-terminal in chunks of any size and is
read by Commands as a run reads it. It gives back the exact result or raises ConsoleError (its _Corrupt: the
output is emitted again), never another exception and never a wrong result; noise that only adds lines, kernel
messages or escapes costs nothing."""

from __future__ import annotations

import base64
import os
import re
import select
import subprocess
import termios
import time
import tty

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from helpers import load_plugin_util

serial_commands = load_plugin_util("serial_commands")
serial_console = load_plugin_util("serial_console")

FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])
QUIET = 0.05  # seconds of silence that end an emit (EMIT_QUIET, 10 s on a real console): the fuzzed line is local


class PtyLine:
    """A real pseudo-terminal as a board's console: what the board prints is written to its terminal (output
    processing on: newlines become CR LF, as a UART's getty has it) and read from the other end. Each receive()
    writes the next of the chunks the board's output was cut into, and returns exactly what it became."""

    def __init__(self):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        attributes = termios.tcgetattr(self.slave)
        attributes[1] = termios.OPOST | termios.ONLCR  # oflag: NL -> CR NL, nothing else
        termios.tcsetattr(self.slave, termios.TCSANOW, attributes)
        self.chunks: list[bytes] = []
        self.sent = b""

    def feed(self, output: bytes, sizes: list[int]) -> None:
        """Have the board print `output`, in chunks of `sizes` (cycled)."""
        self.chunks, self.sent, position = [], b"", 0
        while position < len(output):
            size = sizes[len(self.chunks) % len(sizes)]
            self.chunks.append(output[position:position + size])
            position += size

    def send(self, data: bytes) -> None:
        self.sent += data

    def receive(self, timeout: float) -> bytes:
        if not self.chunks:  # the board has said all it will: a quiet line
            time.sleep(min(timeout, 0.002))
            raise TimeoutError
        chunk = self.chunks.pop(0)
        os.write(self.slave, chunk)
        expected, received = len(chunk) + chunk.count(b"\n"), b""
        while len(received) < expected:
            assert select.select([self.master], [], [], 5)[0], "the pseudo-terminal lost bytes"
            received += os.read(self.master, expected - len(received))
        return received

    def close(self) -> None:
        os.close(self.slave)
        os.close(self.master)


@pytest.fixture(scope="module")
def line():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(serial_commands, "EMIT_QUIET", QUIET)
        pty_line = PtyLine()
        yield pty_line
        pty_line.close()


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    return tmp_path_factory.mktemp("board")


def emit(board, token: str, attempt: int, rc: int, stdout: bytes, stderr: bytes) -> bytes:
    """What a board prints for a command's result: Commands' own emit text, run by /bin/sh on files holding it."""
    commands = serial_commands.Commands(None, str(board))
    files = commands.files(token)
    for suffix, data in ((".rc", f"{rc}\n".encode()), (".out", stdout), (".err", stderr)):
        with open(files + suffix, "wb") as file:
            file.write(data)
    printed = subprocess.run(["/bin/sh", "-c", commands._emit(token, attempt)], capture_output=True, check=True,
                             timeout=30, env={"PATH": os.environ["PATH"], "LC_ALL": "C"})
    assert not printed.stderr, printed.stderr
    return printed.stdout


def collect(line: PtyLine, token: str, attempt: int):
    """The result as Commands.run reads an emit (attempt > 0: a repeated one, where silence means it was cut)."""
    console = serial_console.SerialConsole(line)
    commands = serial_commands.Commands(console, "/tmp")
    deadline = time.monotonic() + 20
    start = commands._start(token, attempt, "fuzzed", deadline, None)
    return commands._collect(token, attempt, start, "fuzzed", deadline)


# --- console noise ----------------------------------------------------------------------------------------

safe_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e, exclude_characters=":"), max_size=60)
kernel_lines = st.builds(lambda seconds, text: f"[{seconds:>5}.{seconds * 7 % 1000000:06d}] {text}\n".encode(),
                         st.integers(0, 99999), safe_text)
escapes = st.sampled_from([b"\r", b"\x11", b"\x13", b"\x1b[0m", b"\x1b[1;31m", b"\x1b[2K", b"\x1b]0;title\x07",
                           b"\x1b[?25h", b"\x1bM"])
garbage = st.binary(max_size=40)
garbage_inline = st.binary(min_size=1, max_size=8).map(lambda raw: raw.replace(b"\n", b"."))
# (what, line, place in the line, bytes): lines and places are taken modulo the lines there are then
harmless_ops = st.tuples(st.just("kernel"), st.integers(0, 200), st.integers(0, 200), kernel_lines) | st.tuples(
    st.just("line"), st.integers(0, 200), st.just(0), safe_text.map(lambda text: text.encode() + b"\n")) | st.tuples(
    st.just("escape"), st.integers(0, 200), st.integers(0, 200), escapes) | st.tuples(
    st.just("repeat-marker"), st.integers(0, 200), st.just(0), st.just(b""))
damaging_ops = st.tuples(st.sampled_from(["cut", "lose", "repeat"]), st.integers(0, 200), st.integers(0, 200),
                         st.just(b"")) | st.tuples(st.just("garbage-line"), st.integers(0, 200), st.just(0),
                                                   garbage.map(lambda raw: raw + b"\n")) | st.tuples(
    st.sampled_from(["insert", "change"]), st.integers(0, 200), st.integers(0, 200), garbage_inline) | st.tuples(
    st.just("flip"), st.integers(0, 200), st.integers(0, 200), st.sampled_from([1, 2, 4, 8, 16, 32, 64, 128]))
CHANGING = {"insert", "change", "flip"}  # what changes a line's text yet may leave it well-formed


def noisy(output: bytes, ops: list[tuple]) -> bytes:
    """`output` with `ops` done to its lines in turn. What is put into a line goes in whole (a kernel message
    never lands inside an escape sequence that noise put there before it, as one write is not cut by another).

    The first line's rc has no checksum: its second copy is what checks it. Two faults changing both copies
    alike (or a changed copy repeated) would pass for the truth on any framing that prints it twice, and are
    left out: at most one copy of the first line is changed, and a changed one is not repeated."""
    lines = [Line(text) for text in output.splitlines()]  # the emit's every line ends with a newline
    changed_first = False
    for what, index, place, data in ops:
        if not lines:
            break
        index %= len(lines)
        line = lines[index]
        place %= len(line.atoms) + 1
        if what in CHANGING and line.first:
            if changed_first:
                continue
            changed_first = True
        if what == "kernel" and place > 0 and line.marker:  # a marker line cut in two, or followed on its line
            if any(other.cut and other.marker == line.marker for other in lines):
                continue  # one copy of each marker line stays whole (else it is lost, and emitted again)
            line.cut = True
        if what in ("kernel", "escape", "insert"):
            line.atoms.insert(place, data)
        elif what in ("line", "garbage-line"):
            lines.insert(index, Line(data.rstrip(b"\n")))
        elif what == "repeat-marker" or what == "repeat":
            if (what == "repeat" or line.marker) and not (line.first and changed_first):
                lines.insert(index, line.copy())
        elif what == "cut":
            del line.atoms[place:]
        elif what == "lose":
            del lines[index]
        elif what == "change" and line.atoms:
            line.atoms[place % len(line.atoms)] = data[:1]
        elif what == "flip" and line.atoms:  # a bit error on the UART: one byte of the line, one bit of it
            at = place % len(line.atoms)
            line.atoms[at] = bytes([line.atoms[at][0] ^ data]) if line.atoms[at] else line.atoms[at]
    return b"".join(b"".join(line.atoms) + b"\n" for line in lines)


class Line:
    """A line of the console's output as atoms: its own bytes one by one, and whatever noise put into it."""

    def __init__(self, text: bytes):
        self.atoms = [text[i:i + 1] for i in range(len(text))]
        self.first = text.startswith(b"JLS:")
        self.marker = "start" if self.first else "end" if text.startswith(b"JLE:") else ""
        self.cut = False

    def copy(self) -> Line:
        twin = Line(b"")
        twin.atoms, twin.first, twin.marker, twin.cut = list(self.atoms), self.first, self.marker, self.cut
        return twin


results = st.tuples(st.integers(0, 255), st.binary(max_size=600), st.binary(max_size=200))
tokens = st.from_regex(r"[0-9a-f]{16}", fullmatch=True)
chunk_sizes = st.lists(st.integers(1, 4096), min_size=1, max_size=5)


@FUZZ
@given(result=results, token=tokens, attempt=st.integers(1, 4), sizes=chunk_sizes,
       before=st.lists(garbage, max_size=3), ops=st.lists(harmless_ops | damaging_ops, max_size=6))
@example(result=(0, b"ok\n", b""), token="0123456789abcdef", attempt=1, sizes=[4096], before=[],
         ops=[("insert", 0, 23, b"1")])  # rc 0 read as 10 from the first copy: its second copy says otherwise
@example(result=(1, b"", b"no\n"), token="0123456789abcdef", attempt=1, sizes=[1], before=[],
         ops=[("change", 1, 23, b"0"), ("cut", 0, 30, b"")])  # the first copy cut, the second 1 -> 0
def test_a_noisy_emit_gives_the_exact_result_or_a_console_error(line, board, result, token, attempt, sizes, before,
                                                                ops):
    rc, stdout, stderr = result
    output = emit(board, token, attempt, rc, stdout, stderr)
    line.feed(b"".join(before) + noisy(output, ops), sizes)
    try:
        got = collect(line, token, attempt)
    except serial_console.ConsoleError:
        return  # emitted again, or the run fails naming why: never a wrong result
    assert (got.rc, got.stdout, got.stderr) == (rc, stdout, stderr)


@settings(FUZZ, max_examples=300)
@given(result=results, token=tokens, attempt=st.integers(1, 4), sizes=chunk_sizes,
       ops=st.lists(harmless_ops, max_size=8))
@example(result=(0, b"x" * 200, b""), token="0123456789abcdef", attempt=1, sizes=[7],
         ops=[("kernel", 0, 20, b"[    1.000007] usb 1-1: new device\n")])  # the first copy cut by printk
@example(result=(0, b"", b""), token="0000000000000000", attempt=1, sizes=[1],
         ops=[("escape", 0, 0, b"\x1b]0;title\x07")])  # an OSC arriving a byte at a time: ESC ] is not whole
def test_kernel_messages_escapes_and_extra_lines_cost_nothing(line, board, result, token, attempt, sizes, ops):
    rc, stdout, stderr = result
    line.feed(noisy(emit(board, token, attempt, rc, stdout, stderr), ops), sizes)
    got = collect(line, token, attempt)
    assert (got.rc, got.stdout, got.stderr) == (rc, stdout, stderr)


@settings(FUZZ, max_examples=300)
@given(body=st.lists(st.binary(max_size=120) | st.sampled_from(
    [b"Otag:", b"Otag:====", b"Otag: QUJD ", b"Otag:QUJD", b"xxOtag:QUJD", b"Otag:QUJDOtag:QUJD"]), max_size=8))
def test_decoding_lines_gives_their_bytes_or_says_corrupt(body):
    """_decode_lines on any body: the base64 after the prefix of each line holding it, or _Corrupt."""
    joined = b"\n".join(body)
    try:
        data = serial_commands._decode_lines(joined, b"Otag:")
    except serial_commands._Corrupt:
        return
    expected = b"".join(base64.b64decode(piece[piece.find(b"Otag:") + 5:].strip(), validate=True)
                        for piece in joined.split(b"\n") if b"Otag:" in piece)
    assert data == expected


# --- the whole run, against a real shell --------------------------------------------------------------------

FIRST_START = re.compile(rb"^JLS:[0-9a-f]{16}\.0:")
FIRST_END = re.compile(rb"^JLE:[0-9a-f]{16}\.0$")


class NoisyRelay:
    """The console of a real bash on a pseudo-terminal, with `ops` done to the first emit of the next command
    (attempt 0): its lines are held until the emit is whole, then let through with the noise in them."""

    def __init__(self, console):
        self.console = console
        self.pending = b""  # bash's output not yet ended by a newline
        self.held: list[bytes] | None = None  # the lines of an emit being held
        self.ops: list | None = None

    def send(self, data: bytes) -> None:
        self.console.send(data)

    def receive(self, timeout: float) -> bytes:
        try:
            data = self.console.receive(min(timeout, 0.05))
        except TimeoutError:
            if self.pending and self.held is None:  # a prompt: no newline comes
                data, self.pending = self.pending, b""
                return data
            raise
        if not data:
            return data
        *lines, self.pending = (self.pending + data).split(b"\n")
        passed = b""
        for line in lines:
            bare = line.rstrip(b"\r")
            if self.held is None and self.ops is not None and FIRST_START.match(bare):
                self.held = []
            if self.held is None:
                passed += line + b"\n"
                continue
            self.held.append(bare)
            if sum(1 for held in self.held if FIRST_END.match(held)) == 2:
                passed += noisy(b"".join(held + b"\n" for held in self.held), self.ops)
                self.held, self.ops = None, None
        if not passed:
            raise TimeoutError
        return passed


@pytest.fixture(scope="module")
def shell(tmp_path_factory):
    from test_serial_shell_transfer import PtyConsole

    serial_shell = load_plugin_util("serial_shell")
    serial_cache = load_plugin_util("serial_cache")
    home = tmp_path_factory.mktemp("bash")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(serial_cache, "SENT_LINES", str(home / "sent-lines"))
        patch.setattr(serial_commands, "EMIT_QUIET", 0.5)  # a local bash prints an emit in one go
        console = PtyConsole(home)
        relay = NoisyRelay(console)
        board = serial_shell.SerialShell(relay, tmpdir=str(home))
        board.attach(None, None, 30)
        yield board, relay
        console.close()


@settings(FUZZ, max_examples=100)
@given(result=results, ops=st.lists(harmless_ops | damaging_ops, min_size=1, max_size=6))
@example(result=(0, b"ok\n", b""), ops=[("insert", 0, 23, b"1")])
def test_a_run_whose_first_emit_is_damaged_gives_the_exact_result(shell, result, ops):
    """Commands.run end to end: whatever the noise did to the first emit, the run ends with the exact result
    (emitted again, with the attempt in its markers, when the first did not add up)."""
    board, relay = shell
    rc, stdout, stderr = result
    relay.ops = ops
    command = (f"printf '%s' {base64.b64encode(stdout).decode()} | base64 -d; "
               f"printf '%s' '{base64.b64encode(stderr).decode()}' | base64 -d >&2; exit {rc}")
    got = board.run(command, timeout=20)
    assert relay.ops is None, "the first emit was not seen"
    assert (got.rc, got.stdout, got.stderr) == (rc, stdout, stderr)
