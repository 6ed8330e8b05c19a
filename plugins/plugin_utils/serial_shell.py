# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""Running commands over a board's serial console, framed so the results are exact.

Pure logic over a byte channel with `send(bytes)` and `receive(timeout) -> bytes`
(b"" meaning the channel ended; TimeoutError when nothing arrived in time), so it
is tested on recorded console bytes as well as on real consoles.

How a command runs: the shell is made machine-friendly once (no echo, no line
editing, empty prompts). Each command gets a fresh random token; its stdout and
stderr go to files on the board, and an emit step prints rc, sizes and sha256
sums, then the output as base64 lines prefixed with the token. Anything else on
the console (the echoed line, kernel messages) is ignored; a checksum mismatch
(a kernel message cut into a line) makes the emit step run again.

Faults end in the exact result or a ConsoleError within a deadline: the board
confirms (by sha256) that a command arrived before running it, or says it did not
(sent again); an emit whose first or last line is lost is run again (its markers
carry the attempt, so late pieces of an earlier one never count); a login prompt
or the kernel's reboot message while a command runs means the board restarted.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import os
import re
import secrets
import time
from dataclasses import dataclass

ANSI = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
CHUNK = 48 * 1024  # bytes of a file per command of a put or fetch
LINE = 4000  # base64 characters per line typed to the board: under the tty's canonical limit of 4095
WINDOW = 3  # chunks of a put sent ahead of the board's acknowledgements
FETCH_BLOCKS = (CHUNK, 4096, 512, 512)  # bytes per line of a fetch: first, then for what arrived damaged
CACHED_LINE = (16 * 1024, 1024 * 1024)  # lengths of an input's lines kept in the board's cache
CACHE_ENTRIES = 32  # lines the board's cache keeps, the newest
CACHED_PER_INPUT = 16  # at most, so that the question to the board stays a short line
QUIET = 2.0  # seconds of silence after which an attaching console is taken for a shell without prompt
DELIVERIES = 3  # times a command found damaged on arrival is sent again
EMITS = 5  # times a command's output is printed before it counts as undeliverable
EMIT_QUIET = 10.0  # seconds an emit may pause: it prints in one go once it has begun
ACK_BASE, ACK_RATE = 10.0, 1000  # a command's arrival is confirmed within 10 s + 1 ms per byte sent
# A kernel message printed into a line of output: "[   12.345678] text" up to its own newline.
KERNEL_MESSAGE = re.compile(rb"\[ *\d+\.\d+\] [^\n]*\n")
# What the kernel prints as the board restarts or stops, even with a quiet console loglevel.
REBOOTED = rb"^(?:\[ *\d+\.\d+\] )?reboot: (?:Restarting system|Power down|System halted)"


class ConsoleError(Exception):
    """The console did not do what was expected; the message says what and where."""


class ConsoleTimeout(ConsoleError):
    pass


class ConsoleQuiet(ConsoleTimeout):
    """Nothing new on the console for a while, where output was expected to flow."""


def clean(data: bytes) -> bytes:
    """Console bytes without terminal escapes, carriage returns and flow control (XON/XOFF a board's tty
    sends when its input buffer fills, in the middle of its output)."""
    return ANSI.sub(b"", data).replace(b"\r", b"").replace(b"\x11", b"").replace(b"\x13", b"")


def split_word(word: str) -> str:
    """Shell text printing `word` whose own characters never contain `word` (so an echo cannot match)."""
    half = len(word) // 2
    return f"'{word[:half]}''{word[half:]}'"


@dataclass
class Result:
    rc: int
    stdout: bytes
    stderr: bytes


@dataclass
class Prompts:
    login: bytes = rb"login:\s*$"
    password: bytes = rb"[Pp]assword:\s*$"
    shell: bytes = rb"[#$>]\s*$"


