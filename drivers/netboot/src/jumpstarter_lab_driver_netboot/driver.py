from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import http.server
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import tftpy

from jumpstarter_lab.driver import Driver, export
from jumpstarter_lab.wire.errors import DriverInvalidArgument, ExporterUnavailable, MethodNotFound

from .interface import FileServerInterface

logging.getLogger("tftpy").setLevel(logging.WARNING)  # a line per packet at INFO


@dataclass(kw_only=True)
class FileServer(FileServerInterface, Driver, partial=True):
    """A server of files the lease's client puts; its root is emptied when the session ends."""

    host: str = "0.0.0.0"  # the address to listen on
    port: int = 0  # 0: a free port, which get_port tells
    advertise: str | None = None  # the address boards reach it at (default: `host`)
    root_dir: str | None = None  # serve this directory (upstream's root_dir); default: one of the session's own
    max_bytes: int = 4 << 30  # what the files put in one session may add up to

    def __post_init__(self):
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0-65535, got {self.port}")
        self._put: dict[str, int] = {}  # what this session put: name -> size
        self._lock = threading.Lock()

    @property
    def _what(self) -> str:
        """The driver as its config names it (`tftp`), for messages."""
        return getattr(self, "config_path", type(self).__name__).removeprefix("export.")

    # --- the root --------------------------------------------------------------------------------

    def _root(self) -> Path:
        # each server its own root: a TFTP and an HTTP server of one session do not see each other's files
        root = Path(self.root_dir) if self.root_dir else self.context.workdir / "served" / self._what
        root.mkdir(parents=True, exist_ok=True)
        return root

    def _path(self, name: str) -> Path:
        """A served file's path, for a name as boards ask for it (`boot/vmlinuz`): inside the root, always."""
        relative = PurePosixPath(str(name).lstrip("/"))
        if not relative.parts or any(part in ("", ".", "..") for part in relative.parts):
            raise DriverInvalidArgument(f"{self._what}: {name!r} is not a file name inside the served root")
        return self._root().joinpath(*relative.parts)

    @export
    async def put(self, name: str, src: dict | str) -> dict:
        path = self._path(name)
        await self._serving()
        digest, size = hashlib.sha256(), 0
        partial = path.with_name(f".{path.name}.partial")
        partial.parent.mkdir(parents=True, exist_ok=True)
        budget = self.max_bytes - sum(size for key, size in self._put.items() if key != name)
        try:
            with open(partial, "wb") as out:
                async with self.resource(src) as stream:
                    while chunk := await stream.receive():
                        size += len(chunk)
                        if size > budget:
                            raise DriverInvalidArgument(f"{self._what}: the files of one lease may add up to "
                                                        f"{self.max_bytes} bytes")
                        digest.update(chunk)
                        await asyncio.to_thread(out.write, chunk)
            os.replace(partial, path)  # a board never fetches half a file
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
        self._put[name] = size
        self.logger.info("%s: serving %s (%d bytes)", self._what, name, size)
        return {"name": name, "bytes": size, "sha256": digest.hexdigest()}

    @export(read_only=True)
    def list_files(self) -> dict[str, int]:
        root = self._root()
        return {str(path.relative_to(root)): path.stat().st_size for path in sorted(root.rglob("*"))
                if path.is_file() and not path.name.endswith(".partial")}

    @export
    def delete_file(self, name: str) -> None:
        path = self._path(name)
        if not path.is_file():
            raise MethodNotFound(f"{self._what}: no file {name} is served")
        path.unlink()
        self._put.pop(name, None)

    @export(read_only=True)
    async def get_host(self) -> str:
        await self._serving()  # what a board is told to reach answers from now on
        return self._advertised()

    def _advertised(self) -> str:
        return self.advertise or self.host

    @export(read_only=True)
    async def get_port(self) -> int:
        return await self._serving()

    def close(self) -> None:
        self._stop()
        if self.root_dir:  # a shared directory: take back only what this session put
            for name in self._put:
                with contextlib.suppress(OSError, DriverInvalidArgument):
                    self._path(name).unlink()
        super().close()

    # --- the server, started on first use ---------------------------------------------------------

    async def _serving(self) -> int:
        """Start the server unless it runs; the port it listens on."""
        return await asyncio.to_thread(self._start_once)

    def _start_once(self) -> int:
        with self._lock:
            if getattr(self, "_bound", None) is None:
                try:
                    self._bound = self._start()
                except OSError as e:
                    raise ExporterUnavailable(f"{self._what}: cannot listen on {self.host}:{self.port}: "
                                              f"{e.strerror or e}") from None
                self.logger.info("%s: listening on %s:%d, serving %s", self._what, self.host, self._bound,
                                 self._root())
            return self._bound

    def _start(self) -> int:
        raise NotImplementedError

    def _stop(self) -> None:
        pass


@dataclass(kw_only=True)
class TftpServer(FileServer):
    """TFTP server (read-only: boards fetch, nobody uploads) for U-Boot's tftpboot and PXE"""

    timeout: float = 2.0  # seconds a transfer waits for a board's acknowledgement before it resends

    def _start(self) -> int:
        server = tftpy.TftpServer(str(self._root()), upload_open=lambda _path, _context: None)
        failed: list[OSError] = []

        def listen():
            try:
                server.listen(self.host, self.port, timeout=self.timeout, retries=5)
            except OSError as e:
                failed.append(e)
                server.is_running.set()

        thread = threading.Thread(target=listen, name=f"tftp-{self._what}", daemon=True)
        thread.start()
        server.is_running.wait(10)
        if failed:
            raise failed[0]
        self._server, self._thread = server, thread
        return server.listenport

    def _stop(self) -> None:
        server = getattr(self, "_server", None)
        if server is not None:
            server.stop(now=True)
            self._thread.join(self.timeout + 2)
            self._server = None


class _Quiet(http.server.SimpleHTTPRequestHandler):
    """GET and HEAD of the root's files; its requests in the driver's log, not on stderr."""

    def log_message(self, format, *args):  # noqa: A002 - the name http.server calls it by
        logging.getLogger("driver.http").debug(format, *args)


@dataclass(kw_only=True)
class HttpServer(FileServer):
    """HTTP server (GET and HEAD) of the files the lease's client puts, for kernels, initrds and images"""

    def _start(self) -> int:
        handler = functools.partial(_Quiet, directory=str(self._root()))
        server = http.server.ThreadingHTTPServer((self.host, self.port), handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                  name=f"http-{self._what}", daemon=True)
        thread.start()
        self._server, self._thread = server, thread
        return server.server_address[1]

    def _stop(self) -> None:
        server = getattr(self, "_server", None)
        if server is not None:
            server.shutdown()
            server.server_close()
            self._server = None

    @export(read_only=True)
    async def get_url(self, name: str = "") -> str:
        """The URL boards fetch a served file at"""
        port = await self._serving()
        return f"http://{self._advertised()}:{port}/{str(name).lstrip('/')}"
