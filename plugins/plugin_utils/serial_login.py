# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""Taking a board's console for the serial shell and giving it back: a login when the console asks
for one, then a machine-friendly shell (no echo, no line editing, empty prompts); at the end the
prompt and echo as they were, for people."""

from __future__ import annotations

import re
import secrets
import time

from ansible_collections.jumpstarter.lab.plugins.plugin_utils.serial_console import (
    ConsoleError,
    ConsoleTimeout,
    SerialConsole,
)
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.serial_markers import READY, split_word

QUIET = 2.0  # seconds of silence after which an attaching console is taken for a shell without prompt
# U-Boot's answer to Ctrl-C (ahead of the ">" that the shell prompt pattern would take), its prompt and countdown
BOOTLOADER = rb"<INTERRUPT>|\n=> |Hit any key to stop autoboot"


class ConsoleSilent(ConsoleTimeout):
    """The console answered nothing at all while attaching; the message says what the board's power says."""


def attach(console: SerialConsole, user: str | None, password: str | None, timeout: float,
           power_state=None) -> None:
    """Reach a machine-friendly shell, logging in when the console asks for it.

    Interrupt whatever runs and press Enter, then look before typing the set-up line: at a
    login prompt it would be taken as a user name, which getty refuses only after a long
    pause. A console that stays quiet is taken for a shell an earlier connection left
    without prompt or echo, and gets the set-up line.

    `power_state()`, asked once when the console stays silent, returns ("on" or "off", the power
    driver's path, what it said) or None when nothing can tell: a board that is off fails at
    once, and one that is on but silent to the end is said to look halted.
    """
    deadline = time.monotonic() + timeout
    heard = console.received
    ready_word = READY + secrets.token_hex(6)
    ready = re.escape(ready_word.encode()) + rb"\n"
    console.send("\x03\n")
    setup_sent = False  # the set-up line went to the shell now on the console
    refusals = 0
    power = None  # what power_state() said, once asked
    while True:
        choices = {"login": console.prompts.login, "password": console.prompts.password, "ready": ready,
                   "bad": rb"[Ll]ogin incorrect|[Aa]uthentication failure"}
        wait = deadline - time.monotonic()
        if not setup_sent:
            choices["shell"] = console.prompts.shell
            choices["bootloader"] = BOOTLOADER
            wait = min(wait, QUIET)
        try:
            name, _match = console.expect(choices, max(0.1, wait), "a login prompt or a shell")
        except ConsoleTimeout:
            silent = console.received == heard
            if silent and power_state is not None and power is None:
                power = power_state() or ("unknown", "", "")
                if power[0] == "off":
                    raise ConsoleSilent(f"the board is powered off ({power[2]}): power it on first, e.g. "
                                        f"jumpstarter.lab.call driver={power[1]} method=on") from None
            if silent and time.monotonic() >= deadline:
                if power and power[0] == "on":
                    raise ConsoleSilent(f"the console showed nothing in {timeout:g}s, not a prompt nor an echo of what "
                                        f"was typed, although the board is powered on ({power[2]}): it looks halted "
                                        "or hung, or this is not its console") from None
                raise ConsoleSilent(f"the console showed nothing in {timeout:g}s, not a prompt nor an echo of what "
                                    "was typed: the board looks off or halted, or this is not its console (power "
                                    "it on first, e.g. jumpstarter.lab.call driver=power method=on)") from None
            if setup_sent or time.monotonic() >= deadline:
                raise
            name = "shell"
        if name == "bootloader":
            raise ConsoleError("the console shows U-Boot, not Linux: the board is in its bootloader (the keys this "
                               "connection sends stop a countdown; boot a U-Boot board with "
                               "jumpstarter.lab.bootloader autoboot=true, or net-boot it, before its tasks)")
        if name == "ready":
            console.ready = True
            console.log("console shell ready")
            return
        if name == "shell":
            console.send(setup_line(ready_word))
            setup_sent = True
        elif name == "bad":
            refusals += 1
            if refusals > 2:
                raise ConsoleError(f"login as {user} was refused on the console")
        elif name == "login":
            if not user:
                raise ConsoleError("the console asks for a login but no user was given (ansible_user)")
            console.log(f"logging in as {user}")
            console.send(user + "\n")
            setup_sent = False
        elif name == "password":
            if password is None:
                raise ConsoleError("the console asks for a password but none was given (ansible_password)")
            console.send(password + "\n")


def setup_line(ready_word: str) -> str:
    """The line making the shell machine-friendly, then printing `ready_word`."""
    # `command`: a shell without one of these options (dash has no history) must not drop the line
    return ("command set +o emacs 2>/dev/null; command set +o vi 2>/dev/null; "
            "command set +o history 2>/dev/null; stty -echo -onlcr 2>/dev/null; "
            "__jl_ps1=${__jl_ps1-$PS1}; PS1=''; PS2=''; unset PROMPT_COMMAND; export TERM=dumb; "
            f"printf '%s\\n' {split_word(ready_word)}\n")


# Shell text giving the console back to people: echo, line editing and the prompt as before setup_line().
HUMAN = "stty echo onlcr 2>/dev/null; command set -o emacs 2>/dev/null; PS1=${__jl_ps1-'$ '}; unset __jl_ps1"


def detach(console: SerialConsole, timeout: float = 5.0) -> None:
    """Give the console back to people: prompt and echo as before. Waits until the shell has done
    it, so the line is not lost with a stream closed right after it."""
    if console.ready:
        done = READY + secrets.token_hex(6)
        console.send(f"{HUMAN}; printf '%s\\n' {split_word(done)}\r")
        console.ready = False
        console.expect({"done": re.escape(done.encode())}, timeout, "the shell to take its prompt back")
