"""The one lease state machine: queued -> granted -> released | expired, in the database.

Every transition is a transaction; `schedule` expires what lapsed and grants the
queue in (priority, request time) order. The epoch grows with every grant of a lease
name, so a router token or an exporter acting on an older grant can be told apart.
"""

from __future__ import annotations

import functools
import json
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ..errors import AccessDenied, DriverError, DriverInvalidArgument, MethodNotFound
from . import selectors
from .auth import Identity
from .store import Store, dials, exporters, identities, leases, loads, now

ONLINE_GRACE = 15.0  # an exporter whose Status stream has been gone this long is offline
ACTIVE = ("queued", "granted")
SCHEDULER_LOCK = 0x6A6C6C01  # PostgreSQL advisory lock key of the lease scheduler


@dataclass
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
    position: int | None = None

    @property
    def end_time(self) -> float | None:
        return self.granted_at + self.duration if self.granted_at else None


@functools.lru_cache(maxsize=4096)
def _parsed_labels(text: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(loads(text).items()))


def _labels(text: str) -> dict[str, str]:
    """An exporter's labels, parsed once per distinct text (the scheduler reads them on every pass)."""
    return dict(_parsed_labels(text))


def _view(row, position: int | None = None) -> LeaseView:
    return LeaseView(name=row.name, namespace=row.namespace, client=row.client, selector=row.selector,
                     exporter=row.exporter, state=row.state, requested_at=row.requested_at, granted_at=row.granted_at,
                     ended_at=row.ended_at, duration=row.duration, ttl=row.ttl, alive_until=row.alive_until,
                     epoch=row.epoch, reason=row.reason, position=position)


def allowed_exporter(identity: Identity, labels: dict) -> bool:
    """Whether a client's capabilities let it lease an exporter with these labels."""
    allowed = identity.capabilities.get("exporters")
    return not allowed or any(selectors.matches(s, labels) for s in allowed)


