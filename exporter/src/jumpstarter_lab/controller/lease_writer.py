"""The one lease writer of a replica: decisions are made in memory and written through to the
database in batches, on one thread.

The changes asked for while one batch commits make up the next, and each batch is one
transaction. That transaction first moves the lease clock (a one-row counter: writers of
every replica queue on its row lock) and reads the rows other replicas stamped with a
newer clock value, so every decision is taken on the whole, current picture and no
exporter is granted twice. The unique index over granted exporters stays as a guard.
Every batch ends by granting what the policy says can be granted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa

from ..wire.errors import JumpstarterLabError
from . import lease_policy
from .exporters import Exporters
from .lease_policy import ExporterKey, ExporterMap, ExporterSeen
from .lease_record import ACTIVE, LeaseRecord, LeaseState, grant_id
from ..wire.protocol import common_pb2
from .store import Store, database_failure, lease_clock, leases, now, parameter_mark

logger = logging.getLogger(__name__)

SYNC_INTERVAL = 0.2  # how often an idle replica reads what the others changed

# --- lease rows -------------------------------------------------------------------------------

_SHOWN_ONLY = ("position", "waiting")
_COLUMNS = [f.name for f in dataclasses.fields(LeaseRecord) if f.name not in _SHOWN_ONLY]
_STORED = [*_COLUMNS, "seq"]
_STATE, _ALLOWED, _TAGS = _COLUMNS.index("state"), _COLUMNS.index("allowed"), _COLUMNS.index("tags")
ACTIVE_STATES = sorted(state.value for state in ACTIVE)  # as stored


def record_from_row(row) -> LeaseRecord:
    values = {name: getattr(row, name) for name in _COLUMNS}
    values["state"] = LeaseState(row.state)
    values["allowed"] = tuple(json.loads(row.allowed or "[]"))
    values["tags"] = tuple(sorted(json.loads(row.tags or "{}").items()))
    return LeaseRecord(**values)


def read_lease(conn, name: str) -> LeaseRecord | None:
    row = conn.execute(sa.select(leases).where(leases.c.name == name)).first()
    return record_from_row(row) if row else None


def read_client_leases(conn, namespace: str, client: str) -> list[LeaseRecord]:
    query = sa.select(leases).where((leases.c.namespace == namespace) & (leases.c.client == client))
    return [record_from_row(row) for row in conn.execute(query)]


def _stored_values(lease: LeaseRecord, seq: int) -> tuple:
    """The row of a lease, in _STORED order."""
    values = [getattr(lease, name) for name in _COLUMNS]
    values[_STATE] = lease.state.value
    values[_ALLOWED] = json.dumps(list(lease.allowed))
    values[_TAGS] = json.dumps(dict(lease.tags))
    return (*values, seq)


@functools.cache
def _write_statements(dialect) -> tuple[str, str]:
    """INSERT and UPDATE-by-name of whole lease rows, as driver SQL: a batch's rows go to the
    driver's executemany as they are, without per-row work in SQLAlchemy."""
    mark = parameter_mark(dialect)
    insert = f"INSERT INTO leases ({', '.join(_STORED)}) VALUES ({', '.join([mark] * len(_STORED))})"
    update = (f"UPDATE leases SET {', '.join(f'{name} = {mark}' for name in _STORED[1:])} "
              f"WHERE name = {mark}")
    return insert, update


# --- batches ------------------------------------------------------------------------------------

