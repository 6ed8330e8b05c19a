"""The exporter role run for real against this machine (connection local, everything under a
temporary prefix, no systemd here): the virtualenv, the validated configs, the unit, an exporter
started exactly as the unit starts it, a second run with no changes, a bad config refused."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import Lab
from helpers import BIN, ExporterProcess, cli

pytestmark = pytest.mark.slow  # a venv built and the role run three times: minutes

EXPORT = {"power": {"type": "jumpstarter_driver_power.driver.MockPower"},
          "echo": {"type": "jumpstarter_driver_network.driver.EchoNetwork"}}


@pytest.fixture(scope="module")
def role_lab(tmp_path_factory, collections_path):
    workdir = tmp_path_factory.mktemp("role")
    (workdir / "tmp").mkdir()
    lab = Lab(workdir, collections_path, None)

    def play(exporters: list[dict]) -> tuple[subprocess.CompletedProcess, dict]:
        playbook = workdir / "site.yml"
        playbook.write_text(yaml.safe_dump([{
            "hosts": "localhost", "connection": "local", "gather_facts": False,
            "vars": {"ansible_python_interpreter": sys.executable},
            "roles": [{"role": "jumpstarter.lab.exporter", "vars": {
                "jumpstarter_lab_exporter_prefix": str(workdir / "prefix"),
                "jumpstarter_lab_exporter_python": sys._base_executable,
                "jumpstarter_lab_exporter_packages": ["exporter", "drivers/power", "drivers/network"],
                "jumpstarter_lab_exporter_config_dir": str(workdir / "etc"),
                "jumpstarter_lab_exporter_unit_dir": str(workdir / "units"),
                "jumpstarter_lab_exporter_service": False,
                "jumpstarter_lab_exporter_exporters": exporters,
            }}],
        }]))
        result = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", str(playbook)], capture_output=True,
                                text=True, env=lab.env(), cwd=workdir, timeout=900, check=False)
        return result, json.loads(result.stdout)

    bench1 = {"name": "bench1", "config": {"export": EXPORT}, "args": ["--socket", str(workdir / "bench1.sock")]}
    first = play([bench1])
    return workdir, play, bench1, first


def test_the_role_installs_configures_and_the_unit_starts_an_exporter(role_lab):
    workdir, _play, _bench1, (result, output) = role_lab
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert output["stats"]["localhost"]["changed"] >= 5
    assert (workdir / "prefix" / "bin" / "jumpstarter-lab").exists()
    config = workdir / "etc" / "bench1.yaml"
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    assert yaml.safe_load(config.read_text())["metadata"] == {"namespace": "default", "name": "bench1"}
    assert (workdir / "etc" / "bench1.env").read_text() == f"EXPORTER_ARGS=--socket {workdir / 'bench1.sock'}\n"

    unit = workdir / "units" / "jumpstarter-lab-exporter@.service"
    instance = workdir / "jumpstarter-lab-exporter@bench1.service"
    instance.write_text(unit.read_text())
    verified = subprocess.run(["systemd-analyze", "verify", str(instance)], capture_output=True, text=True, check=False)
    assert "jumpstarter-lab-exporter@bench1.service" not in verified.stderr, verified.stderr

    # Start the exporter as the unit does: its ExecStart, with %i and the env file's arguments.
    exec_start = next(line for line in unit.read_text().splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(exec_start.removeprefix("ExecStart=").replace("%i", "bench1").replace(
        "$EXPORTER_ARGS", (workdir / "etc" / "bench1.env").read_text().strip().split("=", 1)[1]))
    assert argv[:3] == [str(workdir / "prefix" / "bin" / "jumpstarter-lab"), "exporter", "run"]
    exporter = ExporterProcess(argv[3:], workdir / "bench1.log", cli=argv[0])
    try:
        tree = cli("tree", "--host", exporter.address)
        assert tree.returncode == 0 and "power" in tree.stdout and "echo" in tree.stdout, tree.stderr
    finally:
        exporter.stop()


def test_a_second_run_changes_nothing(role_lab):
    _workdir, play, bench1, _first = role_lab
    result, output = play([bench1])
    assert result.returncode == 0, result.stdout[-3000:]
    assert output["stats"]["localhost"]["changed"] == 0


def test_a_bad_config_is_refused_and_the_old_one_stays(role_lab):
    workdir, play, bench1, _first = role_lab
    before = (workdir / "etc" / "bench1.yaml").read_text()
    broken = dict(bench1, config={"export": {"power": {"type": "no.such.Driver"}}})
    result, output = play([broken])
    assert result.returncode != 0
    failed = [task for task in output["plays"][0]["tasks"]
              if any(host.get("failed") for host in task["hosts"].values())]
    message = json.dumps(failed[0]["hosts"]["localhost"])
    assert "bench1" in message and "unknown driver type 'no.such.Driver'" in message
    assert (workdir / "etc" / "bench1.yaml").read_text() == before
    assert os.stat(workdir / "etc" / "bench1.yaml").st_mode & 0o777 == 0o600
    assert Path(workdir / "etc").exists()
