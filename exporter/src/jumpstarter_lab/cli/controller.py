"""`jumpstarter-lab controller|admin|exporters|lease`: the commands of distributed mode.

The controller's own modules (and its extra's packages: SQLAlchemy, cryptography) are
imported only by the commands that need them, so exporter hosts run the rest without them.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import yaml

from ..client import ClientConfig, ControllerClient, exporter_record, lease_record, load_client_config
from ..exporter import parse_address
from ..wire import defaults, names
from ..wire.channels import inline_ca
from ..wire.documents import API_VERSION
from ..wire.errors import ConfigError, DriverInvalidArgument
from .common import (
    add_client_config_option,
    add_lease_options,
    add_output_option,
    parse_duration,
    parse_time,
    print_records,
    with_signals,
)

DB_ENV = "JUMPSTARTER_LAB_DB"


def db_url(value: str | None) -> str:
    value = value or os.environ.get(DB_ENV) or "controller.db"
    return value if "://" in value else f"sqlite:///{Path(value).resolve()}"


def _labels(pairs: list[str] | None, what: str = "label") -> dict[str, str]:
    labels = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} '{pair}' should be KEY=VALUE")
        labels[key] = value
    return labels


def _write_private(path: str | None, text: str) -> None:
    if not path or path == "-":
        sys.stdout.write(text)
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.touch(mode=0o600)
    target.chmod(0o600)  # it holds a token
    target.write_text(text)
    print(f"wrote {target}", file=sys.stderr)


def _tls(args) -> dict:
    if args.insecure:
        return {"insecure": True}
    return {"ca": inline_ca(args.ca)} if args.ca else {}  # inline: the config works on any machine


# --- controller -----------------------------------------------------------------------

def cmd_controller_run(args) -> int:
    from ..controller.server import Controller

    host, port = parse_address(args.listen)
    cert = Path(args.tls_cert).read_bytes() if args.tls_cert else None
    key = Path(args.tls_key).read_bytes() if args.tls_key else None
    controller = Controller(db_url(args.db), exporter_grace=args.exporter_grace, router_deadline=args.router_deadline)

    def ready(endpoint: str) -> None:
        print(f"listening on {endpoint}", flush=True)

    asyncio.run(with_signals(lambda stopped: controller.serve(host, port, stopped, tls_cert=cert, tls_key=key,
                                                              insecure=args.insecure, advertise=args.advertise,
                                                              ready=ready)))
    return 0


# --- admin ------------------------------------------------------------------------------

def _authority(args):
    from ..controller.auth import Authority
    from ..controller.store import Store

    return Authority(Store(db_url(args.db)))


def _identity_names(args) -> None:
    names.check(args.namespace, "namespace")
    names.check(args.name, f"{args.verb.removeprefix('create-')} name")


def cmd_admin_create_client(args) -> int:
    _identity_names(args)
    capabilities = {}
    if args.allow_exporters:
        capabilities["exporters"] = args.allow_exporters
    if args.allow_methods:
        capabilities["methods"] = args.allow_methods
    if args.max_priority:
        capabilities["priority"] = args.max_priority
    token = _authority(args).create("client", args.namespace, args.name, _labels(args.label), capabilities,
                                    ttl_days=args.days)
    config = ClientConfig.issued(args.name, args.namespace, args.endpoint, token, _tls(args))
    _write_private(args.output, config.dump())
    return 0


def cmd_admin_create_exporter(args) -> int:
    _identity_names(args)
    token = _authority(args).create("exporter", args.namespace, args.name, _labels(args.label), ttl_days=args.days)
    export = {}
    if args.export_from:
        source = yaml.safe_load(Path(args.export_from).read_text()) or {}
        export = source.get("export", source)
    config = {"apiVersion": API_VERSION, "kind": "ExporterConfig",
              "metadata": {"namespace": args.namespace, "name": args.name},
              "endpoint": args.endpoint, "token": token, "tls": _tls(args), "export": export}
    _write_private(args.output, yaml.safe_dump(config, sort_keys=False))
    return 0


def cmd_admin_make_ca(args) -> int:
    from ..controller.tls import make_ca

    cert, _key = make_ca(Path(args.dir))
    print(f"wrote {cert} and its key; give {cert} to clients and exporters as their CA (--ca)")
    return 0


def cmd_admin_issue_cert(args) -> int:
    from ..controller.tls import issue_client_cert, issue_server_cert

    directory = Path(args.dir)
    ca_cert, ca_key = directory / "ca.crt", directory / "ca.key"
    for path in (ca_cert, ca_key):
        if not path.is_file():
            raise ConfigError(f"no {path.name} in {directory}: make one with `admin make-ca --dir {directory}`")
    if args.client:
        cert, key = issue_client_cert(directory, ca_cert, ca_key, args.client)
        print(f"wrote {cert} and {key} (client certificate of {args.client}, for --tls-cert/--tls-key)")
        return 0
    if not args.host:
        raise ConfigError("issue-cert needs --host (a server certificate) or --client NAME (a client certificate)")
    cert, key = issue_server_cert(directory, ca_cert, ca_key, args.host, name=args.name)
    print(f"wrote {cert} and {key} (for {', '.join(args.host)})")
    return 0


def cmd_admin_apply(args) -> int:
    from .apply import cmd_admin_apply as apply

    return apply(args, _authority(args))


def cmd_admin_revoke(args) -> int:
    _authority(args).revoke(args.kind, args.namespace, args.name)
    print(f"revoked every token of {args.kind} {args.namespace}/{args.name}")
    return 0


def cmd_admin_disable(args) -> int:
    _authority(args).set_service(args.namespace, args.name, args.reason, args.end_leases)
    ended = "; its lease ends" if args.end_leases else "; a lease it holds goes on until it ends"
    print(f"exporter {args.namespace}/{args.name} is out of service ({args.reason}): it is granted to nobody{ended}")
    return 0


def cmd_admin_enable(args) -> int:
    _authority(args).set_service(args.namespace, args.name, None)
    print(f"exporter {args.namespace}/{args.name} is in service again")
    return 0


# --- client side ----------------------------------------------------------------------------

async def _with_client(args, work):
    client = ControllerClient(load_client_config(args.client_config))
    try:
        return await work(client)
    finally:
        await client.close()


def cmd_exporters_list(args) -> int:
    exporters = asyncio.run(_with_client(args, lambda c: c.exporters(args.selector or "")))
    records = [exporter_record(e) for e in exporters]

    def table(record: dict) -> str:
        labels = ",".join(f"{k}={v}" for k, v in record["labels"].items())
        state = ("online" if record["online"] else "offline") + ("" if record["enabled"] else ",disabled")
        return f"{record['name']}  {state}  {record['message'] or '-'}  {labels}"

    print_records(records, args.output, table)
    return 0


def _print_position(status) -> None:
    print(f"lease {status.name}: {status.message}", file=sys.stderr, flush=True)


def cmd_lease_create(args) -> int:
    async def work(client: ControllerClient):
        if not args.selector and not args.exporter:
            raise DriverInvalidArgument("lease create needs --selector or --exporter")
        status = await client.create_lease(args.selector or "", args.duration, args.ttl, args.exporter,
                                           _labels(args.tag, "tag"), args.begin_time, args.priority)
        if args.acquisition_timeout and args.begin_time is None:  # a reservation is made, not waited for
            try:
                status = await client.wait_ready(status.name, args.acquisition_timeout, _print_position)
            except BaseException:
                await client.release(status.name)  # as the lease module does: no request left in the queue
                raise
        return status

    status = asyncio.run(_with_client(args, work))
    print_records([lease_record(status)], args.output, lambda record: record["name"])
    if status.ready:
        print(f"granted: exporter {status.exporter}", file=sys.stderr)
    return 0


def cmd_lease_console_log(args) -> int:
    data = asyncio.run(_with_client(args, lambda client: client.console_log(args.name, args.wait)))
    if args.output:
        Path(args.output).write_bytes(data)
        print(f"console log of lease {args.name}: {len(data)} bytes written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0


def cmd_lease_list(args) -> int:
    records = [lease_record(status) for status in asyncio.run(_with_client(
        args, lambda c: c.leases(not args.all, args.tag_filter or "")))]
    print_records(records, args.output, lambda r: f"{r['name']}  {r['state']}  {r['exporter'] or '-'}  {r['message']}"
                                                  + ("  " + ",".join(f"{k}={v}" for k, v in r["tags"].items())
                                                     if r["tags"] else ""))
    return 0


def cmd_lease_update(args) -> int:
    status = asyncio.run(_with_client(args, lambda c: c.update_lease(args.name, args.duration, args.to_client)))
    print_records([lease_record(status)], args.output, lambda r: f"{r['name']}  {r['state']}  {r['exporter'] or '-'}")
    return 0


def cmd_lease_release(args) -> int:
    asyncio.run(_with_client(args, lambda c: c.release(args.name)))
    return 0


def add_parsers(sub) -> None:
    controller = sub.add_parser("controller", help="run the controller").add_subparsers(dest="verb", required=True)
    run = controller.add_parser("run", help="serve leases, exporters and the router")
    run.add_argument("--db", help=f"database URL or SQLite file (default: ${DB_ENV} or ./controller.db)")
    run.add_argument("--listen", default="0.0.0.0:8082", metavar="HOST:PORT")
    run.add_argument("--advertise", metavar="HOST:PORT", help="router address given to clients and exporters")
    run.add_argument("--tls-cert")
    run.add_argument("--tls-key")
    run.add_argument("--insecure", action="store_true", help="serve without TLS")
    run.add_argument("--exporter-grace", type=float, default=defaults.EXPORTER_GRACE, metavar="SECONDS",
                     help="an exporter unheard of this long is offline and loses its lease "
                          f"(default {defaults.EXPORTER_GRACE:g})")
    run.add_argument("--router-deadline", type=float, default=defaults.ROUTER_DEADLINE, metavar="SECONDS",
                     help="how long the first side of a connection through the router waits for the other "
                          f"(default {defaults.ROUTER_DEADLINE:g})")
    run.set_defaults(func=cmd_controller_run)

    admin = sub.add_parser("admin", help="manage clients and exporters").add_subparsers(dest="verb", required=True)
    for kind in ("client", "exporter"):
        create = admin.add_parser(f"create-{kind}", help=f"create a {kind} and write its config with a token")
        create.add_argument("name")
        create.add_argument("--db")
        create.add_argument("--namespace", default="default")
        create.add_argument("--label", action="append", metavar="KEY=VALUE")
        create.add_argument("--endpoint", required=True, metavar="HOST:PORT", help="the controller's address")
        create.add_argument("--ca", help="CA certificate of the controller")
        create.add_argument("--insecure", action="store_true", help="the controller serves without TLS")
        create.add_argument("--days", type=float, default=365, help="token lifetime")
        create.add_argument("-o", "--output", help="config file to write (0600); default stdout")
        if kind == "client":
            create.add_argument("--allow-exporters", action="append", metavar="SELECTOR",
                                help="only exporters matching one of these selectors")
            create.add_argument("--allow-methods", action="append", metavar="PATTERN",
                                help="only driver methods matching one of these patterns, e.g. 'power.*'")
            create.add_argument("--max-priority", type=int, default=0, metavar="N",
                                help="the highest lease priority it may ask for (default 0: none above the rest)")
            create.set_defaults(func=cmd_admin_create_client)
        else:
            create.add_argument("--export-from", help="take the export tree from this ExporterConfig")
            create.set_defaults(func=cmd_admin_create_exporter)
    ca = admin.add_parser("make-ca", help="make a CA for the lab's TLS endpoints")
    ca.add_argument("--dir", required=True, help="where ca.crt and ca.key (0600) go")
    ca.set_defaults(func=cmd_admin_make_ca)
    issue = admin.add_parser("issue-cert", help="issue a server or client certificate from the CA in --dir")
    issue.add_argument("--dir", required=True)
    kind = issue.add_mutually_exclusive_group()
    kind.add_argument("--host", action="append", help="DNS name or IP the server is reached by (repeatable)")
    kind.add_argument("--client", metavar="NAME", help="a client certificate for mutual TLS, as NAME.crt/NAME.key")
    issue.add_argument("--name", default="controller", help="file name stem (default: controller)")
    issue.set_defaults(func=cmd_admin_issue_cert)
    apply = admin.add_parser("apply", help="make clients and exporters what a file declares (idempotent), "
                                           "writing the configs of new ones")
    apply.add_argument("--file", required=True, help="YAML: endpoint, tls, clients and exporters")
    apply.add_argument("--db")
    apply.add_argument("--out-dir", required=True, help="where the configs go, as KIND/NAMESPACE/NAME.yaml (0600)")
    apply.set_defaults(func=cmd_admin_apply)
    revoke = admin.add_parser("revoke", help="void every token of a client or exporter")
    revoke.add_argument("kind", choices=["client", "exporter"])
    revoke.add_argument("name")
    revoke.add_argument("--db")
    revoke.add_argument("--namespace", default="default")
    revoke.set_defaults(func=cmd_admin_revoke)
    disable = admin.add_parser("disable-exporter", help="take an exporter out of service: it is granted to nobody "
                                                        "(upstream's enabled: false)")
    disable.add_argument("name")
    disable.add_argument("--reason", required=True, help="why, shown in exporters list and to waiting clients")
    disable.add_argument("--end-leases", action="store_true", help="end the lease it holds now (default: let it run)")
    enable = admin.add_parser("enable-exporter", help="put an exporter back in service")
    enable.add_argument("name")
    for parser, func in ((disable, cmd_admin_disable), (enable, cmd_admin_enable)):
        parser.add_argument("--db")
        parser.add_argument("--namespace", default="default")
        parser.set_defaults(func=func)

    exporters = sub.add_parser("exporters", help="exporters known to the controller").add_subparsers(
        dest="verb", required=True)
    listing = exporters.add_parser("list")
    listing.add_argument("--selector", "-l", help="label selector, e.g. board=rpi4,site!=lab2")
    add_output_option(listing)
    add_client_config_option(listing)
    listing.set_defaults(func=cmd_exporters_list)

    lease = sub.add_parser("lease", help="leases of this client").add_subparsers(dest="verb", required=True)
    create = lease.add_parser("create")
    create.add_argument("--selector", "-l", help="labels the exporter must have, e.g. board=rpi4")
    create.add_argument("--exporter", help="the exporter to lease, by name")
    add_lease_options(create)
    create.add_argument("--begin-time", type=parse_time, metavar="TIME",
                        help="reserve it from this time on (ISO 8601, e.g. 2026-12-24T08:00:00Z; local time without "
                             "a zone): it is queued as if asked for then, and lease create returns at once")
    create.add_argument("--tag", action="append", metavar="KEY=VALUE",
                        help="a tag of yours on the lease, to find it again with lease list --tag-filter (repeatable)")
    add_output_option(create)
    add_client_config_option(create)
    create.set_defaults(func=cmd_lease_create)
    listing = lease.add_parser("list")
    listing.add_argument("--all", action="store_true", help="ended leases too")
    listing.add_argument("--tag-filter", metavar="SELECTOR", help="only leases whose tags match, e.g. ci-job=1234")
    add_output_option(listing)
    add_client_config_option(listing)
    listing.set_defaults(func=cmd_lease_list)
    update = lease.add_parser("update", help="extend or shorten a lease, or hand it to another client (upstream's "
                                             "jmp update lease)")
    update.add_argument("name")
    update.add_argument("--duration", type=parse_duration, metavar="DURATION",
                        help="its new duration, counted from when it was granted (e.g. 2h)")
    update.add_argument("--to-client", metavar="CLIENT", help="hand it to this client of the namespace")
    add_output_option(update)
    add_client_config_option(update)
    update.set_defaults(func=cmd_lease_update)
    log = lease.add_parser("console-log", help="the console log of a lease that ended, as its exporter recorded it")
    log.add_argument("name")
    log.add_argument("--output", "-o", metavar="FILE", help="write it to FILE (default: standard output)")
    log.add_argument("--wait", type=parse_duration, default=30.0, metavar="DURATION",
                     help="how long to wait for the exporter to hand it in after the lease ended (default 30 s)")
    add_client_config_option(log)
    log.set_defaults(func=cmd_lease_console_log)
    release = lease.add_parser("release")
    release.add_argument("name")
    add_client_config_option(release)
    release.set_defaults(func=cmd_lease_release)