class Batch:
    """One transaction's working copy: decisions land here and reach memory only after commit."""

    def __init__(self, conn, active: dict[str, LeaseRecord], exporters_seen: ExporterMap, t: float,
                 revoked_clients: frozenset[ExporterKey] = frozenset()):
        self.conn, self.active, self.exporters, self.t = conn, dict(active), exporters_seen, t
        self.revoked_clients = revoked_clients
        self.changed: dict[str, LeaseRecord] = {}
        self.new: set[str] = set()

    def put(self, lease: LeaseRecord, new: bool = False) -> None:
        before = self.active.get(lease.name)
        self.changed[lease.name] = lease
        if new:
            self.new.add(lease.name)
        if lease.active:
            self.active[lease.name] = lease
        else:
            self.active.pop(lease.name, None)
        self._hook_phase(before, lease)

    def _hook_phase(self, before: LeaseRecord | None, lease: LeaseRecord) -> None:
        """An exporter that declared lease hooks is busy from a grant (beforeLease) and from a lease's end
        (afterLease) until it reports otherwise. Set here, in the transaction of the move, so that no client sees
        the lease ready, and no other lease gets the exporter, before the exporter could say so itself."""
        was_granted = before is not None and before.state == LeaseState.GRANTED
        if lease.state == LeaseState.GRANTED and not was_granted:
            point, status = lease_policy.BEFORE_LEASE, common_pb2.EXPORTER_STATUS_BEFORE_LEASE_HOOK
        elif was_granted and not lease.active:
            point, status = lease_policy.AFTER_LEASE, common_pb2.EXPORTER_STATUS_AFTER_LEASE_HOOK
        else:
            return
        key = (lease.namespace, lease.exporter)
        seen = self.exporters.get(key)
        if seen is None or point not in seen.hooks:
            return
        if seen.status == common_pb2.EXPORTER_STATUS_BEFORE_LEASE_HOOK_FAILED and point == lease_policy.AFTER_LEASE:
            return  # no afterLease hook follows a failed beforeLease (as upstream): the exporter says when it is free
        self.set_exporter_status(key, status, f"running the {point} hook of lease {lease.name}")

    def set_exporter_status(self, key: ExporterKey, status: int, message: str) -> None:
        """Record an exporter's status in this transaction, and in the picture this batch decides on."""
        Exporters.set_status(self.conn, key, status, message)
        if key in self.exporters:
            seen = dataclasses.replace(self.exporters[key], status=status, status_message=message)
            self.exporters = self.exporters.changed({key: seen})

    def find(self, name: str) -> LeaseRecord | None:
        """A lease by name: active ones from memory, ended ones from the database."""
        if name in self.active:
            return self.active[name]
        if name in self.changed:
            return self.changed[name]
        return read_lease(self.conn, name)

    def grant(self, reread: Callable[[set[ExporterKey]], dict[ExporterKey, ExporterSeen]] | None = None) -> None:
        """Grant what the policy says can be granted now. With `reread`, the exporters chosen are read afresh in
        this transaction first, so that one an admin took out of service or revoked since they were last read
        (every few seconds) is not granted; the policy then chooses again without it."""
        while True:
            chosen = lease_policy.grants(self.active.values(), self.exporters, self.t)
            if not chosen or reread is None:
                break
            keys = {(lease.namespace, exporter) for lease, exporter in chosen}
            fresh = reread(keys)
            self.exporters = self.exporters.changed(fresh, gone=keys - fresh.keys())
            if all(key in fresh and fresh[key].grantable(self.t) for key in keys):
                break
        for lease, exporter in chosen:
            self.put(lease.granted(exporter, self.t))

    def expire(self) -> None:
        """End the leases that lapsed, ran out, lost their exporter or whose client or exporter was revoked."""
        for lease, reason in lease_policy.expiries(self.active.values(), self.exporters, self.t, self.revoked_clients):
            self.put(lease.ended(LeaseState.EXPIRED, self.t, reason))


Op = Callable[[Batch], object]  # a change: its result, or a JumpstarterLabError that fails it alone
Refresh = bool | set[ExporterKey] | None  # exporters to read afresh first: all (True), these, or none


