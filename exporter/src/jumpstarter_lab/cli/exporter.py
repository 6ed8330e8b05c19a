"""`jumpstarter-lab exporter run|check` and `drivers`: serving and checking ExporterConfigs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml

from ..client import provenance
from ..driver.registry import driver_entry_points
from ..exporter import Exporter, Listen, load, parse_address
from .common import with_signals


def listen_options(args) -> Listen:
    if args.listen:
        host, port = parse_address(args.listen)
        return Listen(host=host, port=port, tls_cert=args.tls_cert, tls_key=args.tls_key, insecure=args.insecure,
                      tls_client_ca=args.tls_client_ca, token_file=args.token_file, no_client_auth=args.no_client_auth,
                      socket_group=args.socket_group)
    return Listen(socket_path=Path(args.socket), tls_client_ca=args.tls_client_ca, token_file=args.token_file,
                  socket_group=args.socket_group)


def cmd_exporter_run(args) -> int:
    config = load(args.config)
    exporter = Exporter(config, linger=args.session_linger)
    if not args.socket and not args.listen:  # distributed mode: the controller named in the config

        def registered(endpoint: str) -> None:
            print(f"registered with {endpoint}", flush=True)

        asyncio.run(with_signals(lambda stopped: exporter.serve_controller(stopped, registered)))
        return 0

    def ready(address: str) -> None:
        print(f"listening on {address}", flush=True)

    listen = listen_options(args)
    asyncio.run(with_signals(lambda stopped: exporter.serve(listen, stopped, ready)))
    return 0


def cmd_exporter_check(args) -> int:
    config = load(args.config)
    root = config.build()
    try:
        count = sum(1 for _node in root.walk()) - 1
    finally:
        root.close()
    hooks = f", hooks: {', '.join(config.hooks)}" if config.hooks else ""
    print(f"{args.config}: ok, exporter '{config.name}' with {count} driver(s){hooks}")
    return 0


def cmd_drivers(args) -> int:
    if args.verb == "pins":
        pins = {name: provenance.digest(name) for name in provenance.client_distributions()}
        print(yaml.safe_dump({"drivers": {"pins": pins}}, sort_keys=False), end="")
        return 0
    for name, entry in sorted(driver_entry_points().items()):
        print(f"{name}  ->  {entry.value}")
    return 0


def add_parsers(sub) -> None:
    exporter = sub.add_parser("exporter", help="run or check an exporter").add_subparsers(dest="verb", required=True)
    run = exporter.add_parser("run", help="serve an ExporterConfig")
    run.add_argument("--config", required=True, help="ExporterConfig YAML file")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--socket", help="local mode: serve on this Unix socket (created 0600); "
                                        "without --socket or --listen, register with the config's controller")
    where.add_argument("--listen", metavar="HOST:PORT", help="standalone mode: serve on TCP")
    run.add_argument("--socket-group", metavar="GROUP",
                     help="with --socket: let members of GROUP connect too (the socket becomes 0660, group GROUP)")
    run.add_argument("--tls-cert", type=Path, help="server certificate (PEM) for --listen")
    run.add_argument("--tls-key", type=Path, help="server private key (PEM) for --listen")
    run.add_argument("--insecure", action="store_true", help="with --listen, serve without TLS")
    run.add_argument("--tls-client-ca", type=Path, metavar="CA",
                     help="with --listen: mutual TLS, admitting only clients with a certificate this CA signed")
    run.add_argument("--token-file", type=Path, metavar="FILE",
                     help="with --listen: admit only clients sending the token in FILE (mode 0600) as "
                          "`authorization: Bearer`")
    run.add_argument("--no-client-auth", action="store_true",
                     help="with --listen and TLS: admit anyone who reaches the port")
    run.add_argument("--session-linger", type=float, default=30.0, metavar="SECONDS",
                     help="how long a named session outlives its last connection (default 30)")
    run.set_defaults(func=cmd_exporter_run)
    check = exporter.add_parser("check", help="validate an ExporterConfig without serving it")
    check.add_argument("--config", required=True)
    check.set_defaults(func=cmd_exporter_check)

    drivers = sub.add_parser("drivers", help="list the driver types this installation knows, or pin its clients")
    drivers.add_argument("verb", nargs="?", choices=["list", "pins"], default="list",
                         help="list: driver types and classes; pins: the digests of the installed driver client "
                              "distributions, as a client config's drivers.pins")
    drivers.set_defaults(func=cmd_drivers)
