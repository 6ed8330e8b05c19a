"""Leases as the servicers use them: create, keepalive, release and schedule, and reading them.

Each change is an op run in the lease writer's next batch (lease_writer), on the record's
moves (lease_record); what expires and what is granted the policy decides (lease_policy).
Reads come from this replica's memory of the active leases, and from the database for
leases that have ended.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
import uuid
from collections.abc import Callable

from ..wire import defaults
from ..wire.errors import AccessDenied, DriverInvalidArgument, MethodNotFound
from . import lease_policy, selectors
from .auth import Identity
from .exporters import Exporters
from .lease_policy import ExporterKey
from .lease_record import LeaseRecord, LeaseState
from .lease_writer import Batch, LeaseWriter, read_client_leases, read_lease
from .store import Store

# Seconds a lease lives unrenewed when its client promised no ttl (upstream's clients send none).
SILENT_CLIENT_TTL = 30.0
MAX_RESERVATION_AHEAD = 90 * 86400.0  # seconds: how far ahead a lease may be reserved
MIN_PRIORITY = -100  # anyone may queue behind the rest (background jobs); above 0 needs the client's capability


def _refuse_forbidden(lease: LeaseRecord, batch: Batch) -> None:
    """A request whose every matching exporter the client's capabilities forbid would wait forever:
    refuse it now (one no exporter matches yet may wait for one to register)."""
    if not lease.allowed:
        return
    matching = [seen.labels for (namespace, exporter), seen in batch.exporters.items()
                if namespace == lease.namespace and lease_policy.wants(lease, exporter, seen.labels)]
    if matching and not any(lease_policy.allows(lease.allowed, labels) for labels in matching):
        wanted = lease.exporter_name or f"an exporter matching '{lease.selector}'"
        raise AccessDenied(f"this client may not lease {wanted} (it may lease: {', '.join(lease.allowed)})")


def _owned(lease: LeaseRecord | None, identity: Identity, name: str) -> LeaseRecord:
    if lease is None or lease.namespace != identity.namespace:
        raise MethodNotFound(f"no lease {name}")
    if identity.kind == "client" and lease.client != identity.name:
        raise AccessDenied(f"lease {name} belongs to another client")
    return lease


class Leases:
    def __init__(self, store: Store, exporter_grace: float = defaults.EXPORTER_GRACE):
        self.store = store
        self.exporters = Exporters(store, exporter_grace)
        self.writer = LeaseWriter(store, self.exporters)

    @property
    def on_change(self) -> Callable[[], None]:
        """Called when the grants changed."""
        return self.writer.on_change

    @on_change.setter
    def on_change(self, callback: Callable[[], None]) -> None:
        self.writer.on_change = callback

    async def run(self) -> None:
        await self.writer.run()

    def close(self) -> None:
        self.writer.close()

    # --- reading ---------------------------------------------------------------------------

    def view(self, lease: LeaseRecord) -> LeaseRecord:
        """The lease as its owner sees it: with its queue position when queued."""
        return lease_policy.shown(lease, self.writer.active.values(), self.writer.exporters_seen)

    def grants(self) -> dict[ExporterKey, LeaseRecord]:
        """(namespace, exporter) -> its granted lease, for every exporter."""
        return {(lease.namespace, lease.exporter): lease for lease in self.writer.active.values()
                if lease.state == LeaseState.GRANTED}

    def _stored(self, name: str) -> LeaseRecord | None:
        with self.store.transaction(read_only=True) as conn:
            return read_lease(conn, name)

    async def get(self, identity: Identity, name: str, fresh: bool = False) -> LeaseRecord:
        """A lease from memory; from the database when it has ended, or when `fresh` (another
        replica may have granted it within the last sync interval)."""
        lease = None if fresh else self.writer.active.get(name)
        if lease is None:
            lease = await asyncio.to_thread(self._stored, name)
        return self.view(_owned(lease, identity, name))

    async def granted(self, name: str, epoch: int) -> bool:
        """Whether grant `epoch` of lease `name` still holds, as the database says (any replica may end it)."""
        lease = await asyncio.to_thread(self._stored, name)
        return lease is not None and lease.state == LeaseState.GRANTED and lease.epoch == epoch

    async def list(self, identity: Identity, active_only: bool = True) -> list[LeaseRecord]:
        if active_only:
            mine = [lease for lease in self.writer.active.values()
                    if lease.namespace == identity.namespace and lease.client == identity.name]
        else:
            def read():
                with self.store.transaction(read_only=True) as conn:
                    return read_client_leases(conn, identity.namespace, identity.name)
            mine = await asyncio.to_thread(read)
        return [self.view(lease) for lease in sorted(mine, key=lambda lease: lease.requested_at)]

    # --- changes ------------------------------------------------------------------------------

    async def create(self, identity: Identity, selector: str, duration: float, ttl: float = SILENT_CLIENT_TTL,
                     priority: int = 0, name: str | None = None, exporter_name: str | None = None,
                     tags: dict[str, str] | None = None, begin_at: float | None = None) -> LeaseRecord:
        """Queue a lease for an exporter matching `selector` (and named `exporter_name`, when given)
        and grant it at once when one is free. `tags` are the client's own, for finding its leases again.
        `begin_at`: a reservation, granted no earlier than that and queued as if asked for then."""
        selectors.parse(selector)  # reject a malformed selector before it queues
        tags = check_tags(tags or {})
        if duration <= 0:
            raise DriverInvalidArgument("lease duration must be positive")
        if not MIN_PRIORITY <= priority <= identity.max_priority:
            if priority > identity.max_priority:
                raise AccessDenied(f"this client may ask for a priority of at most {identity.max_priority}, not "
                                   f"{priority} (an admin allows more: admin create-client --max-priority)")
            raise DriverInvalidArgument(f"a lease's priority is at least {MIN_PRIORITY}, not {priority}")
        if not 0 < ttl <= defaults.MAX_LEASE_TTL:
            raise DriverInvalidArgument(f"lease keepalive ttl must be between 0 and {defaults.MAX_LEASE_TTL:g} seconds")
        named = bool(name)
        name = name or str(uuid.uuid4())
        if begin_at is not None and begin_at - time.time() > MAX_RESERVATION_AHEAD:
            raise DriverInvalidArgument(f"a lease may be reserved at most {MAX_RESERVATION_AHEAD / 86400:g} days ahead")
        wanted = (identity.namespace, exporter_name)

        def op(batch: Batch) -> LeaseRecord:
            if named and batch.find(name) is not None:
                raise DriverInvalidArgument(f"a lease named {name} exists already")
            if exporter_name is not None and wanted not in batch.exporters:
                raise MethodNotFound(f"no exporter {exporter_name} in namespace {identity.namespace}")
            lease = LeaseRecord(name=name, namespace=identity.namespace, client=identity.name, selector=selector,
                                exporter=None, state=LeaseState.QUEUED, requested_at=batch.t, granted_at=None,
                                ended_at=None, duration=duration, ttl=ttl, alive_until=batch.t + ttl, epoch=0,
                                reason="", priority=priority, exporter_name=exporter_name,
                                allowed=identity.allowed_exporters, tags=tuple(sorted(tags.items())),
                                begin_at=begin_at if begin_at is not None and begin_at > batch.t else None)
            lease = lease.renewed(batch.t)  # a reservation lives for its ttl from its beginning
            _refuse_forbidden(lease, batch)
            batch.put(lease, new=True)
            return lease

        # An exporter this replica has not seen yet may have registered a moment ago: read it afresh.
        unseen = exporter_name is not None and wanted not in self.writer.exporters_seen
        return await self.writer.submit(op, {wanted} if unseen else None)

    async def keepalive(self, identity: Identity, name: str) -> LeaseRecord:
        def op(batch: Batch) -> LeaseRecord:
            lease = _owned(batch.find(name), identity, name)
            if not lease.active:
                raise DriverInvalidArgument(f"lease {name} has ended ({lease.state}: {lease.reason})")
            lease = lease.renewed(batch.t)
            batch.put(lease)
            return lease

        return await self.writer.submit(op)

    async def update(self, identity: Identity, name: str, duration: float | None = None,
                     new_owner: Identity | None = None) -> LeaseRecord:
        """Extend or shorten an active lease (`duration`, counted from its grant) and/or hand it to another client
        of the namespace (`new_owner`, whose capabilities then apply); renews it too."""
        if duration is not None and duration <= 0:
            raise DriverInvalidArgument("lease duration must be positive")

        def op(batch: Batch) -> LeaseRecord:
            lease = _owned(batch.find(name), identity, name)
            if not lease.active:
                raise DriverInvalidArgument(f"lease {name} has ended ({lease.state}: {lease.reason})")
            changes = {}
            if duration is not None:
                if lease.granted_at is not None and lease.granted_at + duration <= batch.t:
                    raise DriverInvalidArgument(f"lease {name} was granted {batch.t - lease.granted_at:.0f}s ago: a "
                                                f"duration of {duration:g}s would end it in the past (release it "
                                                "instead)")
                changes["duration"] = duration
            if new_owner is not None:
                changes.update(client=new_owner.name, allowed=new_owner.allowed_exporters)
            lease = dataclasses.replace(lease, **changes).renewed(batch.t)
            if new_owner is not None:  # the new owner may lease what it is handed
                refusal = f"client {new_owner.name} may not take lease {name}"
                try:
                    _refuse_forbidden(lease, batch)
                except AccessDenied as e:
                    raise AccessDenied(f"{refusal}: {e}") from None
                seen = batch.exporters.get((lease.namespace, lease.exporter)) if lease.exporter else None
                if seen is not None and not lease_policy.allows(lease.allowed, seen.labels):
                    raise AccessDenied(f"{refusal}: it may not lease exporter {lease.exporter}")
            batch.put(lease)
            return lease

        return await self.writer.submit(op)

    async def release(self, identity: Identity, name: str, reason: str = "released by the client") -> None:
        def op(batch: Batch) -> None:
            lease = _owned(batch.find(name), identity, name)
            if lease.active:
                batch.put(lease.ended(LeaseState.RELEASED, batch.t, reason))

        await self.writer.submit(op)

    async def report_status(self, identity: Identity, status: int, message: str, release: bool = False) -> None:
        """What an exporter reported of itself (upstream's ReportStatus); with `release`, the lease it holds ends,
        for the reason it gave. A queued lease may get it in the same batch, once it says it is free."""
        key = (identity.namespace, identity.name)

        def op(batch: Batch) -> None:
            batch.set_exporter_status(key, status, message)
            if not release:
                return
            for lease in list(batch.active.values()):
                if lease.state == LeaseState.GRANTED and (lease.namespace, lease.exporter) == key:
                    batch.put(lease.ended(LeaseState.RELEASED, batch.t, f"released by the exporter: {message}"
                                          if message else "released by the exporter"))

        await self.writer.submit(op, {key})

    async def schedule(self, exporter: ExporterKey | None = None) -> None:
        """Expire what lapsed and grant what can be granted, with the exporters read afresh: all of
        them, or the one (namespace, name) whose state just changed."""
        await self.writer.submit(Batch.expire, {exporter} if exporter else True)


MAX_TAGS, MAX_TAG_VALUE = 32, 256
_TAG_KEY = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?")


def check_tags(tags: dict[str, str]) -> dict[str, str]:
    """A lease's tags, if they are a few keys as labels are written (`team`, `ci.example.com/job`) with short
    text values; else DriverInvalidArgument naming the first that is not."""
    if len(tags) > MAX_TAGS:
        raise DriverInvalidArgument(f"a lease has at most {MAX_TAGS} tags, not {len(tags)}")
    for key, value in tags.items():
        if not _TAG_KEY.fullmatch(key):
            raise DriverInvalidArgument(f"tag key {key[:60]!r} is not valid: letters, digits, '.', '_', '-' and '/', "
                                        "starting and ending with a letter or digit, at most 63 characters")
        if len(value) > MAX_TAG_VALUE or any(c in value for c in ",\n"):
            raise DriverInvalidArgument(f"tag {key}: its value must be at most {MAX_TAG_VALUE} characters "
                                        "without commas or newlines")
    return dict(tags)
