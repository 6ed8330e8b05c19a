"""The scheduling policy, over plain data: which leases expire and why, which queued lease
gets which free exporter, where a lease stands in the queue, and whether an exporter is online.

No database, no clock and no asyncio here: the lease writer hands in the leases, the
exporters as it last read them and the time `t`, and applies what comes back.

    Exporters  {(namespace, name): ExporterSeen}, in the order grants try them (an ExporterMap
               keeps the grantable ones aside; any mapping will do)
    Leases     any iterable of LeaseRecord; only the active ones count
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from ..wire.protocol import common_pb2
from . import selectors
from .lease_record import LeaseRecord, LeaseState

ExporterKey = tuple[str, str]  # (namespace, name)

# Why a lease expired, as its owner reads it.
TTL_LAPSED = "the client stopped renewing the lease"
DURATION_ENDED = "the lease duration ran out"
EXPORTER_OFFLINE = "the exporter went offline"
CLIENT_REVOKED = "the client's identity was revoked"
EXPORTER_REVOKED = "the exporter's identity was revoked"
EXPORTER_DISABLED = "the exporter was taken out of service"

Revoked = frozenset  # of (namespace, name): client identities an admin revoked

BEFORE_LEASE, AFTER_LEASE = "beforeLease", "afterLease"  # the lease hooks an exporter declares
# What an exporter reports while its own board is not ready for a client: its lease is not ready yet.
PREPARING = frozenset({common_pb2.EXPORTER_STATUS_BEFORE_LEASE_HOOK,
                       common_pb2.EXPORTER_STATUS_BEFORE_LEASE_HOOK_FAILED})
# What a free exporter reports while it may not be granted: a hook runs, or one failed and awaits its end or an admin.
BUSY = PREPARING | {common_pb2.EXPORTER_STATUS_AFTER_LEASE_HOOK, common_pb2.EXPORTER_STATUS_AFTER_LEASE_HOOK_FAILED}


@dataclass(frozen=True)
class ExporterSeen:
    """An exporter as the controller last read it."""

    labels: dict
    online_until: float  # the last time it was heard of, plus the grace it has
    status: int = common_pb2.EXPORTER_STATUS_UNSPECIFIED  # what it last reported of itself
    status_message: str = ""
    revoked: bool = False  # an admin revoked its identity: never online, never granted
    disabled: str | None = None  # why an admin took it out of service (None: in service): never granted
    disabled_ends_leases: bool = False  # and whether the lease it held then ends
    hooks: frozenset[str] = frozenset()  # the lease hooks it declared when it registered (beforeLease, afterLease)

    def online(self, t: float) -> bool:
        """The one rule of online-ness: heard of within its grace, and not revoked."""
        return not self.revoked and self.online_until >= t

    def grantable(self, t: float) -> bool:
        """Whether a queued lease may get it now: online, in service, and no hook running or failed."""
        return self.disabled is None and self.online(t) and self.status not in BUSY

    def status_at(self, t: float, leased: bool) -> int:
        """The ExporterStatus clients are told: offline; leased: its beforeLease hook's phase, else LEASE_READY;
        free: what it reported, AVAILABLE when that was nothing or a lease's."""
        if not self.online(t):
            return common_pb2.EXPORTER_STATUS_OFFLINE
        if leased:
            return self.status if self.status in PREPARING else common_pb2.EXPORTER_STATUS_LEASE_READY
        return self.status if self.status in BUSY else common_pb2.EXPORTER_STATUS_AVAILABLE

    def preparing(self) -> str:
        """Why the lease it holds is not ready yet ("" when it is): its beforeLease hook runs, or failed."""
        if self.status not in PREPARING:
            return ""
        running = self.status == common_pb2.EXPORTER_STATUS_BEFORE_LEASE_HOOK
        return self.status_message or ("its beforeLease hook runs" if running else "its beforeLease hook failed")


class ExporterMap(dict):
    """{(namespace, name): ExporterSeen} in the order grants try them, with the exporters a grant may pick kept
    aside: at 10,000 exporters of which a few hundred were online, scanning every one at each batch's grant was most
    of the lease writer's time. Never changed in place once shared: `changed` makes the next one."""

    def __init__(self, items=()):
        super().__init__(items)
        self._free: tuple[float, dict] | None = None  # (since, the exporters grantable at `since`, in order)

    def grantable(self, t: float) -> Iterator[tuple[ExporterKey, ExporterSeen]]:
        """The exporters a queued lease may get at `t`, in order. Built on first use: an exporter grantable at `t`
        was at any earlier time, since only a new ExporterSeen (a new map) moves its online_until on."""
        if self._free is None or t < self._free[0]:
            self._free = (t, {key: seen for key, seen in self.items() if seen.grantable(t)})
        return ((key, seen) for key, seen in self._free[1].items() if seen.online(t))

    def changed(self, fresh: Mapping[ExporterKey, ExporterSeen], gone: Iterable[ExporterKey] = ()) -> ExporterMap:
        """A copy with `fresh` read anew and `gone` no more; what is grantable carried over rather than rebuilt,
        unless an exporter became grantable (its place in the order is then found by a new scan, on first use)."""
        gone = set(gone) - fresh.keys()  # read anew wins over gone
        new = ExporterMap(self)
        for key in gone:
            new.pop(key, None)
        new.update(fresh)
        if self._free is not None:
            since, free = self._free
            if all(key in free or not seen.grantable(since) for key, seen in fresh.items()):
                free = dict(free)  # a copy is cheap beside a scan; a key assigned again keeps its place
                for key in gone:
                    free.pop(key, None)
                for key, seen in fresh.items():
                    if seen.grantable(since):
                        free[key] = seen
                    else:
                        free.pop(key, None)
                new._free = (since, free)
        return new


