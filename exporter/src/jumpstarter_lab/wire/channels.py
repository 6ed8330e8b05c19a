"""The one way this project opens gRPC channels and configures its servers.

Every channel has a private subchannel pool: gRPC would otherwise share one connection
between channels to the same address, and to an exporter a connection is a session.
"""

from __future__ import annotations

from pathlib import Path

import grpc

from .errors import ConfigError

MAX_MESSAGE = 64 * 1024 * 1024
KEEPALIVE_MS = 10_000

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.keepalive_time_ms", KEEPALIVE_MS),
    ("grpc.keepalive_permit_without_calls", 1),
]

SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", KEEPALIVE_MS // 2),
]


def is_tcp_address(address: str) -> bool:
    """`HOST:PORT` (else a Unix socket path)."""
    host, sep, port = address.rpartition(":")
    return bool(sep and host and port.isdigit() and "/" not in address)


def read_ca(path: str | Path | None) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read CA certificate {path}: {e.strerror}") from None


def open_channel(address: str, *, ca: str | Path | None = None, insecure: bool = False) -> grpc.aio.Channel:
    """A channel to a Unix socket path or to `HOST:PORT`: TLS (verified with `ca`, else the system's
    roots) unless `insecure`. A Unix socket is protected by its file mode, never TLS."""
    if not is_tcp_address(address):
        return grpc.aio.insecure_channel(f"unix:{Path(address).resolve()}", options=CHANNEL_OPTIONS)
    if insecure:
        return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
    return grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(read_ca(ca)), options=CHANNEL_OPTIONS)


def channel_for(endpoint: str, tls: dict) -> grpc.aio.Channel:
    """A channel to a controller or router, with a config file's `tls` mapping (`ca`, `insecure`)."""
    return open_channel(endpoint, ca=tls.get("ca"), insecure=bool(tls.get("insecure")))
