"""`jumpstarter-lab call|flash|put|tree|console|shell`: using an exporter's drivers."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import tempfile
import uuid as uuidlib
from pathlib import Path

import yaml

from ..client import ControllerClient, DriverClient, UnavailableClient, connect, load_client_config
from ..client.connect import ENV_HOST, ENV_SESSION
from ..client.tunnel import lease_socket
from ..exporter import Exporter, Listen, load
from ..wire import labels
from ..wire.errors import DriverInvalidArgument, JumpstarterLabError
from .common import (
    add_client_config_option,
    add_connection_options,
    add_lease_options,
    add_output_option,
    connect_kwargs,
    connection_environment,
    print_records,
    with_signals,
)


def cmd_call(args) -> int:
    path, _dot, method = args.target.rpartition(".")
    if not method:
        raise JumpstarterLabError(f"'{args.target}': expected DRIVER.METHOD, e.g. power.on")
    call_args = [yaml.safe_load(a) for a in args.args]
    with connect(args.host, **connect_kwargs(args)) as root:
        result, streamed = root.child(path).call_any(method, *call_args,
                                                     each=lambda item: print(json.dumps(item), flush=True))
    if result is not None and not streamed:  # a streaming call's values were printed as they came
        print(json.dumps(result) if not isinstance(result, str) else result)
    return 0


@contextlib.contextmanager
def _transfer_progress(what: str, total: int):
    """A progress bar on stderr for a transfer of `total` bytes; yields the `progress(sent, total)` callback."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    columns = (TextColumn(what), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("transfer", total=total)
        yield lambda sent, _total: progress.update(task, completed=sent)


def _local_file(path: str) -> Path:
    found = Path(path)
    if not found.is_file():
        raise DriverInvalidArgument(f"{found} is not a file")
    return found


def cmd_flash(args) -> int:
    image = _local_file(args.image)
    with connect(args.host, **connect_kwargs(args)) as root:
        path, storage = root.locate(args.storage, labels.STORAGE_MUX, "storage", preferred="storage")
        with _transfer_progress(f"{image.name} -> {path}", image.stat().st_size) as progress:
            result = storage.flash(image, force=args.force, progress=progress)
    record = {"name": path, "image": str(image), **{key: result.get(key) for key in (
        "changed", "bytes_received", "bytes_written", "compression", "sha256")}}
    print_records([record], args.output, lambda r: (
        f"{r['name']}: wrote {r['image']} ({r['bytes_written']} bytes, {r['compression']}, sha256 {r['sha256']})"
        if r["changed"] else f"{r['name']}: holds {r['image']} already (sha256 {r['sha256']}); --force writes it"))
    return 0


def cmd_put(args) -> int:
    """Files to a driver that serves or keeps them (a TFTP or HTTP server), with a progress bar each."""
    files = [_local_file(path) for path in args.files]
    if args.name and len(files) > 1:
        raise DriverInvalidArgument("--name renames one file; give one file with it")
    with connect(args.host, **connect_kwargs(args)) as root:
        driver = root.child(args.driver)
        if not hasattr(driver, "put_file"):
            raise DriverInvalidArgument(f"{args.driver} takes no files (its client, {type(driver).__name__}, has "
                                        "no put_file): name a file server such as tftp or http")
        records = []
        for path in files:
            name = args.name or path.name
            with _transfer_progress(f"{path.name} -> {args.driver}:{name}", path.stat().st_size) as progress:
                result = driver.put_file(path, name, progress=progress)
            records.append({"driver": args.driver, "file": str(path), **result})
    print_records(records, args.output, lambda r: f"{r['driver']}: serving {r['name']} ({r['bytes']} bytes, "
                                                  f"sha256 {r['sha256']})")
    return 0


def _print_tree(node: DriverClient, indent: str = "") -> None:
    line = f"{indent}{node.name or '(exporter)'}  [{node.client_label or '?'}]"
    if node.description:
        line += f"  {node.description}"
    print(line)
    if isinstance(node, UnavailableClient):
        print(f"{indent}  ! unavailable: {node.reason}")
    for method, doc in sorted(node.methods_description.items()):
        print(f"{indent}  .{method}()  {doc}{'  (read-only)' if method in node.read_only_methods else ''}")
    for child in node.children.values():
        _print_tree(child, indent + "  ")


def cmd_tree(args) -> int:
    with connect(args.host, **connect_kwargs(args)) as root:
        _print_tree(root)
    return 0


