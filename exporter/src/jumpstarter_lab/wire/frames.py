"""RouterService.Stream calls as ByteStreams: the one reading of router frames, for both ends.

A stream's data travels in DATA frames; GOAWAY ends it cleanly, as our peers and
upstream's send at the end of their data. PING, empty DATA and unknown frames carry
nothing for the stream.
"""

from __future__ import annotations

import asyncio
import contextlib

import grpc

from .errors import ExporterUnavailable, exception_for_status
from .protocol import router_pb2


class _Frames:
    """What both ends share: turning the frames read into bytes (b"" at the end)."""

    def __init__(self, call, what: str, whole: bool):
        self._call, self._what, self._whole = call, what, whole
        self._eof_sent = False

    async def _read(self):
        return await self._call.read()

    async def receive(self) -> bytes:
        while True:
            frame = await self._read()
            if frame is grpc.aio.EOF:
                if self._whole:  # a call that just stops: cancelled or gone, never a complete upload
                    raise ConnectionResetError(f"{self._what} stopped without its end-of-stream frame")
                return b""
            if frame.frame_type == router_pb2.FRAME_TYPE_GOAWAY:
                return b""
            if frame.frame_type == router_pb2.FRAME_TYPE_DATA and frame.payload:
                return frame.payload


async def _mapped(code: grpc.StatusCode, details: str | None, what: str) -> Exception:
    return exception_for_status(code, details, what)


class CallFrames(_Frames):
    """The end of a Stream call this side made (a client, or an exporter reaching the router).

    Failures of the call arrive as the project's errors, made by `failure(code, details, what)`: a client
    connection's can say why its exporter is out of reach; by default the plain mapping."""

    def __init__(self, call: grpc.aio.StreamStreamCall, what: str, whole: bool = False, failure=None):
        super().__init__(call, what, whole)
        self._failure = failure or _mapped

    async def _error(self, error: grpc.aio.AioRpcError) -> Exception:
        return await self._failure(error.code(), error.details(), self._what)

    async def _read(self):
        try:
            return await self._call.read()
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.CANCELLED and not self._whole:
                return grpc.aio.EOF
            raise await self._error(e) from None

    async def send(self, data: bytes) -> None:
        try:
            await self._call.write(router_pb2.StreamRequest(payload=data))
        except grpc.aio.AioRpcError as e:
            raise await self._error(e) from None
        except (grpc.aio.UsageError, asyncio.InvalidStateError):
            raise ExporterUnavailable(f"{self._what}: stream closed") from None

    async def send_eof(self) -> None:
        if self._eof_sent:
            return
        self._eof_sent = True
        with contextlib.suppress(grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
            await self._call.write(router_pb2.StreamRequest(frame_type=router_pb2.FRAME_TYPE_GOAWAY))
            await self._call.done_writing()

    async def aclose(self) -> None:
        self._call.cancel()

    def abort(self, reason: str) -> None:
        """Stop sending without the end-of-stream frame: the other end sees the call cancelled."""
        self._eof_sent = True
        self._call.cancel()


class ServedFrames(_Frames):
    """The end of a Stream call this side serves (an exporter's driver stream or resource).

    With `whole`, only an end-of-stream frame ends the stream cleanly; a call that just
    stops raises, so a cut-off upload is never taken for a complete one."""

    def __init__(self, context: grpc.aio.ServicerContext, what: str = "stream", whole: bool = False):
        super().__init__(context, what, whole)

    async def send(self, data: bytes) -> None:
        await self._call.write(router_pb2.StreamResponse(payload=data))

    async def send_eof(self) -> None:
        if self._eof_sent:
            return
        self._eof_sent = True
        with contextlib.suppress(Exception):
            await self._call.write(router_pb2.StreamResponse(frame_type=router_pb2.FRAME_TYPE_GOAWAY))

    async def aclose(self) -> None:
        pass  # the call ends when its handler returns
