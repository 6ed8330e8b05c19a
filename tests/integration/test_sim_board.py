"""The sim board through a real exporter: flash an image, power on, see it boot, log in, run a shell."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from helpers import CLI, process_gone, subprocess_env, wait_for
from jumpstarter_lab.client import connect
from jumpstarter_lab.wire.errors import DriverInvalidArgument
from jumpstarter_lab_driver_serial.client import Console

SIM = """
board:
  type: jumpstarter_lab_driver_sim.SimBoard
  config:
    password: s3cret
"""


def login(console: Console, password: str = "s3cret", user: str = "root") -> None:
    console.expect("login: ", timeout=20)
    console.sendline(user)
    console.expect("Password: ")
    console.sendline(password)


def test_flashed_image_boots_to_a_real_shell(make_config, run_exporter, tmp_path):
    exporter = run_exporter(make_config(SIM))
    image = tmp_path / "image.bin"
    image.write_bytes(b"\x7fELF" + bytes(4096) + b"\nJUMPSTARTER_MARKER=build-1234\n")
    with connect(exporter.address) as root:
        board = root.board
        assert sorted(board.children) == ["console", "power", "storage"]
        with pytest.raises(DriverInvalidArgument, match="call host\\(\\) before write\\(\\)"):
            board.storage.write_file(image)
        board.storage.flash(image)
        assert board.storage.call("status") == "dut"
        with board.console.open() as console:
            board.power.on()
            assert console.expect(r"Booting image (\S+)", timeout=20).group(1) == b"build-1234"
            login(console, "wrong")
            console.expect("Login incorrect")
            login(console)
            console.expect(r"root@simboard:.*# ")
            console.sendline("echo $((6*7)) $SIM_MARKER; tty; exit 3")
            found = console.expect(r"42 (\S+)\r\n(/dev/pts/\d+)")
            assert found.group(1) == b"build-1234"
            login(console)  # the shell exited; the board asks for a login again
            console.sendline("echo still-$((1+1))")
            console.expect("still-2")
        assert [r.voltage for r in board.power.read()] == [5.0]
        board.power.off()
        assert [r.voltage for r in board.power.read()] == [0.0]


def test_storage_on_host_side_means_nothing_boots(make_config, run_exporter):
    exporter = run_exporter(make_config(SIM))
    with connect(exporter.address) as root:
        root.board.storage.host()
        with root.board.console.open() as console:
            root.board.power.on()
            console.expect("no bootable image found in storage; halted", timeout=20)


SHELL_PID = """
import sys, time
from jumpstarter_lab.client import connect
from jumpstarter_lab_driver_serial.client import Console
with connect(sys.argv[1]) as root:
    open(sys.argv[2], "wb").write(b"JUMPSTARTER_MARKER=pid-test")
    root.board.storage.flash(sys.argv[2])
    with root.board.console.open() as console:
        root.board.power.on()
        console.expect("login: ", timeout=20)
        console.sendline("root"); console.expect("Password: "); console.sendline("s3cret")
        console.expect("# ", timeout=20)
        console.sendline('echo "P""ID=$$"')
        print(console.expect(r"PID=(\\d+)").group(1).decode(), flush=True)
        time.sleep(600)
