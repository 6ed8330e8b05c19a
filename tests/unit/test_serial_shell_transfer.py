"""SerialShell's file transfer (put, fetch) against a real bash on a pseudo-terminal, as a console has it."""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import queue
import signal
import subprocess
import termios
import threading
import time
from pathlib import Path

import pytest

from helpers import load_plugin_util

serial_shell = load_plugin_util("serial_shell")
serial_cache = load_plugin_util("serial_cache")
serial_commands = load_plugin_util("serial_commands")
serial_input = load_plugin_util("serial_input")
serial_transfer = load_plugin_util("serial_transfer")


def _controlling_tty():
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class PtyConsole:
    """A channel (send, receive(timeout)) to an interactive bash on a pty; a thread keeps reading its output."""

    def __init__(self, home: Path):
        master, slave = os.openpty()
        self.tty = os.ttyname(slave)
        env = {"PATH": os.environ["PATH"], "HOME": str(home), "PS1": "board# ", "TERM": "dumb"}
        self.process = subprocess.Popen(["/bin/bash", "--noprofile", "--norc", "-i"], stdin=slave, stdout=slave,
                                        stderr=slave, env=env, cwd=home, start_new_session=True,
                                        preexec_fn=_controlling_tty)
        os.close(slave)
        self.master = master
        self.output: queue.Queue[bytes] = queue.Queue()
        self.sent = 0
        threading.Thread(target=self._pump, daemon=True).start()
        seen = b""
        while b"board# " not in seen:  # bash is up (a Ctrl-C before it is would kill it): a board's shell is running
            try:
                seen += self.receive(90)  # a loaded machine (seen: bootstrap's debootstrap) is slow to start it
            except TimeoutError:
                raise AssertionError(f"bash showed no prompt in 90 s (exit status {self.process.poll()}): {seen!r}")

    def _pump(self):
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: the shell has gone
                data = b""
            self.output.put(data)
            if not data:
                return

    def send(self, data: bytes) -> None:
        self.sent += len(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self.master, view):]

    def receive(self, timeout: float) -> bytes:
        try:
            return self.output.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError from None

    def close(self):
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        os.close(self.master)


@pytest.fixture
def board(tmp_path, monkeypatch):
    monkeypatch.setattr(serial_cache, "SENT_LINES", str(tmp_path / "sent-lines"))  # the controller's copies
    home = tmp_path / "board"
    home.mkdir()
    console = PtyConsole(home)
    shell = serial_shell.SerialShell(console, tmpdir=str(home))
    shell.attach(None, None, 30)
    shell.console = console
    yield shell
    console.close()


def leftovers(shell) -> list[str]:
    """Temp files of puts and fetches left on the board (a command first, so what was sent before has run)."""
    shell.run("true")
    return sorted(p.name for p in Path(shell.tmpdir).iterdir() if p.name.endswith((".put", ".sh")))


@pytest.mark.parametrize("size", [0, 1, 48 * 1024, 300 * 1024 + 7])
def test_put_and_fetch_exact_bytes(board, tmp_path, size):
    data = os.urandom(size)
    target = tmp_path / "dir with 'quote'" / "blob.bin"
    target.parent.mkdir()
    board.put(data, str(target))
    assert target.read_bytes() == data
    assert board.fetch(str(target)) == data
    assert leftovers(board) == []
    assert board.run("echo still here").stdout == b"still here\n"


def test_compressible_data_goes_gzipped_and_lines_stay_under_the_tty_limit(board, tmp_path):
    data = b"mode=lab\n" * 200_000  # 1.8 MB of text
    target = tmp_path / "app.ini"
    before = board.console.sent
    board.put(data, str(target))
    assert target.read_bytes() == data
    assert board.console.sent - before < len(data) / 20  # it crossed the line compressed
    encoded, decode = serial_input.encode(os.urandom(100_000))
    assert decode == "base64 -d"
    assert max(len(line) for line in encoded.split("\n")) < 4095
    assert "gunzip" in serial_input.write_text(board, board.tmpdir, data, "/x").split("\n")[0]


def test_put_into_a_missing_directory_fails_cleanly_and_the_shell_goes_on(board, tmp_path):
    with pytest.raises(serial_shell.ConsoleError, match=r"writing .*/nowhere/f on the board failed: .*No such file or directory"):
        board.put(os.urandom(100_000), str(tmp_path / "nowhere" / "f"))
    assert leftovers(board) == []
    result = board.run("echo ok")
    assert (result.rc, result.stdout, result.stderr) == (0, b"ok\n", b"")


