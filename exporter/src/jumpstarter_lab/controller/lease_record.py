"""A lease as the controller records it, its states, and the moves between them.

    queued -> granted -> released | expired
    queued -> released | expired

Every change of state goes through `LeaseRecord.granted` or `LeaseRecord.ended`, which
check the move against TRANSITIONS; a record is frozen, so each move is a new record.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum


class LeaseState(StrEnum):
    """Stored as its value, in the `state` column."""

    QUEUED = "queued"
    GRANTED = "granted"
    RELEASED = "released"
    EXPIRED = "expired"


ACTIVE = frozenset({LeaseState.QUEUED, LeaseState.GRANTED})  # the states the scheduler keeps in memory
TRANSITIONS: dict[LeaseState, frozenset[LeaseState]] = {
    LeaseState.QUEUED: frozenset({LeaseState.GRANTED, LeaseState.RELEASED, LeaseState.EXPIRED}),
    LeaseState.GRANTED: frozenset({LeaseState.RELEASED, LeaseState.EXPIRED}),
    LeaseState.RELEASED: frozenset(),
    LeaseState.EXPIRED: frozenset(),
}


@dataclass(frozen=True)
class LeaseRecord:
    name: str
    namespace: str
    client: str
    selector: str
    exporter: str | None
    state: LeaseState
    requested_at: float
    granted_at: float | None
    ended_at: float | None
    duration: float
    ttl: float
    alive_until: float
    epoch: int  # grows with every grant, so a router token or exporter acting on an older grant is told apart
    reason: str
    priority: int = 0
    exporter_name: str | None = None  # the one exporter asked for by name, if any
    allowed: tuple[str, ...] = ()  # exporter selectors the client may lease; empty: any
    tags: tuple[tuple[str, str], ...] = ()  # the client's (key, value) tags, sorted: what `tag_filter` selects on
    begin_at: float | None = None  # a reservation: granted no earlier than this, queued as if asked for then
    position: int | None = None  # 1-based place in the queue, for queued leases (shown, never stored)
    waiting: str = ""  # why a granted lease is not ready yet: its exporter prepares the board (shown, never stored)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def end_time(self) -> float | None:
        return self.granted_at + self.duration if self.granted_at else None

    def granted(self, exporter: str, t: float) -> LeaseRecord:
        return self._move(LeaseState.GRANTED, exporter=exporter, granted_at=t, epoch=self.epoch + 1)

    def ended(self, state: LeaseState, t: float, reason: str) -> LeaseRecord:
        """Released or expired, at `t`, for `reason`."""
        return self._move(state, ended_at=t, reason=reason)

    @property
    def queued_at(self) -> float:
        """Its place in the queue: when it was asked for, or when its reservation begins."""
        return self.begin_at if self.begin_at is not None else self.requested_at

    def renewed(self, t: float) -> LeaseRecord:
        """Kept alive for another ttl from `t`, or from its reservation's beginning (no change of state)."""
        return dataclasses.replace(self, alive_until=max(t, self.begin_at or t) + self.ttl)

    def _move(self, state: LeaseState, **changes) -> LeaseRecord:
        if state not in TRANSITIONS[self.state]:
            raise RuntimeError(f"lease {self.name}: {self.state} -> {state} is not a move of the lease state machine")
        return dataclasses.replace(self, state=state, position=None, waiting="", **changes)


def grant_id(lease: LeaseRecord | None) -> tuple[str, int] | None:
    """What tells one grant from another: the lease and its epoch (None: no grant)."""
    return (lease.name, lease.epoch) if lease else None
