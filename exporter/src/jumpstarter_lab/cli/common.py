"""What the CLI's commands share: signal handling, the exporter connection options, the allowlist."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import math
import re
import signal
from pathlib import Path

from ..client import Allowlist, provenance
from ..wire import defaults
from ..client.connect import (
    ENV_HOST,
    ENV_INSECURE,
    ENV_SESSION,
    ENV_TLS_CA,
    ENV_TLS_CERT,
    ENV_TLS_KEY,
    ENV_TOKEN_FILE,
)


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")
_CLOCK = re.compile(r"(\d+):([0-5]?\d):([0-5]?\d(?:\.\d+)?)")


def parse_duration(text: str) -> float:
    """Seconds, from `90`, `30m`, `1h30m`, `1d`, `2.5h` or upstream's `HH:MM:SS` (argparse type)."""
    text = text.strip()
    try:
        return _nonnegative(float(text), text)
    except ValueError:
        pass
    if clock := _CLOCK.fullmatch(text):
        hours, minutes, seconds = clock.groups()
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    units = _DURATION.fullmatch(text.lower())
    if not text or units is None or not any(units.groups()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 90, 30m, 1h30m, 1d or 00:30:00)")
    days, hours, minutes, seconds = (float(part or 0) for part in units.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def _nonnegative(seconds: float, text: str) -> float:
    if seconds < 0 or math.isnan(seconds) or math.isinf(seconds):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: it must be 0 or more seconds")
    return seconds


OUTPUTS = ("table", "json", "yaml", "name")


def add_output_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=OUTPUTS, default="table",
                        help="table (default), json or yaml (for scripts), or name (one name per line)")


def print_records(records: list[dict], output: str, table) -> None:
    """`records` in the chosen form; `table(record)` is a record's line in the table form."""
    import json

    import yaml

    if output == "json":
        print(json.dumps(records, indent=2))
    elif output == "yaml":
        print(yaml.safe_dump(records, sort_keys=False), end="")
    elif output == "name":
        for record in records:
            print(record["name"])
    else:
        for record in records:
            print(table(record))


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


def parse_time(text: str) -> float:
    """ISO 8601 date and time (`2026-12-24T08:00:00Z`, `2026-12-24 08:00`; local time without a zone) -> seconds
    since the epoch, as upstream's --begin-time takes it."""
    try:
        return datetime.datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date and time: write it as ISO 8601, e.g. "
                                         "2026-12-24T08:00:00Z") from None


def add_lease_options(parser: argparse.ArgumentParser) -> None:
    """The options of a new lease, with the defaults the lease module has too (jumpstarter_lab.wire.defaults)."""
    parser.add_argument("--duration", type=parse_duration, default=defaults.LEASE_DURATION, metavar="DURATION",
                        help=f"how long the lease may last: seconds, 30m, 1h30m, 1d or HH:MM:SS "
                             f"(default {defaults.LEASE_DURATION:g} s)")
    parser.add_argument("--ttl", type=parse_duration, default=defaults.LEASE_TTL, metavar="DURATION",
                        help=f"how long the lease lives without being renewed (default {defaults.LEASE_TTL:g} s, "
                             f"at most {defaults.MAX_LEASE_TTL:g}); connections through the lease renew it")
    parser.add_argument("--priority", type=int, default=0,
                        help="its place in the queue: higher goes first (default 0; above 0 as the client's "
                             "capabilities allow, below 0 to wait behind the rest)")
    parser.add_argument("--acquisition-timeout", type=parse_duration, default=defaults.LEASE_WAIT,
                        metavar="DURATION", help=f"how long to wait in the queue for the grant before the request "
                                                 f"is withdrawn (default {defaults.LEASE_WAIT:g} s; 0: do not wait)")
