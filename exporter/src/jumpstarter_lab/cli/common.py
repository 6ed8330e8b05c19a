"""What the CLI's commands share: signal handling, the exporter connection options, the allowlist."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
from pathlib import Path

from ..client import Allowlist, provenance
from ..client.connect import (
    ENV_HOST,
    ENV_INSECURE,
    ENV_SESSION,
    ENV_TLS_CA,
    ENV_TLS_CERT,
    ENV_TLS_KEY,
    ENV_TOKEN_FILE,
)


async def with_signals(run, stopped: asyncio.Event | None = None) -> None:
    """Run `run(stopped)` with SIGINT/SIGTERM setting `stopped`, for a clean shutdown."""
    stopped = stopped or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped.set)
    try:
        await run(stopped)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help=f"exporter Unix socket or HOST:PORT (default: ${ENV_HOST})")
    parser.add_argument("--tls-ca", help=f"CA certificate to verify a TLS exporter (default: ${ENV_TLS_CA})")
    parser.add_argument("--insecure", action="store_true", help="connect over TCP without TLS")
    parser.add_argument("--tls-cert", help=f"client certificate for mutual TLS (default: ${ENV_TLS_CERT})")
    parser.add_argument("--tls-key", help=f"its private key (default: ${ENV_TLS_KEY})")
    parser.add_argument("--token-file", help=f"file holding the exporter's client token (default: ${ENV_TOKEN_FILE})")
    parser.add_argument("--allow", action="append", metavar="PATTERN",
                        help="also allow driver client packages matching PATTERN (repeatable)")
    parser.add_argument("--pin", action="append", metavar="DISTRIBUTION=sha256:HEX", type=parse_pin,
                        help="load driver clients only from pinned distributions with these digests "
                             "(repeatable; see `drivers pins`)")
    parser.add_argument("--session", help=f"join a named session (default: ${ENV_SESSION}, else per connection)")


def parse_pin(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not (sep and name and re.fullmatch(provenance.PIN_PATTERN, value)):
        raise argparse.ArgumentTypeError(f"'{text}': expected DISTRIBUTION=sha256:<64 hex digits>")
    return name, value


def connect_kwargs(args) -> dict:
    """connect()'s keywords from the connection options."""
    return dict(allow=Allowlist(args.allow, pins=dict(args.pin or ())), tls_ca=args.tls_ca,
                insecure=args.insecure, session=args.session, tls_cert=args.tls_cert, tls_key=args.tls_key,
                token_file=args.token_file)


def connection_environment(args) -> dict[str, str]:
    """The connection options as the environment variables connect() reads, for a command run by `shell`."""
    given = {ENV_TLS_CA: args.tls_ca, ENV_TLS_CERT: args.tls_cert, ENV_TLS_KEY: args.tls_key,
             ENV_TOKEN_FILE: args.token_file}
    env = {name: str(Path(value).resolve()) for name, value in given.items() if value}
    if args.insecure:
        env[ENV_INSECURE] = "1"
    return env


def add_client_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--client-config", help="client config file (default: $JMP_CLIENT_CONFIG)")
