"""Sessions: each holds its own freshly built driver tree and ends by closing it.

Which session an RPC belongs to: a client may name one with the
`x-jumpstarter-lab-session` metadata (every connection naming it shares it; our
`shell` command hands one name to all its children). Otherwise the session is
the client's connection: it starts with the first RPC and ends when the
connection closes. EndSession ends either kind at once; a named session with no
connection left ends after `linger` seconds.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import fnmatch
import json
import logging
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from . import values
from .driver import Driver
from .errors import JumpstarterLabError, MethodNotFound, status_for_exception
from .protocol import common_pb2, jumpstarter_pb2, router_pb2
from .streams import forward, memory_pipe

logger = logging.getLogger(__name__)

SESSION_METADATA = "x-jumpstarter-lab-session"
# The session whose RPC is running, so a driver call can reach the resources its client pushed.
current_session: contextvars.ContextVar[Session] = contextvars.ContextVar("current_session")
STREAM_REQUEST_METADATA = "request"


class RouterFrames:
    """The server end of a RouterService.Stream call as a ByteStream.

    With `whole`, only an end-of-stream (GOAWAY) frame ends the stream cleanly, as our
    client and upstream's send at the end of their data; a call that just stops (the
    client cancelled it or went away) raises instead, so a cut-off upload is never taken
    for a complete one.
    """

    def __init__(self, context: grpc.aio.ServicerContext, whole: bool = False):
        self._context = context
        self._whole = whole

    async def send(self, data: bytes) -> None:
        await self._context.write(router_pb2.StreamResponse(payload=data))

    async def receive(self) -> bytes:
        while True:
            frame = await self._context.read()
            if frame is grpc.aio.EOF and self._whole:
                raise ConnectionResetError("the client's stream stopped without its end-of-stream frame")
            if frame is grpc.aio.EOF or frame.frame_type == router_pb2.FRAME_TYPE_GOAWAY:
                return b""
            if frame.frame_type == router_pb2.FRAME_TYPE_DATA and frame.payload:
                return frame.payload
            # PING, empty DATA and unknown frames carry nothing for the stream.

    async def send_eof(self) -> None:
        with contextlib.suppress(Exception):
            await self._context.write(router_pb2.StreamResponse(frame_type=router_pb2.FRAME_TYPE_GOAWAY))

    async def aclose(self) -> None:
        pass


@dataclass
class Session:
    key: tuple
    root: Driver
    drivers: dict[str, Driver] = field(init=False)
    peers: set[str] = field(default_factory=set)
    resources: dict[str, object] = field(default_factory=dict)
    log: collections.deque = field(default_factory=lambda: collections.deque(maxlen=256))
    capabilities: dict = field(default_factory=dict)
    paths: dict[str, str] = field(init=False)
    linger_task: asyncio.Task | None = None
    closed: bool = False

    def __post_init__(self):
        self.drivers = {str(driver.uuid): driver for driver, _parent, _name in self.root.walk()}
        self.paths = {}
        for driver, parent, name in self.root.walk():
            prefix = self.paths.get(str(parent.uuid), "") if parent is not None else None
            self.paths[str(driver.uuid)] = "" if prefix is None else (f"{prefix}.{name}" if prefix else name)

    def check_allowed(self, uuid: str, method: str) -> None:
        """Capability restrictions of a lease: `methods` lists fnmatch patterns of DRIVER.METHOD."""
        allowed = self.capabilities.get("methods")
        target = f"{self.paths.get(uuid, '?')}.{method}"
        if allowed and not any(fnmatch.fnmatchcase(target, pattern) for pattern in allowed):
            raise PermissionError(f"this lease may not call {target} (allowed: {', '.join(allowed)})")

    def driver(self, uuid: str) -> Driver:
        try:
            return self.drivers[uuid]
        except KeyError:
            raise MethodNotFound(f"no driver with uuid {uuid} on this exporter") from None

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.linger_task:
            self.linger_task.cancel()
        try:
            await asyncio.to_thread(self.root.close)
        except Exception:
            logger.exception("closing the drivers of session %s failed", self.key)
        logger.info("session %s ended", self.key[1])


class SessionManager:
    """Creates, finds and ends sessions; the only owner of driver trees while serving."""

    def __init__(self, build: Callable[[], Driver], linger: float = 30.0):
        self._build = build
        self._linger = linger
        self._sessions: dict[tuple, Session] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bindings: dict[str, tuple[tuple, dict]] = {}  # peer -> (lease session key, capabilities)
        self.log_handler = _SessionLogHandler(self._sessions)

    def __len__(self) -> int:
        return len(self._sessions)

    def for_context(self, context: grpc.aio.ServicerContext) -> Session:
        session = self._find_or_start(context)
        current_session.set(session)
        return session

    def _find_or_start(self, context: grpc.aio.ServicerContext) -> Session:
        self._loop = asyncio.get_running_loop()
        metadata = dict(context.invocation_metadata() or ())
        peer = context.peer()
        name = metadata.get(SESSION_METADATA)
        key, capabilities = self._bindings.get(peer) or ((("named", name) if name else ("connection", peer)), {})
        session = self._sessions.get(key)
        if session is None:
            session = Session(key=key, root=self._build(), capabilities=capabilities)
            self._sessions[key] = session
            logger.info("session %s started", key[1])
        if session.linger_task:
            session.linger_task.cancel()
            session.linger_task = None
        session.peers.add(peer)
        return session

    def bind(self, peer: str, lease: str, capabilities: dict) -> None:
        """Connections from `peer` belong to the session of `lease` (distributed mode)."""
        self._bindings[peer] = (("lease", lease), capabilities)

    async def end_lease(self, lease: str) -> None:
        session = self._sessions.get(("lease", lease))
        if session is not None:
            await self.end(session)

    async def end(self, session: Session) -> None:
        self._sessions.pop(session.key, None)
        await session.close()

    def connection_closed(self, peer: str) -> None:
        """Called from any thread when a client connection has gone."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._connection_closed, peer)

    def _connection_closed(self, peer: str) -> None:
        self._bindings.pop(peer, None)
        for session in list(self._sessions.values()):
            if peer not in session.peers:
                continue
            session.peers.discard(peer)
            if session.peers or session.key[0] == "lease":  # a lease's session ends with the lease
                continue
            if session.key[0] == "connection":
                asyncio.ensure_future(self.end(session))
            else:
                session.linger_task = asyncio.ensure_future(self._end_later(session))

    async def _end_later(self, session: Session) -> None:
        await asyncio.sleep(self._linger)
        session.linger_task = None
        await self.end(session)

    async def close_all(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        await asyncio.gather(*(s.close() for s in sessions))


class _SessionLogHandler(logging.Handler):
    """Copies driver log records to the LogStream of every open session."""

    def __init__(self, sessions: dict[tuple, Session]):
        super().__init__(logging.INFO)
        self._sessions = sessions

    def emit(self, record: logging.LogRecord) -> None:
        entry = jumpstarter_pb2.LogStreamResponse(uuid="", severity=record.levelname, message=self.format(record),
                                                  source=common_pb2.LOG_SOURCE_DRIVER)
        for session in list(self._sessions.values()):
            session.log.append(entry)


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
        self.status_version = 1

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
            session.check_allowed(request.uuid, request.method)
            result = await driver.call(request.method, [values.decode(a) for a in request.args])
            return jumpstarter_pb2.DriverCallResponse(uuid=str(uuidlib.uuid4()), result=values.encode(result))
        except Exception as e:
            await _abort(context, e, what)

    async def StreamingDriverCall(self, request, context):
        session = self.sessions.for_context(context)
        what = f"{request.method}()"
        try:
            driver = session.driver(request.uuid)
            session.check_allowed(request.uuid, request.method)
            async for item in driver.streaming_call(request.method, [values.decode(a) for a in request.args]):
                yield jumpstarter_pb2.StreamingDriverCallResponse(uuid=str(uuidlib.uuid4()),
                                                                  result=values.encode(item))
        except Exception as e:
            await _abort(context, e, what)

    async def Stream(self, request_iterator, context):
        session = self.sessions.for_context(context)
        metadata = dict(context.invocation_metadata() or ())
        try:
            request = json.loads(metadata.get(STREAM_REQUEST_METADATA, ""))
            kind = request.get("kind")
            driver = session.driver(str(request["uuid"]))
        except (ValueError, KeyError, AttributeError, TypeError) as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"Stream needs a 'request' metadata entry naming a driver stream ({e})")
        try:
            session.check_allowed(str(request["uuid"]), request.get("method", "resource"))
            if kind == "driver":
                async with driver.open_stream(request.get("method", "")) as stream:
                    await context.send_initial_metadata(())
                    await forward(RouterFrames(context), stream)
            elif kind == "resource":
                await self._resource(session, request, context)
            else:
                raise ValueError(f"unknown stream kind {kind!r}")
        except Exception as e:
            await _abort(context, e, f"stream {request.get('method', kind)}")

    async def _resource(self, session: Session, request: dict, context) -> None:
        """A client-pushed byte source that a driver call reads by its handle."""
        local, remote = memory_pipe()
        handle = str(uuidlib.uuid4())
        session.resources[handle] = remote
        resource = json.dumps({"kind": "client_stream", "uuid": handle,
                               "x_jmp_content_encoding": request.get("x_jmp_content_encoding")})
        await context.send_initial_metadata((("resource", resource),))
        try:
            await forward(RouterFrames(context, whole=True), local, whole=True)  # cut off mid-push: an error
        finally:
            session.resources.pop(handle, None)

    async def LogStream(self, request, context):
        session = self.sessions.for_context(context)
        while not context.done() and not session.closed:
            while session.log:
                yield session.log.popleft()
            await asyncio.sleep(0.1)

    async def Reset(self, request, context):
        session = self.sessions.for_context(context)
        await asyncio.to_thread(session.root.reset)
        return jumpstarter_pb2.ResetResponse()

    async def GetStatus(self, request, context):
        self.sessions.for_context(context)
        return jumpstarter_pb2.GetStatusResponse(status=common_pb2.EXPORTER_STATUS_LEASE_READY,
                                                 message="ready", status_version=self.status_version)

    async def EndSession(self, request, context):
        session = self.sessions.for_context(context)
        await self.sessions.end(session)
        return jumpstarter_pb2.EndSessionResponse(success=True, message="session ended")
