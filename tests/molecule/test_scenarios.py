"""The molecule scenarios (extensions/molecule): the collection's roles on real systemd hosts, booted with
systemd-nspawn, through molecule's whole sequence (create, converge, idempotence, verify, side effect,
destroy). Molecule runs from its own venv in the cache (scripts/bootstrap.sh makes it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT

pytestmark = pytest.mark.slow

SCENARIOS = sorted(p.parent.name for p in (ROOT / "extensions" / "molecule").glob("*/molecule.yml"))
CACHE = Path(os.environ.get("JUMPSTARTER_LAB_CACHE", Path.home() / ".cache" / "jumpstarter-lab"))
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def molecule_env(tmp_path_factory):
    molecule = CACHE / "molecule" / "bin"
    if not (molecule / "molecule").exists():
        pytest.fail(f"molecule is not installed in {molecule.parent}; scripts/bootstrap.sh installs it")
    if os.geteuid() != 0:
        pytest.fail("the molecule hosts are booted with systemd-nspawn, which needs root (as CI runs)")
    # The collection as users install it: built into a tarball, installed with ansible-galaxy.
    built = tmp_path_factory.mktemp("built")
    collections = tmp_path_factory.mktemp("collections")
    galaxy = [str(molecule / "ansible-galaxy"), "collection"]
    done = subprocess.run([*galaxy, "build", "--output-path", str(built), str(ROOT)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    (tarball,) = built.glob("jumpstarter-lab-*.tar.gz")
    done = subprocess.run([*galaxy, "install", "-p", str(collections), str(tarball)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    # JUMPSTARTER_LAB_VENV: the project's venv, for what a lab user runs on the Ansible controller (the inventory
    # plugin and modules need the client library).
    return dict(os.environ, PATH=f"{molecule}{os.pathsep}{os.environ['PATH']}",
                JUMPSTARTER_LAB_COLLECTIONS=str(collections), ANSIBLE_COLLECTIONS_PATH=str(collections),
                JUMPSTARTER_LAB_CACHE=str(CACHE), JUMPSTARTER_LAB_VENV=sys.prefix,
                ANSIBLE_FORCE_COLOR="0", NO_COLOR="1")


def test_there_is_a_scenario_per_role():
    """Each role has its scenario, or is included by a role that has one (as venv is by both)."""
    roles = {p.name for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir()}
    included = {name for role in SCENARIOS for tasks in (ROOT / "roles" / role / "tasks").glob("*.yml")
                for name in re.findall(r"name: jumpstarter\.lab\.(\w+)", tasks.read_text())}
    assert roles <= set(SCENARIOS) | included, f"roles no scenario runs: {roles - set(SCENARIOS) - included}"


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario, molecule_env):
    result = subprocess.run(["molecule", "test", "--scenario-name", scenario], cwd=ROOT, env=molecule_env,
                            capture_output=True, text=True, timeout=1700, check=False)
    output = ANSI.sub("", result.stdout + result.stderr)
    failures = [line for line in output.splitlines() if "fatal:" in line or "FAILED!" in line or "[ERROR]" in line]
    assert result.returncode == 0, "\n".join(failures[-20:]) + "\n...\n" + output[-6000:]
    for step in ("converge", "idempotence", "verify", "side_effect"):
        assert f"{step}: Executed: Successful" in output, f"molecule did not run {step}:\n{output[-3000:]}"
