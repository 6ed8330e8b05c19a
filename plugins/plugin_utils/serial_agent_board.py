# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""The serial agent's board side: one python3 process kept on a board's console for a whole play.

Not imported by the controller: serial_agent sends this file's text to the board, where it runs as
`python3 FILE TOKEN LINGER CACHE` from the console's shell (it removes FILE at once). Python 3.6 and
the standard library only, as a board may have little else.

It takes the console raw (no echo, no line editing, no signals) and reads requests: a line
`#JLQ token size sha256`, `size` characters of base64 in lines, a line `#JLZ`. A request whose sha256
does not match is answered JLN (the controller sends it again); one cut short is dropped when the next
`#` shows. A valid one is answered JLA (arrived), then run, then its reply goes out as JLR (count,
size, sha256; twice), numbered base64 lines each with a crc32, JLE (twice). The controller asks again
for the lines it lost. Ctrl-C or Ctrl-D on the console, or LINGER seconds without a request, end the
agent; the shell that started it then restores the terminal and the prompt.
"""

import base64
import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tty
import zlib

LINE = 2048  # base64 characters per reply line: a kernel message cut into one costs this much again
KEEP = 4  # replies kept for the controller to ask again for lost lines
CACHE_ENTRIES = 32  # the newest entries of the board's cache of long input lines (serial_cache) kept


def write(data):
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]


def twice(line):
    return line + b"\n" + line + b"\n"


def reply_lines(token, payload, wanted=None):
    """The reply `payload` as console lines; with `wanted`, only those of its numbered lines."""
    packed = zlib.compress(payload, 6)
    flag = b"z" if len(packed) < len(payload) * 0.9 else b"r"
    text = base64.b64encode(packed if flag == b"z" else payload)
    lines = [text[i:i + LINE] for i in range(0, len(text), LINE)] or [b""]
    head = b"JLR:%s:%s:%d:%d:%s" % (token, flag, len(lines), len(payload), hashlib.sha256(payload).hexdigest().encode())
    out = [twice(head)]
    for index, line in enumerate(lines):
        if wanted is None or index in wanted:
            out.append(b"R%s:%d:%08x:%s\n" % (token, index, zlib.crc32(line) & 0xFFFFFFFF, line))
    out.append(twice(b"JLE:" + token))
    return b"".join(out)


class Interrupted(Exception):
    """Ctrl-C or Ctrl-D on the console while a command ran."""


class Agent:
    def __init__(self, cache):
        self.cache = cache
        self.replies = {}  # token: payload, the newest KEEP
        self.pending = b""  # what the console said while a command ran, for the main loop

    def answer(self, token, payload):
        self.replies[token] = payload
        while len(self.replies) > KEEP:
            del self.replies[next(iter(self.replies))]
        write(reply_lines(token, payload))

    def handle(self, token, request):
        head, _newline, body = request.partition(b"\n")
        op = json.loads(head.decode())
        if op["op"] == "again":
            old = self.replies.get(op["token"].encode())
            if old is None:
                return self.answer(token, json.dumps({"error": "reply forgotten"}).encode() + b"\n")
            return write(reply_lines(op["token"].encode(), old, set(op["lines"]) if op["lines"] else None))
        try:
            data, missing = self.assemble(op.get("in", []), body)
            if missing:
                return self.answer(token, json.dumps({"missing": missing}).encode() + b"\n")
            if op["op"] == "run":
                return self.answer(token, self.run(op["cmd"], data))
            if op["op"] == "put":
                return self.answer(token, self.put(op, data))
            if op["op"] == "fetch":
                return self.answer(token, self.fetch(op))
            return self.answer(token, json.dumps({"pid": os.getpid()}).encode() + b"\n")  # ping
        except Interrupted:
            raise
        except Exception as e:  # pylint: disable=broad-except  # the agent must outlive any request
            return self.answer(token, json.dumps({"error": str(e) or type(e).__name__}).encode() + b"\n")

    def assemble(self, parts, body):
        """The input of a request from its parts: bytes sent (d), an entry of the board's cache (c), or an
        entry made from another by patching blocks (p); new cacheable lines are kept in the cache."""
        data, missing, position, stored = [], [], 0, False
        for part in parts:
            if part[0] == "d":
                piece = body[position:position + part[1]]
                position += part[1]
                if len(part) > 2:  # cacheable: keep it for the next request
                    self.store(part[2], piece)
                    stored = True
            elif part[0] == "c":
                piece = self.entry(part[1])
            else:  # ["p", base, digest, [[offset, length], ...]]
                base = self.entry(part[1])
                piece = None
                if base is not None:
                    piece = bytearray(base)
                    for offset, length in part[3]:
                        piece[offset:offset + length] = body[position:position + length]
                        position += length
                    piece = bytes(piece)
                    if hashlib.sha256(piece).hexdigest() != part[2]:
                        piece = None
                    else:
                        self.store(part[2], piece)
                        stored = True
                else:
                    position += sum(length for _offset, length in part[3])
            if piece is None:
                missing.append(part[2] if part[0] == "p" else part[1])
            else:
                data.append(piece)
        if stored:
            self.trim()
        return b"".join(data), missing

    def entry(self, digest):
        try:
            with open(os.path.join(self.cache, digest), "rb") as f:
                piece = f.read()
        except OSError:
            return None
        return piece if hashlib.sha256(piece).hexdigest() == digest else None

    def store(self, digest, piece):
        try:
            os.makedirs(self.cache, mode=0o700, exist_ok=True)
            handle, part = tempfile.mkstemp(dir=self.cache, suffix=".part")
            with os.fdopen(handle, "wb") as f:
                f.write(piece)
            os.replace(part, os.path.join(self.cache, digest))
        except OSError:
            pass  # a cache only

    def trim(self):
        try:
            entries = sorted(os.scandir(self.cache), key=lambda e: e.stat().st_mtime, reverse=True)
            for old in entries[CACHE_ENTRIES:]:
                os.unlink(old.path)
        except OSError:
            pass

    def run(self, command, stdin):
        """/bin/sh -c command, as Ansible's ssh connection runs it (the console stays its controlling terminal), in
        a process group of its own. The console is read meanwhile: Ctrl-C or Ctrl-D there (a person, or the next
        connection after this one gave up) ends the command's group and the agent, as a shell would; anything
        else is kept for the main loop."""
        started = time.monotonic()
        process = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, preexec_fn=os.setpgrp)
        outputs = []
        finished, finish = os.pipe()  # the worker's word that the command ended: no polling delay after it

        def communicate():
            try:
                outputs.extend(process.communicate(stdin))
            finally:
                os.write(finish, b".")

        worker = threading.Thread(target=communicate)
        worker.start()
        while worker.is_alive():
            if 0 in select.select([0, finished], [], [])[0]:
                data = os.read(0, 65536)
                if not data or b"\x03" in data or b"\x04" in data:
                    for signal_number in (signal.SIGINT, signal.SIGKILL):
                        try:
                            os.killpg(process.pid, signal_number)
                        except OSError:
                            break
                        worker.join(2)
                        if not worker.is_alive():
                            break
                    raise Interrupted()
                self.pending += data
        worker.join()
        os.close(finished)
        os.close(finish)
        out, err = outputs
        took = round(time.monotonic() - started, 3)  # for the controller's log: the command's own time
        return json.dumps({"rc": process.returncode, "out": len(out), "took": took}).encode() + b"\n" + out + err

    @staticmethod
    def put(op, data):
        """A piece of a file at its offset in a temp file beside `path` (made at offset 0, with the mode the umask
        gives a new file); with the last piece, the whole is checked against its sha256 and renamed to `path`."""
        path, part = op["path"], os.path.join(os.path.dirname(op["path"]) or ".", ".jl-put-" + op["part"])
        try:
            if op["at"] == 0:
                umask = os.umask(0)
                os.umask(umask)
                handle = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 & ~umask)
            else:
                handle = os.open(part, os.O_WRONLY)
            with os.fdopen(handle, "wb") as f:
                f.seek(op["at"])
                f.write(data)
                f.truncate()
            if op["last"]:
                digest = hashlib.sha256()
                with open(part, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
                if digest.hexdigest() != op["sha"]:
                    raise ValueError("checksum mismatch after transfer")
                os.replace(part, path)
        except BaseException:
            try:
                os.unlink(part)
            except OSError:
                pass
            raise
        return json.dumps({"size": op["at"] + len(data)}).encode() + b"\n"

    @staticmethod
    def fetch(op):
        """`size` bytes of `path` from `at`, with the file's size (and with the first piece, its sha256)."""
        with open(op["path"], "rb") as f:
            answer = {"size": os.fstat(f.fileno()).st_size}
            if op["at"] == 0:
                digest = hashlib.sha256()
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
                answer["sha"] = digest.hexdigest()
            f.seek(op["at"])
            data = f.read(op["size"])
        return json.dumps(answer).encode() + b"\n" + data


