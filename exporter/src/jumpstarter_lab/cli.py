"""`jumpstarter-lab`: run and check exporters, open a shell with an exporter, call drivers.

Errors print one line naming what was wrong and exit non-zero; no tracebacks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import uuid as uuidlib
from pathlib import Path

import yaml

from . import config as exporter_config
from .client import connect
from .client.allowlist import Allowlist
from .client.connect import ENV_HOST, ENV_SESSION
from .client.core import DriverClient, UnavailableClient
from .errors import JumpstarterLabError, MethodNotFound
from .exporter import Exporter, Listen, parse_address
from .cli_controller import add_parsers as add_controller_parsers
from .cli_controller import client_config
from .registry import driver_entry_points

log = logging.getLogger("jumpstarter-lab")


def _listen(args) -> Listen:
    if args.listen:
        host, port = parse_address(args.listen)
        return Listen(host=host, port=port, tls_cert=args.tls_cert, tls_key=args.tls_key, insecure=args.insecure)
    return Listen(socket_path=Path(args.socket))


async def _with_signals(run, stopped: asyncio.Event | None = None) -> None:
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


def cmd_exporter_run(args) -> int:
    config = exporter_config.load(args.config)
    exporter = Exporter(config, linger=args.session_linger)
    if not args.socket and not args.listen:  # distributed mode: the controller named in the config

        def registered(endpoint: str) -> None:
            print(f"registered with {endpoint}", flush=True)

        asyncio.run(_with_signals(lambda stopped: exporter.serve_controller(stopped, registered)))
        return 0

    def ready(address: str) -> None:
        print(f"listening on {address}", flush=True)

    listen = _listen(args)
    asyncio.run(_with_signals(lambda stopped: exporter.serve(listen, stopped, ready)))
    return 0


def cmd_exporter_check(args) -> int:
    config = exporter_config.load(args.config)
    count = sum(1 for _node in config.build().walk()) - 1
    print(f"{args.config}: ok, exporter '{config.name}' with {count} driver(s)")
    return 0


def _connect_kwargs(args) -> dict:
    return dict(allow=Allowlist(list(Allowlist().patterns) + (args.allow or [])), tls_ca=args.tls_ca,
                insecure=args.insecure, session=args.session)


def _walk_path(root: DriverClient, dotted: str) -> DriverClient:
    node = root
    for part in [p for p in dotted.split(".") if p]:
        if part not in node.children:
            where = node.name or "the exporter"
            raise JumpstarterLabError(f"no driver '{part}' under {where} (has: {', '.join(node.children) or 'none'})")
        node = node.children[part]
    return node


def cmd_call(args) -> int:
    path, _dot, method = args.target.rpartition(".")
    if not method:
        raise JumpstarterLabError(f"'{args.target}': expected DRIVER.METHOD, e.g. power.on")
    call_args = [yaml.safe_load(a) for a in args.args]
    with connect(args.host, **_connect_kwargs(args)) as root:
        driver = _walk_path(root, path)
        try:
            result = driver.call(method, *call_args)
        except MethodNotFound as first:
            try:
                for item in driver.streamingcall(method, *call_args):
                    print(json.dumps(item), flush=True)
                return 0
            except MethodNotFound:
                raise first from None
        if result is not None:
            print(json.dumps(result) if not isinstance(result, str) else result)
    return 0


def _print_tree(node: DriverClient, indent: str = "") -> None:
    label = node.labels.get("jumpstarter.dev/client", "?")
    name = node.name or "(exporter)"
    line = f"{indent}{name}  [{label}]"
    if node.description:
        line += f"  {node.description}"
    print(line)
    if isinstance(node, UnavailableClient):
        print(f"{indent}  ! unavailable: {node.reason}")
    for method, doc in sorted(node.methods_description.items()):
        print(f"{indent}  .{method}()  {doc}")
    for child in node.children.values():
        _print_tree(child, indent + "  ")


def cmd_tree(args) -> int:
    with connect(args.host, **_connect_kwargs(args)) as root:
        _print_tree(root)
    return 0


def cmd_console(args) -> int:
    """A board's console (any driver with a byte stream) at this terminal."""
    from .terminal import attach

    with connect(args.host, **_connect_kwargs(args)) as root:
        driver = _walk_path(root, args.driver)
        with driver.stream(args.method) as stream:
            attach(stream)
    return 0


def cmd_drivers(args) -> int:
    for name, entry in sorted(driver_entry_points().items()):
        print(f"{name}  ->  {entry.value}")
    return 0


async def _run_command(command: list[str], env: dict) -> int:
    process = await asyncio.create_subprocess_exec(*command, env=env)
    with contextlib.suppress(asyncio.CancelledError):
        return await process.wait()
    process.terminate()
    return await process.wait()


def cmd_shell(args) -> int:
    command = args.command or [os.environ.get("SHELL", "/bin/sh")]
    session = args.session or str(uuidlib.uuid4())
    env = dict(os.environ, **{ENV_SESSION: session})
    if args.insecure:
        env["JMP_GRPC_INSECURE"] = "1"
    if args.config:
        return asyncio.run(_shell_local(args, command, env))
    if args.lease or args.selector:
        return asyncio.run(_shell_lease(args, command, env))
    host = args.host or os.environ.get(ENV_HOST)
    if not host:
        raise JumpstarterLabError(f"shell needs --config (run an exporter here) or --host / {ENV_HOST}")
    env[ENV_HOST] = host
    try:
        return asyncio.run(_run_command(command, env))
    finally:
        with contextlib.suppress(JumpstarterLabError), connect(host, **_connect_kwargs(args)) as root:
            root.connection.portal.call(root.connection.end_session())


