"""Client-side driver objects: one per driver in the exporter's report.

Every operation has an async form (`call_async`, `streamingcall_async`,
`stream_async`) and a blocking one (`call`, `streamingcall`, `stream`) for
synchronous callers; typed clients for an interface build on these.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid as uuidlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc

from ..streams import forward
from ..wire import call_values, handles, labels, names
from ..wire import metadata as wire_metadata
from ..wire.errors import (
    DriverNotFound,
    ExporterUnavailable,
    JumpstarterLabError,
    MethodNotFound,
)
from ..wire.frames import CallFrames
from ..wire.protocol import jumpstarter_pb2


async def _raise_if_refused(call, what: str, connection) -> dict:
    """Wait for a stream's start; an exporter that refused it has ended the call with a status."""
    try:
        metadata = dict(await call.initial_metadata() or ())
    except grpc.aio.AioRpcError as e:
        raise await connection.failure(e.code(), e.details(), what) from None
    if call.done():
        code = await call.code()
        if code != grpc.StatusCode.OK:
            raise await connection.failure(code, await call.details(), what)
    return metadata


class BlockingStream:
    """A ByteStream for synchronous code, driven through the connection's portal.

    Receiving goes through a queue filled by one background task, so a receive
    that times out abandons nothing but its wait.
    """

    def __init__(self, stream, portal):
        self._stream, self._portal = stream, portal
        self._queue: asyncio.Queue | None = None
        self._pump: asyncio.Task | None = None

    def send(self, data: bytes) -> None:
        self._portal.call(self._stream.send(data))

    def send_eof(self) -> None:
        self._portal.call(self._stream.send_eof())

    def receive(self, timeout: float | None = None) -> bytes:
        """The next chunk, b"" once the stream has ended; TimeoutError if none came in time."""
        return self._portal.call(self._receive(timeout))

    async def _receive(self, timeout: float | None) -> bytes:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._pump = asyncio.ensure_future(self._fill())
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"nothing received within {timeout:g}s") from None
        if isinstance(item, BaseException):
            self._queue.put_nowait(item)  # every later receive fails the same way
            raise item
        if item == b"":
            self._queue.put_nowait(b"")
        return item

    async def _fill(self) -> None:
        try:
            while chunk := await self._stream.receive():
                self._queue.put_nowait(chunk)
            self._queue.put_nowait(b"")
        except Exception as e:
            self._queue.put_nowait(e)

    async def _stop(self) -> None:
        if self._pump:
            self._pump.cancel()

    def receive_exactly(self, size: int, timeout: float | None = None) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.receive(timeout)
            if not chunk:
                raise EOFError(f"stream ended after {len(data)} of {size} bytes")
            data += chunk
        return data


