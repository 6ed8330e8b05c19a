"""The jumpstarter connection's tcp transport: Ansible's ssh through a port forward over a network driver."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import Lab, start_exporter
from helpers import listening, prepare_sshd, wait_for


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A private sshd on loopback accepting one generated key for the current user."""
    if not Path("/usr/sbin/sshd").exists():
        pytest.fail("sshd is not installed; scripts/bootstrap.sh installs openssh-server")
    directory = tmp_path_factory.mktemp("sshd")
    port, key, argv = prepare_sshd(directory)
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(directory / "sshd.log", "wb"))  # noqa: SIM115

    wait_for(lambda: listening(port), 30, "sshd to listen")
    yield {"port": port, "key": key}
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def ssh_lab(tmp_path_factory, collections_path, sshd):
    workdir = tmp_path_factory.mktemp("ssh-lab")
    exporter = start_exporter(workdir, f"""
board:
  children:
    ssh:
      type: jumpstarter_driver_network.driver.TcpNetwork
      config: {{host: 127.0.0.1, port: {sshd['port']}}}
""")
    lab = Lab(workdir, collections_path, exporter.address)
    lab.inventory.write_text(yaml.safe_dump({"all": {"hosts": {"board1": {
        "ansible_connection": "jumpstarter.lab.jumpstarter",
        "jumpstarter_host": exporter.address,
        "jumpstarter_transport": "tcp",
        "ansible_user": os.environ.get("USER", "root"),
        "ansible_private_key_file": str(sshd["key"]),
        "ansible_python_interpreter": "/usr/bin/python3",
    }}}}))
    yield lab
    exporter.stop()


def test_commands_and_files_over_ssh_through_the_exporter(ssh_lab, tmp_path):
    result = ssh_lab.adhoc("command", "echo $SSH_CONNECTION")
    assert result["rc"] == 0, result
    assert result["stdout"].split()[0] == "127.0.0.1"  # it came in over loopback from the exporter's stream
    data = os.urandom(300 * 1024)
    source = tmp_path / "blob.bin"
    source.write_bytes(data)
    copied = ssh_lab.adhoc("copy", f"src={source} dest={tmp_path}/copied.bin")
    assert copied.get("changed") is True, copied
    assert hashlib.sha256((tmp_path / "copied.bin").read_bytes()).digest() == hashlib.sha256(data).digest()
    fetched = ssh_lab.adhoc("fetch", f"src={tmp_path}/copied.bin dest={tmp_path}/back/ flat=true")
    assert Path(fetched["dest"]).read_bytes() == data
    failing = ssh_lab.adhoc("shell", "echo oops >&2; exit 4")
    assert failing["rc"] == 4 and failing["stderr"] == "oops"


def test_missing_network_driver_is_named(ssh_lab):
    result = ssh_lab.adhoc("command", "true", "-e", "jumpstarter_network=board.nope")
    assert result.get("unreachable") is True
    assert "the exporter has no driver 'board.nope'" in result["msg"]
