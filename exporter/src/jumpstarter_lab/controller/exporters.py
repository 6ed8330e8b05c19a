"""Exporters as the controller knows them: registration, heartbeats, status reports, and the
view of them the scheduler and clients read (online-ness itself is ExporterSeen's to decide).

An exporter counts as online for `grace` seconds after it was last heard of: when it
registered, or a heartbeat of its open Status stream came in.
"""

from __future__ import annotations

import functools
import json
import threading

import sqlalchemy as sa

from ..wire import defaults
from ..wire.protocol import common_pb2
from .auth import Identity
from .lease_policy import ExporterKey, ExporterSeen
from .store import Store, exporters, identities, loads, now, parameter_mark

AFTER_LEASE_HOOK_FAILED = common_pb2.EXPORTER_STATUS_AFTER_LEASE_HOOK_FAILED


def _key(namespace: str, name: str):
    return (exporters.c.namespace == namespace) & (exporters.c.name == name)


class Exporters:
    def __init__(self, store: Store, grace: float = defaults.EXPORTER_GRACE):
        self.store = store
        self.grace = grace  # how long an exporter may be unheard of before it counts as offline
        self._labels: dict[str, dict] = {}  # labels as stored -> parsed; shared, never changed in place
        # the last row read of each exporter, its admin's marks, and what they made
        self._rows: dict[ExporterKey, tuple] = {}
        self._lock = threading.Lock()  # heartbeats come from several threads
        self._refreshed: dict[ExporterKey, float] = {}  # online_until this replica last wrote, by exporter

    # --- what exporters tell ------------------------------------------------------------

    def register(self, identity: Identity, uuid_: str, labels: dict, reports: bytes, hooks: str = "") -> None:
        """A (re)started exporter: available, unless an afterLease hook of its failed (that waits for an admin)."""
        merged = dict(labels) | identity.labels  # the admin's labels win over what the exporter claims
        failed = exporters.c.status == AFTER_LEASE_HOOK_FAILED
        with self.store.transaction() as conn:
            key = _key(identity.namespace, identity.name)
            values = {"uuid": uuid_, "labels": json.dumps(merged), "reports": reports,
                      "online_until": now() + self.grace, "hooks": hooks}
            kept = {"status": sa.case((failed, exporters.c.status), else_=common_pb2.EXPORTER_STATUS_AVAILABLE),
                    "status_message": sa.case((failed, exporters.c.status_message), else_="")}
            if conn.execute(exporters.update().where(key).values(**values, **kept)).rowcount == 0:
                conn.execute(exporters.insert().values(namespace=identity.namespace, name=identity.name, **values,
                                                       status=common_pb2.EXPORTER_STATUS_AVAILABLE,
                                                       status_message=""))

    def heartbeat(self, identity: Identity, online: bool = True) -> None:
        """Heard of now (online for another grace), or gone (offline at once)."""
        key, until = (identity.namespace, identity.name), now() + self.grace if online else 0.0
        with self.store.transaction() as conn:
            conn.execute(exporters.update().where(_key(*key)).values(online_until=until))
        with self._lock:
            self._refreshed[key] = until

    def heartbeat_many(self, keys: set[ExporterKey], lead: float) -> None:
        """Keep every exporter with an open Status stream on this replica online: those with less than `lead`
        seconds of their grace left get another grace, in one statement a namespace. With 10,000 exporters, writing
        every row at every call was most of an idle controller's work."""
        t = now()
        with self._lock:
            self._refreshed = {key: self._refreshed.get(key, 0.0) for key in keys}  # forget the gone
            due = [key for key, until in self._refreshed.items() if until - t < lead]
        if not due:
            return
        until = t + self.grace
        with self.store.transaction() as conn:
            for namespace in {key[0] for key in due}:
                names = [name for ns, name in due if ns == namespace]
                in_namespace = (exporters.c.namespace == namespace) & exporters.c.name.in_(names)
                conn.execute(exporters.update().where(in_namespace).values(online_until=until))
        with self._lock:
            for key in due:
                if key in self._refreshed:
                    self._refreshed[key] = until

    @staticmethod
    def set_status(conn, key: ExporterKey, status: int, message: str) -> None:
        """What an exporter reported of itself (or the controller set for it at a grant or a lease's end), in `conn`."""
        conn.execute(exporters.update().where(_key(*key)).values(status=status, status_message=message))

    # --- what the controller reads ------------------------------------------------------

    def seen(self, conn, keys: set[ExporterKey] | None = None) -> dict[ExporterKey, ExporterSeen]:
        """The scheduler's view, in `conn`: all exporters (every few seconds), or those in `keys`, in order of
        namespace and name. Called on the lease writer's thread only.

        At 10,000 exporters this read was most of an idle controller's work, hence its shape: rows come from the
        driver's cursor as plain tuples, and one unchanged since the last read (most rows, most times) is known by a
        tuple comparison and keeps what it made; an admin's marks (revoked, out of service) are read apart, for the
        few identities that have any, rather than joined to every row."""
        rows_sql, marks_sql, mark = _seen_statements(conn.dialect)
        cursor = conn.connection.cursor()
        try:
            if keys is None:
                cursor.execute(f"{rows_sql} ORDER BY namespace, name")
                rows = cursor.fetchall()
            else:
                rows = []
                for namespace in sorted({namespace for namespace, _name in keys}):
                    names = sorted(name for ns, name in keys if ns == namespace)
                    places = ", ".join([mark] * len(names))
                    cursor.execute(f"{rows_sql} WHERE namespace = {mark} AND name IN ({places}) ORDER BY name",
                                   (namespace, *names))
                    rows += cursor.fetchall()
            cursor.execute(marks_sql)
            marks = {tuple(marked[:2]): tuple(marked[2:]) for marked in cursor.fetchall()}
        finally:
            cursor.close()
        known, made = self._labels, self._rows
        if keys is None:  # forget what no exporter has any more
            self._labels, self._rows = {}, {}
        seen = {}
        for row in rows:
            key = row[:2]
            marked = marks.get(key)
            last = made.get(key)
            if last is not None and last[0] == row and last[1] == marked:
                exporter = last[2]
            else:
                _namespace, _name, labels, online_until, status, message, hooks = row
                revoked, disabled, ends = marked or (False, None, False)
                if labels not in self._labels:
                    self._labels[labels] = known[labels] if labels in known else loads(labels)
                exporter = ExporterSeen(self._labels[labels], online_until, status, message, revoked=bool(revoked),
                                        disabled=disabled, disabled_ends_leases=bool(ends), hooks=_hooks(hooks))
            self._labels.setdefault(row[2], exporter.labels)
            self._rows[key] = (row, marked, exporter)
            seen[key] = exporter
        return seen

    @staticmethod
    def revoked_clients(conn) -> frozenset[ExporterKey]:
        """(namespace, name) of every client identity an admin revoked."""
        rows = conn.execute(sa.select(identities.c.namespace, identities.c.name)
                            .where((identities.c.kind == "client") & identities.c.revoked.is_(True))).all()
        return frozenset((r.namespace, r.name) for r in rows)

    def listing(self, namespace: str) -> list[tuple[str, ExporterSeen]]:
        """Every exporter of a namespace by name, with what it last reported: what clients list."""
        with self.store.transaction(read_only=True) as conn:
            rows = conn.execute(sa.select(exporters.c.name, exporters.c.labels, exporters.c.online_until,
                                          exporters.c.status, exporters.c.status_message, _revoked(),
                                          identities.c.disabled)
                                .select_from(_with_identity())
                                .where(exporters.c.namespace == namespace).order_by(exporters.c.name)).all()
        return [(r.name, ExporterSeen(loads(r.labels), r.online_until, r.status, r.status_message, r.revoked,
                                      r.disabled)) for r in rows]


