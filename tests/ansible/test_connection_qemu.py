"""The jumpstarter connection plugin over the QEMU board's serial console: a Debian guest under TCG.

One boot for the whole module (a boot costs ~20 s of TCG): facts, a playbook run twice
(the second run changes nothing), kernel messages on the console during a task, become
with a password as the unprivileged user; and last the guest rebooting under a task, and
the next task logging in after that second boot.
"""

from __future__ import annotations

import re
import threading
import time

import pytest

from conftest import Lab, start_exporter
from integration.qemu_helpers import BOOT_TIMEOUT, PASSWORD, board_entry, guest_image
from jumpstarter_lab.client import connect

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]


@pytest.fixture(scope="module")
def qemu_lab(request, tmp_path_factory, collections_path):
    """The QEMU board booted to its login prompt, in the exporter session the inventory's host uses."""
    image = guest_image(request.config)
    workdir = tmp_path_factory.mktemp("qemu-lab")
    exporter = start_exporter(workdir, board_entry(image), "--session-linger", "600")
    holder = connect(exporter.address, session="ansible-board1")
    root = holder.__enter__()
    try:
        with root.board.console.open() as console:
            started = time.monotonic()
            root.board.power.on()
            console.expect("login: ", timeout=BOOT_TIMEOUT)
            print(f"QEMU board at its login prompt {time.monotonic() - started:.1f}s after power-on")
        yield Lab(workdir, collections_path, exporter.address, ansible_user="root", ansible_password=PASSWORD)
    finally:
        holder.__exit__(None, None, None)
        exporter.stop()


def test_setup_gathers_facts_over_the_console(qemu_lab):
    facts = qemu_lab.adhoc("setup", "gather_subset=min,hardware")
    assert facts.get("failed") is not True and facts.get("unreachable") is not True, facts
    facts = facts["ansible_facts"]
    assert facts["ansible_hostname"] == "qemuboard"
    assert facts["ansible_distribution"] == "Debian" and facts["ansible_distribution_major_version"] == "12"
    assert facts["ansible_user_id"] == "root"
    assert facts["ansible_memtotal_mb"] > 300


TEMPLATE = """# {{ ansible_managed }}
host={{ inventory_hostname }}
port={{ app_port }}
"""

# One task per module the issue names, each changing something on the first run; seven module runs
# and their stat calls at ~2-4 s each under TCG make this the slowest test here.
PLAYBOOK = """
- hosts: board1
  gather_facts: false
  vars:
    app_port: 8080
  tasks:
    - name: The app's configuration, from a template
      ansible.builtin.template: {src: app.conf.j2, dest: /etc/lab-app.conf, mode: "0644"}
    - name: A line in /etc/environment
      ansible.builtin.lineinfile: {path: /etc/environment, regexp: "^LAB_MODE=", line: LAB_MODE=serial}
    - name: A user the app runs as
      ansible.builtin.user: {name: labapp, shell: /bin/sh, create_home: true}
    - name: The app's systemd unit
      ansible.builtin.copy:
        dest: /etc/systemd/system/lab-hello.service
        mode: "0644"
        content: |
          [Unit]
          Description=The lab's hello service
          [Service]
          User=labapp
          RuntimeDirectory=lab-hello
          ExecStart=/bin/sh -c 'id -un > /run/lab-hello/user; exec sleep infinity'
          [Install]
          WantedBy=multi-user.target
    - name: The app runs, and starts at boot
      ansible.builtin.systemd: {name: lab-hello, state: started, enabled: true, daemon_reload: true}
    - name: A one-time initialisation
      ansible.builtin.command: {cmd: "sh -c 'id labapp > /var/lib/lab-init'", creates: /var/lib/lab-init}
    - name: The configuration back on the controller
      ansible.builtin.fetch: {src: /etc/lab-app.conf, dest: "{{ fetched }}/", flat: true}
"""


def test_playbook_configures_the_guest_and_a_second_run_changes_nothing(qemu_lab, tmp_path):
    (qemu_lab.workdir / "app.conf.j2").write_text(TEMPLATE)
    fetched = f"fetched={tmp_path}"
    started = time.monotonic()
    first = qemu_lab.playbook(PLAYBOOK, "-e", fetched)
    took_first = time.monotonic() - started
    assert first["rc"] == 0, _failures(first)
    tasks = [task["name"] for task in first["plays"][0]["tasks"]]
    changed = [task["name"] for task in first["plays"][0]["tasks"] if task["hosts"]["board1"].get("changed")]
    assert changed == tasks and len(tasks) == 7, first["plays"][0]["tasks"]
    assert (tmp_path / "lab-app.conf").read_text() == "# Ansible managed\nhost=board1\nport=8080\n"
    started = time.monotonic()
    second = qemu_lab.playbook(PLAYBOOK, "-e", fetched)
    took_second = time.monotonic() - started
    assert second["rc"] == 0, _failures(second)
    assert second["stats"]["board1"]["changed"] == 0, second["plays"][0]["tasks"]
    assert second["stats"]["board1"]["ok"] == 7
    state = qemu_lab.adhoc("raw", "systemctl is-active lab-hello; systemctl is-enabled lab-hello; "
                                  "cat /run/lab-hello/user; grep LAB_ /etc/environment; cut -c1-16 /var/lib/lab-init")
    assert state["stdout"].split() == ["active", "enabled", "labapp", "LAB_MODE=serial", "uid=1001(labapp)"], state
    print(f"playbook of 7 tasks: {took_first:.1f}s, again {took_second:.1f}s")


