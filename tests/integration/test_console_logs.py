"""Console logs as artifacts: the exporter records a leased sim board's console for the lease's whole life,
attached or not, and hands it to the controller at the lease's end, where its client (only) fetches it."""

from __future__ import annotations

import re

import pytest

from helpers import CLI, ControllerLab, cli

pytestmark = pytest.mark.slow


@pytest.fixture
def lab(tmp_path):
    lab = ControllerLab(tmp_path, str(tmp_path / "controller.db"))
    lab.client("alice")
    lab.client("bob")
    yield lab
    lab.stop()


def test_a_leased_boards_console_log_is_fetched_after_the_lease_ended(lab, tmp_path):
    image = tmp_path / "image.bin"
    image.write_bytes(b"JUMPSTARTER_MARKER=kept-in-the-log\n")
    board = {"type": "jumpstarter_lab_driver_sim.SimBoard", "config": {"password": "s3cret", "image": str(image)}}
    lab.exporter("sim1", "board=sim", export={"board": board},
                 hooks={"afterLease": {"script": f"{CLI} call board.power.off"}})
    alice, bob = (str(lab.workdir / f"{name}.yaml") for name in ("alice", "bob"))
    created = cli("lease", "create", "-l", "board=sim", "-o", "name", "--client-config", alice)
    lease = created.stdout.strip()
    early = cli("lease", "console-log", lease, "--wait", "0", "--client-config", alice)
    assert early.returncode == 1 and "it has not ended yet" in early.stderr, early.stderr
    # Powered on with nobody attached to its console: its boot is recorded all the same.
    on = cli("shell", "--lease", lease, "--client-config", alice, "--", CLI, "call", "board.power.on")
    assert on.returncode == 0, on.stderr
    assert cli("lease", "release", lease, "--client-config", alice).returncode == 0

    saved = tmp_path / "boot.log"
    fetched = cli("lease", "console-log", lease, "-o", str(saved), "--client-config", alice)
    assert fetched.returncode == 0, fetched.stderr
    log = saved.read_text()
    stamped = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")
    lines = log.splitlines()
    assert all(stamped.match(line) for line in lines), log
    text = [stamped.sub("", line) for line in lines]
    assert "SimBoard ROM 1.0" in text and any(line.startswith("Booting image kept-in-the-log") for line in text), log
    assert any(line.endswith("login: ") or "login:" in line for line in text), log  # a prompt without its newline

    refused = cli("lease", "console-log", lease, "--client-config", bob)
    assert refused.returncode == 1 and f"lease {lease} belongs to another client" in refused.stderr, refused.stderr
    missing = cli("lease", "console-log", "no-such-lease", "--wait", "1", "--client-config", alice)
    assert missing.returncode == 1 and "no console log for lease no-such-lease" in missing.stderr, missing.stderr
