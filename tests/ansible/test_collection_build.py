"""The collection as users get it: `ansible-galaxy collection build` makes a tarball without tests, caches
or venvs that still holds what the roles install, and the installed copy builds those wheels."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile

from helpers import BIN, ROOT


def test_the_tarball_holds_what_a_lab_needs_and_nothing_else(tmp_path):
    built = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path),
                            str(ROOT)], capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stderr
    (tarball,) = tmp_path.glob("jumpstarter-lab-*.tar.gz")
    with tarfile.open(tarball) as archive:
        members = set(archive.getnames())
    for needed in ("LICENSE", "README.md", "meta/runtime.yml", "roles/exporter/tasks/main.yml",
                   "roles/controller/meta/argument_specs.yml", "roles/venv/files/build_wheels.py",
                   "roles/venv/files/constraints.txt", "exporter/pyproject.toml", "drivers/power/pyproject.toml",
                   "plugins/connection/jumpstarter.py", "plugins/inventory/jumpstarter.py"):
        assert needed in members, f"{needed} is not in {tarball.name}"
    unwanted = [m for m in members if m.split("/")[0] in ("tests", "bench", "extensions", ".venv", ".ci")
                or "__pycache__" in m or ".egg-info" in m or m.endswith(".pyc")]
    assert not unwanted, unwanted[:20]

    collections = tmp_path / "collections"
    installed = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "--force", "-p", str(collections),
                                str(tarball)], capture_output=True, text=True, timeout=300, check=False)
    assert installed.returncode == 0, installed.stderr
    root = collections / "ansible_collections" / "jumpstarter" / "lab"
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