def requests(buffer):
    """(token, request or None when it arrived damaged) for each whole request in `buffer`, and the rest."""
    found = []
    while True:
        start = buffer.find(b"#JLQ ")
        if start < 0:
            return found, buffer[-4:]
        buffer = buffer[start:]
        newline = buffer.find(b"\n")
        following = buffer.find(b"#", 1)
        if newline < 0 or (0 <= following < newline):
            if following < 0:
                return found, buffer
            buffer = buffer[following:]  # a header cut short
            continue
        fields = buffer[5:newline].split()
        if following < 0 or len(buffer) < following + 4:  # the rest, or the whole of what follows '#', yet to come
            return found, buffer
        if not buffer.startswith(b"#JLZ", following):  # cut short: the next request has begun
            buffer = buffer[following:]
            continue
        end = buffer.find(b"\n", following)
        if end < 0:
            return found, buffer
        text = b"".join(buffer[newline + 1:following].split())
        buffer = buffer[end + 1:]
        if len(fields) != 4:
            continue
        token, flag, size, digest = fields
        try:
            payload = base64.b64decode(text, validate=True) if len(text) == int(size) else None
            if payload is not None and flag == b"z":
                payload = zlib.decompress(payload)
        except (ValueError, zlib.error):
            payload = None
        if payload is not None and hashlib.sha256(payload).hexdigest().encode() != digest:
            payload = None
        found.append((token, payload))