class Leases:
    def __init__(self, store: Store, exporter_grace: float = ONLINE_GRACE):
        self.store = store
        self.grace = exporter_grace  # how long an exporter may be unheard of before it counts as offline

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

    def grants(self) -> dict[tuple[str, str], LeaseView]:
        """(namespace, exporter) -> its granted lease, for every exporter."""
        with self.store.transaction() as conn:
            rows = conn.execute(sa.select(leases).where(leases.c.state == "granted")).all()
        return {(row.namespace, row.exporter): _view(row) for row in rows}

    def report_status(self, identity: Identity, status: int, message: str) -> None:
        with self.store.transaction() as conn:
            conn.execute(exporters.update().where((exporters.c.namespace == identity.namespace)
                                                  & (exporters.c.name == identity.name))
                         .values(status=status, status_message=message))

    def exporters(self, namespace: str) -> list:
        with self.store.transaction() as conn:
            rows = conn.execute(sa.select(exporters).where(exporters.c.namespace == namespace)
                                .order_by(exporters.c.name)).all()
            granted = {r.exporter for r in conn.execute(sa.select(leases.c.exporter).where(
                (leases.c.namespace == namespace) & (leases.c.state == "granted"))).all()}
        return [(row, row.name in granted) for row in rows]

    def granted_to(self, namespace: str, exporter: str) -> LeaseView | None:
        with self.store.transaction() as conn:
            row = conn.execute(sa.select(leases).where((leases.c.namespace == namespace) & (leases.c.exporter == exporter)
                                                       & (leases.c.state == "granted"))).first()
        return _view(row) if row else None

    # --- leases -----------------------------------------------------------------------------

    def create(self, identity: Identity, selector: str, duration: float, ttl: float = 30.0, priority: int = 0,
               name: str | None = None) -> LeaseView:
        selectors.parse(selector)  # reject a malformed selector before it queues
        if duration <= 0:
            raise DriverInvalidArgument("lease duration must be positive")
        if not 0 < ttl <= 3600:
            raise DriverInvalidArgument("lease keepalive ttl must be between 0 and 3600 seconds")
        name = name or str(uuid.uuid4())
        t = now()
        values = dict(name=name, namespace=identity.namespace, client=identity.name, selector=selector, state="queued",
                      priority=priority, requested_at=t, duration=duration, ttl=ttl, alive_until=t + ttl, epoch=0)
        # Queue and try to grant in one transaction: one write per request, not three.
        self._with_grants(lambda conn: conn.execute(leases.insert().values(**values)))
        return self.get(identity, name)

    def _with_grants(self, change) -> None:
        """Run `change(conn)` and then grant what can be granted, in one transaction.

        Grant decisions are serialized (see _grant), so the unique index should never
        fire; if it does, the transaction is retried, and a clear error is raised rather
        than a change silently dropped.
        """
        for _attempt in range(5):
            try:
                with self.store.transaction() as conn:
                    change(conn)
                    self._grant(conn)
                return
            except IntegrityError as e:
                if "one_grant_per_exporter" not in str(e) and "UNIQUE constraint failed: leases.namespace" not in str(e):
                    raise
        raise DriverError("the lease scheduler kept colliding with another replica; try again")

    def _owned(self, conn, identity: Identity, name: str):
        row = conn.execute(sa.select(leases).where(leases.c.name == name)).first()
        if row is None or row.namespace != identity.namespace:
            raise MethodNotFound(f"no lease {name}")
        if identity.kind == "client" and row.client != identity.name:
            raise AccessDenied(f"lease {name} belongs to another client")
        return row

    def get(self, identity: Identity, name: str) -> LeaseView:
        with self.store.transaction() as conn:
            row = self._owned(conn, identity, name)
            position = self._position(conn, row) if row.state == "queued" else None
        return _view(row, position)

    def _position(self, conn, row) -> int:
        """1 + the queued leases ahead of this one that want any exporter it could get."""
        labels = {e.name: _labels(e.labels) for e in conn.execute(
            sa.select(exporters.c.name, exporters.c.labels).where(exporters.c.namespace == row.namespace))}
        candidates = {name for name, value in labels.items() if selectors.matches(row.selector, value)}
        ahead = 0
        for other in conn.execute(sa.select(leases).where((leases.c.namespace == row.namespace)
                                                          & (leases.c.state == "queued")
                                                          & (leases.c.name != row.name))):
            if (-other.priority, other.requested_at) >= (-row.priority, row.requested_at):
                continue
            if any(selectors.matches(other.selector, labels[name]) for name in candidates):
                ahead += 1
        return ahead + 1

    def list(self, identity: Identity, active_only: bool = True) -> list[LeaseView]:
        with self.store.transaction() as conn:
            query = sa.select(leases).where((leases.c.namespace == identity.namespace) & (leases.c.client == identity.name))
            if active_only:
                query = query.where(leases.c.state.in_(ACTIVE))
            rows = conn.execute(query.order_by(leases.c.requested_at)).all()
            return [_view(r, self._position(conn, r) if r.state == "queued" else None) for r in rows]

    def keepalive(self, identity: Identity, name: str) -> LeaseView:
        with self.store.transaction() as conn:
            row = self._owned(conn, identity, name)
            if row.state not in ACTIVE:
                raise DriverInvalidArgument(f"lease {name} has ended ({row.state}: {row.reason})")
            conn.execute(leases.update().where(leases.c.name == name).values(alive_until=now() + row.ttl))
        return self.get(identity, name)

    def release(self, identity: Identity, name: str, reason: str = "released by the client") -> None:
        def change(conn):
            row = self._owned(conn, identity, name)
            if row.state in ACTIVE:
                conn.execute(leases.update().where(leases.c.name == name)
                             .values(state="released", ended_at=now(), reason=reason))

        self._with_grants(change)

    def release_by_exporter(self, identity: Identity, reason: str) -> None:
        with self.store.transaction() as conn:
            conn.execute(leases.update().where((leases.c.namespace == identity.namespace)
                                               & (leases.c.exporter == identity.name) & (leases.c.state == "granted"))
                         .values(state="released", ended_at=now(), reason=reason))
        self.schedule()

    # --- the scheduler ---------------------------------------------------------------------------

    def schedule(self) -> list[str]:
        """Expire what lapsed, then grant queued leases in order; returns the names granted."""
        granted: list[str] = []
        for _attempt in range(5):
            try:
                with self.store.transaction() as conn:
                    self._expire(conn)
                    granted += self._grant(conn)
                return granted
            except IntegrityError:
                continue  # another replica granted the same exporter first: look again
        return granted

    @staticmethod
    def _expire(conn) -> None:
        t = now()
        conn.execute(leases.update().where(leases.c.state.in_(ACTIVE) & (leases.c.alive_until < t))
                     .values(state="expired", ended_at=t, reason="the client stopped renewing the lease"))
        conn.execute(leases.update().where((leases.c.state == "granted")
                                           & (leases.c.granted_at + leases.c.duration < t))
                     .values(state="expired", ended_at=t, reason="the lease duration ran out"))
        offline = sa.select(exporters.c.name).where(
            (exporters.c.namespace == leases.c.namespace) & (exporters.c.online_until < t))
        conn.execute(leases.update().where((leases.c.state == "granted") & leases.c.exporter.in_(offline))
                     .values(state="expired", ended_at=t, reason="the exporter went offline"))

    @staticmethod
    def _grant(conn) -> list[str]:
        if conn.dialect.name == "postgresql":
            # One scheduler at a time across every replica: decisions are made on a consistent
            # picture, and the unique index stays a guard that never has to fire.
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEDULER_LOCK})")
        t = now()
        queued = conn.execute(sa.select(leases).where(leases.c.state == "queued")
                              .order_by(leases.c.priority.desc(), leases.c.requested_at)).all()
        if not queued:
            return []
        busy = {(r.namespace, r.exporter) for r in conn.execute(
            sa.select(leases.c.namespace, leases.c.exporter).where(leases.c.state == "granted"))}
        free = [(row.namespace, row.name, _labels(row.labels)) for row in conn.execute(
            sa.select(exporters.c.namespace, exporters.c.name, exporters.c.labels)
            .where(exporters.c.online_until >= t).order_by(exporters.c.name))
            if (row.namespace, row.name) not in busy]
        waiting_clients = {(lease.namespace, lease.client) for lease in queued}
        capabilities = {(row.namespace, row.name): loads(row.capabilities) for row in conn.execute(
            sa.select(identities).where((identities.c.kind == "client")
                                        & identities.c.name.in_([client[1] for client in waiting_clients])))}
        granted = []
        for lease in queued:
            if not free:
                break
            who = Identity("client", lease.namespace, lease.client,
                           capabilities=capabilities.get((lease.namespace, lease.client), {}))
            for index, (namespace, name, labels) in enumerate(free):
                if (namespace != lease.namespace or not selectors.matches(lease.selector, labels)
                        or not allowed_exporter(who, labels)):
                    continue
                done = conn.execute(leases.update().where((leases.c.name == lease.name) & (leases.c.state == "queued"))
                                    .values(state="granted", exporter=name, granted_at=t, epoch=lease.epoch + 1))
                if done.rowcount:  # zero: another replica granted this lease meanwhile
                    del free[index]
                    granted.append(lease.name)
                break
        return granted

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
