"""The `jumpstarter-lab` command: one-line errors, no leftovers, calls and shells."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from helpers import CLI, STANDARD_EXPORT, cli, exporter_config


BROKEN = {
    "unknown-type": ("power:\n  type: jumpstarter_driver_power.driver.Nope\n",
                     "export.power.type: unknown driver type 'jumpstarter_driver_power.driver.Nope'"),
    "wrong-param": ("serial:\n  type: jumpstarter_driver_pyserial.driver.PySerial\n  config:\n    url: loop://\n"
                    "    baudrate: fast\n",
                    'export.serial.config.baudrate: expected integer, got "fast"'),
    "not-a-driver": ("x:\n  type: os.path.join\n", "'os.path.join' is not a jumpstarter.lab driver class"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_config_fails_with_one_line_and_leaves_nothing(case, tmp_path):
    export, message = BROKEN[case]
    config = tmp_path / "exporter.yaml"
    config.write_text(exporter_config(export))
    socket = tmp_path / "e.sock"
    for args in (["exporter", "check", "--config", str(config)],
                 ["exporter", "run", "--config", str(config), "--socket", str(socket)]):
        result = cli(*args)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and str(config) in lines[0], result.stderr
    assert not socket.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exporter.yaml"]


def test_check_reports_a_good_config(tmp_path):
    config = tmp_path / "ok.yaml"
    config.write_text(exporter_config(STANDARD_EXPORT))
    result = cli("exporter", "check", "--config", str(config))
    assert result.returncode == 0
    assert result.stdout.strip() == f"{config}: ok, exporter 'test' with 3 driver(s)"
    assert "hooks" not in result.stderr


def test_an_upstream_config_with_hooks_loads_and_names_them(tmp_path):
    config = tmp_path / "hooks.yaml"
    config.write_text(exporter_config(STANDARD_EXPORT) + "hooks:\n  beforeLease: {script: j power on}\n"
                      "  afterLease: {script: j power off, onFailure: warn, timeout: 30, exec: /bin/bash}\n")
    result = cli("exporter", "check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{config}: ok, exporter 'test' with 3 driver(s), hooks: beforeLease, afterLease"
    assert result.stderr == ""


@pytest.mark.parametrize(("hooks", "message"), [
    ("  beforeLease: {script: j power on, onFailure: explode}\n", "hooks.beforeLease.onFailure"),
    ("  beforeLeas: {script: j power on}\n", "beforeLeas"),
    ("  afterLease: {timeout: 5}\n", "script"),
    ("  afterLease: {script: x, timeout: 0}\n", "hooks.afterLease.timeout"),
])
def test_a_broken_hook_is_refused_naming_it(tmp_path, hooks, message):
    config = tmp_path / "hooks.yaml"
    config.write_text(exporter_config(STANDARD_EXPORT) + "hooks:\n" + hooks)
    result = cli("exporter", "check", "--config", str(config))
    assert result.returncode == 1
    assert message in result.stderr and f"{config.name}:" in result.stderr, result.stderr


def test_call_and_tree_against_a_running_exporter(make_config, run_exporter):
    exporter = run_exporter(make_config(STANDARD_EXPORT))
    tree = cli("tree", "--host", exporter.address)
    assert tree.returncode == 0, tree.stderr
    assert "power  [jumpstarter_driver_power.client.PowerClient]" in tree.stdout
    assert ".on()  Power on" in tree.stdout
    assert cli("call", "--host", exporter.address, "power.status").stdout.strip() == "off"
    reading = cli("call", "--host", exporter.address, "power.read")
    assert json.loads(reading.stdout) == {"voltage": 0, "current": 0}
    missing = cli("call", "--host", exporter.address, "power.explode")
    assert missing.returncode == 1
    assert missing.stderr.strip() == ("jumpstarter-lab: error: power.explode: MockPower has no exported method "
                                      "'explode' (it has: off, on, read, status)")
    nowhere = cli("call", "--host", exporter.address, "fan.on")
    assert nowhere.stderr.strip() == "jumpstarter-lab: error: no driver 'fan' under the exporter (has: power, echo, serial)"
    extra = cli("call", "--host", exporter.address, "power.on", "1")
    assert "wrong arguments for on()" in extra.stderr and extra.returncode == 1


def test_shell_runs_commands_in_one_session(tmp_path):
    config = tmp_path / "exporter.yaml"
    config.write_text(exporter_config(STANDARD_EXPORT))
    script = f"{CLI} call power.on && {CLI} call power.status && echo host=$JUMPSTARTER_HOST"
    result = cli("shell", "--config", str(config), "--", "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "on"  # the second command saw the first one's power state
    socket = lines[1].removeprefix("host=")
    assert socket.endswith("exporter.sock") and not os.path.exists(socket)
    failing = cli("shell", "--config", str(config), "--", "sh", "-c", "exit 7")
    assert failing.returncode == 7


def test_call_without_an_exporter_says_how_to_give_one():
    env = {k: v for k, v in os.environ.items() if k != "JUMPSTARTER_HOST"}
    result = subprocess.run([CLI, "call", "power.on"], capture_output=True, text=True, timeout=60, env=env, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == "jumpstarter-lab: error: no exporter address given and JUMPSTARTER_HOST is not set"


def test_call_reaches_serial_storage_and_board_drivers(make_config, run_exporter, tmp_path):
    exporter = run_exporter(make_config(f"""
