"""The serial agent (serial_agent, serial_agent_board) against a real bash on a pseudo-terminal: requests cut
anywhere on their way, commands, files, the board's cache of long lines, and the console given back."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
import zlib

import pytest

from helpers import load_plugin_util
from test_serial_shell_transfer import PtyConsole

serial_shell = load_plugin_util("serial_shell")
serial_cache = load_plugin_util("serial_cache")
serial_agent = load_plugin_util("serial_agent")
board = load_plugin_util("serial_agent_board")


def request(token: bytes, payload: bytes) -> bytes:
    text = base64.b64encode(payload)
    lines = b"".join(text[i:i + 40] + b"\n" for i in range(0, len(text), 40))
    return b"#JLQ %s r %d %s\n%s#JLZ\n" % (token, len(text), hashlib.sha256(payload).hexdigest().encode(), lines)


def feed(pieces: list[bytes]) -> list:
    found, buffer = [], b""
    for piece in pieces:
        more, buffer = board.requests(buffer + piece)
        found += more
    return found


PAYLOAD = json.dumps({"op": "run", "cmd": "echo hi"}).encode() + b"\n" + os.urandom(200)


def test_a_request_cut_anywhere_arrives_whole_once():
    wire = b"noise\n" + request(b"aa", PAYLOAD)
    for cut in range(1, len(wire)):
        assert feed([wire[:cut], wire[cut:]]) == [(b"aa", PAYLOAD)], cut
    assert feed([bytes([b]) for b in wire]) == [(b"aa", PAYLOAD)]


def test_a_damaged_request_is_named_and_one_cut_short_gives_way_to_the_next():
    wire = request(b"aa", PAYLOAD)
    body = wire.index(b"\n") + 10
    changed = wire[:body] + (b"A" if wire[body:body + 1] != b"A" else b"B") + wire[body + 1:]
    assert feed([changed]) == [(b"aa", None)]
    lost = wire[:body] + wire[body + 1:]
    assert feed([lost]) == [(b"aa", None)]
    cut = wire[:body]  # the rest never came; the next request begins
    assert feed([cut, request(b"bb", b"x\n")]) == [(b"bb", b"x\n")]


@pytest.fixture
def agent_shell(tmp_path, monkeypatch):
    monkeypatch.setattr(serial_cache, "SENT_LINES", str(tmp_path / "sent-lines"))
    home = tmp_path / "board"
    home.mkdir()
    console = PtyConsole(home)
    shell = serial_shell.SerialShell(console, tmpdir=str(home))
    shell.attach(None, None, 30)
    assert shell.start_agent(30)
    shell.pty = console  # what crossed to the board: pty.sent
    yield shell
    console.close()


def test_commands_and_files_through_the_agent(agent_shell, tmp_path):
    result = agent_shell.run("cat; echo err >&2; exit 3", b"in\x00put")
    assert (result.rc, result.stdout, result.stderr) == (3, b"in\x00put", b"err\n")
    data = os.urandom(600 * 1024)  # three pieces
    target = tmp_path / "board" / "file.bin"
    agent_shell.put(data, str(target))
    assert target.read_bytes() == data
    assert agent_shell.fetch(str(target)) == data
    assert not [p.name for p in target.parent.iterdir() if p.name.startswith(".jl-put-")]
    with pytest.raises(serial_shell.ConsoleError, match="reading /nonexistent on the board failed: .*No such file"):
        agent_shell.fetch("/nonexistent")
    with pytest.raises(serial_shell.ConsoleError, match="writing /nonexistent/x on the board failed"):
        agent_shell.put(b"x", "/nonexistent/x")
    assert agent_shell.run("echo still").stdout == b"still\n"


def test_long_lines_cross_once_then_as_the_blocks_that_differ(agent_shell):
    line = base64.b64encode(os.urandom(30000)) + b"\n"
    sent = agent_shell.pty.sent
    assert agent_shell.run("wc -c", line).stdout.strip() == str(len(line)).encode()
    first = agent_shell.pty.sent - sent
    assert first > len(line)
    sent = agent_shell.pty.sent
    assert agent_shell.run("wc -c", line).stdout.strip() == str(len(line)).encode()
    assert agent_shell.pty.sent - sent < 2000  # taken from the board's cache
    changed = line[:100] + b"ZZZZ" + line[104:]
    sent = agent_shell.pty.sent
    assert agent_shell.run("sha256sum", changed).stdout.split()[0] == hashlib.sha256(changed).hexdigest().encode()
    assert agent_shell.pty.sent - sent < 2000  # the block that differs
    cache = [p for p in os.scandir(agent_shell.tmpdir) if p.name.startswith(".jl-cache-")]
    for entry in os.scandir(cache[0].path):  # a damaged entry is named missing, and the line crosses whole
        with open(entry.path, "r+b") as f:
            f.write(b"!")
    assert agent_shell.run("sha256sum", changed).stdout.split()[0] == hashlib.sha256(changed).hexdigest().encode()


def test_a_later_connection_takes_up_the_agent_and_ctrl_c_gives_the_console_back(agent_shell):
    token = agent_shell.agent
    later = serial_shell.SerialShell(agent_shell.channel, tmpdir=agent_shell.tmpdir)
    assert later.resume_agent(token)
    assert later.run("echo again").stdout == b"again\n"
    assert not serial_shell.SerialShell(agent_shell.channel, tmpdir=agent_shell.tmpdir).resume_agent("0" * 16)
    later.stop_agent()
    later.attach(None, None, 30)  # the shell again, for people and for the framing
    assert later.run("echo shell").stdout == b"shell\n"


def test_an_agent_that_is_killed_fails_the_request_clearly(agent_shell):
    with pytest.raises(serial_shell.ConsoleError, match="the agent ended while running 'kill -9 \\$PPID'"):
        agent_shell.run("kill -9 $PPID")
    assert agent_shell.agent is None


def test_ctrl_c_while_a_command_runs_ends_the_command_and_the_agent(agent_shell, tmp_path):
    """As in a shell: a person's Ctrl-C (or the next connection's, after this one gave up) ends what runs."""
    done = tmp_path / "board" / "done"
    errors = []

    def run():
        try:
            agent_shell.run(f"sleep 100; touch {done}")
        except serial_shell.ConsoleError as e:
            errors.append(str(e))

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(1)
    agent_shell.pty.send(b"\x03")
    worker.join(30)
    assert errors and "the agent ended while running" in errors[0], errors
    assert agent_shell.agent is None
    agent_shell.attach(None, None, 30)  # the shell is the people's again
    assert agent_shell.run("echo ok").stdout == b"ok\n"
    assert not done.exists()


class Recorded:
    """A console that shows `data`, then nothing; what is sent to it is kept."""

    def __init__(self, data: bytes):
        self.data, self.sent = data, b""

    def send(self, data: bytes) -> None:
        self.sent += data

    def receive(self, timeout: float) -> bytes:
        if not self.data:
            raise TimeoutError
        data, self.data = self.data, b""
        return data


def test_kernel_messages_cut_into_a_reply_cost_nothing():
    """As the kernel prints them into a board's console output: in the middle of lines and between them."""
    out = os.urandom(20000)
    payload = json.dumps({"rc": 0, "out": len(out)}).encode() + b"\n" + out
    noisy = b""
    for number, line in enumerate(board.reply_lines(b"tok", payload).split(b"\n")[:-1]):
        middle = len(line) // 2
        noisy += line[:middle] + b"[  %d.123456] lab noise %d\n" % (number, number) + line[middle:] + b"\n"
        noisy += b"[  %d.5] usb 1-1: new device\n" % number
    console = Recorded(noisy)
    shell = serial_shell.SerialShell(console)
    head, data = serial_agent.Agent(shell._commands, "tok")._reply("tok", time.monotonic() + 5, "a test")
    assert (head["rc"], data) == (0, out)
    assert console.sent == b""  # nothing asked again


def test_replies_are_compressed_when_that_pays():
    lines = board.reply_lines(b"t", b"a" * 100000)
    assert len(lines) < 2000 and b"JLR:t:z:" in lines
    head = lines.split(b"\n")[0].split(b":")
    assert (head[3], head[4]) == (b"1", b"100000")
    text = lines.split(b"\n")[2].split(b":")[3]
    assert zlib.decompress(base64.b64decode(text)) == b"a" * 100000