async def _shell_local(args, command: list[str], env: dict) -> int:
    """Serve the config on a private socket for as long as the command runs."""
    if not args.verbose:  # the terminal belongs to the command; exporter chatter only with -v
        logging.getLogger().setLevel(logging.WARNING)
    config = exporter_config.load(args.config)
    exporter = Exporter(config, linger=args.session_linger)
    with tempfile.TemporaryDirectory(prefix="jumpstarter-lab-shell-") as tmp:
        listen = Listen(socket_path=Path(tmp) / "exporter.sock")
        stopped, ready = asyncio.Event(), asyncio.Event()
        server = asyncio.ensure_future(
            _with_signals(lambda event: exporter.serve(listen, event, lambda _: ready.set()), stopped))
        waiter = asyncio.ensure_future(ready.wait())
        await asyncio.wait([server, waiter], return_when=asyncio.FIRST_COMPLETED)
        if server.done():
            waiter.cancel()
            await server  # raises the reason it could not start
        env[ENV_HOST] = str(listen.socket_path)
        try:
            return await _run_command(command, env)
        finally:
            stopped.set()
            await server


async def _shell_lease(args, command: list[str], env: dict) -> int:
    """Through the controller: an existing lease, or a new one for --selector released at the end."""
    from .client.lease import ControllerClient

    client = ControllerClient(client_config(args))
    created = None
    try:
        name = args.lease
        if not name:
            created = (await client.create_lease(args.selector, args.duration)).name
            name = created
        status = await client.wait_ready(name, args.acquisition_timeout,
                                         lambda s: print(f"lease {s.name}: {s.message}", file=sys.stderr))
        env["JMP_LEASE"] = name
        env["JMP_EXPORTER"] = status.exporter or ""
        async with client.serve_lease(name) as path:
            env[ENV_HOST] = path
            env.pop(ENV_SESSION, None)  # the lease is the session
            return await _run_command(command, env)
    finally:
        if created:
            with contextlib.suppress(JumpstarterLabError):
                await client.release(created)
        await client.close()


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help=f"exporter Unix socket or HOST:PORT (default: ${ENV_HOST})")
    parser.add_argument("--tls-ca", help="CA certificate to verify a TLS exporter")
    parser.add_argument("--insecure", action="store_true", help="connect over TCP without TLS")
    parser.add_argument("--allow", action="append", metavar="PATTERN",
                        help="also allow driver client packages matching PATTERN (repeatable)")
    parser.add_argument("--session", help=f"join a named session (default: ${ENV_SESSION}, else per connection)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jumpstarter-lab", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command_name", required=True)

    exporter = sub.add_parser("exporter", help="run or check an exporter").add_subparsers(dest="verb", required=True)
    run = exporter.add_parser("run", help="serve an ExporterConfig")
    run.add_argument("--config", required=True, help="ExporterConfig YAML file")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--socket", help="local mode: serve on this Unix socket (created 0600); "
                                        "without --socket or --listen, register with the config's controller")
    where.add_argument("--listen", metavar="HOST:PORT", help="standalone mode: serve on TCP")
    run.add_argument("--tls-cert", type=Path, help="server certificate (PEM) for --listen")
    run.add_argument("--tls-key", type=Path, help="server private key (PEM) for --listen")
    run.add_argument("--insecure", action="store_true", help="with --listen, serve without TLS")
    run.add_argument("--session-linger", type=float, default=30.0, metavar="SECONDS",
                     help="how long a named session outlives its last connection (default 30)")
    run.set_defaults(func=cmd_exporter_run)
    check = exporter.add_parser("check", help="validate an ExporterConfig without serving it")
    check.add_argument("--config", required=True)
    check.set_defaults(func=cmd_exporter_check)

    shell = sub.add_parser("shell", help="run a command (default: $SHELL) with an exporter at $JUMPSTARTER_HOST")
    shell.add_argument("--config", help="run this ExporterConfig in-process for the command's lifetime")
    shell.add_argument("--session-linger", type=float, default=30.0, help=argparse.SUPPRESS)
    shell.add_argument("--client-config", help="client config for a lease through the controller")
    shell.add_argument("--lease", help="use this lease (through the controller)")
    shell.add_argument("--selector", "-l", help="lease an exporter matching this selector for the command's run")
    shell.add_argument("--duration", type=float, default=1800, help="seconds, with --selector")
    shell.add_argument("--acquisition-timeout", type=float, default=300, help="seconds to wait for the grant")
    _add_connection_options(shell)
    shell.add_argument("command", nargs=argparse.REMAINDER, help="command to run (after --)")
    shell.set_defaults(func=cmd_shell)

    call = sub.add_parser("call", help="call an exported driver method, e.g. power.on")
    call.add_argument("target", metavar="DRIVER.METHOD")
    call.add_argument("args", nargs="*", help="arguments, each parsed as a YAML value")
    _add_connection_options(call)
    call.set_defaults(func=cmd_call)

    console = sub.add_parser("console", help="use a board's console (a driver's byte stream) from this terminal")
    console.add_argument("driver", metavar="DRIVER", help="dotted path, e.g. board.console")
    console.add_argument("--method", default="connect", help="the driver's stream (default: connect)")
    _add_connection_options(console)
    console.set_defaults(func=cmd_console)

    tree = sub.add_parser("tree", help="show the exporter's driver tree and methods")
    _add_connection_options(tree)
    tree.set_defaults(func=cmd_tree)

    drivers = sub.add_parser("drivers", help="list the driver types this installation knows")
    drivers.set_defaults(func=cmd_drivers)
    add_controller_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "command", None) and args.command[:1] == ["--"]:
        args.command = args.command[1:]
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("grpc").setLevel(logging.WARNING)
    try:
        return args.func(args)
    except JumpstarterLabError as e:
        print(f"jumpstarter-lab: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `jumpstarter-lab tree | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
