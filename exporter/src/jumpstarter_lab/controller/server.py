"""Running the controller: one gRPC server with ControllerService, ClientService and RouterService."""

from __future__ import annotations

import asyncio
import gc
import logging

import grpc

from ..wire import defaults
from ..wire.channels import SERVER_OPTIONS
from ..wire.errors import ConfigError
from ..wire.protocol import client_pb2_grpc, jumpstarter_pb2_grpc, router_pb2_grpc
from .auth import Authority
from .client_service import ClientServicer
from .console_logs import ConsoleLogs, ConsoleLogServicer
from .controller_service import ControllerServicer
from .dials import Dials
from .leases import Leases
from .router import Router
from .store import Store
from .subscriptions import Subscriptions

logger = logging.getLogger(__name__)
# Middle-generation collector passes per full one (Python's default: 10). Cyclic garbage waits longer for its
# pass, not forever: at idle with 10,000 exporters a pass comes every ~10 minutes instead of every minute.
FULL_COLLECTION_EVERY = 100


class Controller:
    def __init__(self, db_url: str, exporter_grace: float = defaults.EXPORTER_GRACE,
                 router_deadline: float = defaults.ROUTER_DEADLINE):
        self.router_deadline = router_deadline
        self.store = Store(db_url)
        self.authority = Authority(self.store)
        self.leases = Leases(self.store, exporter_grace)
        self.dials = Dials(self.store)

    async def serve(self, host: str, port: int, stopped: asyncio.Event, *, tls_cert: bytes | None = None,
                    tls_key: bytes | None = None, insecure: bool = False, advertise: str | None = None,
                    ready=None) -> None:
        if not insecure and not (tls_cert and tls_key):
            raise ConfigError("the controller needs --tls-cert and --tls-key, or --insecure to serve without TLS")
        server = grpc.aio.server(options=SERVER_OPTIONS)
        address = f"{host}:{port}"
        bound = (server.add_insecure_port(address) if insecure
                 else server.add_secure_port(address, grpc.ssl_server_credentials([(tls_key, tls_cert)])))
        if bound == 0:
            raise ConfigError(f"cannot listen on {address}")
        endpoint = advertise or f"{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{bound}"
        subscriptions = Subscriptions(self.leases, self.dials)
        router = Router(self.authority.verify_router, self.leases.granted, self.router_deadline)
        jumpstarter_pb2_grpc.add_ControllerServiceServicer_to_server(
            ControllerServicer(self.authority, self.leases, self.dials, subscriptions, router, endpoint), server)
        client_pb2_grpc.add_ClientServiceServicer_to_server(ClientServicer(self.authority, self.leases), server)
        router_pb2_grpc.add_RouterServiceServicer_to_server(router, server)
        server.add_generic_rpc_handlers((ConsoleLogServicer(self.authority, ConsoleLogs(self.store)).handler(),))
        await server.start()
        writer = asyncio.ensure_future(self.leases.run())
        ticker = asyncio.ensure_future(subscriptions.run())
        logger.info("controller serving on %s (%s)", endpoint, "insecure" if insecure else "TLS")
        # What exists now (modules, the schema, the server) lives as long as the process. Frozen, the
        # collector's full passes skip it: they walked ~70k objects and stalled every call 30-60 ms.
        gc.freeze()
        # A full pass walks every Status stream's gRPC state (~60 objects each, 0.4 s at 10,000 exporters). At
        # Python's default, one per 10 middle-generation passes, that came once a minute at idle, every call
        # stalled meanwhile; see FULL_COLLECTION_EVERY.
        gen0, gen1, _gen2 = gc.get_threshold()
        gc.set_threshold(gen0, gen1, FULL_COLLECTION_EVERY)
        if ready:
            ready(endpoint)
        try:
            await stopped.wait()
        finally:
            await server.stop(grace=1.0)
            ticker.cancel()
            writer.cancel()
            self.leases.close()
            self.store.close()
