"""Serving an ExporterConfig: local mode over a Unix socket, standalone mode over TCP, distributed mode
through a controller."""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import shutil
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

import grpc

from ..driver.context import private_dir, sweep_stale_private_dirs
from ..wire import labels
from ..wire.channels import SERVER_OPTIONS, read_pem, read_token_file
from ..wire.errors import ConfigError
from ..wire.protocol import jumpstarter_pb2_grpc, router_pb2_grpc
from .client_auth import TokenCheck
from .config import ExporterConfig
from .gate import Gate
from .servicer import ExporterServicer
from .sessions import SessionManager

logger = logging.getLogger(__name__)


@dataclass
class Listen:
    """Where to serve: a Unix socket path, or a TCP host:port with TLS files or insecure=True.

    A TLS listener authenticates its clients: by certificate (`tls_client_ca`, mutual TLS), by a
    bearer token (`token_file`), or, only when asked (`no_client_auth`), not at all.
    """

    socket_path: Path | None = None
    host: str | None = None
    port: int = 0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure: bool = False
    tls_client_ca: Path | None = None
    token_file: Path | None = None
    no_client_auth: bool = False
    socket_group: str | None = None  # local mode: members of this group may connect too (socket 0660)

    def __post_init__(self):
        if (self.socket_path is None) == (self.host is None):
            raise ConfigError("serve on exactly one of a Unix socket or a TCP address")
        if self.socket_path is not None and (self.tls_client_ca or self.token_file):
            raise ConfigError("--tls-client-ca and --token-file are for --listen; a Unix socket is guarded by its "
                              "file mode and its peer's uid")
        if self.socket_group is not None and self.socket_path is None:
            raise ConfigError("--socket-group is for --socket")
        if self.host is None:
            return
        if self.insecure:
            if self.tls_client_ca:
                raise ConfigError("--tls-client-ca needs TLS: drop --insecure and give --tls-cert and --tls-key")
            return
        if not (self.tls_cert and self.tls_key):
            raise ConfigError("a TCP listener needs --tls-cert and --tls-key, or --insecure to serve without TLS")
        if not (self.tls_client_ca or self.token_file or self.no_client_auth):
            raise ConfigError("a TLS listener needs client authentication: --tls-client-ca (mutual TLS) or "
                              "--token-file, or --no-client-auth to admit anyone who reaches the port")

    def credentials(self) -> grpc.ServerCredentials | None:
        if self.host is None or self.insecure:
            return None
        pair = (read_pem(self.tls_key, "TLS key"), read_pem(self.tls_cert, "TLS certificate"))
        client_ca = read_pem(self.tls_client_ca, "client CA certificate")
        return grpc.ssl_server_credentials([pair], root_certificates=client_ca,
                                           require_client_auth=client_ca is not None)

    def interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        return [TokenCheck(read_token_file(self.token_file))] if self.token_file else []


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "0.0.0.0"
    try:
        number = int(port)
        if not 0 <= number <= 65535:
            raise ValueError
    except ValueError:
        raise ConfigError(f"invalid listen address '{text}': expected HOST:PORT") from None
    return host, number


def _group_id(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise ConfigError(f"--socket-group: no group named '{name}' on this host") from None


def _unix_listener(path: Path, group: int | None = None) -> socket.socket:
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ConfigError(f"{path} exists and is not a socket; refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # left behind by an exporter that did not stop cleanly
        else:
            raise ConfigError(f"{path} is in use by another exporter")
        finally:
            probe.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket is created 0600: no window where others may connect
    try:
        listener.bind(str(path))
    finally:
        os.umask(old)
    if group is not None:  # the group is admitted by file mode here and by SO_PEERCRED in the gate
        os.chown(path, -1, group)
        os.chmod(path, 0o660)
    else:
        os.chmod(path, 0o600)
    listener.listen(64)
    return listener


def _tcp_listener(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as e:
        listener.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    listener.listen(128)
    return listener


class Exporter:
    """One exporter process: its config, its sessions and its listeners."""

    def __init__(self, config: ExporterConfig, *, linger: float = 30.0):
        self.config = config
        self.sessions = SessionManager(config.build, linger=linger)
        self.servicer = ExporterServicer(self.sessions, config.uuid, {labels.NAME: config.name})
        self.address: str | None = None

    @contextlib.asynccontextmanager
    async def backend(self, credentials: grpc.ServerCredentials | None = None,
                      interceptors: list[grpc.aio.ServerInterceptor] | None = None):
        """The private gRPC server that every listener and router bridge leads to.

        Yields (private directory, socket path); on exit ends every session and removes both.
        """
        sweep_stale_private_dirs()
        private = private_dir("grpc")
        socket_path = private / "grpc.sock"
        server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=interceptors or ())
        jumpstarter_pb2_grpc.add_ExporterServiceServicer_to_server(self.servicer, server)
        router_pb2_grpc.add_RouterServiceServicer_to_server(self.servicer, server)
        if credentials is not None:
            server.add_secure_port(f"unix:{socket_path}", credentials)
        else:
            server.add_insecure_port(f"unix:{socket_path}")
        driver_logger = logging.getLogger("driver")
        driver_logger.addHandler(self.sessions.log_handler)
        try:
            await server.start()
            yield private, socket_path
        finally:
            await server.stop(grace=1.0)
            await self.sessions.close_all()
            driver_logger.removeHandler(self.sessions.log_handler)
            shutil.rmtree(private, ignore_errors=True)

    async def serve(self, listen: Listen, stopped: asyncio.Event, ready=None) -> None:
        """Local or standalone mode: serve until `stopped` is set, then remove what was created."""
        credentials, interceptors = listen.credentials(), listen.interceptors()
        group = _group_id(listen.socket_group) if listen.socket_group else None
        if listen.socket_path is not None:
            listener = _unix_listener(Path(listen.socket_path), group)
            self.address = str(listen.socket_path)
        else:
            listener = _tcp_listener(listen.host, listen.port)
            host, port = listener.getsockname()[:2]
            self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        gate = None
        try:
            async with self.backend(credentials, interceptors) as (private, socket_path):
                gate = Gate(listener, socket_path, private, self.sessions.connection_closed,
                            same_uid_only=listen.socket_path is not None, peer_group=group)
                gate.start()
                logger.info("exporter %s serving on %s", self.config.name, self.address)
                if ready:
                    ready(self.address)
                try:
                    await stopped.wait()
                finally:
                    await asyncio.to_thread(gate.stop)
        finally:
            if gate is None:
                listener.close()
            if listen.socket_path is not None:
                with contextlib.suppress(FileNotFoundError):
                    Path(listen.socket_path).unlink()

    async def serve_controller(self, stopped: asyncio.Event, ready=None) -> None:
        """Distributed mode: register with the controller in the config and serve its leases."""
        from .controller_link import ControllerLink  # only this mode needs the controller's pieces

        async with self.backend() as (private, socket_path):
            await ControllerLink(self, private, socket_path).run(stopped, ready)
