"""ansible-lint (production profile) on the roles and playbooks, antsibull-changelog on the fragments,
antsibull-docs on the plugins' and roles' documentation, and galaxy-importer on the built tarball."""

from __future__ import annotations

import os
import subprocess

import pytest

from helpers import BIN, ROOT, build_collection


def test_ansible_lint_is_clean_on_the_roles_and_playbooks(tmp_path):
    collections = tmp_path / "collections"
    (collections / "ansible_collections" / "jumpstarter").mkdir(parents=True)
    (collections / "ansible_collections" / "jumpstarter" / "lab").symlink_to(ROOT)
    # --offline: nothing to download; HOME apart, so that nothing it prepares lands in ~/.ansible
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), HOME=str(tmp_path), NO_COLOR="1")
    result = subprocess.run([str(BIN / "ansible-lint"), "--offline", "--nocolor", "roles", "playbooks"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "Profile 'production' was required, and it passed" in result.stderr + result.stdout


def test_changelog_fragments_are_valid():
    fragments = list((ROOT / "changelogs" / "fragments").glob("*.yml"))
    assert fragments, "no changelog fragments"
    result = subprocess.run([str(BIN / "antsibull-changelog"), "lint"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_antsibull_docs_lint_is_clean(tmp_path):
    """The modules', plugins' and doc fragments' DOCUMENTATION/EXAMPLES/RETURN and the roles' argument specs
    parse, fit the docsite schema and their markup (M(), P(), O(), ...) points at things that exist. The tool
    copies the collection onto a collections path of its own; it runs `ansible-doc` from PATH and logs to
    ~/antsibull.log."""
    env = dict(os.environ, HOME=str(tmp_path), PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", NO_COLOR="1")
    result = subprocess.run([str(BIN / "antsibull-docs"), "lint-collection-docs", "--plugin-docs", "."], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    return build_collection(tmp_path_factory.mktemp("built"))


def test_galaxy_importer_accepts_the_built_collection(tarball, tmp_path):
    """What Galaxy / Automation Hub run on an upload: metadata, ansible-doc on every plugin, the changelog and
    ansible-lint (offline, production profile, on the extracted tarball). ansible-test sanity in a container
    is left out (tests/test_sanity.py runs it). Clean means no ERROR and no WARNING lines."""
    config = tmp_path / "galaxy-importer.cfg"
    config.write_text("[galaxy-importer]\nRUN_ANSIBLE_TEST = False\nRUN_ANSIBLE_LINT = True\n"
                      f"OFFLINE_ANSIBLE_LINT = True\nANSIBLE_LOCAL_TMP = {tmp_path / 'ansible-tmp'}\n")
    env = dict(os.environ, GALAXY_IMPORTER_CONFIG=str(config), HOME=str(tmp_path), NO_COLOR="1",
               PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")  # it runs ansible-doc and ansible-lint from PATH
    env.pop("ANSIBLE_COLLECTIONS_PATH", None)
    # cwd: it writes importer_result.json there
    result = subprocess.run([str(BIN / "python"), "-m", "galaxy_importer.main", str(tarball)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    assert "Importer processing completed successfully" in result.stdout, output[-8000:]
    findings = [line for line in output.splitlines() if line.startswith(("ERROR", "WARNING"))]
    assert not findings, "\n".join(findings)
