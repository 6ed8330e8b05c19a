"""DriverCall round trips/s and stream echo MB/s (64 KiB chunks) over TCP and a Unix socket:
this project against bare grpcio and upstream Jumpstarter 0.9.0, measured in the same run.

    .venv/bin/python bench/run.py [--seconds 3] [--json results.json]

Prints a table with the ratios ours/bare and ours/upstream and the issue's goals
(DriverCall >= 0.85x bare unary, stream >= 0.7x bare bidi). A goal missed is reported,
not an error; the exit status is non-zero only if a measurement broke.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
CONFIG = """apiVersion: jumpstarter.dev/v1alpha1
kind: ExporterConfig
metadata: {namespace: default, name: bench}
endpoint: ""
token: ""
export:
  power: {type: jumpstarter_driver_power.driver.MockPower}
  echo: {type: jumpstarter_driver_network.driver.EchoNetwork}
"""


def upstream_venv() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "jumpstarter-lab" / "upstream-0.9.0"
    return Path(os.environ.get("JUMPSTARTER_LAB_UPSTREAM", default))


@contextmanager
def process(args: list[str], env: dict | None = None, ready_line: bool = True):
    """A server subprocess; yields its first stdout line (its address)."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        line = ""
        if ready_line:
            selector = selectors.DefaultSelector()
            selector.register(proc.stdout, selectors.EVENT_READ)
            if not selector.select(60):
                raise RuntimeError(f"{args[0]} did not start")
            line = proc.stdout.readline().decode().strip()
        yield line
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listened on port {port}")


def upstream(transport: str, seconds: float, workdir: Path) -> dict:
    venv = upstream_venv()
    if not (venv / "bin" / "jmp").exists():
        return {"error": f"upstream 0.9.0 not installed at {venv} (run make bootstrap)"}
    config = workdir / "upstream.yaml"
    config.write_text(CONFIG)
    env = dict(os.environ, HOME=str(workdir))
    measure = [str(venv / "bin" / "python"), str(HERE / "upstream_client.py"), str(seconds)]
    if transport == "unix":  # jmp shell serves the config in-process on a Unix socket for the command
        command = [str(venv / "bin" / "jmp"), "shell", "--exporter-config", str(config), "--", *measure]
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    else:
        port = free_port()
        with process([str(venv / "bin" / "jmp"), "run", "--exporter-config", str(config), "--tls-grpc-listener",
                      f"127.0.0.1:{port}", "--tls-grpc-insecure"], env=env, ready_line=False):
            wait_port(port)
            command = [str(venv / "bin" / "jmp"), "shell", "--tls-grpc", f"127.0.0.1:{port}", "--tls-grpc-insecure",
                       "--", *measure]
            result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    for line in reversed(result.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"error": f"upstream measurement failed: {result.stderr.strip()[-300:]}"}


def client(kind: str, address: str, seconds: float) -> dict:
    """Run one measuring client (bench/measure.py) in its own process, as a user's program would."""
    result = subprocess.run([sys.executable, str(HERE / "measure.py"), kind, address, str(seconds)],
                            capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"measuring {kind} at {address} failed: {result.stderr.strip()[-500:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(transport: str, seconds: float, workdir: Path) -> dict:
    results = {}
    bare_address = f"unix:{workdir}/bare.sock" if transport == "unix" else "127.0.0.1:0"
    with process([sys.executable, str(HERE / "bare_echo.py"), bare_address]) as address:
        results["bare"] = client("bare", address, seconds)
    config = workdir / "ours.yaml"
    config.write_text(CONFIG)
    where = ["--socket", str(workdir / "ours.sock")] if transport == "unix" else ["--listen", "127.0.0.1:0", "--insecure"]
    with process([str(BIN / "jumpstarter-lab"), "exporter", "run", "--config", str(config), *where]) as line:
        address = line.removeprefix("listening on ")
        results["ours"] = client("ours", address, seconds)
        results["ours_blocking"] = client("ours-blocking", address, seconds)
    results["upstream"] = upstream(transport, seconds, workdir)
    return results


def ratio(a, b) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def report(all_results: dict) -> None:
    header = f"{'transport':9} {'metric':22} {'bare grpcio':>12} {'ours':>10} {'ours sync':>10} {'upstream':>10} " \
             f"{'ours/bare':>10} {'ours/upstr':>10}  goal"
    print(header)
    print("-" * len(header))
    for transport, results in all_results.items():
        up = results["upstream"]
        for metric, label, goal in (("calls_per_s", "DriverCall calls/s", 0.85), ("stream_mb_s", "stream echo MB/s", 0.7)):
            bare_v, ours_v = results["bare"][metric], results["ours"][metric]
            sync_v = results["ours_blocking"].get(metric)
            up_v = up.get(metric)
            verdict = "meets goal" if ours_v / bare_v >= goal else "below goal"
            print(f"{transport:9} {label:22} {bare_v:12.1f} {ours_v:10.1f} {sync_v if sync_v else float('nan'):10.1f} "
                  f"{up_v if up_v else float('nan'):10.1f} {ratio(ours_v, bare_v):>10} {ratio(ours_v, up_v):>10}  "
                  f">= {goal}x bare: {verdict}")
        if "error" in up:
            print(f"{transport:9} upstream: {up['error']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per figure")
    parser.add_argument("--quick", action="store_true", help="0.5 s per figure, for a smoke test")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    seconds = 0.5 if args.quick else args.seconds
    workdir = Path(tempfile.mkdtemp(prefix="jumpstarter-lab-bench-"))
    try:
        results = {transport: measure(transport, seconds, workdir) for transport in ("tcp", "unix")}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