serial:
  type: jumpstarter_driver_pyserial.driver.PySerial
  config: {{url: "loop://"}}
missing:
  type: jumpstarter_driver_pyserial.driver.PySerial
  config: {{url: /dev/ttyNOPE9}}
storage:
  type: jumpstarter_driver_opendal.driver.MockStorageMux
  config: {{image: {tmp_path / 'disk.img'}}}
board:
  type: jumpstarter_lab_driver_sim.SimBoard
"""))
    host = ("--host", exporter.address)
    assert cli("call", *host, "serial.set_dtr", "true").returncode == 0
    missing = cli("call", *host, "missing.set_rts", "false")
    assert missing.returncode == 1
    assert "serial device /dev/ttyNOPE9 is not available" in missing.stderr
    assert cli("call", *host, "storage.status").stdout.strip() == "dut"
    assert cli("call", *host, "storage.host").returncode == 0
    assert json.loads(cli("call", *host, "board.power.read").stdout) == {"voltage": 0, "current": 0}
    assert cli("call", *host, "board.storage.status").stdout.strip() == "dut"
    wrong = cli("call", *host, "board.storage.write", "not-a-handle")
    assert wrong.returncode == 1 and "call host() before write()" in wrong.stderr
    assert cli("tree", *host).returncode == 0  # the exporter is still serving after all that


def test_flash_writes_once_with_progress_and_says_what_it_did(make_config, run_exporter, tmp_path):
    disk = tmp_path / "disk.img"
    exporter = run_exporter(make_config(f"""
board:
  type: jumpstarter_lab_driver_sim.SimBoard
  config: {{image: {disk}}}
"""))
    image = tmp_path / "image.gz"
    image.write_bytes(__import__("gzip").compress(b"JUMPSTARTER_MARKER=cli-flash\n" + os.urandom(300_000)))
    host = ("--host", exporter.address)
    first = cli("flash", *host, str(image), "-o", "json")
    assert first.returncode == 0, first.stderr
    (record,) = json.loads(first.stdout)
    assert record["name"] == "board.storage" and record["changed"] is True and record["compression"] == "gzip"
    assert "image.gz -> board.storage" in first.stderr  # the progress bar, on stderr
    again = cli("flash", *host, str(image))
    assert again.stdout.strip() == f"board.storage: holds {image} already (sha256 {record['sha256']}); --force writes it"
    forced = cli("flash", *host, str(image), "--force", "--storage", "board.storage")
    assert forced.stdout.startswith(f"board.storage: wrote {image} ("), forced.stdout
    assert disk.read_bytes().startswith(b"JUMPSTARTER_MARKER=cli-flash\n")
    missing = cli("flash", *host, str(tmp_path / "nothing.img"))
    assert missing.returncode == 1 and "nothing.img is not a file" in missing.stderr
    nowhere = cli("flash", *host, str(image), "--storage", "board.disk")
    assert nowhere.returncode == 1 and "no driver 'disk'" in nowhere.stderr, nowhere.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh", "tcsh"])
def test_completion_scripts_know_the_commands(shell, tmp_path):
    script = cli("completion", shell)
    assert script.returncode == 0, script.stderr
    for command in ("lease", "flash", "exporters"):
        assert command in script.stdout
    assert shell == "tcsh" or "--acquisition-timeout" in script.stdout  # tcsh's script completes commands only
    if shell == "bash":  # bash itself loads it and completes a subcommand
        path = tmp_path / "completion.bash"
        path.write_text(script.stdout)
        probe = subprocess.run(["bash", "-c", f"source {path}; COMP_WORDS=(jumpstarter-lab fla); COMP_CWORD=1; "
                                "_shtab_jumpstarter_lab jumpstarter-lab fla jumpstarter-lab; echo ${COMPREPLY[@]}"],
                               capture_output=True, text=True, check=False)
        assert probe.stdout.split() == ["flash"], probe