class LeaseWriter:
    """Memory (`active`, `exporters_seen`) and the one thread that writes it through."""

    def __init__(self, store: Store, exporters: Exporters):
        self.store, self.exporters = store, exporters
        self.active: dict[str, LeaseRecord] = {}  # queued and granted leases; replaced whole after each commit
        self.exporters_seen = ExporterMap()
        self.revoked_clients: frozenset[ExporterKey] = frozenset()  # read with all the exporters, every few seconds
        self.seen = 0  # the lease clock value this replica has read up to
        self.on_change: Callable[[], None] = lambda: None  # called when the grants changed
        self._pending: list[tuple[Op, Refresh, asyncio.Future]] = []
        self._wake: asyncio.Event | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="lease-writer")
        self._load()

    def grants_key(self) -> frozenset:
        return frozenset(grant_id(lease) for lease in self.active.values() if lease.state == LeaseState.GRANTED)

    def _load(self) -> None:
        """Read everything afresh: at start, and after a transaction failed."""
        with self.store.transaction() as conn:
            self.seen = conn.execute(sa.select(lease_clock.c.seq)).scalar_one()
            self.active = {row.name: record_from_row(row)
                           for row in conn.execute(sa.select(leases).where(leases.c.state.in_(ACTIVE_STATES)))}
            self.exporters_seen = ExporterMap(self.exporters.seen(conn))
            self.revoked_clients = self.exporters.revoked_clients(conn)

    def _merge(self, active: dict[str, LeaseRecord], conn) -> dict[str, LeaseRecord]:
        """Fold in the rows other replicas wrote since this one last read."""
        rows = conn.execute(sa.select(leases).where(leases.c.seq > self.seen)).all()
        if rows:
            active = dict(active)
            for row in rows:
                if row.state in ACTIVE:
                    active[row.name] = record_from_row(row)
                else:
                    active.pop(row.name, None)
        return active

    def _tick(self, conn) -> int:
        """Move the lease clock; its new value stamps this transaction's rows."""
        if conn.dialect.name == "postgresql":
            return conn.execute(lease_clock.update().values(seq=lease_clock.c.seq + 1)
                                .returning(lease_clock.c.seq)).scalar_one()
        # SQLite: BEGIN IMMEDIATE already holds the one write lock
        conn.execute(lease_clock.update().values(seq=lease_clock.c.seq + 1))
        return conn.execute(sa.select(lease_clock.c.seq)).scalar_one()

    def _read_exporters(self, batch: Batch, refreshes: list[Refresh]) -> None:
        if any(keys is True for keys in refreshes):
            batch.exporters = ExporterMap(self.exporters.seen(batch.conn))
            batch.revoked_clients = self.exporters.revoked_clients(batch.conn)
        elif keys := set().union(*(keys for keys in refreshes if keys)):
            batch.exporters = batch.exporters.changed(self.exporters.seen(batch.conn, keys))

    def _commit(self, ops: list[Op], refreshes: list[Refresh]) -> list:
        """Run a batch of changes in one transaction (on the writer thread); per-op results or errors."""
        with self.store.transaction() as conn:
            seq = self._tick(conn)
            batch = Batch(conn, self._merge(self.active, conn), self.exporters_seen, now(), self.revoked_clients)
            self._read_exporters(batch, refreshes)
            results = []
            for op in ops:
                try:
                    results.append(op(batch))
                except JumpstarterLabError as e:
                    results.append(e)
            batch.grant(lambda keys: self.exporters.seen(conn, keys))
            insert, update = _write_statements(conn.dialect)
            rows = {name: _stored_values(lease, seq) for name, lease in batch.changed.items()}
            updates = [(*row[1:], row[0]) for name, row in rows.items() if name not in batch.new]
            if updates:  # first: an exporter released here may be granted to a new lease below
                conn.exec_driver_sql(update, updates)
            inserts = [row for name, row in rows.items() if name in batch.new]
            if inserts:
                conn.exec_driver_sql(insert, inserts)
        # Committed: now memory may show it.
        self.active, self.exporters_seen, self.seen = batch.active, batch.exporters, seq
        self.revoked_clients = batch.revoked_clients
        # A lease an op returned may have been granted or expired by the rest of the batch.
        return [lease_policy.shown(batch.changed.get(r.name, r), batch.active.values(), batch.exporters)
                if isinstance(r, LeaseRecord) else r for r in results]

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
        """Commit what was asked for, batch by batch; read others' changes when idle."""
        loop = asyncio.get_running_loop()
        self._wake = self._wake or asyncio.Event()
        while True:
            if not self._pending:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SYNC_INTERVAL):
                        await self._wake.wait()
            self._wake.clear()
            pending, self._pending = self._pending, []
            grants_before = self.grants_key()
            try:
                if pending:
                    results = await loop.run_in_executor(self._thread, self._commit, [p[0] for p in pending],
                                                         [p[1] for p in pending])
                    for (_op, _refresh, future), result in zip(pending, results):
                        if future.done():
                            continue
                        if isinstance(result, Exception):
                            future.set_exception(result)
                        else:
                            future.set_result(result)
                else:
                    await loop.run_in_executor(self._thread, self._sync)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                logger.exception("writing lease changes failed; reloading the lease state")
                for _op, _refresh, future in pending:
                    if not future.done():
                        future.set_exception(database_failure(e))
                try:
                    await loop.run_in_executor(self._thread, self._load)
                except Exception:
                    logger.exception("reloading the lease state failed")
                    await asyncio.sleep(1)
            if self.grants_key() != grants_before:
                self.on_change()

    async def submit(self, op: Op, refresh_exporters: Refresh = None):
        """Run `op` in the next batch; its result once that batch has committed."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append((op, refresh_exporters, future))
        if self._wake is None:
            self._wake = asyncio.Event()
        self._wake.set()
        return await future

    def close(self) -> None:
        self._thread.shutdown(wait=True)
