"""`make demo`'s script from start to end: a controller, an exporter with the built-in virtual
board, and the demo playbook leasing, flashing, booting and configuring it over its console."""

from __future__ import annotations

import os
import re
import subprocess

from helpers import BIN, ROOT


def _demo(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh"), *args], capture_output=True, text=True,
                            timeout=300, env=dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
                                                  ANSIBLE_NOCOLOR="1"), check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_the_demo_runs_and_the_board_boots_what_it_flashed():
    result = _demo()
    assert "sim-demo booted demo-" in result.stdout
    assert "failed=0" in result.stdout and "unreachable=0" in result.stdout
    assert "[demo] fetched from the board: sim-demo: " in result.stdout
    assert not os.path.exists("/tmp/jumpstarter-lab-demo")  # the script cleans up after itself


def test_the_demo_runs_in_check_mode_to_the_end_and_writes_nothing():
    result = _demo("--check", "--diff")
    assert "failed=0" in result.stdout and "unreachable=0" in result.stdout, result.stdout[-3000:]
    tasks = dict(re.findall(r"TASK \[(.+?)\] \*+\n(.*?)(?=\nTASK |\nPLAY RECAP)", result.stdout, re.S))
    assert tasks["Flash the demo image"].startswith("--- before: board.storage"), tasks  # its --diff
    assert "+sha256: " in tasks["Flash the demo image"] and "changed: [sim-demo]" in tasks["Flash the demo image"]
    for task in ("Power off before writing its storage", "Power on", "Gather facts over the serial console "
                 "(logs in at the login prompt)", "Configure it"):
        assert tasks[task].startswith("skipping: [sim-demo]"), (task, tasks[task])
    assert "sim-demo booted" not in result.stdout and "[demo] fetched" not in result.stdout
