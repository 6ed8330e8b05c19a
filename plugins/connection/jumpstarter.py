# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""Connection plugin: run Ansible over a board's serial console, through its exporter."""

from __future__ import annotations

DOCUMENTATION = r"""
name: jumpstarter
short_description: Run tasks on a board over its serial console or a network stream, through a Jumpstarter exporter
description:
  - With O(transport=serial) (the default) it attaches to the console stream of a board's exporter, logs in
    when a login prompt shows (or takes over an open shell), and runs each command framed by random markers
    with its exit status, stdout and stderr kept apart and verified by checksum; kernel messages on the console
    cannot corrupt results, and output damaged on the way is printed again.
  - The board confirms that a command arrived intact before running it (a damaged one is sent again). A login
    prompt or the kernel's reboot message on the console while a command runs fails the task at once, as the
    board restarted.
  - C(become) with C(sudo) or C(su) gets the password on the command's stdin, other methods' prompts are
    answered on the console; a refused password fails the task as C(Incorrect sudo password).
  - With O(transport=tcp) it forwards a local port over a network driver's stream (for example a TcpNetwork
    pointing at the board's sshd) and hands every command and file to Ansible's ssh connection through it.
  - Files move as chunked, checksummed base64 (gzip-compressed when that pays) into a temporary file that is
    then moved into place.
  - The zipped code of a module crosses the console once; the board keeps it in C(.jl-cache-UID) under its
    temporary directory (the newest 32 lines). Ansible zips a module anew every run, so this controller keeps
    what it sent in C(jumpstarter-lines) under Ansible's home directory and sends a board only the blocks that
    changed since; whatever is taken from a cache is checked against the checksum of the whole input.
  - With O(agent) on and C(python3) on the board, the first task starts one python3 process on the console (the
    agent) that then runs the commands and moves the files of every task, with no shell framing, and stays for the
    next task, with no login or set-up per task. Requests and replies cross with checksums as above. It leaves after
    O(agent_linger) seconds without a task (or at Ctrl-C on the console), and the shell gives the console back to
    people. A C(become) whose prompt is answered on the console, and boards without python3, use the shell.
  - Needs C(sh), C(base64), C(sha256sum), C(head), C(dd), C(sed) and C(wc) on the board (coreutils or busybox).
author: jumpstarter.lab developers (@jumpstarter-lab)
version_added: 0.1.0
extends_documentation_fragment:
  - jumpstarter.lab.exporter
options:
  transport:
    description:
      - V(serial) runs commands over the console stream; V(tcp) runs ssh through a network driver's stream.
    type: str
    default: serial
    choices: [serial, tcp]
    vars:
      - name: jumpstarter_transport
  network:
    description:
      - With O(transport=tcp), the dotted path of the network driver leading to the board's sshd.
      - By default the network driver named C(ssh), else the first network driver found.
    type: str
    vars:
      - name: jumpstarter_network
  private_key_file:
    description: With O(transport=tcp), the ssh private key to log in with.
    type: path
    vars:
      - name: ansible_private_key_file
      - name: ansible_ssh_private_key_file
  ssh_common_args:
    description:
      - With O(transport=tcp), extra ssh options. The forwarded port is new for every task, so by default the
        host key is not checked nor remembered; the exporter connection carries its own authentication.
    type: str
    default: "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
    vars:
      - name: ansible_ssh_common_args
  console:
    description:
      - Dotted path of the console (serial) driver in the exporter's tree, e.g. C(board.console).
      - By default the serial driver named C(console), else the first serial driver found.
    type: str
    vars:
      - name: jumpstarter_console
  remote_user:
    description: User to log in as when the console shows a login prompt.
    type: str
    default: root
    vars:
      - name: ansible_user
      - name: jumpstarter_user
  password:
    description: Password for the console login.
    type: str
    vars:
      - name: ansible_password
      - name: jumpstarter_password
  login_prompt:
    description: Regular expression matching the console's login prompt at the end of a line.
    type: str
    default: 'login:\s*$'
    vars:
      - name: jumpstarter_login_prompt
  password_prompt:
    description: Regular expression matching the console's password prompt.
    type: str
    default: '[Pp]assword:\s*$'
    vars:
      - name: jumpstarter_password_prompt
  shell_prompt:
    description: Regular expression matching a shell prompt after logging in.
    type: str
    default: '[#$>]\s*$'
    vars:
      - name: jumpstarter_shell_prompt
  timeout:
    description:
      - Seconds to reach the exporter.
      - Ansible passes its connection timeout here (C(--timeout), C(ANSIBLE_TIMEOUT), C([defaults] timeout)) when
        no variable sets it.
    type: int
    default: 10
    vars:
      - name: ansible_timeout
      - name: jumpstarter_timeout
  login_timeout:
    description:
      - Seconds to get a shell on the console, logging in when it shows a login prompt; a board that is still
        booting has this long to show its login prompt.
    type: int
    default: 60
    vars:
      - name: jumpstarter_login_timeout
  command_timeout:
    description: Seconds one command may run before the task fails.
    type: int
    default: 600
    vars:
      - name: jumpstarter_command_timeout
  pipelining:
    description:
      - Feed modules to the board's Python on stdin instead of copying them first; saves several console round
        trips per task. On by default here, unlike for ssh, as a console has no C(requiretty) problem.
    type: boolean
    default: true
    env:
      - name: ANSIBLE_PIPELINING
    ini:
      - section: connection
        key: pipelining
    vars:
      - name: ansible_pipelining
  agent:
    description:
      - Keep one python3 process on the board for the play to run commands and move files (see above); off, every
        command and file goes through the console's shell.
    type: boolean
    default: true
    vars:
      - name: jumpstarter_agent
  agent_linger:
    description:
      - Seconds the agent waits for the next task before it ends and gives the console back to people. Until then a
        person at the console sees no prompt; Ctrl-C ends the agent at once.
    type: int
    default: 15
    vars:
      - name: jumpstarter_agent_linger
  tmpdir:
    description: Directory on the board for the framing's temporary files.
    type: str
    default: /tmp
    vars:
      - name: jumpstarter_tmpdir
"""

