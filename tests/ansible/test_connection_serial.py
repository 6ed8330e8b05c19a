"""The jumpstarter connection plugin over the sim board's serial console, with real ansible runs."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from conftest import SIM, Lab, start_exporter
from jumpstarter_lab.client import connect

# A board whose login is an unprivileged account of its own: become has a uid to change.
USER_SIM = """
board:
  type: jumpstarter_lab_driver_sim.SimBoard
  config:
    login: jumpstarter
    password: s3cret
    root_password: r00t-pw
"""


def test_command_shell_and_raw(lab):
    result = lab.adhoc("command", "uname -s")
    assert result["rc"] == 0 and result["stdout"] == "Linux"
    shell = lab.adhoc("shell", "echo out; echo err >&2; exit 3")
    assert shell["rc"] == 3 and shell["failed"] is True
    assert shell["stdout"] == "out" and shell["stderr"] == "err"
    raw = lab.adhoc("raw", "printf 'JLS:0000:0:0:0\\nJLE:0000\\n'; echo 'ünïcødé ✓'")
    assert raw["rc"] == 0
    assert raw["stdout"].splitlines() == ["JLS:0000:0:0:0", "JLE:0000", "ünïcødé ✓"]


# The command line of the agent that runs a task: the parent or grandparent of the task's shell (the sim board's
# processes are this machine's).
AGENT_OF_TASK = ("for p in $PPID $(cut -d' ' -f4 /proc/$PPID/stat); do tr '\\0' ' ' < /proc/$p/cmdline; echo; done "
                 "| grep '[.]jl-.*[.]py'")


def test_one_agent_runs_the_tasks_that_follow_each_other_and_leaves_after_its_linger(lab):
    first = lab.adhoc("raw", AGENT_OF_TASK, "-e", "jumpstarter_agent_linger=10")
    assert first.get("rc") == 0 and "python3" in first["stdout"], first
    second = lab.adhoc("raw", AGENT_OF_TASK, "-e", "jumpstarter_agent_linger=10")
    assert second["stdout"] == first["stdout"]  # the same agent, taken up by the next task's connection
    time.sleep(12)  # past its linger: it left, and the next task starts another
    third = lab.adhoc("raw", AGENT_OF_TASK)
    assert third.get("rc") == 0 and third["stdout"] != first["stdout"], third
    plain = lab.adhoc("raw", "tr '\\0' ' ' < /proc/$PPID/cmdline", "-e", "jumpstarter_agent=false")
    assert plain.get("rc") == 0 and "bash" in plain["stdout"] and "python3" not in plain["stdout"], plain  # the shell


def test_copy_and_fetch_exact_bytes(lab, tmp_path):
    for name, size in (("small.bin", 1024), ("large.bin", 1 << 20)):
        source = tmp_path / name
        data = os.urandom(size)
        source.write_bytes(data)
        on_board = tmp_path / f"jl-{name}"  # the sim board's shell shares this machine's filesystem
        copied = lab.adhoc("copy", f"src={source} dest={on_board} mode=0640")
        assert copied.get("changed") is True, copied
        assert copied["checksum"] == hashlib.sha1(data).hexdigest()
        again = lab.adhoc("copy", f"src={source} dest={on_board} mode=0640")
        assert again.get("changed") is False, again
        fetched = lab.adhoc("fetch", f"src={on_board} dest={tmp_path}/back/ flat=true")
        assert fetched.get("failed") is not True, fetched
        assert Path(fetched["dest"]) == tmp_path / "back" / f"jl-{name}", fetched
        assert Path(fetched["dest"]).read_bytes() == data


def test_playbook_is_idempotent_over_the_console(lab, tmp_path):
    # The sim board's shell runs on this machine: give the playbook a directory of its own.
    playbook = """
- hosts: board1
  gather_facts: true
  tasks:
    - ansible.builtin.file: {path: "{{ base }}", state: directory, mode: "0755"}
    - ansible.builtin.copy: {dest: "{{ base }}/app.ini", content: "[app]\\nname=lab\\n"}
    - ansible.builtin.lineinfile: {path: "{{ base }}/extra.ini", line: "mode=serial", create: true}
    - ansible.builtin.template: {src: /dev/null, dest: "{{ base }}/empty"}
    - ansible.builtin.command: cat "{{ base }}/app.ini"
      register: ini
      changed_when: false
    - ansible.builtin.assert:
        that:
          - ini.stdout_lines == ["[app]", "name=lab"]
          - ansible_facts.system == "Linux"
