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
import yaml

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


def listening(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on host:port."""
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0


def load_plugin_util(name: str):
    """plugins/plugin_utils/<name>.py without Ansible's collection loader: the packages of the collection's
    name (ansible_collections.jumpstarter.lab) are made to be this tree, so that the modules import each
    other as they do under Ansible, and each loads once (a test's monkeypatch reaches every user)."""
    import importlib
    import types

    for package, path in (("ansible_collections", None), ("ansible_collections.jumpstarter", None),
                          ("ansible_collections.jumpstarter.lab", ROOT)):
        if package not in sys.modules:
            module = types.ModuleType(package)
            module.__path__ = [str(path)] if path else []
            sys.modules[package] = module
    return importlib.import_module(f"ansible_collections.jumpstarter.lab.plugins.plugin_utils.{name}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ExporterProcess:
    """`jumpstarter-lab exporter run` as a real subprocess."""

    def __init__(self, args: list[str], log: Path, cli: str = CLI):
        """`cli`: the jumpstarter-lab to run (another installation's, say)."""
        self.log = log
        self._log_file = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([cli, "exporter", "run", *args], stdout=subprocess.PIPE,
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
        # setpriv drops to `postgres`, not subprocess's user=/group=: those make CPython fork() instead of vfork(),
        # which runs grpc's fork handlers in a child of this (grpc-threaded) process and can kill it before exec.
        as_postgres = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
        init = subprocess.run([*as_postgres, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U",
                               "postgres"], capture_output=True, text=True, check=False, cwd="/")
        if init.returncode != 0:
            pytest.fail(f"initdb failed: {init.stderr}")
        self.port = free_port()
        self.process = subprocess.Popen([*as_postgres, str(bindir / "postgres"), "-D", str(data), "-k",
                                         str(directory), "-p", str(self.port), "-h", "127.0.0.1", "-c", "fsync=off"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        wait_for(lambda: listening(self.port), 60, "PostgreSQL to accept connections", interval=0.2)

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
    except (FileNotFoundError, ProcessLookupError, IndexError):  # ESRCH: it went between open and read
        return True


def build_collection(output: Path) -> Path:
    """`ansible-galaxy collection build` of this tree into `output`: the collection's tarball, as users get it."""
    built = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(output),
                            str(ROOT)], capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stderr
    (path,) = output.glob("jumpstarter-lab-*.tar.gz")
    return path


# --- distributed mode: a controller, clients and exporters as real processes --------------------

DISTRIBUTED_EXPORT = {"power": {"type": "jumpstarter_driver_power.driver.MockPower"},
                      "echo": {"type": "jumpstarter_driver_network.driver.EchoNetwork"}}


class Process:
    """A long-running jumpstarter-lab command whose first stdout line says it is ready."""

    def __init__(self, args: list[str], log: Path, ready: str, program: str = CLI):
        self.args, self.log, self.ready, self.program = args, log, ready, program
        self.start()

    def start(self) -> None:
        self._log = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([self.program, *self.args], stdout=subprocess.PIPE, stderr=self._log,
                                        env=subprocess_env(), start_new_session=True)
        line = self.process.stdout.readline().decode()
        assert line.startswith(self.ready), f"{' '.join(self.args[:3])} did not start: {line!r}\n{self.log.read_text()}"
        self.line = line.strip()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout=30)
        self.process.stdout.close()
        self._log.close()
        return code


class ControllerLab:
    """A controller (or several replicas) on one database, clients and exporters made with `admin`."""

    GRACE = 4.0  # seconds an exporter may go unheard of before the controller counts it offline

    def __init__(self, workdir: Path, db: str, serve: tuple[str, ...] = ("--insecure",),
                 trust: tuple[str, ...] = ("--insecure",), options: tuple[str, ...] = (), verbose: bool = False):
        """`serve`: the controller's TLS options; `trust`: how clients and exporters reach it; `options`: more
        of `controller run`'s options; `verbose`: the controller and exporters log debug messages."""
        self.workdir, self.db, self.serve, self.trust, self.options = workdir, db, serve, trust, options
        self.flags = ["-v"] if verbose else []
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.started: list[Process] = []
        self.controller_process = self.controller()

    def controller(self, port: int | None = None, *extra: str) -> Process:
        port = port or self.port
        process = Process([*self.flags, "controller", "run", "--db", self.db, "--listen", f"127.0.0.1:{port}", *self.serve,
                           "--exporter-grace", str(self.GRACE), *self.options, *extra], self.workdir / f"controller-{port}.log",
                          "listening on")
        self.started.append(process)
        return process

    def client(self, name: str, *extra: str, endpoint: str | None = None):
        path = self.workdir / f"{name}.yaml"
        result = cli("admin", "create-client", name, "--db", self.db, "--endpoint", endpoint or self.endpoint,
                     *self.trust, "-o", str(path), *extra)
        assert result.returncode == 0, result.stderr
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        from jumpstarter_lab.client import ClientConfig

        return ClientConfig.load(path)

    def exporter(self, name: str, *labels: str, endpoint: str | None = None, export: dict | None = None,
                 hooks: dict | None = None) -> Process:
        """An exporter process serving `export` (a mock power and an echo network by default), with lease `hooks`
        as upstream's ExporterConfig writes them."""
        config = self.workdir / f"{name}.yaml"
        export_file = self.workdir / f"{name}-export.yaml"
        export_file.write_text(yaml.safe_dump({"export": export or DISTRIBUTED_EXPORT}))
        args = ["admin", "create-exporter", name, "--db", self.db, "--endpoint", endpoint or self.endpoint, *self.trust,
                "--export-from", str(export_file), "-o", str(config)]
        for label in labels:
            args += ["--label", label]
        assert cli(*args).returncode == 0
        if hooks:
            config.write_text(yaml.safe_dump(yaml.safe_load(config.read_text()) | {"hooks": hooks}))
        process = Process([*self.flags, "exporter", "run", "--config", str(config)], self.workdir / f"{name}.log", "registered with")
        self.started.append(process)
        return process

    def fleet(self, count: int, labels: dict[str, str], clients: tuple[str, ...] = ("alice",)) -> tuple[dict, list[str]]:
        """`count` exporters (a mock power each) and `clients`, declared with `admin apply`; the exporters served by
        one fleet process (tests/fixtures/fleet.py: the exporter's own controller link, many to an interpreter).
        Returns ({client name: ClientConfig}, exporter names)."""
        from jumpstarter_lab.client import ClientConfig

        declared = self.workdir / "fleet.yaml"
        names = [f"board{number:03d}" for number in range(count)]
        declared.write_text(yaml.safe_dump({
            "endpoint": self.endpoint, "tls": {"insecure": True}, "clients": [{"name": name} for name in clients],
            "exporters": [{"name": name, "labels": labels} for name in names]}))
        configs = self.workdir / "configs"
        applied = cli("admin", "apply", "--db", self.db, "--file", str(declared), "--out-dir", str(configs))
        assert applied.returncode == 0, applied.stderr
        paths = []
        for name in names:
            path = configs / "exporters" / "default" / f"{name}.yaml"
            config = yaml.safe_load(path.read_text())
            config["export"] = {"power": {"type": "jumpstarter_driver_power.driver.MockPower"}}
            path.write_text(yaml.safe_dump(config))
            paths.append(str(path))
        self.started.append(Process([str(FIXTURES / "fleet.py"), *paths], self.workdir / "fleet.log",
                                    f"registered {count}", program=sys.executable))
        return {name: ClientConfig.load(configs / "clients" / "default" / f"{name}.yaml") for name in clients}, names

    def stop(self) -> None:
        for process in reversed(self.started):
            if process.process.poll() is None:
                process.stop()


def prepare_sshd(directory: Path) -> tuple[int, Path, list[str]]:
    """A private sshd's files in `directory`: host and client keys, a config for a free loopback
    port accepting the client key for the current user. Returns (port, client key, sshd argv)."""
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / name)], check=True)
    (directory / "authorized_keys").write_text((directory / "client.pub").read_text())
    os.chmod(directory / "authorized_keys", 0o600)
    port = free_port()
    (directory / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {directory / 'host'}\n"
        f"AuthorizedKeysFile {directory / 'authorized_keys'}\nPidFile {directory / 'sshd.pid'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\nStrictModes no\n"
        "Subsystem sftp internal-sftp\n")
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
    return port, directory / "client", ["/usr/sbin/sshd", "-D", "-e", "-f", str(directory / "sshd_config")]
