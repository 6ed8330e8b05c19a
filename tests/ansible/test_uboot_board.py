"""Boot flows through U-Boot on the QEMU board (Debian's u-boot-qemu firmware under TCG), from Ansible.

The exporter serves the board, a U-Boot driver over its power and console, and a TFTP server on a
127.x address at port 69 (QEMU's user network answers 10.0.2.2 itself, and U-Boot cannot use
another port). One exporter session for the module, as a lab's playbook run has:
- net-boot: power on, autoboot stopped, kernel and initrd over TFTP from the exporter, Linux's
  login, an Ansible task over the serial connection, power off;
- disk: a partitioned image written from U-Boot (tftp into RAM, gzwrite), the next power-on
  autoboots it by itself, its marker read over the serial connection;
- bad input: a file missing from the TFTP root, a failing command, a prompt that never shows, each
  a clear error within its deadline.
"""

from __future__ import annotations

import random
import time

import pytest

import yaml

from conftest import Lab, start_exporter
from integration.qemu_helpers import BOOT_TIMEOUT, PASSWORD, guest_image
from jumpstarter_lab.client import connect
from jumpstarter_lab.wire.errors import DriverTimeout
from jumpstarter_lab_driver_qemu.image import build_boot_disk
from jumpstarter_lab_driver_uboot.client import UBootClient, UBootCommandFailed
from test_examples import assert_ran_and_returned, module_docs, playbook_text, sample_problems

pytestmark = [pytest.mark.timeout(1200), pytest.mark.slow]

BOOTARGS = "console=ttyS0,115200 root=/dev/vda rw quiet"
EXPORT = """
board:
  type: jumpstarter_lab_driver_qemu.QemuBoard
  config: {{firmware: u-boot, image_path: {rootfs}, accel: tcg, memory: 512M, cpu_cores: 2}}
uboot:
  type: jumpstarter_lab_driver_uboot.UBoot
  config: {{init_commands: ["virtio scan"]}}
  children:
    power: {{ref: board.power}}
    serial: {{ref: board.console}}
deaf:
  description: a U-Boot driver waiting for a prompt this board never shows
  type: jumpstarter_lab_driver_uboot.UBoot
  config: {{prompt: "nothing> ", prompt_timeout: 8}}
  children:
    power: {{ref: board.power}}
    serial: {{ref: board.console}}
tftp:
  type: jumpstarter_lab_driver_netboot.TftpServer
  config: {{host: {tftp_host}, port: 69}}
"""


@pytest.fixture(scope="module")
def uboot_lab(request, tmp_path_factory, collections_path):
    image = guest_image(request.config)
    workdir = tmp_path_factory.mktemp("uboot-lab")
    files = workdir / "files"
    files.mkdir()
    for source in (image.kernel, image.initrd):
        (files / source.name).symlink_to(source)
    marker = f"written-from-uboot-{random.randrange(1 << 30):x}"
    started = time.monotonic()
    build_boot_disk(image, files / "disk.img", marker)
    print(f"boot disk built in {time.monotonic() - started:.1f}s ({(files / 'disk.img').stat().st_size} bytes)")
    tftp_host = f"127.{random.randrange(1, 255)}.{random.randrange(1, 255)}.{random.randrange(2, 255)}"
    exporter = start_exporter(workdir, EXPORT.format(rootfs=image.rootfs, tftp_host=tftp_host),
                              "--session-linger", "600")
    try:
        lab = Lab(workdir, collections_path, exporter.address, ansible_user="root", ansible_password=PASSWORD,
                  jumpstarter_login_timeout=BOOT_TIMEOUT)
        lab.marker, lab.files = marker, files
        yield lab
    finally:
        exporter.stop()


# The collection's playbook for real boards, as a lab runs it; the U-Boot driver's power child is the board's.
NETBOOT = """
- ansible.builtin.import_playbook: jumpstarter.lab.netboot
  vars:
    netboot_kernel: {files}/vmlinuz
    netboot_initrd: {files}/initrd.img
    netboot_bootargs: {bootargs}
"""


def test_netboot_from_the_exporter_to_an_ansible_task_over_the_console(uboot_lab):
    run = uboot_lab.playbook(NETBOOT.format(files=uboot_lab.files, bootargs=BOOTARGS), timeout=BOOT_TIMEOUT + 300)
    assert run["rc"] == 0, _failures(run)
    tasks = {task["name"]: task["hosts"]["board1"] for task in run["plays"][0]["tasks"]}
    booted = tasks["Power on, stop autoboot, load over TFTP and boot"]
    assert booted["changed"] is True and booted["booted"] is True, booted
    sizes = {path.name: path.stat().st_size for path in (uboot_lab.files / "vmlinuz", uboot_lab.files / "initrd.img")}
    assert {load["name"]: load["bytes"] for load in booted["loads"]} == sizes
    assert booted["dhcp"]["ip_address"] == "10.0.2.15"
    assert booted["commands"] == [] and booted["seconds"] > 0
    assert booted["msg"].startswith("net-booted vmlinuz (") and "'login: ' after" in booted["msg"], booted["msg"]
    # The kernel's command line is the one U-Boot was given: Linux came through the bootloader, not QEMU.
    assert tasks["Read the running kernel's command line over the serial console"]["stdout"].strip() == BOOTARGS
    assert tasks["Power off"]["changed"] is True
    with connect(uboot_lab.address, session="ansible-board1") as root:
        assert root.board.power.call("status") == "off"
    print(booted["msg"])


