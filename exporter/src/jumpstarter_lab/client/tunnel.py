"""A lease as a local exporter: a private Unix socket whose every connection is dialed through the
controller's router to the lease's exporter, with the lease renewed while the socket is open."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from pathlib import Path

from ..streams import SocketStream, forward
from ..wire.channels import channel_for
from ..wire.errors import AccessDenied, DriverError, ExporterNotReady, NotAuthenticated
from ..wire.frames import CallFrames
from ..wire.metadata import bearer_metadata
from ..wire.protocol import router_pb2_grpc
from .allowlist import Allowlist
from .config import ClientConfig
from .connect import connect_async
from .controller import ControllerClient
from .portal import blocking

logger = logging.getLogger(__name__)
EXPLAIN_TIMEOUT = 5.0  # seconds an unreachable exporter's error waits for the controller to say why


@contextlib.asynccontextmanager
async def lease_socket(client: ControllerClient, name: str):
    """A private Unix socket for lease `name` (yields its path), renewed while it is open."""
    with tempfile.TemporaryDirectory(prefix="jumpstarter-lab-lease-") as tmp:
        path = str(Path(tmp) / "lease.sock")
        server = await asyncio.start_unix_server(lambda r, w: _connection(client, name, r, w), path=path)
        keeper = asyncio.ensure_future(_keep(client, name))
        try:
            yield path
        finally:
            keeper.cancel()
            server.close()
            await server.wait_closed()


async def _keep(client: ControllerClient, name: str) -> None:
    while True:
        await asyncio.sleep(client.renew_every(name))
        try:
            await client.keepalive(name)
        except DriverError as e:
            logger.warning("renewing lease %s failed: %s", name, e)


async def _why_unreachable(client: ControllerClient, name: str) -> str | None:
    """What the controller says of lease `name` when its exporter is out of reach: that it ended and why, or that
    it refuses the client; None when the lease still stands or the controller cannot say in time."""
    try:
        status = await asyncio.wait_for(client.get_lease(name), EXPLAIN_TIMEOUT)
    except (AccessDenied, NotAuthenticated) as e:
        return f"the controller refuses lease {name}: {e}"
    except Exception:  # noqa: BLE001 - a reason is a courtesy: never let asking for it hide the error it explains
        return None
    return f"lease {name} has ended: {status.message}" if status.ended else None


async def _connection(client: ControllerClient, name: str, reader, writer) -> None:
    local = SocketStream(reader, writer)
    try:
        endpoint, token = await client.dial(name)
        async with channel_for(endpoint, client.config.tls) as channel:
            call = router_pb2_grpc.RouterServiceStub(channel).Stream(metadata=bearer_metadata(token))
            await forward(local, CallFrames(call, f"router for lease {name}"))
    except asyncio.CancelledError:
        pass  # the lease socket is closing; this handler is the task's top level
    except Exception as e:
        logger.warning("connection through lease %s ended: %s", name, e)
    finally:
        await local.aclose()


@contextlib.asynccontextmanager
async def connect_lease_async(config: ClientConfig, lease: str, *, allow: Allowlist | None = None,
                              timeout: float = 10.0, portal=None):
    """The root DriverClient of a granted lease's exporter, through the controller's router.

    The lease's exporter session is the session: what one connection does to the drivers,
    the next connection of the same lease sees. The lease is renewed while connected.
    """
    client = ControllerClient(config)
    try:
        status = await client.get_lease(lease)
        if not status.ready:
            raise ExporterNotReady(f"lease {lease} is not ready: {status.message or 'ended'}")
        allow = allow if allow is not None else config.allowlist()
        async with lease_socket(client, lease) as path, \
                connect_async(path, allow=allow, timeout=timeout, portal=portal) as root:
            root.connection.explain_unavailable = lambda: _why_unreachable(client, lease)
            yield root
    finally:
        await client.close()


@contextlib.contextmanager
def connect_lease(config: ClientConfig, lease: str, **kwargs):
    """Blocking form of connect_lease_async, for synchronous callers."""
    with blocking(lambda portal: connect_lease_async(config, lease, portal=portal, **kwargs)) as root:
        yield root
