"""The collection as users get it: `ansible-galaxy collection build` makes a tarball without tests, caches
or venvs that still holds what the roles install, and the installed copy builds those wheels; its
requirements.txt (with the collection's own distributions) is all the plugins need on the Ansible controller;
its execution-environment definition makes a build context that installs both."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

from conftest import start_exporter
from helpers import BIN, ROOT, build_collection


def galaxy(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ansible-galaxy"), "collection", *args], capture_output=True, text=True,
                          timeout=300, check=False, **kwargs)


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    return build_collection(tmp_path_factory.mktemp("built"))


@pytest.fixture(scope="module")
def installed(tarball, tmp_path_factory):
    collections = tmp_path_factory.mktemp("collections")
    done = galaxy("install", "--force", "-p", str(collections), str(tarball))
    assert done.returncode == 0, done.stderr
    return collections, collections / "ansible_collections" / "jumpstarter" / "lab"


def test_the_tarball_holds_what_a_lab_needs_and_nothing_else(tarball, installed, tmp_path):
    with tarfile.open(tarball) as archive:
        members = set(archive.getnames())
    for needed in ("LICENSE", "README.md", "meta/runtime.yml", "roles/exporter/tasks/main.yml",
                   "roles/controller/meta/argument_specs.yml", "roles/venv/files/build_wheels.py",
                   "roles/venv/files/constraints.txt", "exporter/pyproject.toml", "drivers/power/pyproject.toml",
                   "plugins/connection/jumpstarter.py", "plugins/inventory/jumpstarter.py", "playbooks/site.yml",
                   "requirements.txt", "meta/execution-environment.yml", "changelogs/config.yaml"):
        assert needed in members, f"{needed} is not in {tarball.name}"
    unwanted = [m for m in members if m.split("/")[0] in ("tests", "bench", "extensions", ".venv", ".ci", "Makefile",
                                                          "pytest.ini")
                or "__pycache__" in m or ".egg-info" in m or m.endswith(".pyc")]
    assert not unwanted, unwanted[:20]

    collections, root = installed
    wheels = subprocess.run([sys.executable, str(root / "roles/venv/files/build_wheels.py"), str(root),
                             str(tmp_path / "wheels"), "exporter", "drivers/power"],
                            capture_output=True, text=True, timeout=600, check=False)
    assert wheels.returncode == 0, wheels.stderr
    expected = ["jumpstarter_lab-0.1.0-py3-none-any.whl", "jumpstarter_lab_driver_power-0.1.0-py3-none-any.whl"]
    assert [w["wheel"] for w in json.loads(wheels.stdout)] == expected
    assert not any(root.rglob("*.egg-info")), "building left debris in the installed collection"
    doc = subprocess.run([str(BIN / "ansible-doc"), "-t", "role", "jumpstarter.lab.controller"],
                         capture_output=True, text=True, timeout=120, check=False,
                         env={"ANSIBLE_COLLECTIONS_PATH": str(collections), "PATH": "/usr/bin:/bin"})
    assert doc.returncode == 0 and "jumpstarter_lab_controller_clients" in doc.stdout, doc.stderr


@pytest.mark.slow  # a fresh venv: about a minute
def test_requirements_txt_and_the_collections_distributions_are_all_the_plugins_need(installed, tmp_path):
    """A fresh venv with ansible-core and requirements.txt is told the one line that installs the collection's own
    distributions (--no-deps, as README and the execution environment install them); then it lists a board with
    the inventory plugin and drives it with the call module."""
    collections, root = installed
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    core = next(line for line in (ROOT / "requirements" / "dev.txt").read_text().splitlines()
                if line.startswith("ansible-core=="))
    done = subprocess.run(pip + [core, "-r", str(root / "requirements.txt")], capture_output=True, text=True,
                          timeout=900, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    workdir = tmp_path / "lab"
    workdir.mkdir()
    exporter = start_exporter(workdir, "power:\n  type: jumpstarter_driver_power.driver.MockPower\n")
    try:
        inventory = workdir / "bench.jumpstarter.yml"
        inventory.write_text(yaml.safe_dump({"plugin": "jumpstarter.lab.jumpstarter",
                                             "exporters": {"board1": {"host": exporter.address}}}))
        env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "ANSIBLE_COLLECTIONS_PATH": str(collections),
               "ANSIBLE_LOCAL_TEMP": str(workdir / "tmp"), "ANSIBLE_PYTHON_INTERPRETER": str(venv / "bin" / "python")}

        def call(method: str) -> subprocess.CompletedProcess:
            return subprocess.run([str(venv / "bin" / "ansible"), "board1", "-i", str(inventory), "-m",
                                   "jumpstarter.lab.call", "-a", f"driver=power method={method}"],
                                  capture_output=True, text=True, env=env, timeout=300, check=False)

        # Without the library, the error gives the one line that installs it; that line, run as given, does.
        missing = call("on")
        line = (f"pip install -r {root}/requirements.txt && "
                f"pip install --no-deps {root}/exporter {root}/drivers/*")
        assert missing.returncode != 0 and line in missing.stdout, missing.stdout + missing.stderr
        done = subprocess.run(["sh", "-c", line + " -q"], capture_output=True, text=True, env=env, timeout=900,
                              check=False, cwd=tmp_path)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        listed = subprocess.run([str(venv / "bin" / "ansible-inventory"), "-i", str(inventory), "--graph"],
                                capture_output=True, text=True, env=env, timeout=120, check=False)
        assert listed.returncode == 0 and "board1" in listed.stdout, listed.stdout + listed.stderr
        for method, expected in (("on", None), ("status", "on")):
            called = call(method)
            assert called.returncode == 0, called.stdout + called.stderr
            assert f'"value": {json.dumps(expected)}' in called.stdout, called.stdout
    finally:
        exporter.stop()


def test_the_execution_environment_definition_makes_a_context_that_installs_the_collection(tarball, installed,
                                                                                           tmp_path):
    collections, _root = installed
    introspected = subprocess.run([str(BIN / "ansible-builder"), "introspect", "--sanitize", str(collections)],
                                  capture_output=True, text=True, timeout=120, check=False)
    assert introspected.returncode == 0, introspected.stderr
    wanted = {re.split(r"[<>=]", line)[0] for line in (ROOT / "requirements.txt").read_text().splitlines()
              if line and not line.startswith("#")} - {"PyYAML"}  # ansible-builder leaves what ansible-core brings
    found = set(re.findall(r"- '([A-Za-z0-9_.-]+)[<>=].*# from collection jumpstarter\.lab'", introspected.stdout))
    assert found == wanted, introspected.stdout
    shutil.copy(ROOT / "execution-environment.yml", tmp_path)
    shutil.copy(tarball, tmp_path)
    created = subprocess.run([str(BIN / "ansible-builder"), "create", "-f", "execution-environment.yml", "-c",
                              str(tmp_path / "context")], capture_output=True, text=True, timeout=120, check=False,
                             cwd=tmp_path, env=dict(os.environ, HOME=str(tmp_path)))
    assert created.returncode == 0, created.stdout + created.stderr
    containerfile = next((tmp_path / "context").glob("[CD]*file")).read_text()
    assert "pip install --no-cache-dir --no-deps ./exporter ./drivers/*" in containerfile
    assert (tmp_path / "context" / "_build" / "collections" / tarball.name).exists(), "the tarball is not in the context"
    requirements = yaml.safe_load((tmp_path / "context" / "_build" / "requirements.yml").read_text())
    assert requirements["collections"] == [{"name": f"collections/{tarball.name}", "type": "file"}]
