"""A pytest plugin for test engineers: a board for the test session, its driver tree, its console recorded.

    pytest -p jumpstarter_lab.pytest_plugin --jumpstarter-selector board=rpi4     (a lease from the controller)
    pytest -p jumpstarter_lab.pytest_plugin --jumpstarter-host /run/lab/board.sock (an exporter on this desk)

(or `pytest_plugins = ["jumpstarter_lab.pytest_plugin"]` in a conftest.py; it is not loaded into every pytest
run of the machine by an entry point). Fixtures:

    jumpstarter_lease   the lease name for the session (None in local mode); released when the session ends
    jumpstarter         the exporter's root DriverClient, e.g. `jumpstarter.board.power.on()`
    jumpstarter_console a record of what the board's console printed during one test, kept as a file

The console is recorded for the whole session into `--jumpstarter-log-dir` (default
`jumpstarter-logs/`), one file per session with a timestamp on every line, so a failed run leaves
its boot log behind; `jumpstarter_console.text()` is what it printed during the test that asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import threading
from pathlib import Path

import pytest

from .client import ClientConfig, ControllerClient, connect, connect_lease
from .client.connect import ENV_HOST
from .wire import defaults, labels
from .wire.errors import JumpstarterLabError


def pytest_addoption(parser):
    group = parser.getgroup("jumpstarter", "jumpstarter.lab: a board for the test session")
    group.addoption("--jumpstarter-host", help=f"exporter socket or HOST:PORT (default: ${ENV_HOST})")
    group.addoption("--jumpstarter-selector", help="lease a board matching this label selector from the controller")
    group.addoption("--jumpstarter-client-config", help="client config of the controller (default: $JMP_CLIENT_CONFIG)")
    group.addoption("--jumpstarter-lease-duration", type=float, default=defaults.LEASE_DURATION,
                    help=f"seconds the session's lease may last (default {defaults.LEASE_DURATION:g})")
    group.addoption("--jumpstarter-acquisition-timeout", type=float, default=defaults.LEASE_WAIT,
                    help=f"seconds to wait in the queue for the board (default {defaults.LEASE_WAIT:g})")
    group.addoption("--jumpstarter-console", default=None,
                    help="dotted path of the console to record (default: the first serial console found)")
    group.addoption("--jumpstarter-log-dir", default="jumpstarter-logs", help="where console logs go")
    parser.addini("jumpstarter_selector", "label selector of the board to lease (as --jumpstarter-selector)")


def _option(config, name: str):
    return config.getoption(f"jumpstarter_{name}")  # the option's dest: --jumpstarter-log-dir is jumpstarter_log_dir


@pytest.fixture(scope="session")
def jumpstarter_lease(pytestconfig):
    """The session's lease on a board matching the selector (None in local mode), released at the end."""
    selector = _option(pytestconfig, "selector") or pytestconfig.getini("jumpstarter_selector")
    if _option(pytestconfig, "host") or (os.environ.get(ENV_HOST) and not selector):
        yield None
        return
    if not selector:
        pytest.fail("jumpstarter: name a board - --jumpstarter-selector (a lease from the controller) or "
                    f"--jumpstarter-host / ${ENV_HOST} (an exporter on this desk)", pytrace=False)
    config = _client_config(pytestconfig)
    duration, wait = _option(pytestconfig, "lease_duration"), _option(pytestconfig, "acquisition_timeout")
    tag = pytestconfig.rootpath.name.replace(",", "-").replace("\n", "-")[:256]  # whose lease it is, in listings

    async def take(client: ControllerClient) -> str:
        status = await client.create_lease(selector, duration, defaults.LEASE_TTL, tags={"pytest": tag})
        try:
            return (await client.wait_ready(status.name, wait)).name
        except BaseException:
            await client.release(status.name)  # no request left waiting in the queue
            raise

    try:
        name = _with_controller(config, take)
    except JumpstarterLabError as e:
        pytest.fail(f"jumpstarter: no board for the session ({selector}): {e}", pytrace=False)
    try:
        yield name  # connections through the lease renew it; `jumpstarter` holds one for the session
    finally:
        with contextlib.suppress(JumpstarterLabError):
            _with_controller(config, lambda client: client.release(name))


def _with_controller(config: ClientConfig, work):
    """`await work(client)` with a ControllerClient of its own event loop (fixtures are synchronous)."""
    async def main():
        client = ControllerClient(config)
        try:
            return await work(client)
        finally:
            await client.close()

    return asyncio.run(main())