def main():
    token, linger, cache = sys.argv[1].encode(), float(sys.argv[2]), sys.argv[3]
    try:
        os.unlink(sys.argv[0])
    except OSError:
        pass
    tty.setraw(0)  # the shell that started this restores the terminal when it ends
    agent = Agent(cache)
    write(twice(b"JLG:%s:%d" % (token, os.getpid())))
    buffer, last = b"", time.monotonic()
    while True:
        if agent.pending:
            data, agent.pending = agent.pending, b""
        elif select.select([0], [], [], 1.0)[0]:
            data = os.read(0, 65536)
        else:
            if time.monotonic() - last > linger:
                return
            continue
        if not data or b"\x03" in data or b"\x04" in data:
            return
        if b"\x05" in data:  # a connection of a later task asks whether this agent still has the console
            write(twice(b"JLG:%s:%d" % (token, os.getpid())))
            last = time.monotonic()
        # a console may end lines with CR, as a terminal's Enter does (canonical mode made it a newline)
        found, buffer = requests(buffer + data.replace(b"\r", b"\n"))
        for request_token, request in found:
            last = time.monotonic()
            if request is None:
                write(twice(b"JLN:" + request_token))
                continue
            write(twice(b"JLA:" + request_token))
            try:
                agent.handle(request_token, request)
            except Interrupted:
                return
            last = time.monotonic()


if __name__ == "__main__":
    main()
