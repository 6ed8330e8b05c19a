"""The one lease state machine: queued -> granted -> released | expired.

Decisions are made in memory and written through to the database by one writer per
replica, in batches: the changes asked for while one batch commits make up the next,
and each batch is one transaction. That transaction first moves the lease clock (a
one-row counter: writers of every replica queue on its row lock) and reads the rows
other replicas stamped with a newer clock value, so every decision is taken on the
whole, current picture and no exporter is granted twice. The unique index over granted
exporters stays as a guard. The epoch grows with every grant of a lease, so a router
token or an exporter acting on an older grant can be told apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import sqlalchemy as sa

from ..wire.errors import AccessDenied, DriverInvalidArgument, JumpstarterLabError, MethodNotFound
from . import selectors
from .auth import Identity
from .store import Store, dials, exporters, lease_clock, leases, loads, now

logger = logging.getLogger(__name__)

ONLINE_GRACE = 15.0  # an exporter whose Status stream has been gone this long is offline
ACTIVE = ("queued", "granted")
SYNC_INTERVAL = 0.2  # how often an idle replica reads what the others changed


@dataclass(frozen=True)
class LeaseView:
    name: str
    namespace: str
    client: str
    selector: str
    exporter: str | None
    state: str
    requested_at: float
    granted_at: float | None
    ended_at: float | None
    duration: float
    ttl: float
    alive_until: float
    epoch: int
    reason: str
    priority: int = 0
    exporter_name: str | None = None  # the one exporter asked for by name, if any
    allowed: tuple[str, ...] = ()  # exporter selectors the client may lease; empty: any
    position: int | None = None  # 1-based place in the queue, for queued leases

    @property
    def end_time(self) -> float | None:
        return self.granted_at + self.duration if self.granted_at else None


_COLUMNS = [f.name for f in dataclasses.fields(LeaseView) if f.name != "position"]
_STORED = [*_COLUMNS, "seq"]


def _from_row(row) -> LeaseView:
    values = {name: getattr(row, name) for name in _COLUMNS}
    values["allowed"] = tuple(json.loads(row.allowed or "[]"))
    return LeaseView(**values)


def _read_lease(conn, name: str) -> LeaseView | None:
    row = conn.execute(sa.select(leases).where(leases.c.name == name)).first()
    return _from_row(row) if row else None


def grant_id(lease: LeaseView | None) -> tuple[str, int] | None:
    """What tells one grant from another: the lease and its epoch (None: no grant)."""
    return (lease.name, lease.epoch) if lease else None


def _stored_values(lease: LeaseView, seq: int) -> tuple:
    """The row of a lease, in _STORED order."""
    return (*(json.dumps(list(lease.allowed)) if name == "allowed" else getattr(lease, name) for name in _COLUMNS),
            seq)


@functools.cache
def _write_statements(paramstyle: str) -> tuple[str, str]:
    """INSERT and UPDATE-by-name of whole lease rows, as driver SQL: a batch's rows go to the
    driver's executemany as they are, without per-row work in SQLAlchemy."""
    mark = "?" if paramstyle == "qmark" else "%s"
    insert = f"INSERT INTO leases ({', '.join(_STORED)}) VALUES ({', '.join([mark] * len(_STORED))})"
    update = (f"UPDATE leases SET {', '.join(f'{name} = {mark}' for name in _STORED[1:])} "
              f"WHERE name = {mark}")
    return insert, update


def allowed_exporter(identity: Identity, labels: dict) -> bool:
    """Whether a client's capabilities let it lease an exporter with these labels."""
    return _allows(tuple(identity.capabilities.get("exporters") or ()), labels)


def _wants(lease: LeaseView, exporter: str, labels: dict) -> bool:
    """Whether the exporter (its name and labels) is one the lease asks for."""
    return lease.exporter_name in (None, exporter) and selectors.matches(lease.selector, labels)


def _allows(allowed: tuple[str, ...], labels: dict) -> bool:
    return not allowed or any(selectors.matches(s, labels) for s in allowed)


@dataclass(frozen=True)
class ExporterSeen:
    labels: dict
    online_until: float