def _client_config(pytestconfig) -> ClientConfig:
    path = _option(pytestconfig, "client_config") or os.environ.get("JMP_CLIENT_CONFIG")
    if not path:
        pytest.fail("jumpstarter: a lease needs a client config (--jumpstarter-client-config or $JMP_CLIENT_CONFIG)",
                    pytrace=False)
    try:
        return ClientConfig.load(path)
    except JumpstarterLabError as e:
        pytest.fail(f"jumpstarter: {e}", pytrace=False)


@pytest.fixture(scope="session")
def jumpstarter(request, pytestconfig, jumpstarter_lease):
    """The root DriverClient of the session's board, its console recorded for the whole session."""
    held = contextlib.ExitStack()  # the connection and the recording, closed when the session ends
    request.addfinalizer(held.close)
    try:
        if jumpstarter_lease is None:
            manager = connect(_option(pytestconfig, "host"), session=f"pytest-{os.getpid()}")
        else:
            config = _client_config(pytestconfig)
            manager = connect_lease(config, jumpstarter_lease, allow=config.allowlist())
        root = held.enter_context(manager)
        pytestconfig.stash[_RECORDER] = held.enter_context(ConsoleRecorder.start(root, pytestconfig))
    except JumpstarterLabError as e:
        pytest.fail(f"jumpstarter: {e}", pytrace=False)
    return root


@pytest.fixture
def jumpstarter_console(jumpstarter, pytestconfig):
    """What the board's console printed while this test ran (`text()`), from the session's recording."""
    recorder = pytestconfig.stash.get(_RECORDER, None)
    if recorder is None:
        pytest.skip("jumpstarter: the board has no serial console to record")
    yield recorder.mark()


class ConsoleRecorder:
    """A thread copying a console into a log file, a timestamp on each line."""

    def __init__(self, stream, path: Path):
        self.stream, self.path = stream, path
        self.lock = threading.Lock()
        self.data = bytearray()
        self._file = open(path, "ab")  # noqa: SIM115 - closed by stop()
        self._closed = False
        self._at_line_start = True
        self._thread = threading.Thread(target=self._run, name="jumpstarter-console", daemon=True)

    @classmethod
    @contextlib.contextmanager
    def start(cls, root, pytestconfig):
        path_option = _option(pytestconfig, "console")
        try:
            path, console = root.locate(path_option, labels.SERIAL, "console", preferred="console")
        except JumpstarterLabError:
            if path_option:
                raise
            yield None  # a board without a console: nothing to record
            return
        directory = Path(_option(pytestconfig, "log_dir"))
        directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        log = directory / f"{stamp}-{path}.log"
        with console.stream() as stream:
            recorder = cls(stream, log)
            recorder._thread.start()
            try:
                yield recorder
            finally:
                recorder.stop()
                pytestconfig.stash[_LOGS] = [*pytestconfig.stash.get(_LOGS, []), str(log)]

    def _run(self) -> None:
        while True:
            try:
                chunk = self.stream.receive(timeout=1.0)
            except TimeoutError:
                continue
            except Exception:  # the stream ended with the session: nothing more to record
                return
            if not chunk:
                return
            with self.lock:
                if self._closed:
                    return
                self.data += chunk
                self._write(chunk)

    def _write(self, chunk: bytes) -> None:
        out = bytearray()
        for line in chunk.splitlines(keepends=True):
            if self._at_line_start:
                out += datetime.datetime.now().strftime("[%H:%M:%S.%f] ").encode()
            out += line
            self._at_line_start = line.endswith(b"\n")
        self._file.write(out)
        self._file.flush()

    def mark(self) -> ConsoleMark:
        with self.lock:
            return ConsoleMark(self, len(self.data))

    def stop(self) -> None:
        with self.lock:
            self._closed = True
            self._file.close()


class ConsoleMark:
    """The console from one point of the recording on."""

    def __init__(self, recorder: ConsoleRecorder, start: int):
        self.recorder, self.start = recorder, start

    def text(self) -> str:
        with self.recorder.lock:
            return bytes(self.recorder.data[self.start:]).decode(errors="replace")

    @property
    def path(self) -> Path:
        return self.recorder.path


_RECORDER = pytest.StashKey[ConsoleRecorder]()
_LOGS = pytest.StashKey[list]()


def pytest_terminal_summary(terminalreporter, config):
    for log in config.stash.get(_LOGS, []):
        terminalreporter.write_line(f"jumpstarter: console log {log}")