def _failures(run: dict) -> list:
    return [(task["name"], result.get("msg"), result.get("stderr")) for play in run["plays"] for task in play["tasks"]
            for result in task["hosts"].values() if result.get("failed") or result.get("unreachable")]


def test_kernel_messages_during_a_task_do_not_corrupt_its_output(qemu_lab):
    """The kernel prints to the console whenever it likes: here while the task's output is on its way."""
    noise = ("dmesg -n 8; rm -f /run/noise-stop /run/noise-done; "
             "(i=0; while [ $i -lt 5000 ] && [ ! -e /run/noise-stop ]; do i=$((i + 1)); "
             "echo \"lab noise $i\" > /dev/kmsg; done; dmesg -n 4; touch /run/noise-done) > /dev/null 2>&1 & ")
    seen = bytearray()
    stop = threading.Event()

    def watch():  # a second reader of the same console: what the plugin saw
        with connect(qemu_lab.address, session="ansible-board1") as root:
            with root.board.console.stream() as stream:
                while not stop.is_set():
                    try:
                        seen.extend(stream.receive(timeout=0.2))
                    except TimeoutError:
                        pass

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = qemu_lab.adhoc("shell", noise + "seq 1 8000")
        waited = qemu_lab.adhoc("shell", "touch /run/noise-stop; while [ ! -e /run/noise-done ]; do sleep 0.2; done")
    finally:
        stop.set()
        watcher.join()
    assert result.get("failed") is not True and result.get("unreachable") is not True, result
    assert result["stdout"] == "\n".join(str(i) for i in range(1, 8001))
    assert waited["rc"] == 0
    # the messages did land in the middle of the output: between its first and last lines
    text = bytes(seen).replace(b"\r", b"")
    start = re.search(rb"\n(?:JLS|JLR):([0-9a-f]+)[.:]", text)  # an emit of the shell's framing, or the agent's reply
    assert start, "the task's output never showed on the console"
    inside = re.findall(rb"lab noise \d+", text[start.end():text.find(b"\nJLE:" + start.group(1), start.end())])
    assert len(inside) > 5, f"only {len(inside)} kernel messages came while the output was on the console"


def log_out(lab: Lab) -> None:
    """End the console's shell (left logged in by the last task) so that the next task logs in."""
    with connect(lab.address, session="ansible-board1") as root:
        with root.board.console.open() as console:
            console.send("\x03")
            console.expect(r"[#$] $", timeout=30)
            console.sendline("exit")
            console.expect("login: ", timeout=60)


def test_become_with_a_password_as_an_unprivileged_user(qemu_lab):
    """A module with become and sudo (the password goes ahead of the module on stdin); raw commands,
    cheaper under TCG, for su and for the refusals."""
    lab = qemu_lab
    # The image lets jumpstarter sudo without a password: make sudo ask for one, every time.
    sudoers = lab.adhoc("raw", "printf 'jumpstarter ALL=(ALL:ALL) ALL\\nDefaults:jumpstarter timestamp_timeout=0\\n' "
                               "> /etc/sudoers.d/zz-lab-password && chmod 0440 /etc/sudoers.d/zz-lab-password && visudo -c")
    assert sudoers["rc"] == 0, sudoers
    log_out(lab)
    user = ("-e", "ansible_user=jumpstarter")
    su = ("--become-method", "su", "-e", "ansible_become_password=jumpstarter")
    try:
        assert lab.adhoc("raw", "id -un", *user)["stdout"] == "jumpstarter\n"
        sudo = lab.adhoc("command", "id -u", *user, "--become", "-e", "ansible_become_password=jumpstarter")
        assert (sudo.get("failed"), sudo["stdout"]) == (None, "0"), sudo
        by_su = lab.adhoc("raw", "id -u", *user, "--become", *su)
        assert (by_su.get("failed"), by_su["stdout"]) == (None, "0\n"), by_su
        for method, password, message in (("sudo", "wrong", "Incorrect sudo password on board1"),
                                          ("sudo", None, "Missing sudo password for board1"),
                                          ("su", "wrong", "Incorrect su password on board1")):
            extra = ("-e", f"ansible_become_password={password}") if password else ()
            failed = lab.adhoc("raw", "id -u", *user, "--become", "--become-method", method, *extra)
            assert failed.get("failed") is True and message in failed["msg"], failed
    finally:
        lab.adhoc("raw", "rm -f /etc/sudoers.d/zz-lab-password", *user, "--become", *su)
        log_out(lab)
    assert lab.adhoc("raw", "id -un")["stdout"] == "root\n"


def test_a_reboot_under_a_task_fails_it_at_once_and_the_next_task_logs_in_again(qemu_lab):
    before = time.monotonic()
    rebooted = qemu_lab.adhoc("raw", "sleep 1; reboot -f", "-e", "jumpstarter_command_timeout=600", timeout=120)
    assert rebooted["unreachable"] is True, rebooted
    assert "the board restarted while running" in rebooted["msg"], rebooted
    assert "reboot: Restarting system" in rebooted["msg"], rebooted
    started = time.monotonic()
    # the next task waits for the login prompt of the new boot: give it as long as a boot may take
    back = qemu_lab.adhoc("command", "cat /proc/uptime", "-e", f"jumpstarter_login_timeout={BOOT_TIMEOUT}",
                          timeout=BOOT_TIMEOUT + 120)
    assert back.get("unreachable") is not True, back
    assert float(back["stdout"].split()[0]) < time.monotonic() - before  # booted since the reboot was asked for
    print(f"the next task ran {time.monotonic() - started:.1f}s after the reboot (boot and login included)")