class SerialShell:
    def __init__(self, channel, *, prompts: Prompts | None = None, tmpdir: str = "/tmp", log=None):
        self.channel = channel
        self.prompts = prompts or Prompts()
        self.tmpdir = tmpdir.rstrip("/") or "/tmp"
        self.buffer = b""  # cleaned console text not consumed yet
        self._raw = b""  # received bytes not cleaned yet (a cut escape sequence)
        self.log = log or (lambda message: None)
        self.ready = False

    # --- reading ------------------------------------------------------------------

    def _fill(self, deadline: float, what: str) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            tail = (self.buffer + self._raw)[-300:].decode(errors="replace")
            raise ConsoleTimeout(f"timed out waiting for {what}; console showed: {tail!r}")
        try:
            chunk = self.channel.receive(timeout=min(remaining, 1.0))
        except TimeoutError:
            return
        if not chunk:
            raise ConsoleError(f"console closed while waiting for {what}")
        self._raw += chunk
        # Clean what has arrived, holding back an escape sequence that may be cut in two.
        cut = self._raw.rfind(b"\x1b", max(0, len(self._raw) - 64))
        if cut >= 0 and not ANSI.match(self._raw, cut):
            self.buffer += clean(self._raw[:cut])
            self._raw = self._raw[cut:]
        else:
            self.buffer += clean(self._raw)
            self._raw = b""

    def expect(self, patterns: dict[str, bytes], timeout: float, what: str,
               idle: float | None = None) -> tuple[str, re.Match]:
        """Wait for the first of several patterns in the cleaned console output; consume through it.

        With `idle`, a console that shows nothing new for that many seconds ends the wait early
        (ConsoleQuiet): for output that comes in one go once it has begun."""
        compiled = {name: re.compile(p, re.MULTILINE) for name, p in patterns.items()}
        deadline = time.monotonic() + timeout
        scanned = 0
        last = time.monotonic()
        while True:
            hits = [(m.start(), name, m) for name, rx in compiled.items() if (m := rx.search(self.buffer, scanned))]
            if hits:
                _position, name, match = min(hits, key=lambda h: h[0])
                self.buffer = self.buffer[match.end():]
                return name, match
            scanned = max(0, len(self.buffer) - 512)  # patterns are short: only new text needs a look
            now = time.monotonic()
            if idle is not None and now - last >= idle and now < deadline:
                raise ConsoleQuiet(f"the console showed nothing new for {idle:g}s while waiting for {what}")
            size = len(self.buffer) + len(self._raw)
            self._fill(deadline if idle is None else min(deadline, last + idle), what)
            if len(self.buffer) + len(self._raw) != size:
                last = time.monotonic()

    def send(self, text: str | bytes) -> None:
        self.channel.send(text.encode() if isinstance(text, str) else text)

    # --- attaching -------------------------------------------------------------------

    def attach(self, user: str | None, password: str | None, timeout: float) -> None:
        """Reach a machine-friendly shell, logging in when the console asks for it.

        Interrupt whatever runs and press Enter, then look before typing the set-up line: at a
        login prompt it would be taken as a user name, which getty refuses only after a long
        pause. A console that stays quiet is taken for a shell an earlier connection left
        without prompt or echo, and gets the set-up line.
        """
        deadline = time.monotonic() + timeout
        ready_word = "JL" + secrets.token_hex(6)
        ready = re.escape(ready_word.encode()) + rb"\n"
        self.send("\x03\n")
        setup_sent = False  # the set-up line went to the shell now on the console
        refusals = 0
        while True:
            choices = {"login": self.prompts.login, "password": self.prompts.password, "ready": ready,
                       "bad": rb"[Ll]ogin incorrect|[Aa]uthentication failure"}
            wait = deadline - time.monotonic()
            if not setup_sent:
                choices["shell"] = self.prompts.shell
                wait = min(wait, QUIET)
            try:
                name, _match = self.expect(choices, max(0.1, wait), "a login prompt or a shell")
            except ConsoleTimeout:
                if setup_sent or time.monotonic() >= deadline:
                    raise
                name = "shell"
            if name == "ready":
                self.ready = True
                self.log("console shell ready")
                return
            if name == "shell":
                self.send(self._setup_line(ready_word))
                setup_sent = True
            elif name == "bad":
                refusals += 1
                if refusals > 2:
                    raise ConsoleError(f"login as {user} was refused on the console")
            elif name == "login":
                if not user:
                    raise ConsoleError("the console asks for a login but no user was given (ansible_user)")
                self.log(f"logging in as {user}")
                self.send(user + "\n")
                setup_sent = False
            elif name == "password":
                if password is None:
                    raise ConsoleError("the console asks for a password but none was given (ansible_password)")
                self.send(password + "\n")

    def _setup_line(self, ready_word: str) -> str:
        # `command`: a shell without one of these options (dash has no history) must not drop the line
        return ("command set +o emacs 2>/dev/null; command set +o vi 2>/dev/null; "
                "command set +o history 2>/dev/null; stty -echo -onlcr 2>/dev/null; "
                "__jl_ps1=${__jl_ps1-$PS1}; PS1=''; PS2=''; unset PROMPT_COMMAND; export TERM=dumb; "
                f"printf '%s\\n' {split_word(ready_word)}\n")

    def detach(self, timeout: float = 5.0) -> None:
        """Give the console back to people: prompt and echo as before. Waits until the shell has done
        it, so the line is not lost with a stream closed right after it."""
        if self.ready:
            done = "JL" + secrets.token_hex(6)
            self.send("stty echo onlcr 2>/dev/null; command set -o emacs 2>/dev/null; PS1=${__jl_ps1-'$ '}; "
                      f"unset __jl_ps1; printf '%s\\n' {split_word(done)}\r")
            self.ready = False
            self.expect({"done": re.escape(done.encode())}, timeout, "the shell to take its prompt back")

    # --- commands ------------------------------------------------------------------------

    def _files(self, token: str) -> str:
        return f"{self.tmpdir}/.jl-{token}"

    def _transfer(self, data: bytes, target: str) -> str:
        """Shell text that writes `data` to `target`: `head` reads exactly the base64 that follows
        the line, so the shell never parses it (gzip-compressed on the wire when that pays). Should
        the decoder stop early (a full disk), `cat` reads the rest: it never reaches the shell.

        Long lines of a large input (the zipped code of an Ansible module, the same in every task
        that runs the module) are kept in a cache on the board and not sent again: the board is
        asked which it has, and the file put together is checked against the input's sha256.
        """
        segments = _segments(data)
        if len(segments) == 1 and not segments[0][1]:
            encoded, decode = _encode(data)
            return f"head -c {len(encoded)} | {{ {decode} > {target}; cat > /dev/null; }}\n{encoded}"
        cache = f"{self.tmpdir}/.jl-cache-$(id -u)"
        wanted = [hashlib.sha256(segment).hexdigest() for segment, cacheable in segments if cacheable]
        # A line the board lacks may differ from one it has in a few bytes only (Ansible zips a
        # module anew on every run: the same code, new timestamps): then only those bytes cross.
        bases = {digest: base for digest, (segment, cacheable) in zip(wanted, [s for s in segments if s[1]])
                 if (base := _similar(segment, digest))}
        have = self._cached(cache, wanted + [base[0] for base in bases.values()])
        text, stored = f": > {target}\n", False
        for segment, cacheable in segments:
            digest = hashlib.sha256(segment).hexdigest() if cacheable else ""
            if cacheable:
                _remember(segment, digest)
            if digest in have:
                text += f"cat {cache}/{digest} >> {target}\n"
                continue
            if digest in bases and bases[digest][0] in have:
                base, patches = bases[digest]
                text += _patch(f"{cache}/{base}", f"{cache}/{digest}", patches) + f"cat {cache}/{digest} >> {target}\n"
                stored = True
                continue
            encoded, decode = _encode(segment)
            if cacheable:
                entry, stored = f"{cache}/{digest}", True
                text += (f"head -c {len(encoded)} | {{ {decode} | tee {entry}.part >> {target}; cat > /dev/null; }}; "
                         f"mv -f {entry}.part {entry} 2>/dev/null\n{encoded}")
            else:
                text += f"head -c {len(encoded)} | {{ {decode} >> {target}; cat > /dev/null; }}\n{encoded}"
        # A damaged or tampered entry: start the cache afresh, and no input file rather than a wrong one.
        text += (f'[ "$(sha256sum < {target} | cut -c1-64)" = {hashlib.sha256(data).hexdigest()} ] || '
                 f"rm -f {cache}/* {target}\n")
        if stored:  # keep the newest entries only
            text += f"(cd {cache} && ls -t | tail -n +{CACHE_ENTRIES + 1} | xargs rm -f)\n"
        return text

    def _cached(self, cache: str, digests: list[str]) -> set[str]:
        """Which of `digests` the board's cache holds intact (none, should its answer not come)."""
        token = secrets.token_hex(6)
        self.send(f"(mkdir -p -m 700 {cache} 2>/dev/null; b=; for h in {' '.join(digests)}; do "
                  f"if [ \"$(sha256sum < {cache}/$h 2>/dev/null | cut -c1-64)\" = $h ]; then b=${{b}}1; else b=${{b}}0; fi; "
                  f"done; printf 'JL''C:{token}:%s\\n' \"$b\" \"$b\")\n")  # twice: console noise may cut one
        try:
            _name, match = self.expect({"cache": rb"^JLC:" + token.encode() + rb":([01]*)\n"}, 15, "the board's cache")
        except ConsoleTimeout:
            return set()
        bits = match.group(1).decode()
        return {digest for digest, bit in zip(digests, bits) if bit == "1"} if len(bits) == len(digests) else set()

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
            self.log(f"command {token} arrived damaged on the board; sending it again")
        else:
            raise ConsoleError(f"{_brief(command)} arrived damaged on the board {DELIVERIES} times: the console is "
                               "losing or changing bytes on the way in")
        prompt = on_prompt
        for attempt in range(EMITS):
            if attempt:
                self.send(self._emit(token, attempt) + "\n")
            try:
                start = self._start(token, attempt, command, deadline, prompt)
                prompt = None  # answered, or it had its chance: the command has ended
                result = self._collect(token, attempt, start, command, deadline)
                break
            except _Corrupt as e:
                prompt = None
                self.log(f"output of {token} arrived damaged ({e}); emitting it again")
        else:
            raise ConsoleError(f"the output of {_brief(command)} kept arriving damaged on the console "
                               f"({EMITS} attempts): the console is losing or changing bytes")
        self.send(f"rm -f {self._files(token)}.*\n")
        return result

    def _deliver(self, token: str, command: str, stdin: bytes | None, deadline: float) -> bool:
        """Send the command and its input; True once the board has them intact and runs them,
        False when the board found them damaged (and removed them)."""
        files = self._files(token)
        script = self._transfer(command.encode(), f"{files}.cmd")
        if stdin:
            script += self._transfer(stdin, f"{files}.in")
        digest = hashlib.sha256(command.encode() + (stdin or b"")).hexdigest()
        inputs = f"{files}.cmd {files}.in" if stdin else f"{files}.cmd"
        script += (f'if [ "$(cat {inputs} 2>/dev/null | sha256sum | cut -c1-64)" = {digest} ]; then '
                   f"{_twice('JLA:' + token)}; "
                   f"/bin/sh {files}.cmd < {files + '.in' if stdin else '/dev/null'} > {files}.out 2> {files}.err; "
                   f"echo $? > {files}.rc; {self._emit(token, 0)}; "
                   f"else rm -f {files}.*; {_twice('JLN:' + token)}; fi\n")
        self.log(f"running command (token {token})")
        self.send(script)
        # The whole text must cross the line before the board can answer; allow for a slow one. No
        # word means `head` still waits for bytes that were lost (the next attach interrupts it).
        wait = min(deadline, time.monotonic() + ACK_BASE + len(script) / ACK_RATE) - time.monotonic()
        what = (f"the board to confirm it received {_brief(command)} ({len(script)} bytes sent; "
                "were some lost on the way?)")
        tag = re.escape(f"{token}.0".encode())
        try:
            name, _match = self._wait({"ack": rb"^JLA:" + token.encode() + rb"$",
                                       "nack": rb"^JLN:" + token.encode() + rb"$",
                                       # the command's output, should both acknowledgements have been cut: left in place
                                       "output": rb"^(?=JLS:" + tag + rb":|[OE]" + tag + rb":|JLE:" + tag + rb"$)"},
                                      wait, what, command)
        except ConsoleTimeout:
            self.ready = False  # the shell's state is unknown: nothing to give back
            raise
        return name != "nack"

    def _start(self, token: str, attempt: int, command: str, deadline: float,
               on_prompt: tuple[bytes, bytes] | None) -> re.Match:
        """Wait for the first line of an emit: rc, sizes and sums. The first emit follows the command,
        which may run long and print nothing; a repeated one comes at once, or is lost."""
        tag = re.escape(f"{token}.{attempt}".encode())
        patterns = {"start": rb"^JLS:" + tag + rb":(-?\d+):(\d+):(\d+):([0-9a-f]{64}):([0-9a-f]{64})$",
                    # the emit's later lines without its first: that line was lost
                    "later": rb"^(?:[OE]" + tag + rb":|JLE:" + tag + rb"$)"}
        if on_prompt:
            patterns["prompt"] = on_prompt[0]
        what = f"{_brief(command)} to finish"
        while True:
            try:
                name, match = self._wait(patterns, deadline - time.monotonic(), what, command,
                                         idle=EMIT_QUIET if attempt else None)
            except ConsoleQuiet as e:
                raise _Corrupt(str(e)) from None
            if name == "start":
                return match
            if name == "later":
                raise _Corrupt("its first line was lost")
            self.send(on_prompt[1] + b"\n")
            patterns.pop("prompt")

    def _collect(self, token: str, attempt: int, start: re.Match, command: str, deadline: float) -> Result:
        rc, out_size, err_size, out_sum, err_sum = start.groups()
        tag = f"{token}.{attempt}".encode()
        try:
            _name, end = self._wait({"end": rb"^JLE:" + re.escape(tag) + rb"$"}, deadline - time.monotonic(),
                                    f"the output of {_brief(command)}", command, idle=EMIT_QUIET)
        except ConsoleQuiet as e:
            raise _Corrupt(str(e)) from None
        body = KERNEL_MESSAGE.sub(b"", end.string[:end.start()])
        out = _decode_lines(body, b"O" + tag + b":")
        err = _decode_lines(body, b"E" + tag + b":")
        for name, data, size, digest in (("stdout", out, out_size, out_sum), ("stderr", err, err_size, err_sum)):
            if len(data) != int(size) or hashlib.sha256(data).hexdigest().encode() != digest:
                raise _Corrupt(f"{name} checksum mismatch")
        return Result(int(rc), out, err)

    def _emit(self, token: str, attempt: int) -> str:
        """Shell text printing a command's result: a line with rc, sizes and sha256 sums, the output as
        base64 lines, an end line. Each marker line goes out twice (console noise may cut one) and
        carries the attempt, so what arrives late from an earlier attempt never counts."""
        files, tag = self._files(token), f"{token}.{attempt}"
        start = (f"printf 'JLS:{tag}:%s:%s:%s:%s:%s\\n' \"$(cat {files}.rc)\" \"$(wc -c < {files}.out)\" "
                 f"\"$(wc -c < {files}.err)\" \"$(sha256sum < {files}.out | cut -c1-64)\" "
                 f"\"$(sha256sum < {files}.err | cut -c1-64)\"")
        return (f"__jl_s=$({start}); printf '%s\\n%s\\n' \"$__jl_s\" \"$__jl_s\"; "
                f"base64 < {files}.out | sed 's/^/O{tag}:/'; base64 < {files}.err | sed 's/^/E{tag}:/'; "
                f"{_twice('JLE:' + tag)}")

    def _wait(self, patterns: dict[str, bytes], timeout: float, what: str, command: str,
              idle: float | None = None) -> tuple[str, re.Match]:
        """expect(), failing at once when the console shows that the board restarted."""
        restarted = {"rebooted": REBOOTED, "login": self.prompts.login}
        name, match = self.expect(patterns | restarted, max(0.1, timeout), what, idle=idle)
        if name in restarted:
            self.ready = False  # the shell is gone: nothing to give back
            if name == "login":
                raise ConsoleError(f"the console shows a login prompt while running {_brief(command)}: the board "
                                   "restarted or the shell ended")
            shown = match.group(0).decode(errors="replace").strip()
            raise ConsoleError(f"the board restarted while running {_brief(command)}: its console shows {shown!r}")
        return name, match

    # --- files -----------------------------------------------------------------------------

    def put(self, data: bytes, path: str, *, timeout: float = 600) -> None:
        """Write `data` to `path` on the board: chunks streamed into a temp file, checksum, then mv.

        The chunks go out back to back, at most WINDOW ahead of the board's acknowledgements (each
        says how large the temp file has grown): the line never waits a round trip per chunk, a
        size that does not add up stops the transfer, and a board that stops taking data fails
        within `timeout`. The sha256 of the whole file is checked on the board before the mv.
        """
        token = secrets.token_hex(8)
        part = f"{self._files(token)}.put"
        digest = hashlib.sha256(data).hexdigest()
        starts = range(0, max(len(data), 1), CHUNK)
        # Up to the newline: a slow console delivers "...:0:2" before "02\n", and `$` would take the 2.
        ack = rb"^JLP:" + token.encode() + rb":(\d+):[ \t]*(-?\d+)[ \t]*\n"
        acked = -1

        def wait_for(index: int) -> None:
            nonlocal acked
            while acked < index:  # a later acknowledgement stands for an earlier one cut by console noise
                _name, match = self.expect({"ack": ack}, timeout, f"the board to take chunk {acked + 1} of {path}")
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
                encoded, decode = _encode(data[start:start + CHUNK])
                self.send(f"head -c {len(encoded)} | {{ {decode} {'>' if index == 0 else '>>'} {part}; cat > /dev/null; }}; "
                          f"printf 'JL''P:{token}:{index}:%s\\n' \"$(wc -c 2>/dev/null < {part} || echo -1)\"\n{encoded}")
            # The last chunks may still be crossing a slow line: the check below starts its own
            # deadline when it is sent, so let them land first (a lost acknowledgement: the check decides).
            with contextlib.suppress(ConsoleTimeout):
                wait_for(len(starts) - 1)
        except _Short as e:
            self.run(f"rm -f {part}", timeout=timeout)
            raise ConsoleError(f"writing {path} on the board failed: {e}") from None
        result = self.run(f'test "$(sha256sum < {part} | cut -c1-64)" = {digest} && mv -f {part} {_quote(path)}',
                          timeout=timeout)
        if result.rc != 0:
            self.run(f"rm -f {part}", timeout=timeout)
            detail = result.stderr.decode(errors="replace").strip() or "checksum mismatch after transfer"
            raise ConsoleError(f"writing {path} on the board failed: {detail}")

    def fetch(self, path: str, *, timeout: float = 600) -> bytes:
        """Read `path` on the board: its size and sha256, then its chunks printed by one shell loop,
        each as one line of base64 with its own sha256. A chunk damaged on the way (a kernel message
        cut into its line) is read again, alone, in smaller pieces; the whole is checked at the end."""
        quoted = _quote(path)
        result = self.run(f"cat {quoted} > /dev/null && wc -c < {quoted} && sha256sum < {quoted} | cut -c1-64",
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
                self.log(f"{len(wanted)} pieces of {path} arrived damaged; reading them again in {block}-byte pieces")
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
                f"printf 'F{token}:%s:%s:%s\\n' $i \"$h\" \"$d\"")
        if indices[-1] - indices[0] == len(indices) - 1:
            loop = f"i={indices[0]}; while [ $i -le {indices[-1]} ]; do {body}; i=$((i + 1)); done"
        else:
            loop = f"for i in {' '.join(map(str, indices))}; do {body}; done"
        script = f"{self._files(token)}.sh"
        text = f"rm -f {script}\n{loop}\nprintf '%s\\n' {split_word('JLF:' + token)}\n"  # sh keeps it open
        self.send(self._transfer(text.encode(), script) + f"/bin/sh {script}\n")
        line_rx = re.compile(rb"F" + token.encode() + rb":(\d+):([0-9a-f]{64}):([A-Za-z0-9+/=]*)$")
        end = b"JLF:" + token.encode()
        deadline = time.monotonic() + timeout
        scan = 0
        while True:
            newline = self.buffer.find(b"\n", scan)
            if newline < 0:
                scan = len(self.buffer)
                self._fill(deadline, f"{quoted} from the board")
                continue
            line, self.buffer, scan = self.buffer[:newline], self.buffer[newline + 1:], 0
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


