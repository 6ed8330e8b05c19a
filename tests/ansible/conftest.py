"""Ansible against the sim board: the collection on a collections path, a real exporter, real ansible runs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import BIN, ROOT, ExporterProcess, exporter_config
from jumpstarter_lab.client import connect

SIM = """
board:
  type: jumpstarter_lab_driver_sim.SimBoard
  config:
    password: s3cret
"""


@pytest.fixture(scope="session")
def collections_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("collections")
    (path / "ansible_collections" / "jumpstarter").mkdir(parents=True)
    (path / "ansible_collections" / "jumpstarter" / "lab").symlink_to(ROOT)
    return path


class Lab:
    def __init__(self, workdir: Path, collections: Path, address: str, **host_vars):
        """`host_vars` add to or replace board1's inventory variables (the sim board's by default)."""
        self.workdir, self.collections, self.address = workdir, collections, address
        self.inventory = workdir / "inventory.yml"
        self.inventory.write_text(yaml.safe_dump({"all": {"hosts": {"board1": {
            "ansible_connection": "jumpstarter.lab.jumpstarter",
            "jumpstarter_host": address,
            "jumpstarter_console": "board.console",
            "ansible_password": "s3cret",
            "ansible_python_interpreter": "/usr/bin/python3",
        } | host_vars}}}))

    def env(self) -> dict:
        return dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(self.collections), ANSIBLE_LOCAL_TEMP=str(self.workdir / "tmp"),
                    ANSIBLE_STDOUT_CALLBACK="lab_json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
                    ANSIBLE_CALLBACK_PLUGINS=str(Path(__file__).parent / "callback_plugins"),
                    ANSIBLE_NOCOLOR="1", ANSIBLE_HOME=str(self.workdir / "ansible-home"),
                    PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")

    def adhoc(self, module: str, args: str = "", *extra: str, timeout: float = 300) -> dict:
        """Run `ansible board1 -m module -a args` and return the host's result."""
        result = subprocess.run([str(BIN / "ansible"), "-i", str(self.inventory), "board1", "-m", module, "-a", args,
                                 *extra], capture_output=True, text=True, env=self.env(), timeout=timeout,
                                cwd=self.workdir, check=False)
        try:
            output = json.loads(result.stdout)
        except json.JSONDecodeError:
            raise AssertionError(f"ansible printed no JSON:\n{result.stdout}\n{result.stderr}") from None
        return output["plays"][0]["tasks"][0]["hosts"]["board1"]

    def playbook(self, playbook: str, *extra: str, timeout: float = 600) -> dict:
        path = self.workdir / "playbook.yml"
        path.write_text(playbook)
        result = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(self.inventory), str(path), *extra],
                                capture_output=True, text=True, env=self.env(), timeout=timeout, cwd=self.workdir, check=False)
        try:
            output = json.loads(result.stdout)
        except json.JSONDecodeError:
            raise AssertionError(f"ansible-playbook printed no JSON:\n{result.stdout}\n{result.stderr}") from None
        output["rc"] = result.returncode
        return output


def start_exporter(workdir: Path, export: str, *args: str) -> ExporterProcess:
    """An exporter serving `export` on workdir/lab.sock (config and log in workdir); also makes the
    temporary directory a Lab's Ansible runs use."""
    config = workdir / "exporter.yaml"
    config.write_text(exporter_config(export))
    (workdir / "tmp").mkdir()
    return ExporterProcess(["--config", str(config), "--socket", str(workdir / "lab.sock"), *args],
                           workdir / "exporter.log")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, collections_path):
    """A sim board, flashed and powered on in the session the inventory's host uses."""
    workdir = tmp_path_factory.mktemp("lab")
    exporter = start_exporter(workdir, SIM, "--session-linger", "600")
    image = workdir / "image.bin"
    image.write_bytes(b"JUMPSTARTER_MARKER=ansible-lab\n")
    holder = connect(exporter.address, session="ansible-board1")
    root = holder.__enter__()
    root.board.storage.flash(image)
    root.board.power.on()
    try:
        yield Lab(workdir, collections_path, exporter.address)
    finally:
        holder.__exit__(None, None, None)
        exporter.stop()
