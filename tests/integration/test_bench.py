"""The benchmarks run end to end, and what they print is what they measured (no timing is asserted).

A reader acts on the printed table: its figures and ratios must be the JSON figures and their
quotients, each ratio over the peer its column names, each verdict the one its goal gives.
"""

import json
import os
import re
import subprocess
import sys

import pytest

from helpers import ROOT, upstream_venv

pytestmark = pytest.mark.slow  # benchmarks

GOALS = {"DriverCall calls/s": ("calls_per_s", 0.85), "stream echo MB/s": ("stream_mb_s", 0.7)}
ROW = re.compile(r"(tcp|unix)\s+(DriverCall calls/s|stream echo MB/s)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)"
                 r"\s+>= ([\d.]+)x bare: (meets goal|below goal)")


def _figure(value) -> str:
    return f"{value if value else float('nan'):.1f}"


def test_bench_table_is_the_measured_figures_and_their_ratios(tmp_path):
    env = dict(os.environ, JUMPSTARTER_LAB_UPSTREAM=str(upstream_venv()))
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--json", str(tmp_path / "r.json")],
                            capture_output=True, text=True, timeout=600, env=env, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads((tmp_path / "r.json").read_text())
    assert list(results) == ["tcp", "unix"]
    for transport, peers in results.items():
        assert set(peers) == {"bare", "ours", "ours_blocking", "upstream"}, peers
        assert "error" not in peers["upstream"], peers["upstream"]  # upstream was measured, not skipped
    rows = [ROW.fullmatch(line) for line in result.stdout.splitlines() if line.startswith(("tcp ", "unix "))]
    assert all(rows) and [(row[1], row[2]) for row in rows] == [(t, m) for t in results for m in GOALS], result.stdout
    for row in rows:
        transport, label, bare, ours, sync, upstream, ours_bare, ours_upstream, goal, verdict = row.groups()
        metric, wanted = GOALS[label]
        peers = results[transport]
        figures = {peer: peers[peer].get(metric) for peer in peers}
        assert (bare, ours, sync, upstream) == tuple(_figure(figures[peer]) for peer in
                                                     ("bare", "ours", "ours_blocking", "upstream")), row[0]
        assert ours_bare == f"{figures['ours'] / figures['bare']:.2f}x", row[0]
        assert ours_upstream == f"{figures['ours'] / figures['upstream']:.2f}x", row[0]
        assert float(goal) == wanted
        assert verdict == ("meets goal" if figures["ours"] / figures["bare"] >= wanted else "below goal"), row[0]
        # the blocking client measures DriverCalls only; every other peer answered both loads
        assert all(figures[peer] > 0 for peer in figures if peer != "ours_blocking" or metric == "calls_per_s"), figures


def test_controller_bench_table_is_the_measured_figures(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "controller.py"), "--exporters", "20", "--clients", "4",
                             "--pool", "6", "--seconds", "1", "--idle-seconds", "1", "--inventory",
                             "--json", str(tmp_path / "c.json")],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads((tmp_path / "c.json").read_text())
    cases = figures["cases"]
    assert list(cases) == ["bare grpcio", "sqlite"]
    bare = cases["bare grpcio"]
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["server", "exporters"] and len(lines) == 2 + len(cases), result.stdout
    # the inventory plugin listed every registered exporter (inventory_times checks the count), timed beside a script
    sqlite = cases["sqlite"]
    assert lines[-1] == (f"ansible-inventory --list of 20 exporters (sqlite): {sqlite['inventory_seconds']:.2f} s "
                         f"through the plugin, {sqlite['script_inventory_seconds']:.2f} s from a script, "
                         f"{sqlite['inventory_seconds'] / sqlite['script_inventory_seconds']:.2f}x  goal < 3 s")
    assert "inventory_seconds" not in bare  # the bare server has no ClientService to list from
    for line, (server, case) in zip(lines[1:], cases.items()):
        assert line.startswith(server), line
        printed = line[len(server):].split()
        # the same load on both servers: every exporter registered, leases granted under churn
        assert case["idle_exporters"] == 20 and case["grants"] > 0, case
        latencies = [case[f"grant_{p}_ms"] for p in ("p50", "p90", "p99", "max")]
        assert latencies == sorted(latencies), case  # percentiles of sorted samples
        assert printed == [str(case["idle_exporters"]), f"{case['idle_rss_mib']:.1f}", f"{case['idle_cpu_percent']:.1f}",
                           f"{case['grants'] / figures['seconds']:.0f}", *(f"{ms:.1f}" for ms in latencies),
                           f"{case['grant_p99_ms'] / bare['grant_p99_ms']:.2f}x", "meets" if case["grant_p99_ms"] < 50
                           else "misses", "goal"], line