def test_fetch_of_a_missing_file_names_it(board, tmp_path):
    with pytest.raises(serial_shell.ConsoleError, match=r"reading .*/absent on the board failed: .*No such file or directory"):
        board.fetch(str(tmp_path / "absent"))


def test_kernel_messages_on_the_console_do_not_corrupt_transfers(board, tmp_path):
    """Lines written straight to the board's terminal, as printk does, cut into acknowledgements and chunks."""
    stop = threading.Event()
    count = [0]

    def noise():
        with open(board.console.tty, "w") as terminal:
            while not stop.is_set():
                count[0] += 1
                terminal.write(f"[ {count[0]}.123456] usb 1-1: new device\n")
                terminal.flush()
                time.sleep(0.002)

    data = os.urandom(600 * 1024)
    target = tmp_path / "noisy.bin"
    thread = threading.Thread(target=noise)
    thread.start()
    try:
        board.put(data, str(target))
        fetched = board.fetch(str(target))
    finally:
        stop.set()
        thread.join()
    assert count[0] > 20, "the noise did not run alongside the transfers"
    assert target.read_bytes() == data
    assert fetched == data


def test_long_input_lines_are_sent_once_then_taken_from_the_boards_cache(board, monkeypatch):
    """As an Ansible module's zipped code is: the same long line in the input of every task running the module."""
    code = base64.b64encode(os.urandom(120_000))

    def run_module(params: bytes):
        stdin = b"#!/usr/bin/python3\nparams = '" + params + b"'\nzip_data = '" + code + b"'\nend\n"
        before = board.console.sent
        result = board.run("sha256sum", stdin=stdin)
        assert result.rc == 0 and result.stdout.split()[0].decode() == hashlib.sha256(stdin).hexdigest()
        return board.console.sent - before

    first = run_module(b"path=/a")
    assert first > len(code)
    assert run_module(b"path=/b, another task") < 5_000  # only what changed crossed the line
    cache = Path(board.tmpdir) / f".jl-cache-{os.getuid()}"
    (entry,) = cache.iterdir()
    entry.write_bytes(b"tampered")
    assert run_module(b"path=/c") > len(code)  # a damaged entry is not used: the line is sent again
    monkeypatch.setattr(serial_cache, "CACHE_ENTRIES", 2)
    for _other in range(3):
        code = base64.b64encode(os.urandom(20_000))
        run_module(b"")
    assert len(list(cache.iterdir())) == 2


def test_a_new_version_of_a_cached_line_crosses_as_the_bytes_that_differ(board):
    """As Ansible's module zip from one run to the next: the same length, timestamps changed here and there."""
    code = bytearray(base64.b64encode(os.urandom(150_000)))

    def run_module() -> int:
        stdin = b"#!/usr/bin/python3\nzip_data = '" + bytes(code) + b"'\nend\n"
        before = board.console.sent
        result = board.run("sha256sum", stdin=stdin)
        assert result.rc == 0 and result.stdout.split()[0].decode() == hashlib.sha256(stdin).hexdigest()
        return board.console.sent - before

    assert run_module() > len(code)
    _new_version_of(code)
    assert run_module() < 8_000  # the differing blocks, not the 200 kB line
    code += b"AAAA"  # another length: no base, the line crosses whole
    assert run_module() > len(code)


def _new_version_of(code: bytearray) -> None:
    """Ansible's module zip from one run to the next, as far as the board sees it: new timestamps every 20 kB."""
    for offset in range(1000, len(code), 20_000):
        code[offset:offset + 4] = b"ZZZZ" if code[offset:offset + 4] != b"ZZZZ" else b"YYYY"


def _module_input(code: bytearray) -> bytes:
    return b"zip_data = '" + bytes(code) + b"'\n"