class _Corrupt(ConsoleError):
    pass


class _Short(ConsoleError):
    """A put's temp file on the board is not as long as what was sent."""


def _segments(data: bytes) -> list[tuple[bytes, bool]]:
    """`data` cut into (piece, cacheable): lines of a length worth caching alone, what lies between together."""
    segments: list[tuple[bytes, bool]] = []
    start = position = 0
    cacheable = 0
    while len(data) >= CACHED_LINE[0] and position < len(data):
        end = data.find(b"\n", position) + 1 or len(data)
        if CACHED_LINE[0] <= end - position <= CACHED_LINE[1] and cacheable < CACHED_PER_INPUT:
            cacheable += 1
            if position > start:
                segments.append((data[start:position], False))
            segments.append((data[position:end], True))
            start = end
        position = end
    if start < len(data) or not segments:
        segments.append((data[start:], False))
    return segments


try:  # Ansible's home (ANSIBLE_HOME, ansible.cfg [defaults] home)
    from ansible import constants as _ansible_constants
    _ANSIBLE_HOME = _ansible_constants.ANSIBLE_HOME
except ImportError:  # used without Ansible (the benchmark)
    _ANSIBLE_HOME = os.environ.get("ANSIBLE_HOME", "~/.ansible")

# The controller's copy of the lines it sent to boards: the bases that later versions are sent against.
SENT_LINES = os.path.join(os.path.expanduser(_ANSIBLE_HOME), "jumpstarter-lines")
PATCH_BLOCK = 64  # bytes compared at a time; a differing block crosses whole


