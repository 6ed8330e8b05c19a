"""The lease scheduler on a real database: two replicas' writers on one SQLite file or one
PostgreSQL database, the write-through of in-memory decisions, and the schema migration."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import pytest
import sqlalchemy as sa

from jumpstarter_lab.controller.auth import Identity
from jumpstarter_lab.controller.leases import Leases
from jumpstarter_lab.controller.store import Store, engine_for, leases
from jumpstarter_lab.wire.errors import AccessDenied, DriverInvalidArgument, MethodNotFound


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/controller.db"
    server = request.getfixturevalue("postgres")
    name = f"sched_{uuid.uuid4().hex[:12]}"
    engine = engine_for(server.url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    return server.url.rsplit("/", 1)[0] + f"/{name}"


def client(name: str, **capabilities) -> Identity:
    return Identity("client", "default", name, capabilities=capabilities)


@contextlib.asynccontextmanager
async def replicas(url: str, count: int, exporters: dict[str, dict]):
    """`count` schedulers on one database, each with its writer running, and these exporters online."""
    stores = [Store(url) for _replica in range(count)]
    schedulers = [Leases(store) for store in stores]
    for name, labels in exporters.items():
        schedulers[0].exporters.register(Identity("exporter", "default", name), f"uuid-{name}", labels, b"")
    writers = [asyncio.ensure_future(s.run()) for s in schedulers]
    try:
        for s in schedulers:
            await s.schedule()  # read the exporters
        yield schedulers
    finally:
        for writer in writers:
            writer.cancel()
        for s, store in zip(schedulers, stores):
            s.close()
            store.close()


def test_queue_spans_replicas_and_hands_over_in_order(db_url):
    async def main():
        async with replicas(db_url, 2, {"board1": {"kind": "x"}}) as (a, b):
            first = await a.create(client("alice"), "kind=x", 60)
            assert (first.state, first.exporter, first.epoch) == ("granted", "board1", 1)
            second = await b.create(client("bob"), "kind=x", 60)
            third = await a.create(client("carol"), "kind=x", 60)
            assert (second.state, second.position) == ("queued", 1)
            assert (third.state, third.position) == ("queued", 2)
            await b.release(client("alice"), first.name)  # released on the other replica
            handed = await a.get(client("bob"), second.name, fresh=True)
            assert (handed.state, handed.exporter) == ("granted", "board1")
            await a.keepalive(client("carol"), third.name)  # a's memory catches up on the way
            assert (await a.get(client("carol"), third.name)).position == 1
            ended = await a.get(client("alice"), first.name)
            assert (ended.state, ended.reason) == ("released", "released by the client")

    asyncio.run(main())


def test_racing_replicas_never_grant_an_exporter_twice(db_url):
    boards = {f"board{i}": {"pool": "p"} for i in range(4)}

    async def main():
        async with replicas(db_url, 2, boards) as (a, b):
            made = await asyncio.gather(*(scheduler.create(client(f"c{i}"), "pool=p", 60)
                                          for i in range(12) for scheduler in (a, b)))
            granted = [lease for lease in made if lease.state == "granted"]
            assert len(granted) == 4
            assert sorted(lease.exporter for lease in granted) == sorted(boards)
            # Drain the queue: every release hands its board to the next waiting lease, once.
            holders = {lease.name: lease for lease in granted}
            served = set(holders)
            for _round in range(5):
                for name, lease in list(holders.items()):
                    await (a if len(served) % 2 else b).release(client(lease.client), name)
                    del holders[name]
                await a.schedule()
                await b.schedule()
                with a.store.transaction(read_only=True) as conn:
                    rows = conn.execute(sa.select(leases).where(leases.c.state == "granted")).all()
                assert len({row.exporter for row in rows}) == len(rows) <= 4
                for row in rows:
                    holders[row.name] = await a.get(client(row.client), row.name, fresh=True)
                    served.add(row.name)
            assert served == {lease.name for lease in made}

    asyncio.run(main())


def test_bad_requests_in_a_batch_fail_alone(db_url):
    async def main():
        async with replicas(db_url, 1, {"board1": {"kind": "x"}}) as (a,):
            mine = await a.create(client("alice"), "kind=x", 60, name="fixed-name")
            results = await asyncio.gather(
                a.create(client("bob"), "kind=x", 60, name="fixed-name"),
                a.release(client("bob"), mine.name),
                a.keepalive(client("bob"), "no-such-lease"),
                a.create(client("carol"), "kind=x", 60),
                return_exceptions=True)
            assert isinstance(results[0], DriverInvalidArgument) and "fixed-name" in str(results[0])
            assert isinstance(results[1], AccessDenied)
            assert isinstance(results[2], MethodNotFound)
            assert results[3].state == "queued"
            with pytest.raises(DriverInvalidArgument, match="invalid label selector"):
                await a.create(client("bob"), "kind=x=y", 60)
            assert (await a.get(client("alice"), mine.name)).state == "granted"

    asyncio.run(main())


def test_keepalive_lapse_and_capabilities(db_url):
    async def main():
        async with replicas(db_url, 1, {"lab1": {"site": "a"}, "lab2": {"site": "b"}}) as (a,):
            limited = client("dave", exporters=["site=b"])
            lease = await a.create(limited, "", 60, ttl=0.5)
            assert lease.exporter == "lab2"  # lab1 is outside dave's capabilities
            time.sleep(0.6)
            await a.schedule()
            ended = await a.get(limited, lease.name)
            assert (ended.state, ended.reason) == ("expired", "the client stopped renewing the lease")
            with pytest.raises(DriverInvalidArgument, match="has ended"):
                await a.keepalive(limited, lease.name)

    asyncio.run(main())


def test_a_version_1_database_is_migrated(db_url):
    Store(db_url).close()
    engine = engine_for(db_url)
    with engine.begin() as conn:  # back to what version 1 created
        conn.exec_driver_sql("DROP TABLE lease_clock")
        conn.exec_driver_sql("DROP INDEX leases_by_seq")
        conn.exec_driver_sql("ALTER TABLE leases DROP COLUMN seq")
        conn.exec_driver_sql("ALTER TABLE leases DROP COLUMN allowed")
        conn.exec_driver_sql("ALTER TABLE leases DROP COLUMN exporter_name")
        conn.exec_driver_sql("ALTER TABLE identities DROP COLUMN disabled")
        conn.exec_driver_sql("ALTER TABLE identities DROP COLUMN disabled_ends_leases")
        conn.exec_driver_sql("ALTER TABLE leases DROP COLUMN tags")
        conn.exec_driver_sql("ALTER TABLE exporters DROP COLUMN hooks")
        conn.exec_driver_sql("ALTER TABLE leases DROP COLUMN begin_at")
        conn.exec_driver_sql("DROP TABLE console_logs")
        conn.exec_driver_sql("UPDATE schema_version SET version = 1")
        conn.exec_driver_sql("INSERT INTO leases (name, namespace, client, selector, state, priority, requested_at, "
                             "duration, ttl, alive_until, epoch, reason) VALUES "
                             f"('old', 'default', 'alice', 'kind=x', 'queued', 0, {time.time()}, 60, 3600, "
                             f"{time.time() + 3600}, 0, '')")
    engine.dispose()

    async def main():
        async with replicas(db_url, 1, {"board1": {"kind": "x"}}) as (a,):
            old = await a.get(client("alice"), "old")
            assert (old.state, old.exporter) == ("granted", "board1")

    asyncio.run(main())
    store = Store(db_url)
    with store.transaction(read_only=True) as conn:
        assert conn.exec_driver_sql("SELECT version FROM schema_version").scalar_one() == 6
        assert conn.exec_driver_sql("SELECT count(*) FROM identities WHERE disabled IS NOT NULL").scalar_one() == 0
        assert conn.exec_driver_sql("SELECT count(*) FROM exporters WHERE hooks != ''").scalar_one() == 0
        assert conn.exec_driver_sql("SELECT count(*) FROM console_logs").scalar_one() == 0
    store.close()


def test_leasing_an_exporter_by_name(db_url):
    async def main():
        async with replicas(db_url, 2, {"rack1": {"kind": "x"}, "rack2": {"kind": "x"}}) as (a, b):
            mine = await a.create(client("alice"), "", 60, exporter_name="rack2")
            assert (mine.state, mine.exporter) == ("granted", "rack2")
            waiting = await b.create(client("bob"), "kind=x", 60, exporter_name="rack2")
            anyone = await b.create(client("carol"), "kind=x", 60)
            assert (waiting.state, waiting.position) == ("queued", 1)
            assert anyone.exporter == "rack1"  # not held up behind bob, who waits for rack2 only
            with pytest.raises(MethodNotFound, match="no exporter rack9 in namespace default"):
                await a.create(client("alice"), "", 60, exporter_name="rack9")
            await a.release(client("alice"), mine.name)
            handed = await b.get(client("bob"), waiting.name, fresh=True)
            assert (handed.state, handed.exporter) == ("granted", "rack2")

    asyncio.run(main())


def test_an_exporter_taken_out_of_service_a_moment_ago_is_not_granted(db_url):
    """The scheduler reads exporters every few seconds; a grant reads the ones it chose afresh, so an admin's
    disable-exporter (another process, straight into the database) holds from the moment it commits."""
    from jumpstarter_lab.controller.auth import Authority

    async def main():
        async with replicas(db_url, 1, {"rack1": {"kind": "x"}}) as (a,):
            authority = Authority(a.store)
            authority.declare("exporter", "default", "rack1")
            authority.set_service("default", "rack1", "new cable")
            waiting = await a.create(client("alice"), "kind=x", 60)
            assert (waiting.state, waiting.reason) == ("queued", "rack1 is out of service: new cable"), waiting
            authority.set_service("default", "rack1", None)
            await a.schedule()
            back = await a.get(client("alice"), waiting.name, fresh=True)
            assert (back.state, back.exporter) == ("granted", "rack1"), back

    asyncio.run(main())
