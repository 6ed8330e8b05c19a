"""Shared test helpers: config files, real exporter processes, the upstream peer."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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


class Postgres:
    """A private PostgreSQL server for one test session (run as the `postgres` user, trust auth on loopback)."""

    def __init__(self):
        binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
        if not binaries:
            pytest.fail("PostgreSQL server is not installed; scripts/bootstrap.sh installs it (apt-get install postgresql)")
        bindir = binaries[-1].parent
        user = pwd.getpwnam("postgres")
        # Outside pytest's 0700 tree: the server runs as `postgres` and must reach its directory.
        directory = self.directory = Path(tempfile.mkdtemp(prefix="jumpstarter-lab-pg-"))
        directory.chmod(0o755)
        data = directory / "pgdata"
        data.mkdir()
        shutil.chown(directory, user.pw_uid, user.pw_gid)
        shutil.chown(data, user.pw_uid, user.pw_gid)
        as_postgres = dict(user=user.pw_uid, group=user.pw_gid, cwd="/")
        init = subprocess.run([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                              capture_output=True, text=True, check=False, **as_postgres)
        if init.returncode != 0:
            pytest.fail(f"initdb failed: {init.stderr}")
        self.port = free_port()
        self.process = subprocess.Popen([str(bindir / "postgres"), "-D", str(data), "-k", str(directory), "-p",
                                         str(self.port), "-h", "127.0.0.1", "-c", "fsync=off"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **as_postgres)
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        wait_for(self._ready, 60, "PostgreSQL to accept connections", interval=0.2)

    def _ready(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def database(self, name: str) -> str:
        import sqlalchemy as sa

        engine = sa.create_engine(self.url.replace("postgresql://", "postgresql+psycopg://"),
                                  isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        engine.dispose()
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        shutil.rmtree(self.directory, ignore_errors=True)


def cli(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """`jumpstarter-lab ARGS` as a user runs it (the venv's bin first on PATH, test drivers importable)."""
    env.setdefault("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout, env=subprocess_env(**env),
                          cwd=ROOT, check=False)


def process_gone(pid: int) -> bool:
    """True once a process has exited (a zombie waiting to be reaped counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return True
