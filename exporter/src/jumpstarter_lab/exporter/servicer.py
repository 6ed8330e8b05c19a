"""jumpstarter.v1.ExporterService and RouterService of one exporter, over its sessions."""

from __future__ import annotations

import asyncio
import logging
import uuid as uuidlib

import grpc

from ..streams import forward, memory_pipe
from ..wire import call_values, handles
from ..wire import metadata as wire_metadata
from ..wire.errors import JumpstarterLabError, status_for_exception
from ..wire.frames import ServedFrames
from ..wire.protocol import common_pb2, jumpstarter_pb2
from .sessions import Session, SessionManager

logger = logging.getLogger(__name__)


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException, what: str):
    if not isinstance(exc, JumpstarterLabError) and not isinstance(
        exc, (NotImplementedError, ValueError, TimeoutError, ConnectionError, PermissionError)
    ):
        logger.exception("%s failed", what)
    message = str(exc) or type(exc).__name__
    await context.abort(status_for_exception(exc), message)


class ExporterServicer:
    """jumpstarter.v1.ExporterService and RouterService over the sessions of one exporter.

    Registered with add_ExporterServiceServicer_to_server / add_RouterServiceServicer_to_server,
    which look methods up by name; every method of both services is implemented here.
    """

    def __init__(self, sessions: SessionManager, uuid: uuidlib.UUID, labels: dict[str, str]):
        self.sessions = sessions
        self.uuid = uuid
        self.labels = labels

    async def GetReport(self, request, context):
        session = self.sessions.for_context(context)
        return jumpstarter_pb2.GetReportResponse(
            uuid=str(self.uuid), labels=self.labels,
            reports=[d.report(parent, name) for d, parent, name in session.root.walk()])

    async def DriverCall(self, request, context):
        session = self.sessions.for_context(context)
        what = f"{request.method}()"
        try:
            driver = session.driver(request.uuid)
            session.check_allowed(request.uuid, request.method, context.peer())
            result = await driver.call(request.method, [call_values.decode(a) for a in request.args])
            return jumpstarter_pb2.DriverCallResponse(uuid=str(uuidlib.uuid4()), result=call_values.encode(result))
        except Exception as e:
            await _abort(context, e, what)

    async def StreamingDriverCall(self, request, context):
        session = self.sessions.for_context(context)
        what = f"{request.method}()"
        try:
            driver = session.driver(request.uuid)
            session.check_allowed(request.uuid, request.method, context.peer())
            async for item in driver.streaming_call(request.method, [call_values.decode(a) for a in request.args]):
                yield jumpstarter_pb2.StreamingDriverCallResponse(uuid=str(uuidlib.uuid4()),
                                                                  result=call_values.encode(item))
        except Exception as e:
            await _abort(context, e, what)

    async def Stream(self, request_iterator, context):
        session = self.sessions.for_context(context)
        try:
            request = handles.parse_stream_request(dict(context.invocation_metadata() or ()).get(
                wire_metadata.STREAM_REQUEST))
            driver = session.driver(request.uuid)
        except Exception as e:
            await _abort(context, e, "stream")
        is_driver_stream = isinstance(request, handles.DriverStreamRequest)
        what = f"stream {request.method}" if is_driver_stream else "resource stream"
        try:
            session.check_allowed(request.uuid, request.method if is_driver_stream else "resource", context.peer())
            if is_driver_stream:
                async with driver.open_stream(request.method) as stream:
                    await context.send_initial_metadata(())
                    await forward(ServedFrames(context, what), stream)
            else:
                await self._resource(session, request, context)
        except Exception as e:
            await _abort(context, e, what)

    async def _resource(self, session: Session, request: handles.ResourceStreamRequest, context) -> None:
        """A client-pushed byte source that a driver call reads by its handle."""
        local, remote = memory_pipe()
        handle = handles.ClientStreamHandle(uuid=str(uuidlib.uuid4()),
                                            x_jmp_content_encoding=request.x_jmp_content_encoding)
        session.context.resources[handle.uuid] = remote
        await context.send_initial_metadata(((wire_metadata.RESOURCE, handles.to_json(handle)),))
        try:  # cut off mid-push: an error, never a short upload taken for a whole one
            await forward(ServedFrames(context, "the client's stream", whole=True), local, whole=True)
        finally:
            session.context.resources.pop(handle.uuid, None)

    async def LogStream(self, request, context):
        session = self.sessions.for_context(context)
        while not context.done() and not session.closed:
            while session.log:
                yield session.log.popleft()
            await asyncio.sleep(0.1)

    async def Reset(self, request, context):
        session = self.sessions.for_context(context)
        try:  # a reset acts on every driver (a Ykush's switches its ports' power): each must be allowed
            for uuid in session.drivers:
                if uuid != str(session.root.uuid):
                    session.check_allowed(uuid, "reset", context.peer())
            await asyncio.to_thread(session.root.reset)
        except Exception as e:
            await _abort(context, e, "reset")
        return jumpstarter_pb2.ResetResponse()

    async def GetStatus(self, request, context):
        """The caller's view of the exporter, as upstream's clients poll it: ready for its session (none runs a
        hook before it), or available again once it ended the session (upstream's client waits for that
        after EndSession). Asking starts no session."""
        if self.sessions.ended_by_client(context):
            return jumpstarter_pb2.GetStatusResponse(status=common_pb2.EXPORTER_STATUS_AVAILABLE,
                                                     message="session ended", status_version=2,
                                                     previous_status=common_pb2.EXPORTER_STATUS_LEASE_READY)
        return jumpstarter_pb2.GetStatusResponse(status=common_pb2.EXPORTER_STATUS_LEASE_READY,
                                                 message="ready", status_version=1)

    async def EndSession(self, request, context):
        session = self.sessions.for_context(context)
        await self.sessions.end(session, by_client=True)
        return jumpstarter_pb2.EndSessionResponse(success=True, message="session ended")