def allows(allowed: tuple[str, ...], labels: dict) -> bool:
    """Whether selectors a client's capabilities allow (none: any) admit an exporter with these labels."""
    return not allowed or any(selectors.matches(s, labels) for s in allowed)


def wants(lease: LeaseRecord, exporter: str, labels: dict) -> bool:
    """Whether the exporter (its name and labels) is one the lease asks for."""
    return lease.exporter_name in (None, exporter) and selectors.matches(lease.selector, labels)


def queue_order(lease: LeaseRecord) -> tuple[int, float]:
    """Higher priority first, then first come, first served (a reservation comes at its beginning)."""
    return -lease.priority, lease.queued_at


def expiry(lease: LeaseRecord, exporters: Mapping[ExporterKey, ExporterSeen], t: float,
           revoked_clients: Revoked = frozenset()) -> str | None:
    """Why an active lease has ended by `t`, or None while it holds."""
    if (lease.namespace, lease.client) in revoked_clients:
        return CLIENT_REVOKED
    if lease.alive_until < t:
        return TTL_LAPSED
    if lease.state == LeaseState.GRANTED:
        if lease.granted_at + lease.duration < t:
            return DURATION_ENDED
        seen = exporters.get((lease.namespace, lease.exporter))
        if seen is not None and seen.revoked:
            return EXPORTER_REVOKED
        if seen is not None and seen.disabled is not None and seen.disabled_ends_leases:
            return f"{EXPORTER_DISABLED}: {seen.disabled}"
        if seen is None or not seen.online(t):
            return EXPORTER_OFFLINE
    return None


def expiries(leases: Iterable[LeaseRecord], exporters: Mapping[ExporterKey, ExporterSeen],
             t: float, revoked_clients: Revoked = frozenset()) -> list[tuple[LeaseRecord, str]]:
    """The active leases that have ended by `t`, each with why."""
    ended = []
    for lease in leases:
        if lease.active and (reason := expiry(lease, exporters, t, revoked_clients)):
            ended.append((lease, reason))
    return ended


def grants(leases: Iterable[LeaseRecord], exporters: Mapping[ExporterKey, ExporterSeen],
           t: float) -> list[tuple[LeaseRecord, str]]:
    """(queued lease, exporter name) for each lease that can be granted now: in queue order, each
    gets the first free, online exporter of its namespace that it wants and its client may lease.
    No exporter is given twice, nor one a granted lease holds."""
    leases = list(leases)
    queued = sorted((lease for lease in leases if lease.state == LeaseState.QUEUED and lease.queued_at <= t),
                    key=queue_order)
    if not queued:
        return []
    busy = {(lease.namespace, lease.exporter) for lease in leases if lease.state == LeaseState.GRANTED}
    grantable = (exporters.grantable(t) if isinstance(exporters, ExporterMap)
                 else ((key, seen) for key, seen in exporters.items() if seen.grantable(t)))
    # Free exporters are taken from `grantable` only as far as the queue needs: most leases want the first.
    unread = ((key, seen.labels) for key, seen in grantable if key not in busy)
    free: list[tuple[ExporterKey, dict]] = []
    granted = []
    for lease in queued:
        index = 0
        while index < len(free) or _read_one(unread, free):
            (namespace, name), labels = free[index]
            if namespace == lease.namespace and wants(lease, name, labels) and allows(lease.allowed, labels):
                granted.append((lease, name))
                del free[index]
                break
            index += 1
        if not free and not _read_one(unread, free):
            break  # no free exporter is left for anyone
    return granted


def _read_one(unread: Iterator, free: list) -> bool:
    """Move the next free exporter from `unread` to the end of `free`; False when there is none."""
    item = next(unread, None)
    if item is not None:
        free.append(item)
    return item is not None


def position(lease: LeaseRecord, leases: Iterable[LeaseRecord], exporters: Mapping[ExporterKey, ExporterSeen]) -> int:
    """1 + the queued leases ahead of this one that want any exporter it could get."""
    candidates = [(name, seen.labels) for (namespace, name), seen in exporters.items()
                  if namespace == lease.namespace and wants(lease, name, seen.labels)]
    rank = queue_order(lease)
    ahead = sum(1 for other in leases
                if other.state == LeaseState.QUEUED and other.name != lease.name and other.namespace == lease.namespace
                and queue_order(other) < rank
                and any(wants(other, name, labels) for name, labels in candidates))
    return ahead + 1


def shown(lease: LeaseRecord, leases: Iterable[LeaseRecord],
          exporters: Mapping[ExporterKey, ExporterSeen]) -> LeaseRecord:
    """The lease as its owner sees it: with its queue position when queued, and why it cannot be granted when
    every exporter it asks for is out of service; granted, why it is not ready while its exporter prepares."""
    if lease.state == LeaseState.GRANTED:
        seen = exporters.get((lease.namespace, lease.exporter))
        waiting = seen.preparing() if seen is not None else ""
        return dataclasses.replace(lease, waiting=f"exporter {lease.exporter}: {waiting}") if waiting else lease
    if lease.state != LeaseState.QUEUED:
        return lease
    wanted = [(name, seen.disabled) for (namespace, name), seen in exporters.items()
              if namespace == lease.namespace and wants(lease, name, seen.labels) and not seen.revoked]
    reason = ""
    if wanted and all(disabled is not None for _name, disabled in wanted):
        reason = "; ".join(f"{name} is out of service: {disabled}" for name, disabled in wanted[:3])
    return dataclasses.replace(lease, position=position(lease, leases, exporters), reason=reason)
