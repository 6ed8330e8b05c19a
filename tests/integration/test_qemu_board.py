"""The QEMU board through a real exporter: a Debian guest under QEMU (TCG), driven with the client library.

Boot to a serial login and run commands; flash a new image through storage, power-cycle and see
its marker; reach the guest's sshd through the forwarded port; clear errors for missing pieces;
no QEMU left behind when the session ends or the exporter dies.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zstandard

from helpers import cli, exporter_config, process_gone, wait_for
from jumpstarter_lab.client import connect
from jumpstarter_lab.exporter.config import load_text
from jumpstarter_lab.wire.errors import ConfigError, DriverError, ExporterUnavailable
from jumpstarter_lab_driver_qemu.image import set_marker
from qemu_helpers import BOOT_TIMEOUT, board_entry, boot_marker, guest_image, login, shell

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="session")
def image(request):
    return guest_image(request.config)


@pytest.mark.slow  # the guest image (built on first use) and QEMU
def test_boots_to_a_serial_login_and_runs_commands(image, make_config, run_exporter):
    exporter = run_exporter(make_config(board_entry(image, disk_size="1G")))
    with connect(exporter.address) as root:
        board = root.board
        assert sorted(board.children) == ["console", "network", "power", "storage"]
        with board.console.open() as console:
            started = time.monotonic()
            board.power.on()
            assert boot_marker(console) == image.marker
            login(console)
            print(f"serial login prompt and shell {time.monotonic() - started:.1f}s after power-on (TCG)")
            status, output = shell(console, "uname -r; python3 -c 'print(6 * 7)'; hostname")
            assert status == 0
            assert output.split() == [image.manifest["kernel_version"], "42", "qemuboard"]
            status, output = shell(console, "sudo -u jumpstarter sudo -n id -u")
            assert (status, output.strip()) == (0, "0")
            assert shell(console, "false")[0] == 1
            # disk_size grew the disk, and the guest its filesystem (a unit at boot; started again to wait for it)
            status, output = shell(console, "systemctl start jumpstarter-growfs; blockdev --getsize64 /dev/vda; "
                                            "df -B1M --output=size / | tail -1")
            assert status == 0
            assert int(output.split()[0]) == 1 << 30 and int(output.split()[1]) > 900
        assert [r.voltage for r in board.power.read()] == [12.0]
        board.power.off()
        assert board.power.call("status") == "off"
        assert [r.voltage for r in board.power.read()] == [0.0]


@pytest.mark.slow  # the guest image (built on first use) and QEMU
def test_flashed_image_boots_after_a_power_cycle(image, make_config, run_exporter, tmp_path):
    marked = set_marker(image.rootfs, tmp_path / "marked.img", "flashed-build-42")
    flashable = tmp_path / "marked.img.zst"
    with open(marked, "rb") as source, open(flashable, "wb") as target:
        zstandard.ZstdCompressor(level=1, threads=-1).copy_stream(source, target)
    marked.unlink()
    pristine = image.rootfs.stat().st_mtime_ns
    exporter = run_exporter(make_config(board_entry(image)))
    with connect(exporter.address) as root:
        board = root.board
        with board.console.open() as console:
            board.power.on()
            assert boot_marker(console) == image.marker
            board.storage.flash(flashable)  # while it runs: the new image boots at the next power-on
            assert board.storage.call("status") == "dut"
            board.power.cycle(wait=1)
            assert boot_marker(console) == "flashed-build-42"
            login(console)
            assert shell(console, "cat /etc/issue.d/jumpstarter.issue")[1].strip() == "JUMPSTARTER_MARKER=flashed-build-42"
            assert shell(console, "echo kept > /root/state && sync")[0] == 0
            board.power.cycle(wait=1)  # the guest's own writes survive a power cycle, as on a disk
            assert boot_marker(console) == "flashed-build-42"
            login(console)
            assert shell(console, "cat /root/state") == (0, "kept\n")
        board.power.off()
    assert image.rootfs.stat().st_mtime_ns == pristine  # the configured image was never written


@pytest.mark.slow  # the guest image (built on first use) and QEMU
def test_network_reaches_the_guests_sshd_on_a_gzip_flashed_image(image, make_config, run_exporter, tmp_path):
    marked = set_marker(image.rootfs, tmp_path / "ssh.img", "ssh-gzip")
    flashable = tmp_path / "ssh.img.gz"
    with open(marked, "rb") as source, gzip.open(flashable, "wb", compresslevel=1) as target:
        while chunk := source.read(1 << 20):
            target.write(chunk)
    marked.unlink()
    exporter = run_exporter(make_config(board_entry(image)))
    with connect(exporter.address) as root:
        board = root.board
        with pytest.raises(ExporterUnavailable, match="powered off"):
            board.network.call("address")
        board.storage.flash(flashable)
        with board.console.open() as console:
            board.power.on()
            assert boot_marker(console) == "ssh-gzip"
        assert board.network.call("address").startswith("tcp://127.0.0.1:")
        deadline = time.monotonic() + BOOT_TIMEOUT
        banner = b""
        while b"SSH-2.0" not in banner:
            assert time.monotonic() < deadline, f"no SSH banner within {BOOT_TIMEOUT}s (last: {banner!r})"
            banner = b""
            with board.network.stream() as ssh:  # before sshd listens, QEMU accepts and then closes
                with_data = True
                while with_data and b"\n" not in banner:
                    try:
                        chunk = ssh.receive(timeout=10)
                    except TimeoutError:
                        chunk = b""
                    banner += chunk
                    with_data = bool(chunk)
            if b"SSH-2.0" not in banner:
                time.sleep(1)
        assert banner.startswith(b"SSH-2.0-OpenSSH")


@pytest.mark.slow  # the guest image (built on first use) and QEMU
def test_storage_on_the_host_side_means_no_disk(image, make_config, run_exporter):
    exporter = run_exporter(make_config(board_entry(image)))
    with connect(exporter.address) as root:
        root.board.storage.host()
        with root.board.console.open() as console:
            root.board.power.on()
            console.expect(re.escape("no root disk at /dev/vda (is the storage attached to the board?); halted"),
                           timeout=BOOT_TIMEOUT)
        with pytest.raises(ValueError, match="call host\\(\\) before write\\(\\)"):
            root.board.storage.dut()
            root.board.storage.write_file(__file__)


@pytest.mark.slow  # a QEMU guest
def test_storage_reads_back_the_disk_the_guest_sees(image, make_config, run_exporter, tmp_path):
    """read() gives the disk's content: the flashed image while off, the same through the guest's
    copy-on-write layer while it runs."""
    flashed = tmp_path / "random.img"
    flashed.write_bytes(os.urandom(1 << 20))
    exporter = run_exporter(make_config(board_entry(image)))
    with connect(exporter.address) as root:
        storage = root.board.storage
        storage.host()
        storage.write_file(flashed)
        assert storage.read_file(tmp_path / "off.img") == 1 << 20
        assert (tmp_path / "off.img").read_bytes() == flashed.read_bytes()
        storage.dut()
        root.board.power.on()  # the kernel finds no root on this disk; the guest's disk layer exists now
        storage.host()
        storage.read_file(tmp_path / "on.img")
        assert (tmp_path / "on.img").read_bytes() == flashed.read_bytes()
        root.board.power.off()


@pytest.mark.slow  # the guest image (built on first use) and QEMU
@pytest.mark.parametrize("setting, message", [
    ({"image_path": "/nonexistent/disk.img"}, "disk image /nonexistent/disk.img not found (the board's 'image_path'"),
    ({"kernel": "/nonexistent/vmlinuz"}, "kernel /nonexistent/vmlinuz not found"),
    ({"qemu_binary": "qemu-system-nonexistent"}, "QEMU not found: looked for qemu-system-nonexistent in PATH"),
])
def test_missing_pieces_fail_at_power_on_and_the_exporter_keeps_serving(
        setting, message, image, make_config, run_exporter):
    exporter = run_exporter(make_config(board_entry(image, **setting)))
    with connect(exporter.address) as root:
        with pytest.raises(DriverError) as failure:
            root.board.power.on()
        assert message in str(failure.value)
        assert root.board.power.call("status") == "off"
        assert root.board.storage.call("status") == "dut"
    with connect(exporter.address) as root:  # a new session on the same exporter
        assert root.board.power.call("status") == "off"
    assert exporter.process.poll() is None


def _qemu_children(parent: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent and "qemu-system" in Path(stat.parent, "comm").read_text(errors="replace"):
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow  # the guest image (built on first use) and QEMU
@pytest.mark.parametrize("ending", ["session", "exporter"])
def test_qemu_ends_with_the_session_and_with_the_exporter(ending, image, make_config, run_exporter):
    # accel auto: KVM where it works, else TCG (here QEMU aborts under KVM and the board falls back)
    exporter = run_exporter(make_config(board_entry(image, accel="auto")))
    with connect(exporter.address) as root:
        root.board.power.on()
        (pid,) = wait_for(lambda: _qemu_children(exporter.process.pid), 10, "QEMU to run under the exporter")
        workdir = Path(os.readlink(f"/proc/{pid}/cwd"))  # the session's files: disk layer, sockets, log
        if ending == "exporter":
            exporter.process.send_signal(signal.SIGKILL)  # no cleanup runs: the kernel's death signal must do it
            wait_for(lambda: process_gone(pid), 15, "QEMU to end after the exporter was killed")
            exporter.process.wait(timeout=10)  # reaped: a zombie would still count as a live exporter
            assert workdir.exists()
            run_exporter(make_config(board_entry(image), filename="next.yaml"))  # sweeps what the dead one left
            assert not workdir.exists()
    if ending == "session":
        wait_for(lambda: process_gone(pid), 30, "QEMU to end with the client's session")
        wait_for(lambda: not workdir.exists(), 10, "the session's files to be removed")
        assert exporter.process.poll() is None


# --- pieces without a guest ------------------------------------------------------------

@pytest.mark.slow  # the guest image (built on first use) and QEMU
def test_image_tool_finds_the_image_and_prints_a_config_that_loads(image):
    tool = [str(Path(sys.executable).parent / "jumpstarter-lab-qemu-image")]
    found = subprocess.run([*tool, "path"], capture_output=True, text=True, timeout=60, check=True)
    assert found.stdout.strip() == str(image.directory)
    entry = subprocess.run([*tool, "config"], capture_output=True, text=True, timeout=60, check=True).stdout
    tree = load_text(exporter_config(entry)).build()
    try:
        spec = tree.children["board"].machine.spec
        assert (spec.image, spec.kernel, spec.append) == (image.rootfs, image.kernel, image.append)
    finally:
        tree.close()
    missing = subprocess.run([*tool, "mark", "/nonexistent.img", "m", "/tmp/x.img"], capture_output=True, text=True,
                             timeout=60, check=False)
    assert (missing.returncode, missing.stderr.strip()) == (1, "jumpstarter-lab-qemu-image: error: no image at /nonexistent.img")


UPSTREAM_STYLE = """
qemu:
  type: jumpstarter_driver_qemu.driver.Qemu
  config:
    mem: 1G
    smp: 1
    disk_size: 2G
    default_partitions: {root: /var/lib/images/vm.qcow2}
    hostfwd:
      web: {hostport: 18080, guestport: 80}
