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
  serial_agent     one python3 kept on the board for a play (serial_agent_board): run, put and fetch through it
"""

from __future__ import annotations

from ansible_collections.jumpstarter.lab.plugins.plugin_utils import serial_login
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.serial_agent import Agent, AgentError
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
        self._agent: Agent | None = None  # the agent that has the console, when one does

    @property
    def tmpdir(self) -> str:
        return self._commands.tmpdir

    def attach(self, user: str | None, password: str | None, timeout: float, power_state=None) -> None:
        """Reach a machine-friendly shell, logging in when the console asks for it (serial_login.attach)."""
        serial_login.attach(self, user, password, timeout, power_state)

    @property
    def agent(self) -> str | None:
        """The token of the agent that has the console, if one does."""
        return self._agent.token if self._agent else None

    def resume_agent(self, token: str) -> bool:
        """Take up the agent `token` an earlier connection left on the board, if it still has the console."""
        agent = Agent(self._commands, token)
        if agent.alive():
            self._agent = agent
        return self._agent is not None

    def start_agent(self, linger: float) -> bool:
        """Start an agent from the machine-friendly shell (False: the board has no python3 for it, or it ended at
        once, which left the console to people: attach anew)."""
        agent = Agent(self._commands)
        if agent.start(linger):
            self._agent = agent
            self.ready = False  # the shell is busy running the agent: nothing is typed to it
        return self._agent is not None

    def stop_agent(self) -> None:
        """End the agent; the console is the people's again (attach to run in the shell)."""
        agent, self._agent = self._agent, None
        if agent is not None:
            agent.stop()

    def detach(self, timeout: float = 5.0) -> None:
        """Give the console back to people: prompt and echo as before (serial_login.detach). An agent is left
        running: it gives the console back itself after its linger time."""
        serial_login.detach(self, timeout)

    def run(self, command: str, stdin: bytes | None = None, *, timeout: float = 600,
            on_prompt: tuple[bytes, bytes] | None = None) -> Result:
        """Run `command` with /bin/sh; return rc, stdout and stderr exactly (through the agent, or Commands.run
        with the console's shell: a prompt to answer on the console needs the shell)."""
        if self._agent is not None and on_prompt is None:
            return self._through_agent(self._agent.run, command, stdin, timeout=timeout)
        return self._commands.run(command, stdin, timeout=timeout, on_prompt=on_prompt)

    def put(self, data: bytes, path: str, *, timeout: float = 600) -> None:
        """Write `data` to `path` on the board (the agent's put, or Transfer.put)."""
        if self._agent is not None:
            return self._through_agent(self._agent.put, data, path, timeout=timeout)
        return self._transfer.put(data, path, timeout=timeout)

    def fetch(self, path: str, *, timeout: float = 600) -> bytes:
        """Read `path` on the board (the agent's fetch, or Transfer.fetch)."""
        if self._agent is not None:
            return self._through_agent(self._agent.fetch, path, timeout=timeout)
        return self._transfer.fetch(path, timeout=timeout)

    def _through_agent(self, method, *args, **kwargs):
        try:
            return method(*args, **kwargs)
        except ConsoleError as e:
            if not isinstance(e, AgentError):  # the board restarted or the console failed: the agent is not
                self._agent = None              # to be counted on
            raise