def _remember(segment: bytes, digest: str) -> None:
    """Keep `segment` (a cacheable line sent to a board) as a base for its next version."""
    try:
        os.makedirs(SENT_LINES, mode=0o700, exist_ok=True)
        path = os.path.join(SENT_LINES, digest)
        if not os.path.exists(path):
            with open(path + ".part", "wb") as f:
                f.write(segment)
            os.replace(path + ".part", path)
        os.utime(path)
        entries = sorted(os.scandir(SENT_LINES), key=lambda e: e.stat().st_mtime, reverse=True)
        for old in entries[CACHE_ENTRIES:]:
            os.unlink(old.path)
    except OSError:
        pass  # a cache only: without it, lines cross whole


def _similar(segment: bytes, digest: str) -> tuple[str, list[tuple[int, bytes]]] | None:
    """(digest of a remembered line of the same length, the blocks where `segment` differs from it),
    for the remembered line that needs the fewest; None when none differs in under a quarter, or
    when `segment` itself (its sha256 `digest`) was sent before: the board has it or needs it whole."""
    if os.path.exists(os.path.join(SENT_LINES, digest)):
        return None
    best = None
    try:
        entries = [e for e in os.scandir(SENT_LINES) if e.is_file() and e.stat().st_size == len(segment)]
    except OSError:
        return None
    for entry in entries:
        try:
            with open(entry.path, "rb") as f:
                base = f.read()
        except OSError:
            continue
        patches: list[tuple[int, bytes]] = []
        for offset in range(0, len(segment), PATCH_BLOCK):
            block = segment[offset:offset + PATCH_BLOCK]
            if block != base[offset:offset + PATCH_BLOCK]:
                if patches and patches[-1][0] + len(patches[-1][1]) == offset and len(patches[-1][1]) < 2048:
                    patches[-1] = (patches[-1][0], patches[-1][1] + block)
                else:
                    patches.append((offset, block))
        size = sum(len(block) for _offset, block in patches)
        if size < len(segment) // 4 and (best is None or size < best[0]):
            best = (size, entry.name, patches)
    return (best[1], best[2]) if best else None