@pytest.mark.parametrize("board_has", ["python3", "dd only"])
def test_a_new_version_lands_with_python3_in_one_step_or_with_dd_a_patch(board, board_has):
    """With python3 on the board every patch lands in one process (dd, made to fail here, is not used);
    without it, dd applies them (python3 made absent); the result is exact either way."""
    code = bytearray(base64.b64encode(os.urandom(150_000)))
    assert board.run("sha256sum", stdin=_module_input(code)).rc == 0
    _new_version_of(code)
    if board_has == "python3":
        board.console.send(b"dd() { return 1; }\n")
    else:
        board.console.send(b"python3() { return 127; }\n")
    before = board.console.sent
    result = board.run("sha256sum", stdin=_module_input(code))
    assert result.stdout.split()[0].decode() == hashlib.sha256(_module_input(code)).hexdigest()
    assert board.console.sent - before < 8_000  # patched, not sent whole after a failed attempt


def test_a_board_slow_to_put_a_line_together_is_waited_for_while_it_works(board, monkeypatch):
    """A starved board (a TCG guest on a loaded host) applies each patch slowly: the wait for it goes on
    as long as it reports each step done, however long all of them take."""
    code = bytearray(base64.b64encode(os.urandom(150_000)))
    assert board.run("sha256sum", stdin=_module_input(code)).rc == 0
    _new_version_of(code)
    monkeypatch.setattr(serial_commands, "ACK_BASE", 1.0)
    monkeypatch.setattr(serial_commands, "ACK_RATE", 1e9)
    # a board without python3 (dd applies each patch) whose dd is slow: 10 patches, 5 s in all, 0.5 s a step
    board.console.send(b'python3() { return 127; }; dd() { sleep 0.5; command dd "$@"; }\n')
    started = time.monotonic()
    result = board.run("sha256sum", stdin=_module_input(code))
    assert result.stdout.split()[0].decode() == hashlib.sha256(_module_input(code)).hexdigest()
    assert time.monotonic() - started > 5


def test_a_board_stuck_putting_a_line_together_fails_once_it_falls_silent(board, monkeypatch):
    code = bytearray(base64.b64encode(os.urandom(150_000)))
    assert board.run("sha256sum", stdin=_module_input(code)).rc == 0
    _new_version_of(code)
    monkeypatch.setattr(serial_commands, "ACK_BASE", 1.0)
    monkeypatch.setattr(serial_commands, "ACK_RATE", 1e9)
    board.console.send(b"python3() { return 127; }; dd() { sleep 60; }\n")
    started = time.monotonic()
    with pytest.raises(serial_commands.ConsoleError, match="confirm it received 'sha256sum'.* silent for 1s"):
        board.run("sha256sum", stdin=_module_input(code), timeout=120)
    assert time.monotonic() - started < 30


class PacedConsole:
    """A console whose line to the board is slow: what the controller sends trickles out at `rate`
    bytes/s from a buffer, as through a UART, while send() returns at once."""

    def __init__(self, console: PtyConsole, rate: float):
        self.console, self.rate = console, rate
        self.sent = 0
        self._line: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._trickle, daemon=True).start()

    def _trickle(self):
        while True:
            data = self._line.get()
            for i in range(0, len(data), 256):
                try:
                    self.console.send(data[i:i + 256])
                except OSError:  # the test is over and closed the console: the line goes with it
                    return
                time.sleep(len(data[i:i + 256]) / self.rate)

    def send(self, data: bytes) -> None:
        self.sent += len(data)
        self._line.put(bytes(data))

    def receive(self, timeout: float) -> bytes:
        return self.console.receive(timeout)


def test_a_put_on_a_slow_line_waits_for_its_chunks_before_the_check(tmp_path, monkeypatch):
    """The chunks still crossing the line must land before the final check's own deadline starts.
    (Seen at 115200 baud with 1 MiB: the check timed out behind 3 chunks in flight.)"""
    monkeypatch.setattr(serial_transfer, "CHUNK", 8 * 1024)
    monkeypatch.setattr(serial_commands, "ACK_BASE", 1.0)  # the check's deadline, shorter than the chunks' crossing
    home = tmp_path / "board"
    home.mkdir()
    console = PtyConsole(home)
    try:
        shell = serial_shell.SerialShell(PacedConsole(console, rate=8_000), tmpdir=str(home))
        shell.attach(None, None, 30)
        data = os.urandom(40 * 1024)  # 5 chunks: 4 of them (the window + 1) in flight at the end, ~3.6 s of line
        shell.put(data, str(home / "copied.bin"), timeout=60)
        assert (home / "copied.bin").read_bytes() == data
    finally:
        console.close()
