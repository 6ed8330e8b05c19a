"""`make demo`'s script from start to end: a controller, an exporter with the built-in virtual
board, and the demo playbook leasing, flashing, booting and configuring it over its console."""

from __future__ import annotations

import os
import subprocess

from helpers import BIN, ROOT


def test_the_demo_runs_and_the_board_boots_what_it_flashed():
    result = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", ANSIBLE_NOCOLOR="1"),
                            check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "sim-demo booted demo-" in result.stdout
    assert "failed=0" in result.stdout and "unreachable=0" in result.stdout
    assert "[demo] fetched from the board: sim-demo: " in result.stdout
    assert not os.path.exists("/tmp/jumpstarter-lab-demo")  # the script cleans up after itself