"""
    base = f"base={tmp_path / 'conf'}"
    first = lab.playbook(playbook, "-e", base)
    assert first["rc"] == 0, first["stats"]
    assert first["stats"]["board1"]["changed"] == 4
    second = lab.playbook(playbook, "-e", base)
    assert second["rc"] == 0 and second["stats"]["board1"]["changed"] == 0, second["stats"]


@pytest.fixture
def user_lab(tmp_path, collections_path):
    """A sim board logged in to as `jumpstarter` (not root), with a root password for su."""
    if os.geteuid() != 0:
        pytest.fail("the sim board switches to an account of its own: this test must run as root (as CI does)")
    exporter = start_exporter(tmp_path, USER_SIM, "--session-linger", "600")
    image = tmp_path / "image.bin"
    image.write_bytes(b"JUMPSTARTER_MARKER=ansible-user\n")
    try:
        with connect(exporter.address, session="ansible-board1") as root:
            root.board.storage.flash(image)
            root.board.power.on()
            yield Lab(tmp_path, collections_path, exporter.address, ansible_user="jumpstarter")
    finally:
        exporter.stop()


def test_become_with_su(user_lab):
    """A module run with become and su as root: the uid it runs as changes; a wrong password is named."""
    su = ("--become", "--become-method", "su")
    plain = user_lab.adhoc("command", "id -u")
    assert plain.get("failed") is None and int(plain["stdout"]) >= 1000, plain
    became = user_lab.adhoc("command", "id -u", *su, "-e", "ansible_become_password=r00t-pw")
    assert (became.get("failed"), became["stdout"]) == (None, "0"), became
    refused = user_lab.adhoc("command", "id -u", *su, "-e", "ansible_become_password=wrong")
    assert refused.get("failed") is True and "Incorrect su password on board1" in refused["msg"], refused


def test_console_noise_does_not_corrupt_results(lab, tmp_path):
    """Lines written straight to the board's terminal, as kernel messages are, while a file is copied and read."""
    with connect(lab.address, session="ansible-board1") as root:
        with root.board.console.open() as console:
            console.send("\x03")  # the agent of the earlier tests may still have the console: a person's Ctrl-C ends it
            console.expect(r"[#$] $", timeout=30)  # and waits for the prompt: what is typed with Ctrl-C goes with the agent
            console.sendline('echo "T""TY=$(tty)"')
            tty = console.expect(r"TTY=(/dev/pts/\d+)").group(1).decode()
    stop = threading.Event()

    written = []

    def noise():
        with open(tty, "w") as terminal:
            n = 0
            while not stop.is_set():
                n += 1
                written.append(n)
                terminal.write(f"[ {n}.123456] kernel: usb 1-1: new device {n}\n")
                terminal.flush()
                time.sleep(0.005)

    data = os.urandom(256 * 1024)
    source = tmp_path / "noisy.bin"
    source.write_bytes(data)
    thread = threading.Thread(target=noise)
    thread.start()
    try:
        copied = lab.adhoc("copy", f"src={source} dest={tmp_path}/jl-noisy.bin")
        digest = lab.adhoc("command", f"sha256sum {tmp_path}/jl-noisy.bin")
    finally:
        stop.set()
        thread.join()
    assert len(written) > 50, "the noise did not run alongside the tasks"
    assert copied.get("failed") is not True, copied
    assert digest["stdout"].split()[0] == hashlib.sha256(data).hexdigest()


def test_wrong_password_fails_clearly(lab):
    lab.adhoc("raw", "exit 0")  # logged in; now log out so the next task must log in again
    with connect(lab.address, session="ansible-board1") as root:
        with root.board.console.open() as console:
            console.send("\x03")  # the agent of the task before has the console: a person's Ctrl-C ends it
            console.expect(r"[#$] $", timeout=30)
            console.sendline("exit")
            console.expect("login: ")
    result = lab.adhoc("raw", "true", "-e", "ansible_password=wrong", "-e", "jumpstarter_timeout=30")
    assert result["unreachable"] is True
    assert "login as root was refused on the console" in result["msg"]
    assert lab.adhoc("raw", "true")["rc"] == 0  # the right password still works afterwards


def test_a_board_that_is_off_is_said_to_be_off_at_once(tmp_path, collections_path):
    """Its console shows nothing, not even an echo, and its power driver reads 0 V: the task says the board is
    off as soon as the console has been silent a moment, not after the whole login_timeout."""
    exporter = start_exporter(tmp_path, SIM)  # the sim board, never powered on
    try:
        result = Lab(tmp_path, collections_path, exporter.address).adhoc(
            "raw", "true", "-e", "jumpstarter_login_timeout=3600", timeout=120)  # it would wait an hour otherwise
        assert result["unreachable"] is True, result
        assert ("the board is powered off (board.power.read() gives 0 V, 0 A): power it on first, e.g. "
                "jumpstarter.lab.call driver=board.power method=on") in result["msg"], result
        assert "Traceback" not in result["msg"]
    finally:
        exporter.stop()


def test_a_silent_console_of_a_powered_board_is_said_to_look_halted(tmp_path, collections_path):
    """A console nobody answers on (a pty whose other side stays quiet) while the power driver reads volts."""
    controller, device = os.openpty()
    exporter = start_exporter(tmp_path, SIM + f"""
quiet:
  type: jumpstarter_driver_pyserial.driver.PySerial
  config: {{url: {os.ttyname(device)}}}
""", "--session-linger", "600")
    try:
        lab = Lab(tmp_path, collections_path, exporter.address, jumpstarter_console="quiet",
                  jumpstarter_login_timeout=5)
        on = lab.playbook("- hosts: board1\n  gather_facts: false\n  tasks:\n"
                          "    - jumpstarter.lab.call: {driver: board.power, method: 'on'}\n")
        assert on["rc"] == 0, on
        result = lab.adhoc("raw", "true")
        assert result["unreachable"] is True, result
        assert ("the console showed nothing in 5s, not a prompt nor an echo of what was typed, although the board "
                "is powered on (board.power.read() gives 5 V, 0.4 A): it looks halted or hung") in result["msg"], result
    finally:
        exporter.stop()
        os.close(controller)
        os.close(device)
