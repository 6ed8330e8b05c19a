"""Distributed mode, exporter side: register with the controller, follow its lease
decisions, and carry each client connection from the router into the lease's session.

Every lease gets a fresh session (fresh driver instances) that ends with the lease.
Losing the controller (restart, network) is retried with backoff, keeping identity.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from pathlib import Path

import grpc
import jwt

from ..streams import SocketStream, forward
from ..wire.channels import channel_for
from ..wire.errors import ConfigError
from ..wire.frames import CallFrames
from ..wire.metadata import bearer_metadata, identity_metadata
from ..wire.protocol import jumpstarter_pb2, jumpstarter_pb2_grpc, router_pb2_grpc

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
        self._lease_task: asyncio.Task | None = None

    async def run(self, stopped: asyncio.Event, ready=None) -> None:
        if not self.config.endpoint or not self.config.token:
            raise ConfigError(f"{self.config.source}: distributed mode needs 'endpoint' and 'token' "
                              "(or serve locally with --socket / --listen)")
        backoff = 0.5
        announced = False
        while not stopped.is_set():
            try:
                async with channel_for(self.config.endpoint, self.config.tls) as channel:
                    controller = jumpstarter_pb2_grpc.ControllerServiceStub(channel)
                    await self._register(controller)
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
            if stopped.is_set():
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stopped.wait(), backoff)
            backoff = min(backoff * 2, 10.0)
        await self._end_lease()
        with contextlib.suppress(Exception):
            async with channel_for(self.config.endpoint, self.config.tls) as channel:
                await jumpstarter_pb2_grpc.ControllerServiceStub(channel).Unregister(
                    jumpstarter_pb2.UnregisterRequest(reason="exporter stopped"), metadata=self.metadata, timeout=3)

    async def _register(self, controller) -> None:
        root = self.config.build()
        try:
            reports = [d.report(parent, name) for d, parent, name in root.walk()]
        finally:
            await asyncio.to_thread(root.close)
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
                        self._lease = update.lease_name
                        logger.info("leased to %s under %s", update.client_name, update.lease_name)
                    if self._lease_task is None or self._lease_task.done():
                        # (Re)start listening: after a reconnect the same lease goes on, on a new channel.
                        self._lease_task = asyncio.ensure_future(self._listen(controller, update.lease_name))
                elif self._lease is not None:
                    logger.info("lease %s ended", self._lease)
                    await self._end_lease()
        finally:
            waiter.cancel()
            status.cancel()

    async def _end_lease(self) -> None:
        lease, self._lease = self._lease, None
        if self._lease_task is not None:
            self._lease_task.cancel()
            self._lease_task = None
        if lease is not None:
            await self.exporter.sessions.end_lease(lease)  # the next lease starts with fresh drivers

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

    async def _bridge(self, lease: str, endpoint: str, token: str) -> None:
        """One client connection: router stream <-> a connection into the lease's session."""
        claims = jwt.decode(token, options={"verify_signature": False})  # it came from the controller we trust
        if claims.get("lease") not in (None, lease):
            logger.warning("router token for lease %s arrived on lease %s; ignored", claims.get("lease"), lease)
            return
        name = self.private / f"r{next(self._ids)}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(name))
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, str(self.backend))
        finally:
            with contextlib.suppress(OSError):
                name.unlink()
        peer = f"unix:{name}"
        self.exporter.sessions.bind(peer, lease, claims.get("capabilities") or {})
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        local = SocketStream(reader, writer)
        try:
            async with channel_for(endpoint, self.config.tls) as channel:
                call = router_pb2_grpc.RouterServiceStub(channel).Stream(metadata=bearer_metadata(token))
                await forward(CallFrames(call, f"router for lease {lease}"), local)
        except Exception as e:  # one client connection failing must not end the lease
            logger.warning("client connection on lease %s ended: %s", lease, e)
        finally:
            await local.aclose()
            self.exporter.sessions.connection_closed(peer)
