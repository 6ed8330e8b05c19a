"""What the sim board 'runs' when powered: boot from the image, log in, exec a shell.

Started by SimDut on the slave side of a pty as a new session leader; never
imported by the exporter itself.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import re
import sys
import termios
import time

MARKER = re.compile(rb"JUMPSTARTER_MARKER=(\S+)")


def say(text: str) -> None:
    sys.stdout.write(text.replace("\n", "\r\n"))
    sys.stdout.flush()


def read_line(echo: bool) -> str:
    fd = sys.stdin.fileno()
    attrs = termios.tcgetattr(fd)
    if not echo:
        quiet = list(attrs)
        quiet[3] &= ~termios.ECHO
        termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        line = sys.stdin.readline()
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
    if not line:
        raise SystemExit(0)
    return line.rstrip("\r\n")


def boot(image: str) -> str:
    say("\nSimBoard ROM 1.0\n")
    try:
        with open(image, "rb") as f:
            data = f.read()
    except OSError:
        data = b""
    if not data:
        say("no bootable image found in storage; halted\n")
        while True:
            time.sleep(3600)
    found = MARKER.search(data)
    marker = found.group(1).decode(errors="replace") if found else hashlib.sha256(data).hexdigest()[:12]
    say(f"Booting image {marker} ({len(data)} bytes)\n")
    return marker


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--image", required=True)
    parser.add_argument("--login", required=True)
    parser.add_argument("--hostname", required=True)
    parser.add_argument("--shell", required=True)
    args = parser.parse_args()
    password = os.environ.pop("SIM_PASSWORD", "")
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # the pty becomes this session's controlling terminal
    marker = boot(args.image)
    say(f"Welcome to SimBoard ({marker})\n")
    while True:
        say(f"\n{args.hostname} login: ")
        user = read_line(echo=True)
        say("Password: ")
        secret = read_line(echo=False)
        say("\n")
        if user == args.login and secret == password:
            break
        time.sleep(0.2)
        say("Login incorrect\n")
    home = os.environ.get("SIM_HOME", "/tmp")
    env = {"HOME": home, "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "vt100", "USER": user,
           "LOGNAME": user, "SHELL": args.shell, "SIM_MARKER": marker,
           "PS1": f"{user}@{args.hostname}:\\w\\$ "}
    os.chdir(home)
    os.execve(args.shell, [args.shell, "--noprofile", "--norc", "-i"], env)


if __name__ == "__main__":
    main()