def cmd_console(args) -> int:
    """A board's console (any driver with a byte stream) at this terminal."""
    from .terminal import attach

    with connect(args.host, **connect_kwargs(args)) as root:
        with root.child(args.driver).stream(args.method) as stream:
            attach(stream)
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
    env = dict(os.environ, **{ENV_SESSION: session}, **connection_environment(args))
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
        with contextlib.suppress(JumpstarterLabError), connect(host, **connect_kwargs(args)) as root:
            root.connection.portal.call(root.connection.end_session())


async def _shell_local(args, command: list[str], env: dict) -> int:
    """Serve the config on a private socket for as long as the command runs."""
    if not args.verbose:  # the terminal belongs to the command; exporter chatter only with -v
        logging.getLogger().setLevel(logging.WARNING)
    exporter = Exporter(load(args.config), linger=args.session_linger)
    with tempfile.TemporaryDirectory(prefix="jumpstarter-lab-shell-") as tmp:
        listen = Listen(socket_path=Path(tmp) / "exporter.sock")
        stopped, ready = asyncio.Event(), asyncio.Event()
        server = asyncio.ensure_future(
            with_signals(lambda event: exporter.serve(listen, event, lambda _: ready.set()), stopped))
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
    client = ControllerClient(load_client_config(args.client_config))
    created = None
    try:
        name = args.lease
        if not name:
            created = (await client.create_lease(args.selector, args.duration, args.ttl,
                                                 priority=args.priority)).name
            name = created
        status = await client.wait_ready(name, args.acquisition_timeout,
                                         lambda s: print(f"lease {s.name}: {s.message}", file=sys.stderr))
        env["JMP_LEASE"] = name
        env["JMP_EXPORTER"] = status.exporter or ""
        async with lease_socket(client, name) as path:
            env[ENV_HOST] = path
            env.pop(ENV_SESSION, None)  # the lease is the session
            return await _run_command(command, env)
    finally:
        if created:
            with contextlib.suppress(JumpstarterLabError):
                await client.release(created)
        await client.close()


def add_parsers(sub) -> None:
    shell = sub.add_parser("shell", help="run a command (default: $SHELL) with an exporter at $JUMPSTARTER_HOST")
    shell.add_argument("--config", help="run this ExporterConfig in-process for the command's lifetime")
    shell.add_argument("--session-linger", type=float, default=30.0, help=argparse.SUPPRESS)
    add_client_config_option(shell)
    shell.add_argument("--lease", help="use this lease (through the controller)")
    shell.add_argument("--selector", "-l", help="lease an exporter matching this selector for the command's run")
    add_lease_options(shell)
    add_connection_options(shell)
    shell.add_argument("command", nargs=argparse.REMAINDER, help="command to run (after --)")
    shell.set_defaults(func=cmd_shell)

    call = sub.add_parser("call", help="call an exported driver method, e.g. power.on")
    call.add_argument("target", metavar="DRIVER.METHOD")
    call.add_argument("args", nargs="*", help="arguments, each parsed as a YAML value")
    add_connection_options(call)
    call.set_defaults(func=cmd_call)

    flash = sub.add_parser("flash", help="write an image to a board's storage (skipped if it holds it already)")
    flash.add_argument("image", help="raw, gzip, xz, bzip2 or zstd image file")
    flash.add_argument("--storage", metavar="DRIVER", help="dotted path (default: the storage mux named storage, "
                                                           "else the first one)")
    flash.add_argument("--force", action="store_true", help="write even if the storage holds this image")
    add_output_option(flash)
    add_connection_options(flash)
    flash.set_defaults(func=cmd_flash)

    put = sub.add_parser("put", help="send files to a driver that serves them, e.g. the exporter's TFTP server; "
                                     "they are served for the session (run it in `shell`, or give --session)")
    put.add_argument("driver", metavar="DRIVER", help="dotted path of the file server, e.g. tftp")
    put.add_argument("files", nargs="+", metavar="FILE")
    put.add_argument("--name", help="the name it is served as (one file; default: its file name)")
    add_output_option(put)
    add_connection_options(put)
    put.set_defaults(func=cmd_put)

    console = sub.add_parser("console", help="use a board's console (a driver's byte stream) from this terminal")
    console.add_argument("driver", metavar="DRIVER", help="dotted path, e.g. board.console")
    console.add_argument("--method", default="connect", help="the driver's stream (default: connect)")
    add_connection_options(console)
    console.set_defaults(func=cmd_console)

    tree = sub.add_parser("tree", help="show the exporter's driver tree and methods")
    add_connection_options(tree)
    tree.set_defaults(func=cmd_tree)
