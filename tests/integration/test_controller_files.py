"""The controller's SQLite database holds the key that signs every token: it and its -wal and -shm
files are this user's alone, and a database others may read (or swap) is refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from helpers import CLI
from jumpstarter_lab.controller.auth import Authority
from jumpstarter_lab.controller.store import Store
from jumpstarter_lab.wire.errors import ConfigError


def test_a_new_database_and_its_journal_files_are_private(tmp_path):
    lab = tmp_path / "lab"  # made by the controller, 0700
    db = lab / "controller.db"
    old = os.umask(0o022)  # the usual umask, under which files are created world-readable
    try:
        store = Store(f"sqlite:///{db}")
        Authority(store).create("client", "default", "alice")
        files = {p.name: p.stat().st_mode & 0o777 for p in lab.iterdir()}
        store.close()
    finally:
        os.umask(old)
    assert files == {"controller.db": 0o600, "controller.db-wal": 0o600, "controller.db-shm": 0o600}
    assert lab.stat().st_mode & 0o777 == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="reading as another uid needs root to switch to it")
def test_another_user_cannot_read_the_signing_key():
    lab = Path(tempfile.mkdtemp())  # not under pytest's 0700 directories: the other user can reach it
    try:
        lab.chmod(0o755)  # even where the directory lets them look
        db = lab / "controller.db"
        Store(f"sqlite:///{db}").close()
        nobody = {"user": 65534, "group": 65534, "extra_groups": [], "cwd": "/"}
        listed = subprocess.run(["ls", str(lab)], capture_output=True, text=True, check=False, **nobody)
        assert "controller.db" in listed.stdout  # they can see it...
        read = subprocess.run(["head", "-c", "16", str(db)], capture_output=True, text=True, check=False, **nobody)
        assert read.returncode != 0 and "Permission denied" in read.stderr  # ...but not read it
    finally:
        shutil.rmtree(lab)


def test_a_readable_database_is_refused_with_the_fix(tmp_path):
    db = tmp_path / "controller.db"
    Store(f"sqlite:///{db}").close()
    db.chmod(0o644)
    with pytest.raises(ConfigError, match=rf"{db} may be read by other users \(mode -rw-r--r--\); it holds the key "
                                          rf"that signs every token: chmod 600 {db}"):
        Store(f"sqlite:///{db}")
    result = subprocess.run([CLI, "controller", "run", "--db", str(db), "--insecure", "--listen", "127.0.0.1:0"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1 and result.stderr.startswith("jumpstarter-lab: error: ")
    assert "chmod 600" in result.stderr and "Traceback" not in result.stderr


def test_a_database_in_a_directory_others_may_write_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ConfigError, match="may be written by other users"):
        Store(f"sqlite:///{shared / 'controller.db'}")
    shared.chmod(0o1777)  # sticky, as /tmp: others cannot replace this user's files
    Store(f"sqlite:///{shared / 'controller.db'}").close()
