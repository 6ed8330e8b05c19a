"""Client-side adapters: a local listener whose connections travel over a driver's stream.

    with TcpPortforwardAdapter(client=root.ssh) as (host, port):
        subprocess.run(["ssh", "-p", str(port), f"root@{host}", "uname -a"])

Each accepted connection opens its own stream (`stream_async(method)`) on the driver,
so it reaches whatever the driver connects to on the exporter's side (a TcpNetwork's
host:port, a UnixNetwork's socket). Usable as `with` from synchronous code (the
listener runs on the connection's portal) and as `async with` from a running loop.
On exit the listener closes and every forwarded connection ends with it. Names and
arguments are upstream's (`jumpstarter_driver_network.adapters`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path

from jumpstarter_lab.client import DriverClient
from jumpstarter_lab.wire.errors import JumpstarterLabError
from jumpstarter_lab.streams import SocketStream, forward

logger = logging.getLogger(__name__)

__all__ = ["TcpPortforwardAdapter", "UnixPortforwardAdapter"]


class _PortforwardAdapter:
    def __init__(self, client: DriverClient, method: str):
        self.client = client
        self.method = method
        self.last_error: BaseException | None = None  # why the latest connection could not be forwarded
        self.connections = 0  # how many were accepted
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def _listen(self, handler) -> tuple[asyncio.Server, object]:
        raise NotImplementedError

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        self.connections += 1
        local = SocketStream(reader, writer)
        try:
            async with self.client.stream_async(self.method) as remote:
                await forward(local, remote)
        except (JumpstarterLabError, ConnectionError, OSError) as e:
            # The driver refused the stream (its target is down...): the local peer sees the
            # connection close; the reason is logged and kept for the caller.
            self.last_error = e
            logger.warning("port forward to %s: %s", self.client.name or "driver", e)
        finally:
            await local.aclose()
            self._tasks.discard(task)

    async def __aenter__(self):
        self._server, address = await self._listen(self._handle)
        return address

    async def __aexit__(self, *exc) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 10)
            self._server = None
        self._cleanup()

    def _cleanup(self) -> None:
        pass

    def _portal(self):
        portal = getattr(self.client.connection, "portal", None)
        if portal is None:
            raise JumpstarterLabError("this client was opened with connect_async: use `async with` on the adapter")
        return portal

    def __enter__(self):
        return self._portal().call(self.__aenter__())

    def __exit__(self, *exc) -> None:
        self._portal().call(self.__aexit__(*exc))


class TcpPortforwardAdapter(_PortforwardAdapter):
    """Listen on local_host:local_port (0: any free port); yields the (host, port) it listens on."""

    def __init__(self, *, client: DriverClient, method: str = "connect", local_host: str = "127.0.0.1",
                 local_port: int = 0):
        super().__init__(client, method)
        self.local_host, self.local_port = local_host, local_port

    async def _listen(self, handler):
        server = await asyncio.start_server(handler, self.local_host, self.local_port)
        host, port = server.sockets[0].getsockname()[:2]
        return server, (host, port)


class UnixPortforwardAdapter(_PortforwardAdapter):
    """Listen on a Unix socket (0600) at `path`, or in a fresh private directory; yields its path."""

    def __init__(self, *, client: DriverClient, method: str = "connect", path: str | os.PathLike | None = None):
        super().__init__(client, method)
        self.path = Path(path) if path is not None else None
        self._tmpdir: str | None = None
        self._bound: Path | None = None

    async def _listen(self, handler):
        path = self.path
        if path is None:
            self._tmpdir = tempfile.mkdtemp(prefix="jumpstarter-lab-forward-")
            path = Path(self._tmpdir) / "forward.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(path))
            self._bound = path
            os.chmod(path, 0o600)  # before listening: only this user may ever connect
            sock.listen(16)
            server = await asyncio.start_unix_server(handler, sock=sock)
        except BaseException:
            sock.close()
            self._cleanup()
            raise
        return server, str(path)

    def _cleanup(self) -> None:
        if self._bound is not None:
            with contextlib.suppress(FileNotFoundError):
                self._bound.unlink()
            self._bound = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
