# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""Files to and from a board over its serial console: put streams base64 chunks into a temp file,
checks its sha256 on the board, then moves it into place; fetch has the board print a file's pieces,
each with its own sha256, and reads the damaged ones again."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import secrets
import shlex
import time

from ansible_collections.jumpstarter.lab.plugins.plugin_utils.serial_commands import Commands
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.serial_console import ConsoleError, ConsoleTimeout
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.serial_input import encode, write_text
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.serial_markers import (
    FETCHED,
    PIECE,
    PUT_ACK,
    split_marker,
    split_word,
)

CHUNK = 48 * 1024  # bytes of a file per command of a put or fetch
WINDOW = 3  # chunks of a put sent ahead of the board's acknowledgements
FETCH_BLOCKS = (CHUNK, 4096, 512, 512)  # bytes per line of a fetch: first, then for what arrived damaged


class _Short(ConsoleError):
    """A put's temp file on the board is not as long as what was sent."""


class Transfer:
    """put and fetch on the console of `commands`, with its commands for the steps around the data."""

    def __init__(self, commands: Commands):
        self.commands = commands
        self.console = commands.console

    def put(self, data: bytes, path: str, *, timeout: float = 600) -> None:
        """Write `data` to `path` on the board: chunks streamed into a temp file, checksum, then mv.

        The chunks go out back to back, at most WINDOW ahead of the board's acknowledgements (each
        says how large the temp file has grown): the line never waits a round trip per chunk, a
        size that does not add up stops the transfer, and a board that stops taking data fails
        within `timeout`. The sha256 of the whole file is checked on the board before the mv.
        """
        token = secrets.token_hex(8)
        part = f"{self.commands.files(token)}.put"
        digest = hashlib.sha256(data).hexdigest()
        starts = range(0, max(len(data), 1), CHUNK)
        # Up to the newline: a slow console delivers "...:0:2" before "02\n", and `$` would take the 2.
        ack = rb"^" + PUT_ACK.encode() + b":" + token.encode() + rb":(\d+):[ \t]*(-?\d+)[ \t]*\n"
        acked = -1

        def wait_for(index: int) -> None:
            nonlocal acked
            while acked < index:  # a later acknowledgement stands for an earlier one cut by console noise
                _name, match = self.console.expect({"ack": ack}, timeout, f"the board to take chunk {acked + 1} of {path}")
                got, size = int(match.group(1)), int(match.group(2))
                expected = min(starts[got] + CHUNK, len(data))
                if size != expected:
                    raise _Short(f"the board could not write {part}" if size < 0 else
                                 f"{part} has {size} bytes after chunk {got} where {expected} were sent")
                acked = max(acked, got)

        try:
            for index, start in enumerate(starts):
                if acked < index - WINDOW:
                    wait_for(index - WINDOW)
                encoded, decode = encode(data[start:start + CHUNK])
                self.console.send(f"head -c {len(encoded)} | {{ {decode} {'>' if index == 0 else '>>'} {part}; cat > /dev/null; }}; "
                                  f"printf '{split_marker(PUT_ACK)}:{token}:{index}:%s\\n' "
                                  f"\"$(wc -c 2>/dev/null < {part} || echo -1)\"\n{encoded}")
            # The last chunks may still be crossing a slow line: the check below starts its own
            # deadline when it is sent, so let them land first (a lost acknowledgement: the check decides).
            with contextlib.suppress(ConsoleTimeout):
                wait_for(len(starts) - 1)
        except _Short as e:
            self.commands.run(f"rm -f {part}", timeout=timeout)
            raise ConsoleError(f"writing {path} on the board failed: {e}") from None
        result = self.commands.run(f'test "$(sha256sum < {part} | cut -c1-64)" = {digest} && mv -f {part} {shlex.quote(path)}',
                                   timeout=timeout)
        if result.rc != 0:
            self.commands.run(f"rm -f {part}", timeout=timeout)
            detail = result.stderr.decode(errors="replace").strip() or "checksum mismatch after transfer"
            raise ConsoleError(f"writing {path} on the board failed: {detail}")

    def fetch(self, path: str, *, timeout: float = 600) -> bytes:
        """Read `path` on the board: its size and sha256, then its chunks printed by one shell loop,
        each as one line of base64 with its own sha256. A chunk damaged on the way (a kernel message
        cut into its line) is read again, alone, in smaller pieces; the whole is checked at the end."""
        quoted = shlex.quote(path)
        result = self.commands.run(f"cat {quoted} > /dev/null && wc -c < {quoted} && sha256sum < {quoted} | cut -c1-64",
                                   timeout=timeout)
        if result.rc != 0:
            raise ConsoleError(f"reading {path} on the board failed: {result.stderr.decode(errors='replace').strip()}")
        size_text, digest = result.stdout.split()
        size = int(size_text)
        pieces: dict[int, bytes] = {}  # offset: bytes arrived intact
        wanted = [(0, size)] if size else []  # (offset, length) still to read
        for attempt, block in enumerate(FETCH_BLOCKS):
            if not wanted:
                break
            if attempt:
                self.console.log(f"{len(wanted)} pieces of {path} arrived damaged; reading them again in {block}-byte pieces")
            indices = [offset // block for start, length in wanted for offset in range(start, start + length, block)]
            self._fetch_pieces(quoted, block, indices, pieces, timeout)
            wanted = [(index * block, min(block, size - index * block)) for index in indices if index * block not in pieces]
        if wanted:
            raise ConsoleError(f"reading {path} on the board failed: it kept arriving damaged on the console")
        data = bytearray()
        while len(data) < size and len(data) in pieces:
            data += pieces[len(data)]
        if hashlib.sha256(data).hexdigest().encode() != digest:
            raise ConsoleError(f"reading {path} on the board failed: the file changed while it was read")
        return bytes(data)

    def _fetch_pieces(self, quoted: str, block: int, indices: list[int], pieces: dict[int, bytes], timeout: float) -> None:
        """Have the board print pieces `indices` (of `block` bytes) of a file, one line each; keep the intact ones."""
        token = secrets.token_hex(8)
        read = f"dd if={quoted} bs={block} skip=$i count=1 2>/dev/null"
        # One printf per line: a short line leaves in one write, which nothing else on the tty cuts into.
        body = (f"h=$({read} | sha256sum | cut -c1-64); d=$({read} | base64 | tr -d '\\n'); "
                f"printf '{PIECE}{token}:%s:%s:%s\\n' $i \"$h\" \"$d\"")
        if indices[-1] - indices[0] == len(indices) - 1:
            loop = f"i={indices[0]}; while [ $i -le {indices[-1]} ]; do {body}; i=$((i + 1)); done"
        else:
            loop = f"for i in {' '.join(map(str, indices))}; do {body}; done"
        script = f"{self.commands.files(token)}.sh"
        text = f"rm -f {script}\n{loop}\nprintf '%s\\n' {split_word(f'{FETCHED}:{token}')}\n"  # sh keeps it open
        self.console.send(write_text(self.console, self.commands.tmpdir, text.encode(), script) + f"/bin/sh {script}\n")
        line_rx = re.compile(PIECE.encode() + token.encode() + rb":(\d+):([0-9a-f]{64}):([A-Za-z0-9+/=]*)$")
        end = f"{FETCHED}:{token}".encode()
        deadline = time.monotonic() + timeout
        scan = 0
        while True:
            newline = self.console.buffer.find(b"\n", scan)
            if newline < 0:
                scan = len(self.console.buffer)
                self.console.fill(deadline, f"{quoted} from the board")
                continue
            line, self.console.buffer, scan = self.console.buffer[:newline], self.console.buffer[newline + 1:], 0
            if end in line:
                return
            match = line_rx.search(line)
            if not match:
                continue
            try:
                piece = base64.b64decode(match.group(3), validate=True)
            except ValueError:
                continue
            if hashlib.sha256(piece).hexdigest().encode() == match.group(2):
                pieces[int(match.group(1)) * block] = piece
                deadline = time.monotonic() + timeout  # the timeout is for a board that stops sending