EXAMPLES = r"""
# inventory.yml: a board served by a local exporter
# all:
#   hosts:
#     board1:
#       ansible_connection: jumpstarter.lab.jumpstarter
#       jumpstarter_host: /run/jumpstarter/board1.sock
#       jumpstarter_console: board.console
#       ansible_user: root
#       ansible_password: "{{ vault_board_password }}"

# the same board through its sshd, reached over a network driver of the exporter:
#     board1-ssh:
#       ansible_connection: jumpstarter.lab.jumpstarter
#       jumpstarter_host: /run/jumpstarter/board1.sock
#       jumpstarter_transport: tcp
#       jumpstarter_network: board.ssh
#       ansible_user: root
#       ansible_private_key_file: ~/.ssh/lab_ed25519

- name: Configure a board over its serial console
  hosts: board1
  gather_facts: false
  tasks:
    - name: Kernel
      ansible.builtin.command: uname -a
      changed_when: false
"""

import fcntl
import hashlib
import json
import os
import re
import time
from contextlib import ExitStack

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.module_utils.common.text.converters import to_bytes
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display

from ansible.plugins.loader import connection_loader

from ansible_collections.jumpstarter.lab.plugins.plugin_utils.exporter_client import (
    exporter,
    exporter_key,
    find_driver,
    power_state,
)
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.serial_shell import (
    ConsoleError,
    Prompts,
    SerialShell,
)

display = Display()


