"""The pytest plugin as a test engineer uses it: a small suite of its own against the sim board, run by
pytest in a subprocess - once on an exporter on this desk, once through a lease from the controller."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from helpers import ControllerLab, ExporterProcess, cli, exporter_config

SUITE = '''
import time


def test_the_board_boots_and_its_console_is_recorded(jumpstarter, jumpstarter_console):
    jumpstarter.board.storage.flash(IMAGE)
    jumpstarter.board.power.on()
    deadline = time.monotonic() + 60
    while "login: " not in jumpstarter_console.text():
        assert time.monotonic() < deadline, jumpstarter_console.text()
        time.sleep(0.2)
    assert "Booting image from-the-plugin" in jumpstarter_console.text()


def test_the_next_test_sees_only_its_own_console(jumpstarter, jumpstarter_console):
    assert "Booting image" not in jumpstarter_console.text()  # that was the test before
    jumpstarter.board.power.off()


def test_the_lease(jumpstarter_lease):
    print("LEASE", jumpstarter_lease)
'''

BOARD = {"type": "jumpstarter_lab_driver_sim.SimBoard", "config": {"password": "s3cret"}}


def run_suite(tmp_path, *options: str, env: dict | None = None) -> subprocess.CompletedProcess:
    image = tmp_path / "image.bin"
    image.write_bytes(b"JUMPSTARTER_MARKER=from-the-plugin\n")
    suite = tmp_path / "suite"
    suite.mkdir(exist_ok=True)
    (suite / "test_board.py").write_text(f"IMAGE = {str(image)!r}\n" + SUITE)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "jumpstarter_lab.pytest_plugin", "-p",
                           "no:cacheprovider", "-s", "-q", str(suite),
                           "--jumpstarter-log-dir", str(tmp_path / "logs"), *options],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False,
                          env={**os.environ, **(env or {})})


def test_a_suite_uses_a_board_on_this_desk_and_keeps_its_console_log(tmp_path):
    config = tmp_path / "exporter.yaml"
    import yaml

    config.write_text(exporter_config(yaml.safe_dump({"board": BOARD})))
    exporter = ExporterProcess(["--config", str(config), "--socket", str(tmp_path / "lab.sock")], tmp_path / "exp.log")
    try:
        result = run_suite(tmp_path, "--jumpstarter-host", exporter.address)
    finally:
        exporter.stop()
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "3 passed" in result.stdout and "LEASE None" in result.stdout
    (log,) = (tmp_path / "logs").iterdir()
    assert f"jumpstarter: console log {log.relative_to(tmp_path)}" in result.stdout or str(log.name) in result.stdout
    text = log.read_text()
    assert "Booting image from-the-plugin" in text and "login: " in text
    assert all(line.startswith("[") for line in text.splitlines() if line), text[:500]  # a timestamp on each


def test_a_suite_leases_a_board_for_the_session_and_gives_it_back(tmp_path):
    lab = ControllerLab(tmp_path, str(tmp_path / "controller.db"))
    try:
        lab.client("alice")
        lab.exporter("sim1", "board=sim", export={"board": BOARD})
        config = str(tmp_path / "alice.yaml")
        result = run_suite(tmp_path, "--jumpstarter-selector", "board=sim", "--jumpstarter-client-config", config)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        assert "3 passed" in result.stdout
        lease = re.search(r"LEASE (\S+)", result.stdout).group(1)
        listed = cli("lease", "list", "--all", "--tag-filter", f"pytest={tmp_path.name}", "-o", "name",
                     "--client-config", config)
        assert listed.stdout.split() == [lease], listed  # tagged with the suite's directory, and ended
        assert cli("lease", "list", "-o", "name", "--client-config", config).stdout == ""
        nothing = run_suite(tmp_path, "--jumpstarter-selector", "board=nothing", "--jumpstarter-client-config",
                            config, "--jumpstarter-acquisition-timeout", "2")
        assert nothing.returncode != 0 and "jumpstarter: no board for the session (board=nothing)" in nothing.stdout
        assert "not granted within 2s" in nothing.stdout, nothing.stdout[-3000:]
    finally:
        lab.stop()


@pytest.mark.parametrize("options, said", [
    ((), "jumpstarter: name a board"),
    (("--jumpstarter-selector", "board=sim"), "a lease needs a client config"),
])
def test_a_suite_without_a_board_is_told_what_to_give(tmp_path, options, said):
    env = {"JUMPSTARTER_HOST": "", "JMP_CLIENT_CONFIG": ""}
    result = run_suite(tmp_path, *options, env=env)
    assert result.returncode != 0 and said in result.stdout, result.stdout[-3000:]
