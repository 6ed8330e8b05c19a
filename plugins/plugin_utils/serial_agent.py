# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""One python3 process kept on a board's console for a whole play: the serial agent (its board side is
serial_agent_board). A command, a file or a module's code crosses as one request and comes back as one
reply, with no shell framing on the board (each of its processes costs 20-35 ms under TCG) and no login
or set-up line per task: the agent outlives the connection of a task and waits for the next one for its
linger time, then gives the console back to people.

Requests cross as base64 with their sha256: the board says arrived (JLA) or damaged (JLN: sent again),
and a request cut short is dropped by the agent when the next one begins. Replies come as numbered
lines each with its crc32 and, as a whole, their size and sha256: lost or damaged lines are asked for
again. A login prompt or the kernel's reboot message while waiting means the board restarted.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import time
import zlib

from ansible_collections.jumpstarter.lab.plugins.plugin_utils import serial_cache
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.serial_commands import (
    ACK_BASE,
    ACK_RATE,
    DELIVERIES,
    EMIT_QUIET,
    EMITS,
    KERNEL_MESSAGE,
    REBOOTED,
    Commands,
    Result,
    brief,
)
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.serial_console import (
    ConsoleError,
    ConsoleQuiet,
    ConsoleTimeout,
)
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.serial_input import LINE, sums_to, write_text
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.serial_login import HUMAN
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.serial_markers import (
    AGENT,
    AGENT_GONE,
    ARRIVED,
    DAMAGED,
    END,
    REPLY,
    REPLY_LINE,
    REQUEST,
    REQUEST_END,
    split_word,
)

BOARD_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "serial_agent_board.py")
CHUNK = 256 * 1024  # bytes of a file per request of a put or fetch
PING = b"\x05"  # an agent answers with its AGENT line; at a shell or a login prompt, a key the attach's Ctrl-C clears


class AgentError(ConsoleError):
    """The agent ran the request and it failed on the board (a file that cannot be written or read)."""


