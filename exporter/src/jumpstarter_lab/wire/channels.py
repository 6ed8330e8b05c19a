"""The one way this project opens gRPC channels and configures its servers.

Every channel has a private subchannel pool: gRPC would otherwise share one connection
between channels to the same address, and to an exporter a connection is a session.
"""

from __future__ import annotations

import base64
from pathlib import Path

import grpc

from .errors import ConfigError

MAX_MESSAGE = 64 * 1024 * 1024
# Both sides ping an idle connection every KEEPALIVE_MS and drop it when no answer comes within
# KEEPALIVE_TIMEOUT_MS: a peer gone without a word (power lost, cable pulled, a partition) ends its
# streams in seconds instead of at the kernel's TCP keepalive, two hours on. The controller counts an
# exporter online while its Status stream is open, so that stream must end when the exporter is gone.
KEEPALIVE_MS = 10_000
KEEPALIVE_TIMEOUT_MS = 5_000
_KEEPALIVE = [
    ("grpc.keepalive_time_ms", KEEPALIVE_MS),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ("grpc.http2.ping_timeout_ms", KEEPALIVE_TIMEOUT_MS),  # gRPC waits this long (60 s by default) for any ping
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),  # gRPC's default, 2, stops pinging a connection idle for long
]

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.use_local_subchannel_pool", 1),
    *_KEEPALIVE,
]

SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.http2.min_ping_interval_without_data_ms", KEEPALIVE_MS // 2),  # what our clients' pings need
    *_KEEPALIVE,
]


def is_tcp_address(address: str) -> bool:
    """`HOST:PORT` (else a Unix socket path)."""
    host, sep, port = address.rpartition(":")
    return bool(sep and host and port.isdigit() and "/" not in address)


def read_pem(path: str | Path | None, what: str) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror}") from None


def read_ca(value: str | Path | None) -> bytes | None:
    """A CA certificate given as a file (this project's options) or as base64 of its PEM text
    (upstream Jumpstarter's configs, and what `inline_ca` writes, so that a config works anywhere)."""
    if not value:
        return None
    text = str(value).strip()
    try:
        pem = base64.b64decode(text, validate=True)
    except ValueError:
        pem = b""
    if pem.lstrip().startswith(b"-----BEGIN CERTIFICATE-----"):
        return pem
    try:
        return Path(text).expanduser().read_bytes()
    except OSError:
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise ConfigError(f"CA certificate {shown!r} is neither a file nor base64 of a PEM certificate") from None


def inline_ca(path: str | Path) -> str:
    """The CA certificate at `path` as a config carries it inline (base64 of the PEM, as upstream's)."""
    return base64.b64encode(read_pem(path, "CA certificate") or b"").decode()


def read_token_file(path: str | Path, what: str = "token file") -> str:
    """A bearer token kept in a file of its own, which, like an ssh key, others may not read."""
    path = Path(path).expanduser()
    try:
        mode = path.stat().st_mode
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {what} {path}: {getattr(e, 'strerror', None) or e}") from None
    if mode & 0o077:
        raise ConfigError(f"{what} {path} may be read by others (mode {mode & 0o777:o}); chmod 600 {path}")
    if not token or any(c.isspace() for c in token):
        raise ConfigError(f"{what} {path} must hold one token, without spaces")
    return token


def open_channel(address: str, *, ca: str | Path | None = None, insecure: bool = False,
                 cert: str | Path | None = None, key: str | Path | None = None) -> grpc.aio.Channel:
    """A channel to a Unix socket path or to `HOST:PORT`: TLS (verified with `ca`, else the system's
    roots; with `cert`/`key` the client's own certificate for mutual TLS) unless `insecure`. A Unix
    socket is protected by its file mode, never TLS."""
    if not is_tcp_address(address):
        return grpc.aio.insecure_channel(f"unix:{Path(address).resolve()}", options=CHANNEL_OPTIONS)
    if insecure:
        return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
    if bool(cert) != bool(key):
        raise ConfigError("a client certificate needs both --tls-cert and --tls-key")
    credentials = grpc.ssl_channel_credentials(read_ca(ca), private_key=read_pem(key, "TLS key"),
                                               certificate_chain=read_pem(cert, "TLS certificate"))
    return grpc.aio.secure_channel(address, credentials, options=CHANNEL_OPTIONS)


def channel_for(endpoint: str, tls: dict) -> grpc.aio.Channel:
    """A channel to a controller or router, with a config file's `tls` mapping (`ca`, `insecure`)."""
    return open_channel(endpoint, ca=tls.get("ca"), insecure=bool(tls.get("insecure")))
