"""Controller figures (issue 6): idle cost of many exporters, and lease grant latency under churn.

    .venv/bin/python bench/controller.py [--exporters 1000] [--clients 100] [--pool 200] [--seconds 10]
                                         [--idle-seconds 60]
                                         [--hold 0] [--postgres URL] [--inventory] [--json results.json]

1. `--exporters` simulated exporters register and keep their Status stream open (what a
   real exporter does between leases); the controller's RSS and CPU are read from /proc
   over `--idle-seconds` of idling: a minute, so the figure is an average over the collector's full
   passes (0.4 s each at 10,000 exporters) rather than a sample that has one or not.
   With `--inventory`, `ansible-inventory --list` then lists them through the collection's
   inventory plugin, timed against a script inventory printing the same hosts and variables
   (Ansible's own work, the floor the plugin adds its controller call to).
2. `--clients` clients churn leases over a pool of `--pool` exporters: create (the grant
   comes back in the same call when an exporter is free), hold it `--hold` ms, release,
   again; p50/p99 of the time from CreateLease to a granted lease.
The same two loads run first against bench/bare_controller.py, the same RPCs on bare
grpcio with nothing behind them (no tokens, database or queue): the floor this machine
sets, printed beside ours as a ratio. Then on SQLite, and on PostgreSQL when --postgres
gives a server URL (a fresh database is created in it). The clients churn with no pause,
so latency here is mostly queueing behind the other clients' calls. Figures only:
nothing here passes or fails on speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

from jumpstarter_lab.client import ClientConfig, ControllerClient
from jumpstarter_lab.controller.auth import Authority
from jumpstarter_lab.controller.store import Store
from jumpstarter_lab.wire.metadata import identity_metadata
from jumpstarter_lab.wire.protocol import jumpstarter_pb2, jumpstarter_pb2_grpc

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_stats(pid: int) -> tuple[int, float]:
    """(RSS bytes, CPU seconds used so far) of a process."""
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return rss, (int(fields[11]) + int(fields[12])) / ticks


def inventory_times(endpoint: str, client_token: str, exporters: int) -> dict:
    """Seconds `ansible-inventory --list` takes through the inventory plugin (every exporter online, listed by
    the controller) and from a script inventory printing the same hosts and variables; each the best of three."""
    import yaml

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "collections" / "ansible_collections" / "jumpstarter").mkdir(parents=True)
        (work / "collections" / "ansible_collections" / "jumpstarter" / "lab").symlink_to(ROOT)
        config = work / "client.yaml"
        config.touch(mode=0o600)
        config.write_text(ClientConfig(name="c0", namespace="default", endpoint=endpoint, token=client_token,
                                       tls={"insecure": True}).dump())
        plugin = work / "lab.jumpstarter.yml"
        plugin.write_text(yaml.safe_dump({"plugin": "jumpstarter.lab.jumpstarter", "client_config": str(config)}))
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(work / "collections"), ANSIBLE_HOME=str(work / "home"),
                   ANSIBLE_INVENTORY_UNPARSED_FAILED="1")

        def best(inventory: Path) -> tuple[float, dict]:
            times, listed = [], {}
            for _run in range(3):
                start = time.perf_counter()
                result = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(inventory), "--list"], env=env,
                                        capture_output=True, text=True, check=True)
                times.append(time.perf_counter() - start)
                listed = json.loads(result.stdout)
            return min(times), listed

        plugin_seconds, listed = best(plugin)
        hosts = listed["_meta"]["hostvars"]
        if len(hosts) != exporters:
            raise RuntimeError(f"the inventory plugin listed {len(hosts)} exporters, not {exporters}")
        # The peer: a script inventory printing what the plugin listed (all of Ansible's work, none of ours).
        # A YAML inventory of the same 10,000 hosts took Ansible 72 s to parse: no fair floor.
        (work / "listed.json").write_text(json.dumps(listed))
        script = work / "listed.py"
        script.write_text(f"#!{sys.executable}\nimport sys\n"
                          f"print(open({str(work / 'listed.json')!r}).read() if '--list' in sys.argv else '{{}}')\n")
        script.chmod(0o755)
        script_seconds, _listed = best(script)
    return {"inventory_seconds": plugin_seconds, "script_inventory_seconds": script_seconds}


def make_identities(db: str, exporters: int, clients: int) -> tuple[list[str], list[str]]:
    authority = Authority(Store(db))
    exporter_tokens = [authority.create("exporter", "default", f"e{i}", {"bench": "1"}) for i in range(exporters)]
    client_tokens = [authority.create("client", "default", f"c{i}") for i in range(clients)]
    authority.store.close()
    return exporter_tokens, client_tokens


async def simulated_exporters(endpoint: str, tokens: list[str], ready: asyncio.Event, stop: asyncio.Event) -> None:
    """Exporters as the controller sees them: Register, then a Status stream held open."""
    channels = [grpc.aio.insecure_channel(endpoint) for _channel in range(max(1, len(tokens) // 200))]
    calls = []
    try:
        for i, token in enumerate(tokens):
            stub = jumpstarter_pb2_grpc.ControllerServiceStub(channels[i % len(channels)])
            metadata = identity_metadata(token, "Exporter", "default", f"e{i}")
            await stub.Register(jumpstarter_pb2.RegisterRequest(), metadata=metadata)
            call = stub.Status(jumpstarter_pb2.StatusRequest(), metadata=metadata)
            await call.read()  # the first status: registered and listening
            calls.append(call)
        ready.set()
        await stop.wait()
    finally:
        for call in calls:
            call.cancel()
        for channel in channels:
            await channel.close()


async def churn(endpoint: str, tokens: list[str], seconds: float, hold: float) -> list[float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def one_client(i: int, token: str) -> None:
        client = ControllerClient(ClientConfig(name=f"c{i}", namespace="default", endpoint=endpoint, token=token,
                                               tls={"insecure": True}))
        try:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                lease = await client.create_lease("bench=1", 60)
                if not lease.ready:
                    lease = await client.wait_ready(lease.name, 30)
                latencies.append(time.perf_counter() - start)
                if hold:
                    await asyncio.sleep(hold)
                await client.release(lease.name)
        finally:
            await client.close()

    await asyncio.gather(*(one_client(i, t) for i, t in enumerate(tokens)))
    return latencies


def run_case(db: str | None, args) -> dict:
    """One server under the two loads: our controller on `db`, or the bare grpcio floor when db is None."""
    endpoint = f"127.0.0.1:{free_port()}"
    if db is None:
        exporter_tokens = [f"e{i}" for i in range(args.exporters)]
        client_tokens = [f"c{i}" for i in range(args.clients)]
        command = [sys.executable, str(Path(__file__).parent / "bare_controller.py"), endpoint]
    else:
        exporter_tokens, client_tokens = make_identities(db, args.exporters, args.clients)
        command = [str(BIN / "jumpstarter-lab"), "controller", "run", "--db", db, "--listen", endpoint, "--insecure"]
    controller = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        if not controller.stdout.readline():
            raise RuntimeError(f"{' '.join(command)} exited before it listened (status {controller.wait()})")
        result = {}

        async def idle():
            ready, stop = asyncio.Event(), asyncio.Event()
            task = asyncio.ensure_future(simulated_exporters(endpoint, exporter_tokens, ready, stop))
            await asyncio.wait_for(ready.wait(), 600)
            await asyncio.sleep(2)  # let registration settle
            rss, cpu_before = proc_stats(controller.pid)
            start = time.perf_counter()
            await asyncio.sleep(args.idle_seconds)
            _rss, cpu_after = proc_stats(controller.pid)
            result["idle_exporters"] = len(exporter_tokens)
            result["idle_rss_mib"] = rss / 2**20
            result["idle_cpu_percent"] = 100 * (cpu_after - cpu_before) / (time.perf_counter() - start)
            if args.inventory and db is not None:
                listed = await asyncio.to_thread(inventory_times, endpoint, client_tokens[0], len(exporter_tokens))
                result.update(listed)
            # keep only the pool online for the churn
            stop.set()
            await task

        asyncio.run(idle())

        async def grants():
            ready, stop = asyncio.Event(), asyncio.Event()
            task = asyncio.ensure_future(simulated_exporters(endpoint, exporter_tokens[:args.pool], ready, stop))
            await asyncio.wait_for(ready.wait(), 600)
            latencies = await churn(endpoint, client_tokens, args.seconds, args.hold / 1000)
            stop.set()
            await task
            return latencies

        latencies = sorted(asyncio.run(grants()))
        result["grants"] = len(latencies)
        result["grant_p50_ms"] = 1000 * statistics.median(latencies)
        result["grant_p90_ms"] = 1000 * latencies[int(len(latencies) * 0.90) - 1]
        result["grant_p99_ms"] = 1000 * latencies[int(len(latencies) * 0.99) - 1]
        result["grant_max_ms"] = 1000 * latencies[-1]
        return result
    finally:
        controller.send_signal(signal.SIGTERM)
        controller.wait(30)
        controller.stdout.close()


def postgres_database(url: str) -> str:
    import sqlalchemy as sa

    name = f"bench_{os.getpid()}_{int(time.time())}"
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    return url.rsplit("/", 1)[0] + f"/{name}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exporters", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--pool", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10, help="seconds of lease churn")
    parser.add_argument("--idle-seconds", type=float, default=60, help="seconds the idle cost is measured over")
    parser.add_argument("--hold", type=float, default=0, help="ms each client holds a lease before releasing it")
    parser.add_argument("--postgres", help="PostgreSQL server URL, e.g. postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--inventory", action="store_true",
                        help="also time ansible-inventory --list of the registered exporters")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    cases = {"bare grpcio": run_case(None, args)}
    with tempfile.TemporaryDirectory() as tmp:
        cases["sqlite"] = run_case(f"sqlite:///{tmp}/bench.db", args)
    if args.postgres:
        cases["postgresql"] = run_case(postgres_database(args.postgres), args)
    bare = cases["bare grpcio"]
    print(f"{'server':11} {'exporters':>9} {'idle RSS MiB':>12} {'idle CPU %':>10} {'grants/s':>8} "
          f"{'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7} {'p99/bare':>8}  goal p99 < 50 ms")
    for server, r in cases.items():
        verdict = "meets goal" if r["grant_p99_ms"] < 50 else "misses goal"
        print(f"{server:11} {r['idle_exporters']:9d} {r['idle_rss_mib']:12.1f} {r['idle_cpu_percent']:10.1f} "
              f"{r['grants'] / args.seconds:8.0f} {r['grant_p50_ms']:7.1f} {r['grant_p90_ms']:7.1f} "
              f"{r['grant_p99_ms']:7.1f} {r['grant_max_ms']:7.1f} {r['grant_p99_ms'] / bare['grant_p99_ms']:7.2f}x"
              f"  {verdict}")
    for server, r in cases.items():
        if "inventory_seconds" in r:
            print(f"ansible-inventory --list of {r['idle_exporters']} exporters ({server}): "
                  f"{r['inventory_seconds']:.2f} s through the plugin, {r['script_inventory_seconds']:.2f} s from "
                  f"a script, {r['inventory_seconds'] / r['script_inventory_seconds']:.2f}x  goal < 3 s")
    if args.json:
        Path(args.json).write_text(json.dumps({"seconds": args.seconds, "cases": cases}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
