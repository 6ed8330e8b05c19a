"""Shared test helpers: config files, real exporter processes, the upstream peer."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CLI = str(BIN / "jumpstarter-lab")
FIXTURES = ROOT / "tests" / "fixtures"


def upstream_venv() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "jumpstarter-lab" / "upstream-0.9.0"
    path = Path(os.environ.get("JUMPSTARTER_LAB_UPSTREAM", default))
    if not (path / "bin" / "jmp").exists():
        pytest.fail(f"upstream Jumpstarter 0.9.0 is not installed at {path}; run `make test` (scripts/bootstrap.sh)")
    return path


def exporter_config(export: str, name: str = "test") -> str:
    header = f"apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\nmetadata:\n  namespace: default\n  name: {name}\n"
    return header + "export:\n" + textwrap.indent(textwrap.dedent(export).strip("\n"), "  ") + "\n"


def subprocess_env(**extra: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(FIXTURES), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ExporterProcess:
    """`jumpstarter-lab exporter run` as a real subprocess."""

    def __init__(self, args: list[str], log: Path):
        self.log = log
        self._log_file = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([CLI, "exporter", "run", *args], stdout=subprocess.PIPE,
                                        stderr=self._log_file, env=subprocess_env())
        line = self._first_line(timeout=30)
        if not line.startswith("listening on "):
            self.stop()
            raise AssertionError(f"exporter did not start: {line!r}\n{log.read_text()}")
        self.address = line.removeprefix("listening on ").strip()

    def _first_line(self, timeout: float) -> str:
        import selectors

        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return "(no output)"
        return self.process.stdout.readline().decode()

    def logs(self) -> str:
        return self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError("exporter did not stop within 15s of SIGTERM") from None
        finally:
            self._log_file.close()
            self.process.stdout.close()
        return code


STANDARD_EXPORT = """
power:
  type: jumpstarter_driver_power.driver.MockPower
echo:
  type: jumpstarter_driver_network.driver.EchoNetwork
serial:
  type: jumpstarter_driver_pyserial.driver.PySerial
  config:
    url: "loop://"
"""