"""


def _board_shell(exporter, image: Path) -> tuple[subprocess.Popen, int]:
    client = subprocess.Popen([sys.executable, "-c", SHELL_PID, exporter.address, str(image)],
                              stdout=subprocess.PIPE, env=subprocess_env())
    pid = int(client.stdout.readline())
    assert Path(f"/proc/{pid}").exists()
    return client, pid


@pytest.mark.parametrize("who", ["client", "exporter"])
def test_board_processes_end_when_a_peer_is_killed(who, make_config, run_exporter, tmp_path):
    exporter = run_exporter(make_config(SIM))
    client, pid = _board_shell(exporter, tmp_path / "image.bin")
    try:
        (client if who == "client" else exporter.process).send_signal(signal.SIGKILL)
        wait_for(lambda: process_gone(pid), 15, f"the board's shell to end after the {who} was killed")
    finally:
        client.kill()
        client.wait()
        client.stdout.close()


def test_a_person_at_the_cli_console(make_config, run_exporter, tmp_path):
    """`jumpstarter-lab console` on a real pty: watch the boot, log in, run a command, leave with Ctrl-]."""
    exporter = run_exporter(make_config(SIM))
    image = tmp_path / "image.bin"
    image.write_bytes(b"JUMPSTARTER_MARKER=console-test\n")
    with connect(exporter.address, session="person") as root:
        root.board.storage.flash(image)
        child = pexpect.spawn(CLI, ["console", "board.console", "--host", exporter.address, "--session", "person"],
                              env=subprocess_env(), timeout=30)
        try:
            child.expect_exact("[connected; Ctrl-] to leave]")
            root.board.power.on()  # the person watches it boot
            child.expect("Booting image console-test")
            child.expect("login: ")
            child.send("root\r")
            child.expect("Password: ")
            child.send("s3cret\r")
            child.expect("# ")
            child.send("echo $((40+2))-$SIM_MARKER\r")
            child.expect("42-console-test")
            child.sendcontrol("]")
            child.expect_exact("[left the console]")
            child.expect(pexpect.EOF)
        finally:
            child.close()
        assert child.exitstatus == 0


def test_paced_console_carries_everything_both_ways(make_config, run_exporter, tmp_path):
    """`baudrate: 115200` paces the console like a UART; every byte still arrives, in order, both ways."""
    exporter = run_exporter(make_config(SIM + "    baudrate: 115200\n"))
    image = tmp_path / "image.bin"
    image.write_bytes(b"JUMPSTARTER_MARKER=paced\n")
    sent = base64.encodebytes(os.urandom(12 * 1024))  # 76-column lines, well under the tty's line limit
    with connect(exporter.address) as root:
        root.board.storage.flash(image)
        with root.board.console.open() as console:
            root.board.power.on()
            assert console.expect(r"Booting image (\S+)", timeout=20).group(1) == b"paced"
            login(console)
            console.expect(r"root@simboard:.*# ")
            console.sendline("stty -echo")
            console.expect(r"# ")
            # In: the board hashes exactly the bytes that crossed the line.
            console.sendline(f"head -c {len(sent)} | sha256sum")
            console.send(sent)
            assert console.expect(r"([0-9a-f]{64})  -", timeout=60).group(1).decode() == hashlib.sha256(sent).hexdigest()
            # Out: 14 KB of numbers between two markers, exactly as the board printed them.
            console.sendline("echo BE''GIN; seq 1 3000; echo E''ND")
            body = console.expect(rb"(?s)BEGIN\r\n(.*?)END\r\n", timeout=60).group(1)
            assert body.replace(b"\r\n", b"\n") == b"".join(b"%d\n" % n for n in range(1, 3001))


USER_SIM = """
board:
  type: jumpstarter_lab_driver_sim.SimBoard
  config:
    login: jumpstarter
    password: s3cret
    root_password: r00t-pw
"""


def test_a_login_other_than_root_is_an_account_of_the_board(make_config, run_exporter, tmp_path):
    """The shell runs as the board's own unprivileged account, su to root takes root_password, and the
    host's account files are what they were while the board has its own."""
    if os.geteuid() != 0:
        pytest.fail("the board switches to an account of its own: this test must run as root (as CI does)")
    host = {name: Path(f"/etc/{name}").read_bytes() for name in ("passwd", "group", "shadow")}
    exporter = run_exporter(make_config(USER_SIM))
    image = tmp_path / "image.bin"
    image.write_bytes(b"JUMPSTARTER_MARKER=accounts\n")
    with connect(exporter.address) as root:
        root.board.storage.flash(image)
        with root.board.console.open() as console:
            root.board.power.on()
            login(console, user="root")
            console.expect("Login incorrect")  # root is not the board's login
            login(console, user="jumpstarter")
            console.expect(r"jumpstarter@simboard:~\$ ")
            console.sendline('echo "uid=$(id -u) name=$(id -un) home=$HOME"; grep -c ^jumpstarter: /etc/passwd')
            found = console.expect(r"uid=(\d+) name=(\S+) home=(\S+)\r\n(\d+)\r\n")
            assert int(found.group(1)) >= 1000 and found.group(2) == b"jumpstarter", found.group(0)
            assert found.group(3).endswith(b"/home/jumpstarter") and found.group(4) == b"1"
            assert {name: Path(f"/etc/{name}").read_bytes() for name in host} == host
            console.sendline("su -c 'echo su-uid=$(id -u)' root")
            console.expect("Password: ")
            console.sendline("wrong")
            console.expect("su: Authentication failure")
            console.sendline("su -c 'echo su-uid=$(id -u)' root")
            console.expect("Password: ")
            console.sendline("r00t-pw")
            assert console.expect(r"su-uid=(\d+)").group(1) == b"0"
        root.board.power.off()
    assert {name: Path(f"/etc/{name}").read_bytes() for name in host} == host
