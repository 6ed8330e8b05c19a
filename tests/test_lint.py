"""ansible-lint (production profile) on the roles and playbooks, and antsibull-changelog on the fragments."""

from __future__ import annotations

import os
import subprocess

from helpers import BIN, ROOT


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