WRITE = """
- hosts: board1
  gather_facts: false
  tasks:
    - name: Write the disk from U-Boot
      jumpstarter.lab.bootloader:
        image: files/disk.img
        device: virtio 0
        transfer_timeout: 900
      register: written
    - name: Power-cycle into what was written
      jumpstarter.lab.bootloader: {autoboot: true, wait_for: "login: "}
      register: autobooted
    - name: The marker and root of the system that booted
      ansible.builtin.command: sh -c 'cat /etc/issue.d/jumpstarter.issue; findmnt -no SOURCE /'
      register: booted
      changed_when: false
"""


def test_an_image_written_from_uboot_boots_at_the_next_power_on(uboot_lab):
    run = uboot_lab.playbook(WRITE, timeout=BOOT_TIMEOUT + 900)
    assert run["rc"] == 0, _failures(run)
    tasks = {task["name"]: task["hosts"]["board1"] for task in run["plays"][0]["tasks"]}
    written = tasks["Write the disk from U-Boot"]
    size = (uboot_lab.files / "disk.img").stat().st_size
    assert written["written"]["bytes"] == size and written["written"]["device"] == "virtio 0", written
    assert written["booted"] is False and written["msg"].startswith("wrote disk.img to virtio 0 ("), written
    assert tasks["Power-cycle into what was written"]["msg"].startswith("booted by itself: 'login: ' ")
    assert tasks["The marker and root of the system that booted"]["stdout"].split() == [
        f"JUMPSTARTER_MARKER={uboot_lab.marker}", "/dev/vda1"]
    print(written["msg"])


def test_bad_input_ends_with_a_clear_error_before_its_deadline(uboot_lab):
    # The playbooks' session: its TFTP server holds port 69 on the address while the session lingers.
    with connect(uboot_lab.address, session="ansible-board1") as root:
        assert isinstance(root.uboot, UBootClient)
        started = time.monotonic()
        with pytest.raises(DriverTimeout, match=r"no U-Boot prompt 'nothing>' within 8s after power-on; last "
                                                r"output: .*=>"):
            with root.deaf.reboot_to_console():
                pass
        assert time.monotonic() - started < 60  # the deadline held: no wait for the default 60 s and more
        with root.uboot.reboot_to_console() as uboot:
            with pytest.raises(UBootCommandFailed, match=r"'tftpboot \$\{loadaddr\} no-such-kernel' failed with "
                                                         r"return code 1: .*TFTP error: 'File not found'"):
                uboot.setup_dhcp()
                uboot.tftp("no-such-kernel", server=root.tftp.get_host(), timeout=60)
            failed = uboot.run("load virtio 0:1 ${loadaddr} /no/such/file")
            # The session's disk: the written image's partition without that file, or the bare ext4 of a lone run.
            assert failed.rc == 1 and ("Failed to load '/no/such/file'" in failed.output
                                       or "Couldn't find partition virtio 0:1" in failed.output), failed
            with pytest.raises(UBootCommandFailed, match=r"'false' failed with return code 1: no output"):
                uboot.checked("false")
            assert uboot.get_env("no_such_variable") is None
            uboot.set_env("lab_value", "a b $c")
            assert uboot.get_env("lab_value") == "a b $c"
            assert uboot.run("echo still here").output == "still here"  # the prompt survived the failures
    # The board of that session is left at its U-Boot prompt: the serial connection says so, typing nothing into it.
    at_prompt = uboot_lab.adhoc("raw", "uname", "-e", "jumpstarter_login_timeout=30", timeout=120)
    assert at_prompt.get("unreachable") is True and "the console shows U-Boot, not Linux" in at_prompt["msg"], at_prompt
    missing = uboot_lab.adhoc("jumpstarter.lab.bootloader", "kernel=files/absent")
    assert missing.get("failed") is True and "absent" in missing["msg"], missing


def test_the_bootloader_examples_run_as_shown_and_return_what_return_documents(uboot_lab):
    """The module's EXAMPLES as written: their files under build/ beside the playbook, the host in the
    jumpstarter group as the inventory plugin puts it, on a fresh board (the disk as the image was built)."""
    with connect(uboot_lab.address, session="ansible-board1") as root:
        root.connection.portal.call(root.connection.end_session())
    build = uboot_lab.workdir / "build"
    build.mkdir()
    for name in ("vmlinuz", "initrd.img", "disk.img"):
        (build / name).symlink_to(uboot_lab.files / name)
    groups = uboot_lab.workdir / "groups.ini"
    groups.write_text("[jumpstarter]\nboard1\n")
    modules = module_docs(("bootloader", "call"))
    text = playbook_text(modules["bootloader"]["plainexamples"])
    run = uboot_lab.playbook(text, "-i", str(groups), timeout=2 * BOOT_TIMEOUT + 900)
    assert run["rc"] == 0, _failures(run)
    seen = assert_ran_and_returned("bootloader", run, yaml.safe_load(text), modules)
    problems = sample_problems("bootloader", modules["bootloader"]["returndocs"], seen["bootloader"])
    assert not problems, "\n".join(problems)
    booted, written, autobooted = seen["bootloader"]
    assert booted["booted"] is True and [load["name"] for load in booted["loads"]] == ["vmlinuz", "initrd.img"]
    assert booted["env"] == {"tftpblocksize": "1468"}
    assert booted["commands"] == [{"command": "virtio scan", "rc": 0, "output": booted["commands"][0]["output"]}]
    assert written["written"]["bytes"] == (uboot_lab.files / "disk.img").stat().st_size and not written["booted"]
    assert autobooted["booted"] is True and autobooted["msg"].startswith("booted by itself"), autobooted


def _failures(run: dict) -> list:
    return [(task["name"], result.get("msg"), result.get("stderr")) for play in run["plays"] for task in play["tasks"]
            for result in task["hosts"].values() if result.get("failed") or result.get("unreachable")]
