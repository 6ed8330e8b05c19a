"""Distributed mode, exporter side: register with the controller, follow its lease
decisions, run the lease hooks around each lease, and carry each client connection from
the router into the lease's session.

Every lease gets a fresh session (fresh driver instances) that ends with the lease.
A beforeLease hook runs first, with the lease's session at $JUMPSTARTER_HOST; the
client's connections wait for it, and the controller shows the lease ready only once
this exporter reports LEASE_READY. An afterLease hook runs once the lease ended, before
its session closes. Losing the controller (restart, network) is retried with backoff,
keeping identity.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
from pathlib import Path

import grpc
import jwt

from ..streams import SocketStream, forward
from ..wire import console_logs, names
from ..wire.channels import channel_for
from ..wire.errors import ConfigError
from ..wire.frames import CallFrames
from ..wire.metadata import bearer_metadata, identity_metadata
from ..wire.labels import HOOKS
from ..wire.protocol import common_pb2, jumpstarter_pb2, jumpstarter_pb2_grpc, router_pb2_grpc
from .console_log import ConsoleRecorder
from .hooks import AFTER_LEASE, BEFORE_LEASE, Hook, HookFailed

logger = logging.getLogger(__name__)


class ControllerLink:
    """An exporter's registration with its controller: follows the lease decisions and carries each
    client connection from the router into the lease's session."""

    def __init__(self, exporter, private: Path, backend: Path):
        self.exporter = exporter
        self.config = exporter.config
        self.private, self.backend = private, backend
        self.metadata = identity_metadata(self.config.token or "", "Exporter", self.config.namespace, self.config.name)
        self._ids = itertools.count()
        self._lease: str | None = None
        self._client = ""
        self._lease_task: asyncio.Task | None = None
        self._before_task: asyncio.Task | None = None
        self._ready = asyncio.Event()  # the current lease's beforeLease hook is done: connections may pass
        self._before_failed = ""  # why the current lease's beforeLease hook failed: no afterLease for it (as upstream)
        self._controller = None  # the stub of the current channel to the controller, while there is one
        self._status: tuple[int, str] | None = None  # a hook phase under way, told again after a reconnect
        self._stopped: asyncio.Event | None = None
        self._fatal: HookFailed | None = None  # a hook with onFailure: exit failed: the exporter stops
        self._recorder: ConsoleRecorder | None = None  # the current lease's console log
        self._uploads: set[asyncio.Task] = set()  # console logs on their way to the controller

    async def run(self, stopped: asyncio.Event, ready=None) -> None:
        if not self.config.endpoint or not self.config.token:
            raise ConfigError(f"{self.config.source}: distributed mode needs 'endpoint' and 'token' "
                              "(or serve locally with --socket / --listen)")
        self._stopped = stopped
        backoff = 0.5
        announced = False
        while not stopped.is_set():
            try:
                async with channel_for(self.config.endpoint, self.config.tls) as channel:
                    controller = jumpstarter_pb2_grpc.ControllerServiceStub(channel)
                    await self._register(controller)
                    self._controller = controller
                    if self._status is not None:  # the controller forgets a hook phase when it registers us anew
                        await self._report(*self._status)
                    backoff = 0.5
                    if not announced:
                        announced = True
                        if ready:
                            ready(self.config.endpoint)
                    await self._follow(controller, stopped)
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.UNAUTHENTICATED:
                    raise ConfigError(f"the controller at {self.config.endpoint} refused this exporter's token: "
                                      f"{e.details()}") from None
                logger.warning("controller %s: %s; retrying in %.1fs", self.config.endpoint,
                               e.details() or e.code().name, backoff)
            finally:
                self._controller = None
            if stopped.is_set():
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stopped.wait(), backoff)
            backoff = min(backoff * 2, 10.0)
        await self._end_lease()
        if self._uploads:  # the last lease's console log, before this exporter goes
            await asyncio.wait(self._uploads, timeout=10)
        with contextlib.suppress(Exception):
            async with channel_for(self.config.endpoint, self.config.tls) as channel:
                await jumpstarter_pb2_grpc.ControllerServiceStub(channel).Unregister(
                    jumpstarter_pb2.UnregisterRequest(reason="exporter stopped"), metadata=self.metadata, timeout=3)
        if self._fatal is not None:
            raise HookFailed(f"{self._fatal}: the exporter stopped (onFailure: exit)")

    async def _register(self, controller) -> None:
        root = self.config.build()
        try:
            reports = [d.report(parent, name) for d, parent, name in root.walk()]
        finally:
            await asyncio.to_thread(root.close)
        if self.config.hooks:  # the controller holds a lease's readiness for them, and grants none while they run
            reports[0].labels[HOOKS] = ",".join(self.config.hooks)
        await controller.Register(jumpstarter_pb2.RegisterRequest(labels={}, reports=reports),
                                  metadata=self.metadata, timeout=10)
        logger.info("registered with controller %s as %s/%s", self.config.endpoint, self.config.namespace,
                    self.config.name)

    async def _follow(self, controller, stopped: asyncio.Event) -> None:
        status = controller.Status(jumpstarter_pb2.StatusRequest(), metadata=self.metadata)
        waiter = asyncio.ensure_future(stopped.wait())
        try:
            while True:
                reading = asyncio.ensure_future(status.read())
                done, _pending = await asyncio.wait([reading, waiter], return_when=asyncio.FIRST_COMPLETED)
                if waiter in done:
                    reading.cancel()
                    return
                update = reading.result()
                if update is grpc.aio.EOF:
                    raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                               "status stream ended")
                if update.leased:
                    if update.lease_name != self._lease:
                        await self._end_lease()
                        self._begin_lease(update.lease_name, update.client_name)
                    if self._lease_task is None or self._lease_task.done():
                        # (Re)start listening: after a reconnect the same lease goes on, on a new channel.
                        self._lease_task = asyncio.ensure_future(self._listen(controller, update.lease_name))
                elif self._lease is not None:
                    logger.info("lease %s ended", self._lease)
                    await self._end_lease()
        finally:
            waiter.cancel()
            status.cancel()

    # --- a lease's life: beforeLease hook, connections, afterLease hook -------------------------------

    def _begin_lease(self, lease: str, client: str) -> None:
        self._lease, self._client, self._before_failed = lease, client, ""
        logger.info("leased to %s under %s", client, lease)
        self._ready = asyncio.Event()
        session = self.exporter.sessions.lease_session(lease)  # its consoles are recorded from the start
        consoles = {session.path(uuid): output for uuid, driver in session.drivers.items()
                    if (output := driver.console_output()) is not None}
        self._recorder = ConsoleRecorder(consoles) if consoles else None
        hook = self.config.hooks.get(BEFORE_LEASE)
        if hook is None:
            self._ready.set()
        else:
            self._before_task = asyncio.ensure_future(self._before_lease(hook, lease, client))

    async def _before_lease(self, hook: Hook, lease: str, client: str) -> None:
        await self._report(common_pb2.EXPORTER_STATUS_BEFORE_LEASE_HOOK,
                           f"running the beforeLease hook of lease {lease}")
        try:
            await self._run_hook(hook, lease, client)
        except HookFailed as e:
            if hook.on_failure == "warn":
                logger.warning("%s; lease %s goes on (onFailure: warn)", e, lease)
                await self._report(common_pb2.EXPORTER_STATUS_LEASE_READY, f"ready, with a warning: {e}")
            else:  # the client never gets the lease: its connections wait until it ends
                logger.error("%s; lease %s ends (onFailure: %s)", e, lease, hook.on_failure)
                self._before_failed = str(e)
                self._fail(e, hook)
                # Shielded: the lease's end, which this report brings, cancels this task, not the report.
                await asyncio.shield(self._report(common_pb2.EXPORTER_STATUS_BEFORE_LEASE_HOOK_FAILED, str(e),
                                                  release_lease=True))
                self._stop_if_fatal()
                return
        else:
            await self._report(common_pb2.EXPORTER_STATUS_LEASE_READY, "ready: the beforeLease hook succeeded")
        self._ready.set()

    async def _end_lease(self) -> None:
        lease, self._lease = self._lease, None
        for task in (self._lease_task, self._before_task):
            if task is not None:  # connections end first: the afterLease hook has the board to itself
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._lease_task = self._before_task = None
        if lease is None:
            return
        hook = self.config.hooks.get(AFTER_LEASE)
        if self._before_failed:  # the board was never handed over: nothing to clean, and the failure stays shown
            await self._report(common_pb2.EXPORTER_STATUS_AVAILABLE,
                               f"available; the beforeLease hook of lease {lease} failed: {self._before_failed}")
        elif hook is not None:
            await self._after_lease(hook, lease)
        elif self.config.hooks:
            await self._report(common_pb2.EXPORTER_STATUS_AVAILABLE, "available")
        recorder, self._recorder = self._recorder, None
        log = await recorder.stop() if recorder is not None else None
        await self.exporter.sessions.end_lease(lease)  # the next lease starts with fresh drivers
        if log is not None:
            task = asyncio.ensure_future(self._hand_in(lease, log))
            self._uploads.add(task)
            task.add_done_callback(self._uploads.discard)
        self._stop_if_fatal()

    async def _hand_in(self, lease: str, log: bytes) -> None:
        """Hand the controller a lease's console log, where its client fetches it; retried for a while."""
        delay = 1.0
        for attempt in range(6):
            try:
                async with channel_for(self.config.endpoint, self.config.tls) as channel:
                    put = channel.stream_unary(console_logs.PUT,
                                               request_serializer=console_logs.Bytes.SerializeToString,
                                               response_deserializer=console_logs.Empty.FromString)
                    await put(console_logs.chunks(log), metadata=(*self.metadata, (console_logs.LEASE, lease)),
                              timeout=60)
                logger.info("console log of lease %s handed to the controller (%d bytes)", lease, len(log))
                return
            except grpc.aio.AioRpcError as e:
                if e.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT) or attempt == 5:
                    logger.warning("the console log of lease %s was not kept: %s", lease, e.details())
                    return
            await asyncio.sleep(delay)
            delay *= 2

    async def _after_lease(self, hook: Hook, lease: str) -> None:
        await self._report(common_pb2.EXPORTER_STATUS_AFTER_LEASE_HOOK,
                           f"running the afterLease hook of lease {lease}")
        try:
            await self._run_hook(hook, lease, self._client)
        except HookFailed as e:
            if hook.on_failure == "warn":
                logger.warning("%s (onFailure: warn)", e)
                await self._report(common_pb2.EXPORTER_STATUS_AVAILABLE, f"available, with a warning: {e}")
            else:
                logger.error("%s; this exporter is granted to nobody until an admin runs "
                             "'jumpstarter-lab admin enable-exporter %s' (onFailure: %s)", e, self.config.name,
                             hook.on_failure)
                await self._report(common_pb2.EXPORTER_STATUS_AFTER_LEASE_HOOK_FAILED,
                                   f"{e}: granted to nobody until an admin puts it back in service")
                self._fail(e, hook)
            return
        await self._report(common_pb2.EXPORTER_STATUS_AVAILABLE, "available: the afterLease hook succeeded")

    def _fail(self, error: HookFailed, hook: Hook) -> None:
        """onFailure: exit - the exporter stops once the failure is reported and the lease has ended."""
        if hook.on_failure == "exit":
            self._fatal = error

    def _stop_if_fatal(self) -> None:
        if self._fatal is not None and self._stopped is not None:
            self._stopped.set()

    async def _run_hook(self, hook: Hook, lease: str, client: str) -> None:
        """Run `hook` for `lease`; its output goes to this exporter's log and to the lease's LogStream."""
        source = (common_pb2.LOG_SOURCE_BEFORE_LEASE_HOOK if hook.point == BEFORE_LEASE
                  else common_pb2.LOG_SOURCE_AFTER_LEASE_HOOK)

        def line(text: str) -> None:
            logger.info("%s hook of lease %s: %s", hook.point, lease, text)
            self.exporter.sessions.lease_log(lease, jumpstarter_pb2.LogStreamResponse(
                uuid=str(self.config.uuid), severity="INFO", message=text, source=source))

        logger.info("running the %s hook of lease %s: %s", hook.point, lease, " ".join(hook.argv())[:200])
        async with self._hook_socket(lease) as path:
            env = os.environ | {"JUMPSTARTER_HOST": str(path), "LEASE_NAME": lease, "CLIENT_NAME": client,
                                "JMP_DRIVERS_ALLOW": "UNSAFE", "TERM": "dumb", "DEBIAN_FRONTEND": "noninteractive"}
            env.pop("PS1", None)
            await hook.run(env, line)
        logger.info("the %s hook of lease %s succeeded", hook.point, lease)

    @contextlib.asynccontextmanager
    async def _hook_socket(self, lease: str):
        """A Unix socket, private to this exporter's user, whose connections belong to the lease's session with
        no capability restriction: the hook is the exporter's own, and prepares the board the client gets."""
        path = self.private / f"hook-{next(self._ids)}.sock"
        relays: set[asyncio.Task] = set()

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            relays.add(asyncio.current_task())
            outside = SocketStream(reader, writer)
            try:
                inside, peer = await self._session_connection(lease, {})
                try:
                    await forward(outside, inside)
                finally:
                    await inside.aclose()
                    self.exporter.sessions.connection_closed(peer)
            except Exception as e:  # noqa: BLE001 - one connection of the hook failing is the hook's to see
                logger.debug("hook connection on lease %s ended: %s", lease, e)
            finally:
                await outside.aclose()
                relays.discard(asyncio.current_task())

        server = await asyncio.start_unix_server(relay, path=str(path))
        try:
            yield path
        finally:
            server.close()
            for task in list(relays):
                task.cancel()
            with contextlib.suppress(OSError):
                path.unlink()

    async def _report(self, status: int, message: str, release_lease: bool = False) -> None:
        """Tell the controller this exporter's status (upstream's ReportStatus); kept to tell again after a
        reconnect while a hook phase is under way. A controller out of reach is logged, never waited for long."""
        settled = (common_pb2.EXPORTER_STATUS_AVAILABLE, common_pb2.EXPORTER_STATUS_AFTER_LEASE_HOOK_FAILED)
        self._status = None if status in settled else (status, message)
        if self._controller is None:
            return
        request = jumpstarter_pb2.ReportStatusRequest(status=status, message=message)
        if release_lease:
            request.release_lease = True
        try:
            await self._controller.ReportStatus(request, metadata=self.metadata, timeout=10)
        except grpc.aio.AioRpcError as e:
            logger.warning("reporting %s to the controller: %s", names.status_name(status),
                           e.details() or e.code().name)

    async def _listen(self, controller, lease: str) -> None:
        bridges: set[asyncio.Task] = set()
        try:
            async for dial in controller.Listen(jumpstarter_pb2.ListenRequest(lease_name=lease), metadata=self.metadata):
                task = asyncio.ensure_future(self._bridge(lease, dial.router_endpoint, dial.router_token))
                bridges.add(task)
                task.add_done_callback(bridges.discard)
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                logger.warning("listening for lease %s: %s", lease, e.details())
        finally:
            for task in bridges:
                task.cancel()

    async def _session_connection(self, lease: str, capabilities: dict) -> tuple[SocketStream, str]:
        """A connection into the lease's session, with `capabilities`; and its peer name."""
        name = self.private / f"r{next(self._ids)}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(name))
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, str(self.backend))
        except BaseException:
            sock.close()
            raise
        finally:
            with contextlib.suppress(OSError):
                name.unlink()
        peer = f"unix:{name}"
        self.exporter.sessions.bind(peer, lease, capabilities)
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        return SocketStream(reader, writer), peer

    async def _bridge(self, lease: str, endpoint: str, token: str) -> None:
        """One client connection: router stream <-> a connection into the lease's session."""
        claims = jwt.decode(token, options={"verify_signature": False})  # it came from the controller we trust
        if claims.get("lease") not in (None, lease):
            logger.warning("router token for lease %s arrived on lease %s; ignored", claims.get("lease"), lease)
            return
        await self._ready.wait()  # the beforeLease hook prepares the board first
        local, peer = await self._session_connection(lease, claims.get("capabilities") or {})
        try:
            async with channel_for(endpoint, self.config.tls) as channel:
                call = router_pb2_grpc.RouterServiceStub(channel).Stream(metadata=bearer_metadata(token))
                await _forward_while(call, forward(CallFrames(call, f"router for lease {lease}"), local))
                if await call.code() not in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED):
                    logger.warning("client connection on lease %s ended: %s", lease, await call.details())
        except Exception as e:  # one client connection failing must not end the lease
            logger.warning("client connection on lease %s ended: %s", lease, e)
        finally:
            await local.aclose()
            self.exporter.sessions.connection_closed(peer)


ROUTER_DRAIN = 5.0  # seconds what a router stream delivered before it ended has to reach the session


async def _forward_while(call: grpc.aio.StreamStreamCall, forwarding) -> None:
    """Run `forwarding` (router stream <-> session connection) until the router stream has ended and what it
    delivered has been passed on. A connection that never carried a byte (the client never came to the
    router) does not see the end of file: the session's server would hold it until its handshake timeout."""
    copying = asyncio.ensure_future(forwarding)
    ended = asyncio.ensure_future(call.code())
    try:
        await asyncio.wait([copying, ended], return_when=asyncio.FIRST_COMPLETED)
        if not copying.done():
            await asyncio.wait([copying], timeout=ROUTER_DRAIN)
    finally:
        call.cancel()  # the session's side ended first, or the drain is over: nothing more goes through
        for task in (copying, ended):
            task.cancel()
        await asyncio.gather(copying, ended, return_exceptions=True)
    if not copying.cancelled() and copying.exception() is not None:
        raise copying.exception()