class Connection(ConnectionBase):
    transport = "jumpstarter.lab.jumpstarter"
    has_pipelining = True
    has_tty = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._stack: ExitStack | None = None
        self._shell_session: SerialShell | None = None
        self._ssh = None  # with transport=tcp: Ansible's ssh connection through the port forward
        self._record = ""  # with transport=serial: the file saying which agent this console's last task left

    def _connect(self):
        if self._connected:
            return self
        host = self._play_context.remote_addr
        stack = ExitStack()
        try:
            root = stack.enter_context(exporter(self.get_option, float(self.get_option("timeout"))))
            if self.get_option("transport") == "tcp":
                self._ssh = self._ssh_through(root, stack)
                self._stack = stack
                self._connected = True
                return self
            from jumpstarter_lab.wire import labels  # exporter() made sure the library is there

            console = find_driver(root, self.get_option("console"), labels.SERIAL, "console")
            console_file = self._console_path(exporter_key(self.get_option), console.name)
            self._record = console_file + ".agent"
            stack.enter_context(self._console_lock(console_file))
            stream = stack.enter_context(console.stream())
            prompts = Prompts(login=to_bytes(self.get_option("login_prompt")),
                              password=to_bytes(self.get_option("password_prompt")),
                              shell=to_bytes(self.get_option("shell_prompt")))
            shell = SerialShell(stream, prompts=prompts, tmpdir=self.get_option("tmpdir"),
                                log=lambda m: display.vvv(m, host=host))
            self._shell_session = shell
            left = self._agent_left()
            if not (self.get_option("agent") and left and shell.resume_agent(left)):
                self._attach(root)
                if self.get_option("agent") and not shell.start_agent(float(self.get_option("agent_linger"))):
                    if not shell.ready:  # the agent ended at once and the shell gave the console back: take it again
                        self._attach(root)
        except ConsoleError as e:
            self._shell_session = None
            stack.close()
            raise AnsibleConnectionFailure(f"console of {host}: {e}") from None
        except BaseException:
            self._shell_session = None
            stack.close()
            raise
        self._stack = stack
        self._connected = True
        agent = f" (agent {shell.agent})" if shell.agent else ""
        display.vvv(f"attached to the console of {host}{agent}", host=host)
        return self

    def _attach(self, root=None) -> None:
        """Log in when the console asks for it and make its shell machine-friendly (raises ConsoleError)."""
        self._shell_session.attach(self.get_option("remote_user"), self.get_option("password"),
                                   float(self.get_option("login_timeout")), root and (lambda: power_state(root)))

    def _agent_left(self) -> str | None:
        """The token of the agent an earlier task left on this console, when its record says it should still run.
        The record goes: from here on, this connection says whether an agent runs."""
        try:
            with open(self._record) as f:
                record = json.load(f)
            os.unlink(self._record)
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or not isinstance(record.get("until"), (int, float)):
            return None
        return str(record.get("token")) if record["until"] > time.time() else None

    def _keep_agent_record(self) -> None:
        """For the next task: the agent left on the console and until when it waits for one (a margin short)."""
        token = self._shell_session.agent if self._shell_session else None
        if token is None:
            return
        linger = float(self.get_option("agent_linger"))
        until = time.time() + linger - min(3.0, linger / 2)
        with open(self._record + ".part", "w") as f:
            json.dump({"token": token, "until": until}, f)
        os.replace(self._record + ".part", self._record)

    def _ssh_through(self, root, stack: ExitStack):
        """Forward a local port over the network driver's stream and open Ansible's ssh on it."""
        from jumpstarter_lab.wire import labels
        from jumpstarter_lab_driver_network.adapters import TcpPortforwardAdapter

        network = find_driver(root, self.get_option("network"), labels.NETWORK, "network", preferred="ssh")
        address, port = stack.enter_context(TcpPortforwardAdapter(client=network))
        ssh = connection_loader.get("ssh", self._play_context, getattr(self, "_new_stdin", None))
        options = {"host": address, "port": port, "remote_user": self.get_option("remote_user"),
                   "ssh_common_args": self.get_option("ssh_common_args"),
                   "timeout": int(self.get_option("timeout")), "pipelining": self.get_option("pipelining")}
        if self.get_option("private_key_file"):
            options["private_key_file"] = self.get_option("private_key_file")
        if self.get_option("password") is not None:
            options["password"] = self.get_option("password")
        ssh.set_options(direct=options)
        if self.become:
            ssh.set_become_plugin(self.become)
        stack.callback(ssh.close)
        display.vvv(f"ssh to {self._play_context.remote_addr} through {network.name} on {address}:{port}",
                    host=self._play_context.remote_addr)
        return ssh

    @staticmethod
    def _console_path(address: str, console: str) -> str:
        """The file of this controller's user for a console: its lock; beside it the record of an agent left on it."""
        lock_dir = os.path.join(os.path.expanduser("~"), ".ansible", "jumpstarter-locks")
        os.makedirs(lock_dir, mode=0o700, exist_ok=True)
        return os.path.join(lock_dir, hashlib.sha256(f"{address}|{console}".encode()).hexdigest()[:24])

    @staticmethod
    def _console_lock(path: str):
        """One task at a time on a console, across forks and concurrent ansible runs."""
        handle = open(path, "w")  # noqa: SIM115 - closed by the ExitStack

        class _Lock:
            def __enter__(self):
                fcntl.flock(handle, fcntl.LOCK_EX)

            def __exit__(self, *exc):
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()

        return _Lock()

    def exec_command(self, cmd, in_data=None, sudoable=True):
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        self._connect()
        if self._ssh is not None:
            return self._ssh.exec_command(cmd, in_data=in_data, sudoable=sudoable)
        on_prompt = None
        become = self.become if sudoable and self.become else None
        if become and become.expect_prompt():
            password = to_bytes(become.get_option("become_pass") or "")
            # The command's stdin and stderr are files, not the console: sudo -S and su (which reads
            # through PAM, from stdin) find the password ahead of any input of the module's own.
            if become.name == "sudo" and " -S" in cmd:
                if self._run("sudo -n true").rc != 0:
                    in_data = password + b"\n" + (in_data or b"")
            elif become.name == "su" and in_data is None:
                if self._run('test "$(id -u)" != 0').rc == 0:  # root's su asks nothing
                    in_data = password + b"\n"
            else:  # a prompt on the console (/dev/tty) is answered there, by the console's shell
                on_prompt = (prompt_pattern(become), password)
                if self._shell_session.agent:
                    try:
                        self._shell_session.stop_agent()
                        self._attach()
                    except ConsoleError as e:
                        self.close()
                        raise AnsibleConnectionFailure(f"console of {self._play_context.remote_addr}: {e}") from None
        result = self._run(cmd, in_data, on_prompt)
        if become and result.rc != 0 and not become.check_success(result.stdout):
            # as Ansible's ssh connection does: a refused password is named, not left in a module failure
            said = result.stdout + result.stderr
            if become.check_incorrect_password(said):
                raise AnsibleError(f"Incorrect {become.name} password on {self._play_context.remote_addr}")
            if become.check_missing_password(said):
                raise AnsibleError(f"Missing {become.name} password for {self._play_context.remote_addr}")
        return result.rc, result.stdout, result.stderr

    def _run(self, cmd, in_data=None, on_prompt=None):
        try:
            return self._shell_session.run(cmd, in_data, timeout=float(self.get_option("command_timeout")),
                                           on_prompt=on_prompt)
        except ConsoleError as e:
            self.close()
            raise AnsibleConnectionFailure(f"console of {self._play_context.remote_addr}: {e}") from None

    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        self._connect()
        if self._ssh is not None:
            return self._ssh.put_file(in_path, out_path)
        try:
            with open(in_path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise AnsibleError(f"cannot read {in_path}: {e.strerror}") from None
        try:
            self._shell_session.put(data, out_path, timeout=float(self.get_option("command_timeout")))
        except ConsoleError as e:
            raise AnsibleError(f"copying {in_path} to {out_path} over the console: {e}") from None

    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        self._connect()
        if self._ssh is not None:
            return self._ssh.fetch_file(in_path, out_path)
        try:
            data = self._shell_session.fetch(in_path, timeout=float(self.get_option("command_timeout")))
        except ConsoleError as e:
            raise AnsibleError(f"fetching {in_path} over the console: {e}") from None
        with open(out_path, "wb") as f:
            f.write(data)

    def reset(self):
        """End the agent too (meta: reset_connection): the next task starts afresh."""
        if self._shell_session is not None and self._shell_session.agent:
            try:
                self._shell_session.stop_agent()
            except ConsoleError as e:
                display.vvv(f"ending the agent: {e}")
        self.close()

    def close(self):
        if self._shell_session is not None:
            try:
                self._keep_agent_record()
                self._shell_session.detach()
            except Exception as e:  # the console may already be gone; nothing left to restore
                display.vvv(f"leaving the console: {e}")
            self._shell_session = None
        if self._stack is not None:
            self._stack.close()
            self._stack = None
        self._ssh = None
        self._connected = False


def prompt_pattern(become) -> bytes:
    """The become plugin's password prompt as a regular expression over console text.

    sudo names its prompt; su's prompt (C(prompt) is only True) is one of its localized words
    and a colon, as its check_password_prompt() matches it."""
    if isinstance(become.prompt, str):
        return re.escape(to_bytes(become.prompt.strip()))
    words = become.get_option("prompt_l10n") if become.has_option("prompt_l10n") else None
    words = words or getattr(become, "SU_PROMPT_LOCALIZATIONS", ["Password"])
    alternatives = b"|".join(re.escape(to_bytes(word)) for word in words)
    return b"(?i:" + alternatives + b")\\s*(?::|\xef\xbc\x9a)\\s*$"
