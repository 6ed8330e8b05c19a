"""The benchmark runs end to end and prints its ratios (no timing is asserted)."""

import json
import os
import subprocess
import sys

from helpers import ROOT, upstream_venv


def test_bench_prints_every_ratio(tmp_path):
    env = dict(os.environ, JUMPSTARTER_LAB_UPSTREAM=str(upstream_venv()))
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--json", str(tmp_path / "r.json")],
                            capture_output=True, text=True, timeout=600, env=env, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith(("tcp ", "unix "))]
    assert len(rows) == 4 and all(line.count("x ") >= 2 for line in rows), result.stdout
    results = json.loads((tmp_path / "r.json").read_text())
    for transport in ("tcp", "unix"):
        for peer in ("bare", "ours", "upstream"):
            assert results[transport][peer]["calls_per_s"] > 0 and results[transport][peer]["stream_mb_s"] > 0


def test_controller_bench_runs_against_the_floor_and_ours():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "controller.py"), "--exporters", "20", "--clients", "4",
                             "--pool", "6", "--seconds", "1"], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert set(rows) == {"bare", "sqlite"}, result.stdout  # "bare grpcio"
    assert all(" 20 " in row and "x " in row for row in rows.values()), result.stdout  # 20 exporters, a ratio
