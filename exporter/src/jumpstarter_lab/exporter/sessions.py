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
import fnmatch
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from ..driver import Driver, DriverContext
from ..driver.composite import Proxy
from ..wire import metadata as wire_metadata
from ..wire.errors import MethodNotFound
from ..wire.protocol import common_pb2, jumpstarter_pb2

logger = logging.getLogger(__name__)


@dataclass
class Session:
    key: tuple
    root: Driver
    context: DriverContext
    drivers: dict[str, Driver] = field(init=False)
    peers: set[str] = field(default_factory=set)
    log: collections.deque = field(default_factory=lambda: collections.deque(maxlen=256))
    # Each connection's capability restrictions (its lease's client's): a session outlives the connection
    # that started it, and a hook's connections share the session of a client's lease with no restriction.
    capabilities: dict[str, dict] = field(default_factory=dict)
    paths: dict[str, list[str]] = field(init=False)  # uuid -> its names: a `ref` entry and its target share theirs
    linger_task: asyncio.Task | None = None
    closed: bool = False

    def __post_init__(self):
        self.drivers = {str(driver.uuid): driver for driver, _parent, _name in self.root.walk()}
        self.paths = {}
        for driver, parent, name in self.root.walk():  # parents first: a parent's name is known before its child's
            prefix = None if parent is None else self.paths[str(parent.uuid)][0]
            self.paths[str(driver.uuid)] = ["" if prefix is None else f"{prefix}.{name}" if prefix else name]
        for uuid, driver in self.drivers.items():
            if isinstance(driver, Proxy):  # one driver under two names: allowed under either, refused under both
                shared = self.paths[str(driver.target.uuid)]  # one list, however many refs name the target
                shared.extend(self.paths[uuid])
                self.paths[uuid] = shared

    def path(self, uuid: str) -> str:
        """The name a driver is known by first: for a `ref` entry, its target's."""
        return self.paths.get(uuid, ["?"])[0]

    def check_allowed(self, uuid: str, method: str, peer: str) -> None:
        """Capability restrictions of the connection `peer`: `methods` lists fnmatch patterns of DRIVER.METHOD.
        A `ref` entry and its target are one driver: a pattern matching either name allows it."""
        allowed = self.capabilities.get(peer, {}).get("methods")
        targets = [f"{path}.{method}" for path in self.paths.get(uuid, ["?"])]
        if allowed and not any(fnmatch.fnmatchcase(target, pattern) for target in targets for pattern in allowed):
            raise PermissionError(f"this lease may not call {' or '.join(targets)} (allowed: {', '.join(allowed)})")

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
        self.context.close()
        logger.info("session %s ended", self.key[1])


class SessionManager:
    """Creates, finds and ends sessions; the only owner of driver trees while serving."""

    def __init__(self, build: Callable[[DriverContext], Driver], linger: float = 30.0):
        self._build = build
        self._linger = linger
        self._sessions: dict[tuple, Session] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bindings: dict[str, tuple[tuple, dict]] = {}  # peer -> (lease session key, capabilities)
        self._ended_by_client: set[tuple] = set()  # keys of sessions their client ended (EndSession)
        self.log_handler = _SessionLogHandler(self._sessions)

    def __len__(self) -> int:
        return len(self._sessions)

    def _key(self, context: grpc.aio.ServicerContext) -> tuple[tuple, dict]:
        """(session key, capabilities) of an RPC: its lease's, its named session's or its connection's."""
        name = dict(context.invocation_metadata() or ()).get(wire_metadata.SESSION)
        return self._bindings.get(context.peer()) or ((("named", name) if name else ("connection", context.peer())), {})

    def ended_by_client(self, context: grpc.aio.ServicerContext) -> bool:
        """Whether the session this RPC would belong to was ended by its client (EndSession), none started since."""
        return self._key(context)[0] in self._ended_by_client

    def for_context(self, context: grpc.aio.ServicerContext) -> Session:
        """The session an RPC belongs to, started by its first RPC."""
        self._loop = asyncio.get_running_loop()
        key, capabilities = self._key(context)
        session = self._open(key)
        if session.linger_task:
            session.linger_task.cancel()
            session.linger_task = None
        session.peers.add(context.peer())
        session.capabilities[context.peer()] = capabilities
        return session

    def _open(self, key: tuple) -> Session:
        session = self._sessions.get(key)
        if session is None:
            self._ended_by_client.discard(key)
            driver_context = DriverContext()
            try:
                root = self._build(driver_context)
            except BaseException:
                driver_context.close()
                raise
            session = Session(key=key, root=root, context=driver_context)
            self._sessions[key] = session
            logger.info("session %s started", key[1])
        return session

    def lease_session(self, lease: str) -> Session:
        """The session of `lease`, started now if no connection started it yet."""
        self._loop = asyncio.get_running_loop()
        return self._open(("lease", lease))

    def lease_log(self, lease: str, entry: jumpstarter_pb2.LogStreamResponse) -> None:
        """Put `entry` on the LogStream of the lease's session: a hook's output reaches the client that connects
        after it ran."""
        self.lease_session(lease).log.append(entry)

    def bind(self, peer: str, lease: str, capabilities: dict) -> None:
        """Connections from `peer` belong to the session of `lease` (distributed mode)."""
        self._bindings[peer] = (("lease", lease), capabilities)

    async def end_lease(self, lease: str) -> None:
        self._ended_by_client.discard(("lease", lease))
        session = self._sessions.get(("lease", lease))
        if session is not None:
            await self.end(session)

    async def end(self, session: Session, *, by_client: bool = False) -> None:
        self._sessions.pop(session.key, None)
        if by_client and len(self._ended_by_client) < 1024:  # bounded: a client cannot grow it without end
            self._ended_by_client.add(session.key)
        await session.close()

    def connection_closed(self, peer: str) -> None:
        """Called from any thread when a client connection has gone."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._connection_closed, peer)

    def _connection_closed(self, peer: str) -> None:
        self._bindings.pop(peer, None)
        self._ended_by_client.discard(("connection", peer))  # that key never comes back
        for session in list(self._sessions.values()):
            if peer not in session.peers:
                continue
            session.peers.discard(peer)
            session.capabilities.pop(peer, None)
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
