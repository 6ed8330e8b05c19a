"""What the sim board 'runs' when powered: boot from the image, then log in and run a shell, again and again.

Started by SimDut on the slave side of a pty as a new session leader; never
imported by the exporter itself.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import hashlib
import os
import re
import signal
import subprocess
import sys
import termios
import time

PR_SET_PDEATHSIG = 1
MARKER = re.compile(rb"JUMPSTARTER_MARKER=(\S+)")


def say(text: str) -> None:
    sys.stdout.write(text)  # the terminal's ONLCR turns \n into \r\n, as on a real console
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


def die_with_parent() -> None:
    """A board whose exporter died (even by SIGKILL) loses power too."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the exporter died before prctl took effect
        raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--image", required=True)
    parser.add_argument("--login", required=True)
    parser.add_argument("--hostname", required=True)
    parser.add_argument("--shell", required=True)
    args = parser.parse_args()
    password = os.environ.pop("SIM_PASSWORD", "")
    die_with_parent()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # the pty becomes this session's controlling terminal
    marker = boot(args.image)
    say(f"Welcome to SimBoard ({marker})\n")
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # to take the terminal back after each shell
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # like getty, Ctrl-C at the login prompt does nothing
    while True:  # like getty: a login prompt again after every shell exits
        user = login(args.login, password, args.hostname)
        run_shell(user, args, marker)
        os.tcsetpgrp(0, os.getpgrp())


def login(expected_user: str, password: str, hostname: str) -> str:
    while True:
        say(f"\n{hostname} login: ")
        user = read_line(echo=True)
        say("Password: ")
        secret = read_line(echo=False)
        say("\n")
        if user == expected_user and secret == password:
            return user
        time.sleep(0.2)
        say("Login incorrect\n")


def run_shell(user: str, args: argparse.Namespace, marker: str) -> None:
    home = os.environ.get("SIM_HOME", "/tmp")
    env = {"HOME": home, "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "vt100", "USER": user,
           "LOGNAME": user, "SHELL": args.shell, "SIM_MARKER": marker,
           "PS1": f"{user}@{args.hostname}:\\w\\$ "}
    subprocess.run([args.shell, "--noprofile", "--norc", "-i"], env=env, cwd=home, check=False,
                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


if __name__ == "__main__":
    main()
