# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""A shell on a board's serial console, the one object the connection plugin uses: attach, run
commands with exact results, put and fetch files, detach.

The work is done by one module per concern, each over the same SerialConsole:
  serial_console   the console as text: reading, cleaning (ANSI, CR, XON/XOFF), expect with deadlines
  serial_login     attach and detach: a login, a machine-friendly shell, the console given back
  serial_commands  run: a command framed by random markers, its result verified, a restart seen
  serial_input     data as shell text that writes it to a file on the board
  serial_cache     long input lines crossing once: the board's cache, the controller's SENT_LINES
  serial_transfer  put and fetch
  serial_markers   the markers the board prints, each defined once
"""

from __future__ import annotations

from ansible_collections.jumpstarter.lab.plugins.plugin_utils import serial_login
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.serial_commands import Commands, Result
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.serial_console import (
    ConsoleError,
    ConsoleQuiet,
    ConsoleTimeout,
    Prompts,
    SerialConsole,
    clean,
)
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.serial_markers import split_word
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.serial_transfer import Transfer

__all__ = ["ConsoleError", "ConsoleQuiet", "ConsoleTimeout", "Prompts", "Result", "SerialShell", "clean", "split_word"]


class SerialShell(SerialConsole):
    def __init__(self, channel, *, prompts: Prompts | None = None, tmpdir: str = "/tmp", log=None):
        super().__init__(channel, prompts=prompts, log=log)
        self._commands = Commands(self, tmpdir)
        self._transfer = Transfer(self._commands)

    @property
    def tmpdir(self) -> str:
        return self._commands.tmpdir

    def attach(self, user: str | None, password: str | None, timeout: float, power_state=None) -> None:
        """Reach a machine-friendly shell, logging in when the console asks for it (serial_login.attach)."""
        serial_login.attach(self, user, password, timeout, power_state)

    def detach(self, timeout: float = 5.0) -> None:
        """Give the console back to people: prompt and echo as before (serial_login.detach)."""
        serial_login.detach(self, timeout)

    def run(self, command: str, stdin: bytes | None = None, *, timeout: float = 600,
            on_prompt: tuple[bytes, bytes] | None = None) -> Result:
        """Run `command` with /bin/sh; return rc, stdout and stderr exactly (Commands.run)."""
        return self._commands.run(command, stdin, timeout=timeout, on_prompt=on_prompt)

    def put(self, data: bytes, path: str, *, timeout: float = 600) -> None:
        """Write `data` to `path` on the board (Transfer.put)."""
        self._transfer.put(data, path, timeout=timeout)

    def fetch(self, path: str, *, timeout: float = 600) -> bytes:
        """Read `path` on the board (Transfer.fetch)."""
        return self._transfer.fetch(path, timeout=timeout)