def _patch(base: str, entry: str, patches: list[tuple[int, bytes]]) -> str:
    """Shell text making `entry` from `base` with the differing blocks (offset, base64 per line).
    The file put together is checked against the input's sha256 as a whole, as any cached line is."""
    lines = "".join(f"{offset} {base64.b64encode(block).decode()}\n" for offset, block in patches)
    return (f"cp {base} {entry}.part && while read -r o d; do printf '%s' \"$d\" | base64 -d | "
            f"dd of={entry}.part bs=1 seek=$o conv=notrunc 2>/dev/null; done <<'JLP'\n{lines}JLP\n"
            f"mv -f {entry}.part {entry} 2>/dev/null\n")


def _encode(data: bytes) -> tuple[str, str]:
    """`data` as base64 in lines the tty takes whole (gzip-compressed when that pays), and the shell
    command that decodes it."""
    packed = gzip.compress(data, 6, mtime=0)
    compressed = len(packed) < len(data) * 0.9
    text = base64.b64encode(packed if compressed else data).decode()
    lines = "".join(text[i:i + LINE] + "\n" for i in range(0, len(text), LINE))
    return lines, "base64 -d | gunzip -c" if compressed else "base64 -d"


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


def _twice(word: str) -> str:
    """Shell text printing `word` on two lines (console noise may cut one), never matching its own echo."""
    return f"printf '%s\\n%s\\n' {split_word(word)} {split_word(word)}"


def _brief(command: str) -> str:
    """A command as an error message names it: on one line, long ones cut."""
    text = " ".join(command.split())
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"