seed:
  type: jumpstarter_driver_qemu.driver.QEMU
  config: {image_path: /var/lib/jumpstarter/images/vm.qcow2, memory: 1G, cpu_cores: 2}
"""


def test_upstream_and_seed_configs_load():
    config = load_text(exporter_config(UPSTREAM_STYLE))
    tree = config.build()
    try:
        qemu = tree.children["qemu"]
        assert sorted(qemu.children) == ["console", "network", "power", "storage", "web"]
        assert (qemu.machine.spec.memory_mib, qemu.machine.spec.cpus, qemu.machine.spec.disk_bytes) == (1024, 1, 2 << 30)
        assert str(qemu.machine.spec.image) == "/var/lib/images/vm.qcow2"
        assert qemu.machine.forwards["web"].host_port == 18080
        assert tree.children["seed"].machine.spec.cpus == 2
    finally:
        tree.close()


@pytest.mark.parametrize("config, message", [
    ("{memory: lots}", "memory: expected a size such as 512M or 2G, got 'lots'"),
    ("{memory: 1G, mem: 2G}", "memory and mem say different things"),
    ("{accel: fast}", 'export.board.config.accel: expected "auto" or "kvm" or "tcg"'),
    ("{hostfwd: {console: {guestport: 80}}}", "hostfwd.console: 'console' is the name of one of the board's own"),
    ("{hostfwd: {web: {guestport: 80, protocol: udp}}}", "hostfwd.web.protocol: only tcp is supported"),
    ("{default_partitions: {OVMF_CODE.fd: /x}}", "default_partitions: 'OVMF_CODE.fd' is not supported"),
    ("{initrd: /boot/initrd.img}", "initrd and append need a kernel"),
    ("{firmware: u-boot, kernel: /boot/vmlinuz}", "firmware u-boot loads its kernel itself (tftpboot, or from"),
    ("{firmware: u-boot, default_partitions: {bios: /x.rom}}", "firmware u-boot and default_partitions.bios both"),
    ("{firmware: grub}", 'export.board.config.firmware: expected "default" or "u-boot"'),
])
def test_bad_settings_are_named(config, message):
    with pytest.raises(ConfigError) as failure:
        load_text(exporter_config(f"board:\n  type: jumpstarter_lab_driver_qemu.QemuBoard\n  config: {config}\n"))
    assert message in str(failure.value)


@pytest.mark.slow  # the guest image (built on first use) and QEMU
def test_cli_calls_the_qemu_boards_drivers(image, make_config, run_exporter):
    exporter = run_exporter(make_config(board_entry(image)))
    host = ("--host", exporter.address)
    assert json.loads(cli("call", *host, "board.power.read").stdout) == {"voltage": 0, "current": 0}
    assert cli("call", *host, "board.storage.status").stdout.strip() == "dut"
    missing = cli("call", *host, "board.power.nope")
    assert missing.returncode == 1 and "has no exported method 'nope'" in missing.stderr