class DriverClient:
    """Base class of driver clients. Children are reachable as attributes or via `children`."""

    def __init__(self, *, uuid: uuidlib.UUID, labels: dict[str, str], connection, children: dict[str, DriverClient],
                 description: str | None = None, methods_description: dict[str, str] | None = None):
        self.uuid = uuid
        self.labels = labels
        self.connection = connection
        self.children = children
        self.description = description
        self.methods_description = methods_description or {}

    @property
    def name(self) -> str:
        return self.labels.get(labels.NAME, "")

    @property
    def read_only_methods(self) -> frozenset[str]:
        """The methods the exporter says change nothing (an exporter without the label: none)."""
        return frozenset(filter(None, self.labels.get(labels.READ_ONLY, "").split(",")))

    @property
    def client_label(self) -> str:
        """The client class the exporter named for this driver (upstream's name for the interface)."""
        return self.labels.get(labels.CLIENT, "")

    def __getattr__(self, name: str):
        children = self.__dict__.get("children", {})
        if name in children:
            return children[name]
        raise AttributeError(f"{type(self).__name__} '{self.__dict__.get('labels', {}).get(labels.NAME, '')}'"
                             f" has no attribute or child '{name}'")

    def child(self, dotted: str) -> DriverClient:
        """The driver at a dotted path below this one (`board.power`); DriverNotFound naming what is missing."""
        return names.walk_path(self, dotted, self.name or "the exporter")

    def find(self, label: str) -> list[tuple[str, DriverClient]]:
        """(dotted path, client) of every driver below this one whose client label is `label`."""
        found = []
        for name, child in self.children.items():
            if child.client_label == label:
                found.append((name, child))
            found.extend((f"{name}.{path}", node) for path, node in child.find(label))
        return found

    def locate(self, path: str | None, label: str, what: str, preferred: str = "") -> tuple[str, DriverClient]:
        """(dotted path, client) of the driver at `path`, or when no path is given, of the first driver with client
        label `label` (one named `preferred` first); DriverNotFound names `what` when there is none."""
        if path:
            return path, self.child(path)
        found = sorted(self.find(label), key=lambda item: (item[0].rsplit(".", 1)[-1] != preferred, item[0]))
        if not found:
            raise DriverNotFound(f"the exporter has no {what} driver")
        return found[0]

    def __dir__(self):
        return list(super().__dir__()) + list(self.children)

    def _what(self, method: str) -> str:
        return f"{self.name or 'root'}.{method}"

    # --- async ----------------------------------------------------------------------

    async def call_async(self, method: str, *args: Any) -> Any:
        request = jumpstarter_pb2.DriverCallRequest(uuid=str(self.uuid), method=method,
                                                    args=[call_values.encode(a) for a in args])
        try:
            response = await self.connection.stub.DriverCall(request, metadata=self.connection.metadata,
                                                             timeout=self.connection.call_timeout)
        except grpc.aio.AioRpcError as e:
            raise await self.connection.failure(e.code(), e.details(), self._what(method)) from None
        return call_values.decode(response.result)

    async def streamingcall_async(self, method: str, *args: Any) -> AsyncIterator[Any]:
        request = jumpstarter_pb2.StreamingDriverCallRequest(uuid=str(self.uuid), method=method,
                                                             args=[call_values.encode(a) for a in args])
        call = self.connection.stub.StreamingDriverCall(request, metadata=self.connection.metadata)
        try:
            async for response in call:
                yield call_values.decode(response.result)
        except grpc.aio.AioRpcError as e:
            raise await self.connection.failure(e.code(), e.details(), self._what(method)) from None
        finally:
            call.cancel()

    @contextlib.asynccontextmanager
    async def stream_async(self, method: str = "connect"):
        request = handles.to_json(handles.DriverStreamRequest(uuid=str(self.uuid), method=method))
        call = self.connection.router.Stream(
            metadata=self.connection.metadata + ((wire_metadata.STREAM_REQUEST, request),))
        what = self._what(method)
        await _raise_if_refused(call, what, self.connection)
        stream = CallFrames(call, what, failure=self.connection.failure)
        try:
            yield stream
        finally:
            await stream.send_eof()
            call.cancel()

    @contextlib.asynccontextmanager
    async def resource_async(self, source, encoding: str | None = None):
        """Push `source` (a ByteStream) to the exporter; yields the handle (a dict) to pass to a driver call."""
        request = handles.to_json(handles.ResourceStreamRequest(uuid=str(self.uuid), x_jmp_content_encoding=encoding))
        call = self.connection.router.Stream(
            metadata=self.connection.metadata + ((wire_metadata.STREAM_REQUEST, request),))
        what = self._what("resource")
        metadata = await _raise_if_refused(call, what, self.connection)
        if wire_metadata.RESOURCE not in metadata:
            call.cancel()
            raise ExporterUnavailable(f"{what}: exporter did not accept the stream")
        handle = handles.ClientStreamHandle.parse(metadata[wire_metadata.RESOURCE])
        frames = CallFrames(call, what, failure=self.connection.failure)
        pushing = asyncio.ensure_future(forward(frames, source, whole=True))
        try:
            yield handles.to_dict(handle)
        finally:
            await asyncio.wait([pushing], timeout=5)
            pushing.cancel()
            call.cancel()

    # --- blocking -------------------------------------------------------------------

    def call(self, method: str, *args: Any) -> Any:
        return self.connection.portal.call(self.call_async(method, *args))

    def streamingcall(self, method: str, *args: Any) -> Iterator[Any]:
        return self.connection.portal.iterate(self.streamingcall_async(method, *args))

    def call_any(self, method: str, *args: Any, each=None, limit: int | None = None) -> tuple[Any, bool]:
        """`method` whatever its kind: (a call's value, False), or (a streaming call's values as a list, True),
        at most `limit` of them (the stream ends there), each also given to `each` as it comes. A streaming
        method answers a plain call with MethodNotFound, so the call is tried first; one that is neither raises
        the call's error."""
        try:
            return self.call(method, *args), False
        except MethodNotFound as not_a_call:
            values = []
            items = self.streamingcall(method, *args)
            try:
                for value in items:
                    values.append(value)
                    if each:
                        each(value)
                    if limit is not None and len(values) >= limit:
                        break
            except MethodNotFound:
                raise not_a_call from None
            finally:
                items.close()
            return values, True

    @contextlib.contextmanager
    def stream(self, method: str = "connect"):
        portal = self.connection.portal
        manager = self.stream_async(method)
        blocking = BlockingStream(portal.call(manager.__aenter__()), portal)
        try:
            yield blocking
        except BaseException as e:
            portal.call(blocking._stop())
            if not portal.call(manager.__aexit__(type(e), e, e.__traceback__)):
                raise
        else:
            portal.call(blocking._stop())
            portal.call(manager.__aexit__(None, None, None))


class UnavailableClient(DriverClient):
    """Stands for a driver whose client class could not be loaded; every use says why."""

    def __init__(self, *, reason: JumpstarterLabError, **kwargs):
        super().__init__(**kwargs)
        self.reason = reason

    def _refuse(self, *_args, **_kwargs):
        raise type(self.reason)(f"driver '{self.name}': {self.reason}")

    call = call_async = streamingcall = streamingcall_async = stream = stream_async = _refuse


class CompositeClient(DriverClient):
    """Client of a node that only groups children."""
