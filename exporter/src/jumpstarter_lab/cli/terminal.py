"""A person at a terminal on a driver's byte stream (a board's console): raw keys in, output out.

The escape byte (Ctrl-] by default, as telnet's) ends the session; so does the stream
ending. The terminal's settings are restored however it ends.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import threading
import tty

ESCAPE = b"\x1d"  # Ctrl-]


@contextlib.contextmanager
def _raw(fd: int):
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def attach(stream, stdin_fd: int | None = None, stdout_fd: int | None = None, escape: bytes = ESCAPE) -> str:
    """Bridge a BlockingStream and the terminal until the escape key or the stream's end; says which."""
    stdin_fd = sys.stdin.fileno() if stdin_fd is None else stdin_fd
    stdout_fd = sys.stdout.fileno() if stdout_fd is None else stdout_fd
    ended = threading.Event()

    def output() -> None:
        try:
            while chunk := stream.receive():
                os.write(stdout_fd, chunk)
        except (OSError, ConnectionError, EOFError):
            pass
        finally:
            ended.set()

    reader = threading.Thread(target=output, name="console-output", daemon=True)
    reader.start()
    with _raw(stdin_fd):
        os.write(stdout_fd, b"[connected; Ctrl-] to leave]\r\n")
        while not ended.is_set():
            ready, _w, _x = select.select([stdin_fd], [], [], 0.2)
            if not ready:
                continue
            data = os.read(stdin_fd, 1024)
            if not data:
                return "input closed"
            if escape in data:
                before = data.split(escape, 1)[0]
                if before:
                    stream.send(before)
                os.write(stdout_fd, b"\r\n[left the console]\r\n")
                return "escape"
            stream.send(data)
    return "stream ended"