class Agent:
    """The agent on the console of `commands`: started from its machine-friendly shell, or found running."""

    def __init__(self, commands: Commands, token: str | None = None):
        self.commands = commands
        self.console = commands.console
        self.token = token  # the agent's, while one is known to run

    def start(self, linger: float, timeout: float = 30) -> bool:
        """Start the agent from the machine-friendly shell; False when the board has no python3 for it (the
        shell stays as it was) or the agent ended at once (the shell is the people's again: attach anew)."""
        token = secrets.token_hex(8)
        with open(BOARD_SOURCE, "rb") as f:
            source = f.read()
        path = f"{self.commands.files(token)}.py"
        cache = serial_cache.cache_dir(self.commands.tmpdir)
        gone = f"{AGENT_GONE}:{token}"
        text = write_text(self.console, self.commands.tmpdir, source, path)
        # The terminal's settings are saved by the shell and restored after the agent however it ended.
        intact = sums_to(f"sha256sum < {path}", hashlib.sha256(source).hexdigest())
        text += (f"if command -v python3 >/dev/null 2>&1 && {intact}; then __jl_g=$(stty -g 2>/dev/null); "
                 f"python3 {path} {token} {linger:g} {cache}; "
                 f"stty \"$__jl_g\" 2>/dev/null; {HUMAN}; printf '%s\\n' {split_word(gone + ':ended')}; "
                 f"else rm -f {path}; printf '%s\\n' {split_word(gone + ':none')}; fi\n")
        self.console.log(f"starting the agent {token}")
        self.console.send(text)
        outcomes = {"up": rf"^{AGENT}:{token}:\d+$".encode(), "none": rf"^{gone}:none$".encode(),
                    "ended": rf"^{gone}:ended$".encode()}
        name, _match = self.commands.wait(outcomes, timeout, "the agent to start", "python3 (the agent)")
        if name == "ended":
            self.console.ready = False
        self.token = token if name == "up" else None
        return name == "up"

    def alive(self, timeout: float = 2.0) -> bool:
        """Whether the agent `self.token` (left by an earlier connection) still runs and has the console."""
        self.console.send(PING)
        try:
            self.commands.wait({"up": rf"^{AGENT}:{self.token}:\d+$".encode()}, timeout, "the agent", "a ping")
        except ConsoleError:
            self.token = None
            return False
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """End the agent: the shell that started it gives the console back to people."""
        if self.token is None:
            return
        token, self.token = self.token, None
        self.console.send(b"\x03")
        self.console.ready = False
        self.console.expect({"gone": rf"^{AGENT_GONE}:{token}:ended$".encode()}, timeout, "the agent to end")

    def run(self, command: str, stdin: bytes | None = None, *, timeout: float = 600) -> Result:
        head, data = self.call({"op": "run", "cmd": command}, stdin or b"", timeout=timeout, what=brief(command))
        return Result(head["rc"], data[:head["out"]], data[head["out"]:])

    def put(self, data: bytes, path: str, *, timeout: float = 600) -> None:
        """Write `data` to `path` in pieces into a temp file beside it, checked by sha256 on the board, then moved."""
        part, digest = secrets.token_hex(8), hashlib.sha256(data).hexdigest()
        for at in range(0, max(len(data), 1), CHUNK):
            piece = data[at:at + CHUNK]
            last = at + len(piece) >= len(data)
            op = {"op": "put", "path": path, "part": part, "at": at, "last": last, "sha": digest}
            try:
                self.call(op, piece, timeout=timeout, what=f"writing {path}")
            except AgentError as e:
                raise AgentError(f"writing {path} on the board failed: {e}") from None

    def fetch(self, path: str, *, timeout: float = 600) -> bytes:
        """Read `path` in pieces; the whole is checked against the sha256 the board gave with the first."""
        data, size, digest = bytearray(), None, None
        while size is None or len(data) < size:
            try:
                head, piece = self.call({"op": "fetch", "path": path, "at": len(data), "size": CHUNK}, timeout=timeout,
                                        what=f"reading {path}")
            except AgentError as e:
                raise AgentError(f"reading {path} on the board failed: {e}") from None
            size, digest = head["size"], digest or head.get("sha")
            data += piece
            if not piece:
                break
        if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
            raise ConsoleError(f"reading {path} on the board failed: the file changed while it was read")
        return bytes(data)

    def call(self, op: dict, data: bytes = b"", *, timeout: float, what: str) -> tuple[dict, bytes]:
        """Send a request with `data` as its input (long lines taken from the board's cache when it has them);
        return the reply's head and data. A reply naming cache entries the board lacks: sent again whole."""
        deadline = time.monotonic() + timeout
        whole: set[str] = set()
        while True:
            parts, body = _parts(data, whole)
            head, payload = self._exchange(op | {"in": parts}, body, deadline, what)
            if "missing" in head and not whole:
                whole = set(head["missing"])
                continue
            if "error" in head or "missing" in head:
                raise AgentError(head.get("error") or "the board's cache lost entries as they were sent")
            return head, payload

    def _exchange(self, op: dict, body: bytes, deadline: float, what: str) -> tuple[dict, bytes]:
        payload = json.dumps(op).encode() + b"\n" + body
        started = time.monotonic()
        for _delivery in range(DELIVERIES):
            token = secrets.token_hex(8)
            if self._deliver(token, payload, deadline, what):
                break
            self.console.log(f"request {token} arrived damaged on the board; sending it again")
        else:
            raise ConsoleError(f"{what} arrived damaged on the board {DELIVERIES} times: the console is losing or "
                               "changing bytes on the way in")
        arrived = time.monotonic()
        head, data = self._reply(token, deadline, what)
        ran = f" (it ran {head['took']:.3f}s)" if "took" in head else ""
        self.console.log(f"agent: {op['op']} {what}: {len(body)} bytes of input arrived in {arrived - started:.3f}s, "
                         f"{len(data)} bytes of reply {time.monotonic() - arrived:.3f}s later{ran}")
        return head, data

    def _deliver(self, token: str, payload: bytes, deadline: float, what: str) -> bool:
        """Send a request; True once the board has it intact, False when it found it damaged."""
        packed = zlib.compress(payload, 6)
        flag = "z" if len(packed) < len(payload) * 0.9 else "r"
        text = base64.b64encode(packed if flag == "z" else payload).decode()
        wire = (f"{REQUEST} {token} {flag} {len(text)} {hashlib.sha256(payload).hexdigest()}\n"
                + "".join(text[i:i + LINE] + "\n" for i in range(0, len(text), LINE)) + f"{REQUEST_END}\n")
        self.console.send(wire)
        quiet = ACK_BASE + len(wire) / ACK_RATE
        waited = f"the board to confirm it received {what} ({len(wire)} bytes sent; were some lost on the way?)"
        try:
            name, _match = self.commands.wait(
                {"ack": rf"^{ARRIVED}:{token}$".encode(), "nack": rf"^{DAMAGED}:{token}$".encode(),
                 # the reply, should both acknowledgements have been cut: left in place
                 "reply": rf"^(?={REPLY}:{token}:|{REPLY_LINE}{token}:|{END}:{token}$)".encode(),
                 "gone": rf"^{AGENT_GONE}:{self.token}:ended$".encode()},
                deadline - time.monotonic(), waited, what, idle=quiet)
        except ConsoleQuiet:
            raise ConsoleTimeout(f"timed out waiting for {waited}: the agent was silent for {quiet:.0f}s; console "
                                 f"showed: {self.console.tail()!r}") from None
        if name == "gone":
            self.token = None
            raise ConsoleError(f"the agent ended before it received {what} (killed on the board?)")
        return name != "nack"

    def _reply(self, token: str, deadline: float, what: str) -> tuple[dict, bytes]:
        """Read the reply of request `token`; ask again for the lines lost or damaged on the way."""
        lines: dict[int, bytes] = {}
        head = None
        for attempt in range(EMITS):
            if attempt:
                missing = [i for i in range(head[1]) if i not in lines] if head else []  # none: all
                again = {"op": "again", "token": token, "lines": missing}
                self._deliver(secrets.token_hex(8), json.dumps(again).encode() + b"\n", deadline, what)
            head = self._read_reply(token, lines, deadline, what, first=attempt == 0) or head
            if head and all(i in lines for i in range(head[1])):
                text = b"".join(lines[i] for i in range(head[1]))
                try:
                    data = base64.b64decode(text, validate=True)
                    if head[0] == b"z":
                        data = zlib.decompress(data)
                except (ValueError, zlib.error):
                    data = b""
                if len(data) == head[2] and hashlib.sha256(data).hexdigest().encode() == head[3]:
                    reply_head, _newline, rest = data.partition(b"\n")
                    return json.loads(reply_head), rest
                lines.clear()  # lines that passed their crc and still make no whole: all again
            self.console.log(f"the reply to {token} arrived damaged; asking for it again")
        raise ConsoleError(f"the reply to {what} kept arriving damaged on the console ({EMITS} attempts): the console "
                           "is losing or changing bytes")

    def _read_reply(self, token: str, lines: dict[int, bytes], deadline: float, what: str, first: bool):
        """Keep the intact lines of reply `token` until its end line; its head (flag, count, size, sha256) when
        seen. The first waits as long as the request may run; a repeat ends after EMIT_QUIET without news."""
        head_rx = re.compile(rf"{REPLY}:{token}:([zr]):(\d+):(\d+):([0-9a-f]{{64}})$".encode())
        line_rx = re.compile(rf"{REPLY_LINE}{token}:(\d+):([0-9a-f]{{8}}):([A-Za-z0-9+/=]*)$".encode())
        end = f"{END}:{token}".encode()
        gone = f"{AGENT_GONE}:{self.token}:ended".encode()
        rebooted = re.compile(REBOOTED)
        login = re.compile(self.console.prompts.login, re.MULTILINE)
        heard = not first  # once a line of the reply came, the rest comes in one go
        last = time.monotonic()
        found = None
        while True:
            newline = self.console.buffer.find(b"\n")
            if newline < 0:
                if login.search(self.console.buffer[-200:]):
                    self.console.ready = False
                    raise ConsoleError(f"the console shows a login prompt while running {what}: the board "
                                       "restarted or the shell ended")
                size = len(self.console.buffer)
                now = time.monotonic()
                if heard and now - last >= EMIT_QUIET:
                    return found
                try:
                    self.console.fill(min(deadline, last + EMIT_QUIET) if heard else deadline, f"the reply to {what}")
                except ConsoleTimeout:
                    if heard and time.monotonic() < deadline:
                        return found
                    raise
                if len(self.console.buffer) != size:
                    last = time.monotonic()
                continue
            line = self.console.buffer[:newline + 1]
            if rebooted.search(line):
                self.console.ready = False
                raise ConsoleError(f"the board restarted while running {what}: its console shows "
                                   f"{line.decode(errors='replace').strip()!r}")
            kept = KERNEL_MESSAGE.sub(b"", line)
            if kept != line and not kept.endswith(b"\n"):  # a kernel message cut into the line: the rest follows it
                self.console.buffer = kept + self.console.buffer[newline + 1:]
                continue
            line = kept[:-1]
            self.console.buffer = self.console.buffer[newline + 1:]
            if line.endswith(gone):
                self.token = None
                raise ConsoleError(f"the agent ended while running {what} (killed on the board?)")
            if (match := line_rx.search(line)) and zlib.crc32(match.group(3)) == int(match.group(2), 16):
                lines[int(match.group(1))] = match.group(3)
                heard = True
            elif match := head_rx.search(line):
                found = (match.group(1), int(match.group(2)), int(match.group(3)), match.group(4))
                heard = True
            elif line.endswith(end):
                return found


def _parts(data: bytes, whole: set[str]) -> tuple[list, bytes]:
    """A request's input as parts the agent puts together: bytes sent (d), entries of the board's cache (c), or
    an entry made from a remembered one by the blocks that differ (p); and the bytes that cross."""
    if not data:
        return [], b""
    parts, body = [], bytearray()
    for segment, cacheable in serial_cache.segments(data):
        if not cacheable:
            parts.append(["d", len(segment)])
            body += segment
            continue
        digest = hashlib.sha256(segment).hexdigest()
        similar = None if digest in whole else serial_cache.similar(segment, digest)
        if digest not in whole and os.path.exists(os.path.join(serial_cache.SENT_LINES, digest)):
            parts.append(["c", digest])
        elif similar is not None and similar[0] not in whole:
            base, patches = similar[0], similar[1]
            parts.append(["p", base, digest, [[offset, len(block)] for offset, block in patches]])
            body += b"".join(block for _offset, block in patches)
        else:
            parts.append(["d", len(segment), digest])
            body += segment
        serial_cache.remember(segment, digest)
    return parts, bytes(body)