@functools.cache
def _seen_statements(dialect) -> tuple[str, str, str]:
    """The two reads of `seen` as the driver's SQL: exporters' rows (WHERE and ORDER BY are added to it), and the
    exporter identities an admin marked; and the driver's parameter mark."""
    rows = sa.select(exporters.c.namespace, exporters.c.name, exporters.c.labels, exporters.c.online_until,
                     exporters.c.status, exporters.c.status_message, exporters.c.hooks)
    marked = (sa.select(identities.c.namespace, identities.c.name, identities.c.revoked, identities.c.disabled,
                        identities.c.disabled_ends_leases)
              .where((identities.c.kind == "exporter")
                     & (identities.c.revoked.is_(True) | identities.c.disabled.is_not(None))))

    def text(query) -> str:
        return " ".join(str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True})).split())

    return text(rows), text(marked), parameter_mark(dialect)


@functools.cache
def _hooks(text: str) -> frozenset[str]:
    return frozenset(filter(None, text.split(",")))


def _with_identity():
    """Exporters joined to their identities (an exporter registered only with a valid token has one)."""
    return exporters.outerjoin(identities, (identities.c.kind == "exporter")
                               & (identities.c.namespace == exporters.c.namespace)
                               & (identities.c.name == exporters.c.name))


def _revoked():
    return sa.func.coalesce(identities.c.revoked, False).label("revoked")
