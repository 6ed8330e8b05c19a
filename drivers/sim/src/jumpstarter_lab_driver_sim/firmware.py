"""What the sim board 'runs' when powered: boot from the image, then log in and run a shell, again and again.

Started by SimDut on the slave side of a pty as a new session leader; never
imported by the exporter itself. With a login other than root the board has accounts of
its own (see own_accounts) and runs the shell as that account.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import fcntl
import hashlib
import os
import re
import secrets
import signal
import subprocess
import sys
import termios
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

PR_SET_PDEATHSIG = 1
CLONE_NEWNS = 0x00020000
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 0x40000
SALT = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
MARKER = re.compile(rb"JUMPSTARTER_MARKER=(\S+)")


def say(text: str) -> None:
    sys.stdout.write(text)  # the terminal's ONLCR turns \n into \r\n, as on a real console
    sys.stdout.flush()


def read_line(echo: bool, prompt: str = "") -> str:
    """A line typed after `prompt`; without `echo`, echo is off before the prompt shows, as login does (what
    is typed the moment the prompt shows must not be echoed, nor end up in the console's log)."""
    fd = sys.stdin.fileno()
    attrs = termios.tcgetattr(fd)
    if not echo:
        quiet = list(attrs)
        quiet[3] &= ~termios.ECHO
        termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        say(prompt)
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
        halt("no bootable image found in storage")
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


@dataclass
class Account:
    name: str
    uid: int
    gid: int
    home: str


def crypt(password: str) -> str:
    """A SHA-512 crypt(3) hash, as /etc/shadow holds (through libcrypt: Python 3.13 has no crypt module)."""
    libcrypt = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
    libcrypt.crypt.restype = ctypes.c_char_p
    libcrypt.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    salt = "".join(secrets.choice(SALT) for _salt_char in range(16))
    hashed = libcrypt.crypt(password.encode(), f"$6${salt}".encode())
    if not hashed or not hashed.startswith(b"$6$"):
        raise OSError("libcrypt cannot hash a password")
    return hashed.decode()


def own_accounts(login: str, password: str, root_password: str | None, base: Path, shell: str) -> Account:
    """Give the board accounts of its own, as a real board has: the board's processes see their own
    /etc/passwd, /etc/group and /etc/shadow (bind mounts in a mount namespace of this process, gone with
    it), which hold the host's accounts without their passwords, `login` (the first uid and gid from 1000
    that the host does not use, its home in `base`) and root; only those two have passwords (root's is
    `root_password`; none: root is locked). The host's own files are never written."""
    libc = ctypes.CDLL(None, use_errno=True)
    for call, args in ((libc.unshare, (CLONE_NEWNS,)), (libc.mount, (b"none", b"/", None, MS_REC | MS_PRIVATE, None))):
        if call(*args) != 0:  # private: the bind mounts below must not reach the host
            error = ctypes.get_errno()
            raise OSError(error, f"{call.__name__}: {os.strerror(error)}")
    users = [line for line in Path("/etc/passwd").read_text().splitlines() if line and line.split(":")[0] != login]
    groups = [line for line in Path("/etc/group").read_text().splitlines() if line and line.split(":")[0] != login]
    uid = next(n for n in range(1000, 60000) if str(n) not in {line.split(":")[2] for line in users})
    gid = next(n for n in range(1000, 60000) if str(n) not in {line.split(":")[2] for line in groups})
    home = base / "home" / login
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, uid, gid)
    home.chmod(0o700)
    base.chmod(0o711)  # the account's home is inside: it may pass, not list
    etc = base / "etc"
    etc.mkdir(mode=0o700, exist_ok=True)
    today = int(time.time() // 86400)
    files = {
        "passwd": users + [f"{login}:x:{uid}:{gid}:{login}:{home}:{shell}"],
        "group": groups + [f"{login}:x:{gid}:"],
        "shadow": [f"root:{crypt(root_password) if root_password else '!'}:{today}:0:99999:7:::",
                   f"{login}:{crypt(password)}:{today}:0:99999:7:::"],
    }
    for name, lines in files.items():
        path = etc / name
        path.write_text("".join(f"{line}\n" for line in lines))
        path.chmod(0o600 if name == "shadow" else 0o644)
        if libc.mount(str(path).encode(), f"/etc/{name}".encode(), None, MS_BIND, None) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"mount /etc/{name}: {os.strerror(error)}")
    return Account(login, uid, gid, str(home))


def halt(reason: str) -> NoReturn:
    say(f"{reason}; halted\n")
    while True:
        time.sleep(3600)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--image", required=True)
    parser.add_argument("--login", required=True)
    parser.add_argument("--hostname", required=True)
    parser.add_argument("--shell", required=True)
    args = parser.parse_args()
    password = os.environ.pop("SIM_PASSWORD", "")
    root_password = os.environ.pop("SIM_ROOT_PASSWORD", None)
    die_with_parent()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # the pty becomes this session's controlling terminal
    marker = boot(args.image)
    home = os.environ.get("SIM_HOME", "/tmp")
    account = None  # root: the shell runs as the exporter's own user, with the host's accounts
    if args.login != "root":
        try:
            account = own_accounts(args.login, password, root_password, Path(home), args.shell)
        except OSError as e:
            halt(f"cannot give the board its accounts: {e}")
    say(f"Welcome to SimBoard ({marker})\n")
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # to take the terminal back after each shell
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # like getty, Ctrl-C at the login prompt does nothing
    while True:  # like getty: a login prompt again after every shell exits
        user = login(args.login, password, args.hostname)
        run_shell(user, args, marker, account or Account(user, os.getuid(), os.getgid(), home))
        os.tcsetpgrp(0, os.getpgrp())


def login(expected_user: str, password: str, hostname: str) -> str:
    while True:
        user = read_line(echo=True, prompt=f"\n{hostname} login: ")
        if not user:  # like getty: an empty line asks again
            continue
        secret = read_line(echo=False, prompt="Password: ")
        say("\n")
        if user == expected_user and secret == password:
            return user
        time.sleep(0.2)
        say("Login incorrect\n")


def run_shell(user: str, args: argparse.Namespace, marker: str, account: Account) -> None:
    env = {"HOME": account.home, "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "vt100", "USER": user,
           "LOGNAME": user, "SHELL": args.shell, "SIM_MARKER": marker,
           "PS1": f"{user}@{args.hostname}:\\w\\$ "}
    switch = {} if account.uid == os.getuid() else {"user": account.uid, "group": account.gid, "extra_groups": []}
    subprocess.run([args.shell, "--noprofile", "--norc", "-i"], env=env, cwd=account.home, check=False,
                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **switch)


if __name__ == "__main__":
    main()
