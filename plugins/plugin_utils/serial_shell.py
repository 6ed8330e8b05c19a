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
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
import secrets
import time
from dataclasses import dataclass

ANSI = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
CHUNK = 48 * 1024  # bytes of a file sent per heredoc command


class ConsoleError(Exception):
    """The console did not do what was expected; the message says what and where."""


class ConsoleTimeout(ConsoleError):
    pass


def clean(data: bytes) -> bytes:
    """Console bytes without terminal escapes and carriage returns."""
    return ANSI.sub(b"", data).replace(b"\r", b"")


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

    def expect(self, patterns: dict[str, bytes], timeout: float, what: str) -> tuple[str, re.Match]:
        """Wait for the first of several patterns in the cleaned console output; consume through it."""
        compiled = {name: re.compile(p, re.MULTILINE) for name, p in patterns.items()}
        deadline = time.monotonic() + timeout
        scanned = 0
        while True:
            hits = [(m.start(), name, m) for name, rx in compiled.items() if (m := rx.search(self.buffer, scanned))]
            if hits:
                _position, name, match = min(hits, key=lambda h: h[0])
                self.buffer = self.buffer[match.end():]
                return name, match
            scanned = max(0, len(self.buffer) - 512)  # patterns are short: only new text needs a look
            self._fill(deadline, what)

    def send(self, text: str | bytes) -> None:
        self.channel.send(text.encode() if isinstance(text, str) else text)

    # --- attaching -------------------------------------------------------------------

    def attach(self, user: str | None, password: str | None, timeout: float) -> None:
        """Reach a machine-friendly shell, logging in when the console asks for it.

        The fast path assumes a shell: interrupt whatever runs and send the set-up line at
        once. At a login prompt that line is taken as a user name and refused; the login
        prompt that follows is answered properly.
        """
        deadline = time.monotonic() + timeout
        ready_word = "JL" + secrets.token_hex(6)
        ready = re.escape(ready_word.encode()) + rb"\n"
        self.send("\x03" + self._setup_line(ready_word))
        refusals = 0
        while True:
            choices = {"login": self.prompts.login, "password": self.prompts.password, "ready": ready,
                       "bad": rb"[Ll]ogin incorrect|[Aa]uthentication failure"}
            name, _match = self.expect(choices, max(0.1, deadline - time.monotonic()), "a login prompt or a shell")
            if name == "ready":
                self.ready = True
                self.log("console shell ready")
                return
            if name == "bad":
                refusals += 1
                if refusals > 2:
                    raise ConsoleError(f"login as {user} was refused on the console")
            elif name == "login":
                if not user:
                    raise ConsoleError("the console asks for a login but no user was given (ansible_user)")
                self.log(f"logging in as {user}")
                self.send(user + "\n")
            elif name == "password":
                if password is None:
                    raise ConsoleError("the console asks for a password but none was given (ansible_password)")
                self.send(password + "\n")
                outcomes = {"bad": rb"[Ll]ogin incorrect|[Aa]uthentication failure", "login": self.prompts.login,
                            "shell": self.prompts.shell}
                after, _match = self.expect(outcomes, max(0.1, deadline - time.monotonic()), "the shell after logging in")
                if after == "shell":
                    self.send(self._setup_line(ready_word))
                elif after == "login":
                    self.buffer = b"login: " + self.buffer  # answer it on the next turn
                else:
                    refusals += 1
                    if refusals > 2:
                        raise ConsoleError(f"login as {user} was refused on the console")

    def _setup_line(self, ready_word: str) -> str:
        return ("set +o emacs +o vi +o history 2>/dev/null; stty -echo -onlcr 2>/dev/null; "
                "__jl_ps1=${__jl_ps1-$PS1}; PS1=''; PS2=''; unset PROMPT_COMMAND; export TERM=dumb; "
                f"printf '%s\\n' {split_word(ready_word)}\n")

    def detach(self) -> None:
        """Give the console back to people: prompt and echo as before."""
        if self.ready:
            self.send("stty echo onlcr 2>/dev/null; set -o emacs 2>/dev/null; PS1=${__jl_ps1-'$ '}; "
                      "unset __jl_ps1\r")
            self.ready = False

    # --- commands ------------------------------------------------------------------------

    def _files(self, token: str) -> str:
        return f"{self.tmpdir}/.jl-{token}"

    @staticmethod
    def _transfer(data: bytes, target: str) -> str:
        """Shell text that writes `data` to `target`: `head` reads exactly the base64 that follows
        the line, so the shell never parses it (gzip-compressed on the wire when that pays)."""
        packed = gzip.compress(data, 6, mtime=0)
        compressed = len(packed) < len(data) * 0.9
        encoded = base64.encodebytes(packed if compressed else data).decode()
        decode = "base64 -d | gunzip -c" if compressed else "base64 -d"
        return f"head -c {len(encoded)} | {decode} > {target}\n{encoded}"

    def run(self, command: str, stdin: bytes | None = None, *, timeout: float = 600,
            on_prompt: tuple[bytes, bytes] | None = None) -> Result:
        """Run `command` with /bin/sh; return rc, stdout and stderr exactly.

        The command travels as a file (no quoting, no tty line-length limit). on_prompt =
        (pattern, reply): when pattern shows on the console while the command runs (a become
        password prompt on /dev/tty), reply once.
        """
        token = secrets.token_hex(8)
        files = self._files(token)
        script = self._transfer(command.encode(), f"{files}.cmd")
        if stdin:
            script += self._transfer(stdin, f"{files}.in")
        script += (f"/bin/sh {files}.cmd < {files + '.in' if stdin else '/dev/null'} > {files}.out 2> {files}.err; "
                   f"echo $? > {files}.rc; {self._emit(token)}\n")
        self.log(f"running command (token {token})")
        self.send(script)
        deadline = time.monotonic() + timeout
        patterns = {"start": self._start_pattern(token)}
        if on_prompt:
            patterns["prompt"] = on_prompt[0]
        for attempt in range(3):
            name, start = self.expect(patterns, max(0.1, deadline - time.monotonic()), f"command {token} to finish")
            if name == "prompt":
                self.send(on_prompt[1] + b"\n")
                patterns.pop("prompt")
                name, start = self.expect(patterns, max(0.1, deadline - time.monotonic()),
                                          f"command {token} to finish")
            try:
                result = self._collect(token, start, max(0.1, deadline - time.monotonic()))
                break
            except _Corrupt as e:
                self.log(f"output of {token} arrived damaged ({e}); emitting it again")
                self.send(self._emit(token) + "\n")
        else:
            raise ConsoleError(f"output of the command kept arriving damaged on the console (token {token})")
        self.send(f"rm -f {files}.*\n")
        return result

    def _emit(self, token: str) -> str:
        files = self._files(token)
        return (f"printf 'JLS:{token}:%s:%s:%s:%s:%s\\n' \"$(cat {files}.rc)\" \"$(wc -c < {files}.out)\" "
                f"\"$(wc -c < {files}.err)\" \"$(sha256sum < {files}.out | cut -c1-64)\" "
                f"\"$(sha256sum < {files}.err | cut -c1-64)\"; "
                f"base64 < {files}.out | sed 's/^/O{token}:/'; base64 < {files}.err | sed 's/^/E{token}:/'; "
                f"printf '%s\\n' {split_word('JLE:' + token)}")

    @staticmethod
    def _start_pattern(token: str) -> bytes:
        return rb"^JLS:" + token.encode() + rb":(-?\d+):(\d+):(\d+):([0-9a-f]{64}):([0-9a-f]{64})$"

    def _collect(self, token: str, start: re.Match, timeout: float) -> Result:
        rc, out_size, err_size, out_sum, err_sum = start.groups()
        _name, end = self.expect({"end": rb"^JLE:" + token.encode() + rb"$"}, timeout, f"output of command {token}")
        body = end.string[:end.start()]
        out = _decode_lines(body, b"O" + token.encode() + b":")
        err = _decode_lines(body, b"E" + token.encode() + b":")
        for name, data, size, digest in (("stdout", out, out_size, out_sum), ("stderr", err, err_size, err_sum)):
            if len(data) != int(size) or hashlib.sha256(data).hexdigest().encode() != digest:
                raise _Corrupt(f"{name} checksum mismatch")
        return Result(int(rc), out, err)

    # --- files -----------------------------------------------------------------------------

    def put(self, data: bytes, path: str, *, timeout: float = 600) -> None:
        """Write `data` to `path` on the board: chunks into a temp file, checksum, then mv."""
        token = secrets.token_hex(8)
        part = f"{self._files(token)}.put"
        digest = hashlib.sha256(data).hexdigest()
        result = self.run(f": > {part}", timeout=timeout)
        for offset in range(0, max(len(data), 1), CHUNK):
            chunk = data[offset:offset + CHUNK]
            if not chunk:
                break
            result = self.run(f"cat >> {part}", stdin=chunk, timeout=timeout)
            if result.rc != 0:
                break
        if result.rc == 0:
            result = self.run(f'test "$(sha256sum < {part} | cut -c1-64)" = {digest} && mv -f {part} {_quote(path)}',
                              timeout=timeout)
        if result.rc != 0:
            self.run(f"rm -f {part}", timeout=timeout)
            raise ConsoleError(f"writing {path} on the board failed: {result.stderr.decode(errors='replace').strip()}"
                               or "checksum mismatch after transfer")

    def fetch(self, path: str, *, timeout: float = 600) -> bytes:
        result = self.run(f"cat {_quote(path)}", timeout=timeout)
        if result.rc != 0:
            raise ConsoleError(f"reading {path} on the board failed: {result.stderr.decode(errors='replace').strip()}")
        return result.stdout


class _Corrupt(ConsoleError):
    pass


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


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"