class _Batch:
    """One transaction's working copy: decisions land here and reach memory only after commit."""

    def __init__(self, conn, active: dict[str, LeaseView], exporters_seen: dict, t: float):
        self.conn, self.active, self.exporters, self.t = conn, dict(active), exporters_seen, t
        self.changed: dict[str, LeaseView] = {}
        self.new: set[str] = set()

    def put(self, lease: LeaseView, new: bool = False) -> None:
        self.changed[lease.name] = lease
        if new:
            self.new.add(lease.name)
        if lease.state in ACTIVE:
            self.active[lease.name] = lease
        else:
            self.active.pop(lease.name, None)

    def find(self, name: str) -> LeaseView | None:
        """A lease by name: active ones from memory, ended ones from the database."""
        if name in self.active:
            return self.active[name]
        if name in self.changed:
            return self.changed[name]
        return _read_lease(self.conn, name)


def _owned(lease: LeaseView | None, identity: Identity, name: str) -> LeaseView:
    if lease is None or lease.namespace != identity.namespace:
        raise MethodNotFound(f"no lease {name}")
    if identity.kind == "client" and lease.client != identity.name:
        raise AccessDenied(f"lease {name} belongs to another client")
    return lease


class Leases:
    def __init__(self, store: Store, exporter_grace: float = ONLINE_GRACE):
        self.store = store
        self.grace = exporter_grace  # how long an exporter may be unheard of before it counts as offline
        self.active: dict[str, LeaseView] = {}  # queued and granted leases; replaced whole after each commit
        self.exporters_seen: dict[tuple[str, str], ExporterSeen] = {}
        self._labels: dict[str, dict] = {}  # labels as stored -> parsed; shared, never changed in place
        self.seen = 0  # the lease clock value this replica has read up to
        self.on_change: Callable[[], None] = lambda: None
        self._pending: list[tuple[Callable, asyncio.Future]] = []
        self._wake: asyncio.Event | None = None
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="lease-writer")
        self._load()

    # --- memory and the database ----------------------------------------------------------

    def _load(self) -> None:
        """Read everything afresh: at start, and after a transaction failed."""
        with self.store.transaction() as conn:
            self.seen = conn.execute(sa.select(lease_clock.c.seq)).scalar_one()
            self.active = {row.name: _from_row(row)
                           for row in conn.execute(sa.select(leases).where(leases.c.state.in_(ACTIVE)))}
            self.exporters_seen = self._read_exporters(conn)

    def _read_exporters(self, conn, keys: set[tuple[str, str]] | None = None) -> dict[tuple[str, str], ExporterSeen]:
        """Exporters' labels and how long they count as online: all of them (every few seconds), or
        those in `keys`. Labels are parsed only when their text is new."""
        query = sa.select(exporters.c.namespace, exporters.c.name, exporters.c.labels, exporters.c.online_until)
        if keys is not None:
            query = query.where(sa.tuple_(exporters.c.namespace, exporters.c.name).in_(sorted(keys)))
        rows = conn.execute(query.order_by(exporters.c.name)).all()
        known = self._labels
        if keys is None:  # forget labels no exporter has any more
            self._labels = {}
        for r in rows:
            if r.labels not in self._labels:
                self._labels[r.labels] = known[r.labels] if r.labels in known else loads(r.labels)
        return {(r.namespace, r.name): ExporterSeen(self._labels[r.labels], r.online_until) for r in rows}

    def _merge(self, active: dict[str, LeaseView], conn) -> dict[str, LeaseView]:
        """Fold in the rows other replicas wrote since this one last read."""
        rows = conn.execute(sa.select(leases).where(leases.c.seq > self.seen)).all()
        if rows:
            active = dict(active)
            for row in rows:
                if row.state in ACTIVE:
                    active[row.name] = _from_row(row)
                else:
                    active.pop(row.name, None)
        return active

    def _commit(self, ops: list[Callable]) -> list:
        """Run a batch of changes in one transaction (on the writer thread); per-op results or errors."""
        with self.store.transaction() as conn:
            if conn.dialect.name == "postgresql":
                seq = conn.execute(lease_clock.update().values(seq=lease_clock.c.seq + 1)
                                   .returning(lease_clock.c.seq)).scalar_one()
            else:  # SQLite: BEGIN IMMEDIATE already holds the one write lock
                conn.execute(lease_clock.update().values(seq=lease_clock.c.seq + 1))
                seq = conn.execute(sa.select(lease_clock.c.seq)).scalar_one()
            batch = _Batch(conn, self._merge(self.active, conn), self.exporters_seen, now())
            wanted = [getattr(op, "refresh_exporters", None) for op in ops]
            if any(keys is True for keys in wanted):
                batch.exporters = self._read_exporters(conn)
            elif keys := set().union(*(keys for keys in wanted if keys)):
                batch.exporters = {**batch.exporters, **self._read_exporters(conn, keys)}
            results = []
            for op in ops:
                try:
                    results.append(op(batch))
                except JumpstarterLabError as e:
                    results.append(e)
            self._grant(batch)
            insert, update = _write_statements(conn.dialect.paramstyle)
            rows = {name: _stored_values(lease, seq) for name, lease in batch.changed.items()}
            updates = [(*row[1:], row[0]) for name, row in rows.items() if name not in batch.new]
            if updates:  # first: an exporter released here may be granted to a new lease below
                conn.exec_driver_sql(update, updates)
            inserts = [row for name, row in rows.items() if name in batch.new]
            if inserts:
                conn.exec_driver_sql(insert, inserts)
        # Committed: now memory may show it.
        self.active, self.exporters_seen, self.seen = batch.active, batch.exporters, seq
        # A lease an op returned may have been granted or expired by the rest of the batch.
        return [self.view(batch.changed.get(r.name, r), batch.active) if isinstance(r, LeaseView) else r
                for r in results]

    def _sync(self) -> bool:
        """Read what other replicas committed (no lock needed: clock values commit in order)."""
        with self.store.transaction(read_only=True) as conn:
            seq = conn.execute(sa.select(lease_clock.c.seq)).scalar_one()
            if seq == self.seen:
                return False
            self.active = self._merge(self.active, conn)
            self.seen = seq
        return True

    async def run(self) -> None:
        """The writer: commits what was asked for, batch by batch; reads others' changes when idle."""
        loop = asyncio.get_running_loop()
        self._wake = self._wake or asyncio.Event()
        while True:
            if not self._pending:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SYNC_INTERVAL):
                        await self._wake.wait()
            self._wake.clear()
            ops, self._pending = self._pending, []
            grants_before = self.grants_key()
            try:
                if ops:
                    results = await loop.run_in_executor(self._writer, self._commit, [op for op, _future in ops])
                    for (_op, future), result in zip(ops, results):
                        if future.done():
                            continue
                        if isinstance(result, Exception):
                            future.set_exception(result)
                        else:
                            future.set_result(result)
                else:
                    await loop.run_in_executor(self._writer, self._sync)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                logger.exception("writing lease changes failed; reloading the lease state")
                for _op, future in ops:
                    if not future.done():
                        future.set_exception(JumpstarterLabError(f"the controller's database failed: {e}"))
                try:
                    await loop.run_in_executor(self._writer, self._load)
                except Exception:
                    logger.exception("reloading the lease state failed")
                    await asyncio.sleep(1)
            if self.grants_key() != grants_before:
                self.on_change()

    async def _submit(self, op: Callable):
        future = asyncio.get_running_loop().create_future()
        self._pending.append((op, future))
        if self._wake is None:
            self._wake = asyncio.Event()
        self._wake.set()
        return await future

    def close(self) -> None:
        self._writer.shutdown(wait=True)

    # --- reading ---------------------------------------------------------------------------

    def view(self, lease: LeaseView, active: dict[str, LeaseView] | None = None) -> LeaseView:
        """The lease as its owner sees it: with its queue position when queued."""
        if lease.state != "queued":
            return lease
        return dataclasses.replace(lease, position=self._position(lease, self.active if active is None else active))

    def _position(self, lease: LeaseView, active: dict[str, LeaseView]) -> int:
        """1 + the queued leases ahead of this one that want any exporter it could get."""
        candidates = [(name, seen.labels) for (namespace, name), seen in self.exporters_seen.items()
                      if namespace == lease.namespace and _wants(lease, name, seen.labels)]
        rank = (-lease.priority, lease.requested_at)
        ahead = sum(1 for other in active.values()
                    if other.state == "queued" and other.name != lease.name and other.namespace == lease.namespace
                    and (-other.priority, other.requested_at) < rank
                    and any(_wants(other, name, labels) for name, labels in candidates))
        return ahead + 1

    def grants(self) -> dict[tuple[str, str], LeaseView]:
        """(namespace, exporter) -> its granted lease, for every exporter."""
        return {(lease.namespace, lease.exporter): lease for lease in self.active.values() if lease.state == "granted"}

    def grants_key(self) -> frozenset:
        return frozenset(grant_id(lease) for lease in self.active.values() if lease.state == "granted")

    def _stored(self, name: str) -> LeaseView | None:
        with self.store.transaction(read_only=True) as conn:
            return _read_lease(conn, name)

    async def get(self, identity: Identity, name: str, fresh: bool = False) -> LeaseView:
        """A lease from memory; from the database when it has ended, or when `fresh` (another
        replica may have granted it within the last sync interval)."""
        lease = None if fresh else self.active.get(name)
        if lease is None:
            lease = await asyncio.to_thread(self._stored, name)
        return self.view(_owned(lease, identity, name))

    async def list(self, identity: Identity, active_only: bool = True) -> list[LeaseView]:
        if active_only:
            mine = [lease for lease in self.active.values()
                    if lease.namespace == identity.namespace and lease.client == identity.name]
        else:
            def read():
                with self.store.transaction(read_only=True) as conn:
                    return [_from_row(row) for row in conn.execute(sa.select(leases).where(
                        (leases.c.namespace == identity.namespace) & (leases.c.client == identity.name)))]
            mine = await asyncio.to_thread(read)
        return [self.view(lease) for lease in sorted(mine, key=lambda lease: lease.requested_at)]

    # --- exporters ------------------------------------------------------------------------

    def register(self, identity: Identity, uuid_: str, labels: dict, reports: bytes) -> None:
        merged = dict(labels) | identity.labels  # the admin's labels win over what the exporter claims
        with self.store.transaction() as conn:
            key = (exporters.c.namespace == identity.namespace) & (exporters.c.name == identity.name)
            values = {"uuid": uuid_, "labels": json.dumps(merged), "reports": reports, "online_until": now() + self.grace}
            if conn.execute(exporters.update().where(key).values(**values)).rowcount == 0:
                conn.execute(exporters.insert().values(namespace=identity.namespace, name=identity.name, **values))

    def heartbeat(self, identity: Identity, online: bool = True) -> None:
        with self.store.transaction() as conn:
            conn.execute(exporters.update().where((exporters.c.namespace == identity.namespace)
                                                  & (exporters.c.name == identity.name))
                         .values(online_until=now() + self.grace if online else 0.0))

    def heartbeat_many(self, keys: set[tuple[str, str]]) -> None:
        """Keep every exporter with an open Status stream on this replica online, in one statement."""
        if not keys:
            return
        with self.store.transaction() as conn:
            for namespace in {key[0] for key in keys}:
                names = [name for ns, name in keys if ns == namespace]
                conn.execute(exporters.update().where((exporters.c.namespace == namespace) & exporters.c.name.in_(names))
                             .values(online_until=now() + self.grace))

    def report_status(self, identity: Identity, status: int, message: str) -> None:
        with self.store.transaction() as conn:
            conn.execute(exporters.update().where((exporters.c.namespace == identity.namespace)
                                                  & (exporters.c.name == identity.name))
                         .values(status=status, status_message=message))

    def exporters(self, namespace: str) -> list:
        with self.store.transaction(read_only=True) as conn:
            rows = conn.execute(sa.select(exporters).where(exporters.c.namespace == namespace)
                                .order_by(exporters.c.name)).all()
        granted = {name for ns, name in self.grants() if ns == namespace}
        return [(row, row.name in granted) for row in rows]

    # --- changes ------------------------------------------------------------------------------

    async def create(self, identity: Identity, selector: str, duration: float, ttl: float = 30.0, priority: int = 0,
                     name: str | None = None, exporter_name: str | None = None) -> LeaseView:
        """Queue a lease for an exporter matching `selector` (and named `exporter_name`, when given)
        and grant it at once when one is free."""
        selectors.parse(selector)  # reject a malformed selector before it queues
        if duration <= 0:
            raise DriverInvalidArgument("lease duration must be positive")
        if not 0 < ttl <= 3600:
            raise DriverInvalidArgument("lease keepalive ttl must be between 0 and 3600 seconds")
        named = bool(name)
        name = name or str(uuid.uuid4())
        allowed = tuple(identity.capabilities.get("exporters") or ())

        wanted = (identity.namespace, exporter_name)

        def op(batch: _Batch) -> LeaseView:
            if named and batch.find(name) is not None:
                raise DriverInvalidArgument(f"a lease named {name} exists already")
            if exporter_name is not None and wanted not in batch.exporters:
                raise MethodNotFound(f"no exporter {exporter_name} in namespace {identity.namespace}")
            lease = LeaseView(name=name, namespace=identity.namespace, client=identity.name, selector=selector,
                              exporter=None, state="queued", requested_at=batch.t, granted_at=None, ended_at=None,
                              duration=duration, ttl=ttl, alive_until=batch.t + ttl, epoch=0, reason="",
                              priority=priority, exporter_name=exporter_name, allowed=allowed)
            batch.put(lease, new=True)
            return lease

        # An exporter this replica has not seen yet may have registered a moment ago: read them afresh.
        if exporter_name is not None and wanted not in self.exporters_seen:
            op.refresh_exporters = {wanted}
        return await self._submit(op)

    async def keepalive(self, identity: Identity, name: str) -> LeaseView:
        def op(batch: _Batch) -> LeaseView:
            lease = _owned(batch.find(name), identity, name)
            if lease.state not in ACTIVE:
                raise DriverInvalidArgument(f"lease {name} has ended ({lease.state}: {lease.reason})")
            lease = dataclasses.replace(lease, alive_until=batch.t + lease.ttl)
            batch.put(lease)
            return lease

        return await self._submit(op)

    async def release(self, identity: Identity, name: str, reason: str = "released by the client") -> None:
        def op(batch: _Batch) -> None:
            lease = _owned(batch.find(name), identity, name)
            if lease.state in ACTIVE:
                batch.put(dataclasses.replace(lease, state="released", ended_at=batch.t, reason=reason))

        await self._submit(op)

    async def release_by_exporter(self, identity: Identity, reason: str) -> None:
        def op(batch: _Batch) -> None:
            for lease in list(batch.active.values()):
                if (lease.state == "granted" and lease.namespace == identity.namespace
                        and lease.exporter == identity.name):
                    batch.put(dataclasses.replace(lease, state="released", ended_at=batch.t, reason=reason))

        await self._submit(op)

    async def schedule(self, exporter: tuple[str, str] | None = None) -> None:
        """Expire what lapsed and grant what can be granted, with the exporters read afresh: all of
        them, or the one (namespace, name) whose state just changed."""
        def op(batch: _Batch) -> None:
            self._expire(batch)

        op.refresh_exporters = {exporter} if exporter else True
        await self._submit(op)

    # --- the scheduler ---------------------------------------------------------------------------

    @staticmethod
    def _expire(batch: _Batch) -> None:
        t = batch.t
        for lease in list(batch.active.values()):
            reason = None
            if lease.alive_until < t:
                reason = "the client stopped renewing the lease"
            elif lease.state == "granted" and lease.granted_at + lease.duration < t:
                reason = "the lease duration ran out"
            elif lease.state == "granted":
                seen = batch.exporters.get((lease.namespace, lease.exporter))
                if seen is None or seen.online_until < t:
                    reason = "the exporter went offline"
            if reason:
                batch.put(dataclasses.replace(lease, state="expired", ended_at=t, reason=reason))

    @staticmethod
    def _grant(batch: _Batch) -> None:
        """Grant queued leases in (priority, request time) order to free, online, matching exporters."""
        queued = sorted((lease for lease in batch.active.values() if lease.state == "queued"),
                        key=lambda lease: (-lease.priority, lease.requested_at))
        if not queued:
            return
        busy = {(lease.namespace, lease.exporter) for lease in batch.active.values() if lease.state == "granted"}
        free = [(key, seen.labels) for key, seen in batch.exporters.items()
                if seen.online_until >= batch.t and key not in busy]
        for lease in queued:
            if not free:
                break
            for index, ((namespace, name), labels) in enumerate(free):
                if namespace == lease.namespace and _wants(lease, name, labels) and _allows(lease.allowed, labels):
                    batch.put(dataclasses.replace(lease, state="granted", exporter=name, granted_at=batch.t,
                                                  epoch=lease.epoch + 1))
                    del free[index]
                    break

    # --- dialing ---------------------------------------------------------------------------------

    def add_dial(self, lease: str, endpoint: str, token: str) -> None:
        with self.store.transaction() as conn:
            conn.execute(dials.insert().values(lease=lease, router_endpoint=endpoint, router_token=token,
                                               created=now(), taken=False))

    def take_dials(self, lease_names: list[str]) -> list[tuple[str, str, str]]:
        """Claim the waiting dials of these leases: [(lease, router endpoint, router token)]."""
        if not lease_names:
            return []
        with self.store.transaction() as conn:
            rows = conn.execute(sa.select(dials).where(dials.c.lease.in_(lease_names) & dials.c.taken.is_(False))
                                .order_by(dials.c.id)).all()
            if rows:
                conn.execute(dials.update().where(dials.c.id.in_([r.id for r in rows]) & dials.c.taken.is_(False))
                             .values(taken=True))
            conn.execute(dials.delete().where(dials.c.created < now() - 300))
        return [(r.lease, r.router_endpoint, r.router_token) for r in rows]
